#include "util/check.h"

#include <stdio.h>
#include <stdlib.h>

void check_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "rostrum: BUG at %s:%d: %s\n", file, line, what);
    fflush(stderr);
    abort();
}
