/*
 * fuzz_hls: the network-facing parsers of HLS (issue 11) on arbitrary bytes: the _HLS_ query
 * of a playlist request, and the two parsers that read ring pages (Ogg page packets, ADTS
 * headers).
 *
 * Beyond "does not crash", checks what they promise: the query parser returns the length or
 * -1, and a success never has _HLS_part without _HLS_msn; packets found lie inside the page
 * and do not overlap; an ADTS header's lengths are consistent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hls/fmp4.h"
#include "hls/hls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hls_query q;
    int rc = hls_query_parse((const char *)data, size, &q);
    CHECK(rc == -1 || rc == (int)size);
    if (rc >= 0) {
        CHECK(!q.has_part || q.has_msn);
        CHECK(q.skip >= 0 && q.skip <= 2);
    }
    uint32_t off[64], len[64];
    int n = hls_ogg_packets(data, size, off, len, 64);
    CHECK(n >= -1 && n <= 64);
    uint64_t end = 0;
    for (int i = 0; i < n; i++) {
        CHECK(off[i] >= end && (uint64_t)off[i] + len[i] <= size);
        end = (uint64_t)off[i] + len[i];
    }
    struct adts_info ai;
    int h = adts_parse(data, size, &ai);
    CHECK(h == -1 || h == -2 || h == 7 || h == 9);
    if (h > 0)
        CHECK(ai.frame_len >= h && ai.channels >= 1 && ai.channels <= 7 && ai.rate >= 7350);
    return 0;
}
