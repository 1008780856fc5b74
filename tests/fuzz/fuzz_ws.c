/* Fuzz target: bytes from a WebSocket client, through wslay's framing (ws.c) into the
 * control-message parser; what the server would send back goes nowhere. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "stage/control.h"
#include "ws/ws.h"

struct feed {
    const uint8_t *data;
    size_t len, off;
};

static long feed_recv(void *arg, uint8_t *buf, size_t len)
{
    struct feed *f = arg;
    if (f->off >= f->len)
        return 0; /* EOF */
    /* hand out odd-sized pieces so frames split across reads */
    size_t n = f->len - f->off;
    size_t piece = 1 + (f->off * 7 + 3) % 97;
    if (n > piece)
        n = piece;
    if (n > len)
        n = len;
    memcpy(buf, f->data + f->off, n);
    f->off += n;
    return (long)n;
}

static long sink_send(void *arg, const uint8_t *buf, size_t len)
{
    (void)arg;
    (void)buf;
    return (long)len;
}

static void on_text(void *arg, const uint8_t *msg, size_t len)
{
    struct control c;
    (void)arg;
    control_parse((const char *)msg, len, &c);
}

static void on_binary(void *arg, const uint8_t *msg, size_t len)
{
    (void)arg;
    (void)msg;
    (void)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct ws_handler h = {on_text, on_binary};
    struct feed f = {data, size, 0};
    struct ws_io io = {feed_recv, sink_send, &f, NULL, NULL};
    struct ws *w = ws_new(-1, &io, &h, NULL);
    for (int i = 0; i < 10000 && ws_read(w) == 0 && f.off < f.len; i++)
        ;
    ws_send_text(w, "{\"type\":\"pong\"}", 15);
    ws_flush(w);
    ws_free(w);
    return 0;
}
