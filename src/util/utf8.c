/*
 * utf8: see utf8.h. A table-free decoder: the lead byte gives the length and the allowed
 * range of the second byte (that range is what excludes overlongs, surrogates and values
 * above U+10FFFF, as in the Unicode standard's Table 3-7); later bytes are 80..BF.
 */
#include "util/utf8.h"

#include <string.h>

int utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    int n;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* below: overlong */
        else if (c == 0xed)
            hi = 0x9f; /* above: surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* below: overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above: past U+10FFFF */
    } else {
        return -1; /* a continuation byte, C0/C1 (always overlong), F5..FF */
    }
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= len)
            return -i; /* truncated: what there is forms one subpart */
        unsigned char b = s[i];
        if (b < lo || b > hi)
            return -i;
        v = (v << 6) | (b & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }
    *cp = v;
    return n;
}

int utf8_valid(const void *s, size_t len)
{
    const unsigned char *p = s;
    uint32_t cp;
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x80) { /* the common case, without a call */
            i++;
            continue;
        }
        int n = utf8_decode(p + i, len - i, &cp);
        if (n < 0)
            return 0;
        i += (size_t)n;
    }
    return 1;
}

size_t utf8_sanitize(char *dst, size_t cap, const char *src, size_t len, unsigned flags)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t o = 0;
    uint32_t cp;
    for (size_t i = 0; i < len && p[i];) {
        const char *out;
        size_t olen;
        int n = utf8_decode(p + i, len - i, &cp);
        if (n < 0) {
            out = UTF8_REPLACEMENT;
            olen = 3;
            n = -n;
        } else if ((flags & UTF8_NO_CONTROLS) &&
                   (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))) {
            out = " ";
            olen = 1;
        } else {
            out = (const char *)p + i;
            olen = (size_t)n;
        }
        if (o + olen + 1 > cap)
            break;
        memcpy(dst + o, out, olen);
        o += olen;
        i += (size_t)n;
    }
    dst[o] = '\0';
    return o;
}
