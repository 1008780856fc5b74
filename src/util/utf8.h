/*
 * utf8: strict UTF-8 decoding, validation and sanitizing for every peer-supplied string that
 * can reach JSON or a WebSocket text frame (member names, space titles, a source's ice-*
 * headers). A browser closes a WebSocket on the first text frame that is not UTF-8, and
 * cJSON passes invalid bytes through, so strings are made valid where they enter, once.
 *
 * Strict means RFC 3629: no overlong forms, no surrogates (U+D800-U+DFFF), nothing above
 * U+10FFFF, no truncated sequences. Noncharacters (U+FFFE, U+FFFF, ...) are valid scalar
 * values and pass. Invalid input is replaced the way WHATWG and Unicode (chapter 3, "U+FFFD
 * substitution of maximal subparts") recommend: one U+FFFD per maximal subpart, so a cut
 * 4-byte sequence costs one replacement, a lone continuation byte one each.
 */
#ifndef ROSTRUM_UTIL_UTF8_H
#define ROSTRUM_UTIL_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD, 3 bytes */

/* Decodes one code point from <s> (<len> > 0 bytes available). Returns the length (1-4) of a
 * well-formed sequence with the code point in <*cp>, or -n where n (1-3) is the length of the
 * maximal invalid subpart the caller should skip (and replace with one U+FFFD). */
int utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

/* 1 if the <len> bytes at <s> are entirely well-formed UTF-8 (NUL bytes included), else 0. */
int utf8_valid(const void *s, size_t len);

/* Sanitize flags. */
#define UTF8_NO_CONTROLS 1u /* C0 controls, DEL and C1 controls (U+0080-U+009F) become ' ' */

/* Copies <len> bytes of <src> (untrusted) into <dst> of <cap> > 0 bytes as valid UTF-8,
 * NUL-terminated: each maximal invalid subpart becomes U+FFFD; with UTF8_NO_CONTROLS, control
 * characters become a space. A NUL byte in <src> ends the copy. Output stops before the first
 * code point that would not fit whole, so the result is never a cut sequence. Returns the
 * bytes written (without the NUL). */
size_t utf8_sanitize(char *dst, size_t cap, const char *src, size_t len, unsigned flags);

#endif
