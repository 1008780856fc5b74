/*
 * web: the static pages of the audience port. "/" is index.html; every other file of web/ is
 * served under its own name. Built in, so a server binary needs no files beside it.
 */
#include <string.h>

#include "audience/audience.h"
#include "audience/web.h"

int web_asset(const char *path, const unsigned char **data, size_t *len, const char **type)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (const struct web_file *f = web_files; f->path; f++) {
        if (strcmp(path, f->path) == 0) {
            *data = f->start;
            *len = (size_t)(f->end - f->start);
            *type = f->type;
            return 0;
        }
    }
    return -1;
}
