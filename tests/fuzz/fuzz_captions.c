/*
 * fuzz_captions: libFuzzer target for a caption recogniser's output lines
 * (captions/captions.c, captions_parse_line: the recogniser is a program the operator plugs
 * in, so its output is untrusted) and for the cue list reader (captions_next_cue). A cue it
 * accepts must have finite, ordered times and a text of valid UTF-8 without control
 * characters or newlines, at most CAPTIONS_TEXT_MAX bytes; the cue list reader must stay inside
 * its input and always move on; a list captions_list_ok() accepts (what a relay takes from its
 * upstream) must read whole, ids rising, texts clean.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "captions/captions.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct caption_line l;
    int rc = captions_parse_line(s, size, &l);
    if (rc < -1 || rc > 1)
        abort();
    if (rc == 1) {
        size_t n = strlen(l.text);
        if (n == 0 || n > CAPTIONS_TEXT_MAX || !utf8_valid(l.text, n))
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)l.text[i] < 0x20 || l.text[i] == 0x7f)
                abort();
        if (!isfinite(l.start_s) || !isfinite(l.end_s) || l.start_s < 0 || l.end_s < l.start_s)
            abort();
    }
    size_t pos = 0, last = 0;
    struct caption_cue c;
    while (captions_next_cue(s, size, &pos, &c)) {
        if (pos <= last || pos > size || c.text < s || c.text + c.text_len > s + size)
            abort();
        last = pos;
    }
    /* a list a relay accepts from its upstream: every cue whole, rising, clean */
    if (captions_list_ok(s, size)) {
        pos = 0;
        uint64_t prev = 0;
        while (pos < size) {
            if (!captions_next_cue(s, size, &pos, &c) || (prev && c.id <= prev) ||
                c.end_ms < c.start_ms || c.text_len == 0 || c.text_len > CAPTIONS_TEXT_MAX ||
                !utf8_valid(c.text, c.text_len))
                abort();
            for (size_t i = 0; i < c.text_len; i++)
                if ((unsigned char)c.text[i] < 0x20 || c.text[i] == 0x7f)
                    abort();
            prev = c.id;
        }
    }
    return 0;
}
