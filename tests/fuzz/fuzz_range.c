/*
 * fuzz_range: libFuzzer target for the HTTP Range parser of replay (record_range_parse,
 * src/record/record.c), and the Ogg page check the repair uses (record_page_check).
 *
 * The first 8 bytes of an input are the resource size, the rest the header value. A range
 * taken must lie inside the resource; libFuzzer's exact-size copy lets ASan see a read past it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t res = 0;
    if (size >= 8) {
        memcpy(&res, data, 8);
        res %= (uint64_t)1 << 40;
        data += 8;
        size -= 8;
    }
    uint64_t a = 0, b = 0;
    long r = record_range_parse((const char *)data, size, res, &a, &b);
    if (r >= 0 && ((size_t)r != size || a > b || b >= res))
        abort();
    if (r < 0 && r != -1 && r != -3)
        abort();
    uint64_t g;
    long n = record_page_check(data, size, &g);
    if (n > (long)size || (n < 0 && n != -1 && n != -2))
        abort();
    return 0;
}
