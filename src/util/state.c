#include "util/state.h"

#include <string.h>

struct state_hdr {
    uint16_t type, version;
    uint32_t len;
};

void state_put(struct buf *b, uint16_t type, uint16_t version, const void *payload, uint32_t len)
{
    struct state_hdr h = {type, version, len};
    static const uint8_t zero[8];
    buf_append(b, &h, sizeof(h));
    if (len > 0)
        buf_append(b, payload, len);
    if (len % 8)
        buf_append(b, zero, 8 - len % 8);
}

int state_next(struct state_reader *r, uint16_t *type, uint16_t *version, const void **payload,
               uint32_t *len)
{
    if (r->p == r->end)
        return 0;
    struct state_hdr h;
    if ((size_t)(r->end - r->p) < sizeof(h))
        return -1;
    memcpy(&h, r->p, sizeof(h));
    size_t padded = (size_t)h.len + (8 - h.len % 8) % 8;
    if ((size_t)(r->end - r->p) - sizeof(h) < padded)
        return -1;
    *type = h.type;
    *version = h.version;
    *payload = r->p + sizeof(h);
    *len = h.len;
    r->p += sizeof(h) + padded;
    return 1;
}
