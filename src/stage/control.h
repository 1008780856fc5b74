/*
 * control: the JSON control messages of the stage's WebSocket, parsed into a plain struct
 * (cJSON does the JSON). Pure and bounded, so it has its own fuzz target; stage.c acts on the
 * result. The messages are listed in docs/stage.md.
 */
#ifndef ROSTRUM_STAGE_CONTROL_H
#define ROSTRUM_STAGE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#define CONTROL_MAX 4096 /* bytes of one message */

enum control_type {
    CTL_REQUEST,
    CTL_CANCEL_REQUEST,
    CTL_MUTE,
    CTL_PROMOTE,
    CTL_DEMOTE,
    CTL_REMOVE,
    CTL_END,
    CTL_INVITE,
    CTL_FORMAT,
    CTL_PING,
    CTL_INVITE_HAND,  /* issue 12: {"type":"invite_hand","hand":"<16 hex>"} */
    CTL_DISMISS_HAND, /* {"type":"dismiss_hand","hand":"<16 hex>"} */
    CTL_GO_LIVE, /* a scheduled space's lobby ends now (host, co-host) */
    CTL_UNKNOWN, /* a well-formed message of a type we do not know: answered with an error */
};

struct control {
    enum control_type type;
    int has_id;
    uint32_t id;   /* the member it is about, if has_id */
    int role;      /* enum role for promote/invite; -1 if absent or unknown */
    int muted;     /* mute: 1 unless "muted": false */
    int pcm;       /* format: "pcm": true */
    int reusable;  /* invite: "reusable": true (a link that seats any number of people) */
    uint64_t hand; /* invite_hand, dismiss_hand: "hand" (16 hex digits); 0 if absent or bad */
};

/* Parses <len> bytes of <msg> (untrusted). Returns 0, or -1 if it is not a JSON object with a
 * string "type" (the connection is then closed: 1007), or -2 if it is over CONTROL_MAX
 * (closed: 1009). */
int control_parse(const char *msg, size_t len, struct control *out);

#endif
