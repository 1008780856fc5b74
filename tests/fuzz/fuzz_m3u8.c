/*
 * fuzz_m3u8: libFuzzer target for the HLS playlist reader of rostrum-load hls (load/m3u8.c):
 * a playlist is accepted whole or refused; what it keeps is within its bounds, NUL-terminated,
 * numbered in order (segments, and parts by segment then part), and every URI it keeps
 * resolves against a playlist path into a bounded path or is refused. libFuzzer hands over an
 * exact-size heap copy, so ASan catches a read past the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "load/m3u8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, size_t cap)
{
    if (!memchr(s, '\0', cap))
        abort();
}

static void check_uri(const char *u)
{
    char out[M3U8_URI_MAX * 2];
    check_str(u, M3U8_URI_MAX);
    int n = m3u8_resolve("/space/e1/a.m3u8?_HLS_msn=1", u, out, sizeof(out));
    if (n >= (int)sizeof(out) || (n >= 0 && (size_t)n != strlen(out)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct m3u8 m;
    int n = m3u8_parse((const char *)data, size, &m);
    if (n < 0)
        return 0;
    if ((size_t)n != size)
        abort();
    if (m.kind == M3U8_MULTIVARIANT) {
        if (m.nvariants == 0 || m.nvariants > M3U8_VARIANTS)
            abort();
        for (uint32_t i = 0; i < m.nvariants; i++) {
            check_uri(m.variants[i].uri);
            check_str(m.variants[i].codecs, sizeof(m.variants[i].codecs));
        }
        return 0;
    }
    if (m.kind != M3U8_MEDIA || m.nsegs > M3U8_SEGS || m.nparts > M3U8_PARTS ||
        m.nsegs > m.nsegs_total)
        abort();
    for (uint32_t i = 0; i < m.nsegs; i++) {
        check_uri(m.segs[i].uri);
        if (m.segs[i].part != -1 || (i && m.segs[i].msn != m.segs[i - 1].msn + 1))
            abort();
        if (m.segs[i].msn > m.last_msn)
            abort();
    }
    if (m.nsegs && m.segs[m.nsegs - 1].msn != m.last_msn)
        abort();
    for (uint32_t i = 0; i < m.nparts; i++) {
        const struct m3u8_item *p = &m.parts[i];
        check_uri(p->uri);
        if (p->part < 0 || p->msn > m.last_msn + 1)
            abort();
        if (i && !(p->msn > p[-1].msn || (p->msn == p[-1].msn && p->part == p[-1].part + 1)))
            abort();
    }
    if (m.has_hint) {
        check_uri(m.hint.uri);
        if (m.hint.msn != m.last_msn + 1)
            abort();
        /* the part after the last listed: its index follows that part's, or 0 */
        const struct m3u8_item *last = m.nparts ? &m.parts[m.nparts - 1] : NULL;
        if (last && last->msn == m.hint.msn ? m.hint.part != last->part + 1
                                            : (last && m.hint.part != 0))
            abort();
    }
    if (m.map_uri[0])
        check_uri(m.map_uri);
    return 0;
}
