/*
 * audience/captions: the live feed of a space's captions (issue 12, item 4), for the listener
 * page (it polls this and shows each cue when its player reaches the cue's time).
 *
 *   GET /<space>.captions.json[?since=ID]
 *   {"epoch": E, "running": true, "final_ms": F,
 *    "cues": [{"id": 7, "start_ms": ..., "end_ms": ..., "text": "..."}], "next": 8}
 *
 * Times are on the programme's wall clock (unix ms; the same clock as HLS's program date time
 * and the web player's latency), ids grow within an epoch; since= gives the cues after that id
 * (a poller passes back "next"; a new epoch starts over at 0), and "running" says whether a
 * recogniser is running now (false: it is restarting). One small document per space and second: cacheable for a
 * second, so pollers behind a cache cost the origin one request a second.
 */
#include <stdio.h>
#include <string.h>

#include "audience/audience.h"
#include "captions/captions.h"
#include "http/request.h"
#include "util/buf.h"

#define SUFFIX ".captions.json"

int captions_route(struct audience *a, struct conn *c, const struct http_request *req,
                   const char *path, int head_only)
{
    size_t plen = strlen(path), slen = sizeof(SUFFIX) - 1;
    char mount[64];
    if (plen <= slen + 1 || plen - slen - 1 >= sizeof(mount) ||
        strcmp(path + plen - slen, SUFFIX) != 0)
        return 0;
    memcpy(mount, path + 1, plen - slen - 1);
    mount[plen - slen - 1] = '\0';
    uint64_t since = 0;
    const char *v;
    size_t vlen;
    /* given twice: which one a cache keyed on the query meant is anybody's guess */
    int twice = http_query_value(req, "since", &v, &vlen) == 0 &&
                memmem(v + vlen, (size_t)(req->query + req->query_len - (v + vlen)), "&since=",
                       7) != NULL;
    if (twice || http_query_u64(req, "since", UINT64_MAX, &since) < 0) {
        conn_error(c, 400, NULL, "since= must be a cue id (a whole number)");
        return 1;
    }
    int slot = mount_name_ok(mount) ? audience_find(a, mount) : -1;
    const struct shared_space *ss = slot >= 0 ? &a->sh->spaces[slot] : NULL;
    if (!ss || !__atomic_load_n(&ss->captions_on, __ATOMIC_ACQUIRE)) {
        conn_error(c, 404, "Cache-Control: public, max-age=1",
                   "This space has no live captions");
        return 1;
    }
    static char list[SHARED_CAPTIONS_MAX];
    int len = shared_captions_copy(ss, list);
    if (len < 0)
        len = 0; /* changing too fast to copy whole: none this time */
    char lang[sizeof(ss->captions_lang)]; /* a tag of [A-Za-z0-9-] (config_language_ok) */
    snprintf(lang, sizeof(lang), "%.35s", ss->captions_lang);
    struct buf b = {0};
    buf_printf(&b, "{\"epoch\":%u,\"lang\":\"%s\",\"running\":%s,\"final_ms\":%lld,\"cues\":[",
               __atomic_load_n(&ss->captions_epoch, __ATOMIC_ACQUIRE), lang,
               __atomic_load_n(&ss->captions_on, __ATOMIC_ACQUIRE) == 2 ? "true" : "false",
               (long long)__atomic_load_n(&ss->captions_final_ms, __ATOMIC_ACQUIRE));
    size_t pos = 0;
    struct caption_cue cue;
    uint64_t next = since; /* what to pass as since= next time */
    int n = 0;
    while (captions_next_cue(list, (size_t)len, &pos, &cue)) {
        if (cue.id <= since)
            continue;
        buf_printf(&b, "%s{\"id\":%llu,\"start_ms\":%lld,\"end_ms\":%lld,\"text\":", n++ ? "," : "",
                   (unsigned long long)cue.id, (long long)cue.start_ms, (long long)cue.end_ms);
        buf_json_str(&b, cue.text, cue.text_len);
        buf_puts(&b, "}");
        next = cue.id;
    }
    buf_printf(&b, "],\"next\":%llu}", (unsigned long long)next);
    conn_respond_doc(c, head_only, "application/json; charset=utf-8", b.data, b.len,
                     "Access-Control-Allow-Origin: *\r\nCache-Control: public, max-age=1");
    buf_free(&b);
    return 1;
}
