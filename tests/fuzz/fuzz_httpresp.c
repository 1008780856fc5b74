/*
 * fuzz_httpresp: libFuzzer target for the HTTP/1.1 response reader of rostrum-load hls
 * (load/httpresp.c). The first byte picks the split: the rest is fed in pieces of that many
 * bytes (1..256) or whole; the reader must reach the same outcome, status and body bytes
 * whatever the split, never consume more than it is given, and stop at the end of the
 * response (what follows belongs to the next one). libFuzzer hands over an exact-size heap
 * copy, so ASan catches a read past the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "load/httpresp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    uint64_t n;
    uint32_t sum;
};

static void on_body(void *arg, const uint8_t *b, size_t len)
{
    struct sink *s = arg;
    for (size_t i = 0; i < len; i++)
        s->sum = s->sum * 31 + b[i];
    s->n += len;
}

/* Feeds <p> in pieces of <step> bytes (0: whole). Returns the state reached, or -1. */
static int run(struct httpresp *r, const uint8_t *p, size_t n, size_t step, struct sink *s,
               size_t *used)
{
    httpresp_init(r, 0);
    *used = 0;
    while (*used < n && r->state != HR_DONE) {
        size_t k = step && n - *used > step ? step : n - *used;
        long c = httpresp_feed(r, p + *used, k, on_body, s);
        if (c < 0)
            return -1;
        if ((size_t)c > k || ((size_t)c < k && r->state != HR_DONE))
            abort();
        *used += (size_t)c;
    }
    return r->state;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] % 8 == 0 ? 0 : data[0];
    static struct httpresp a, b;
    struct sink sa = {0}, sb = {0};
    size_t ua, ub;
    int ra = run(&a, data + 1, size - 1, 0, &sa, &ua);
    int rb = run(&b, data + 1, size - 1, step, &sb, &ub);
    if (ra != rb)
        abort();
    if (ra < 0)
        return 0;
    if (ua != ub || a.status != b.status || a.keep != b.keep || sa.n != sb.n || sa.sum != sb.sum ||
        a.body != sa.n || b.body != sb.n)
        abort();
    if (ra == HR_DONE && (a.status < 200 || a.status > 999))
        abort();
    return 0;
}
