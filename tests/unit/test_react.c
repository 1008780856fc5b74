/*
 * Reactions and raised hands (issue 12, item 3): the request parser (audience/react.c), the
 * workers' hand queue (shm/shared.c), the main process's hand table and reaction sums
 * (stage/hands.c), and listener ids as tokens (token.c, TOKEN_LISTENER).
 */
#include <errno.h>
#include <string.h>

#include "audience/audience.h"
#include "harness.h"
#include "shm/shared.h"
#include "stage/hands.h"
#include "token/token.h"

static int parse(const char *q, struct react_req *r)
{
    return react_parse(q, strlen(q), r);
}

TEST(issue12_react_parse_accepts_the_api)
{
    struct react_req r;
    ASSERT_EQ_INT(parse("r=clap", &r), 6);
    ASSERT_EQ_INT(r.kind, 0);
    ASSERT(!r.op && !r.id);
    ASSERT_EQ_INT(parse("r=up&id=abc.DEF-_9&t=123", &r), 24);
    ASSERT_EQ_INT(r.kind, 5);
    ASSERT(r.id && r.id_len == 10 && memcmp(r.id, "abc.DEF-_9", 10) == 0);
    ASSERT_EQ_INT(parse("op=up&id=x&name=Ann+Lee%20%C3%A9", &r), 32);
    ASSERT_EQ_INT(r.op, REACT_OP_UP);
    ASSERT_EQ_STR(r.name, "Ann Lee \xc3\xa9");
    ASSERT_EQ_INT(parse("op=keep&id=q", &r), 12);
    ASSERT_EQ_INT(r.op, REACT_OP_KEEP);
    ASSERT_EQ_INT(parse("op=hello", &r), 8);
    ASSERT_EQ_INT(r.op, REACT_OP_HELLO);
    ASSERT_EQ_INT(parse("", &r), 0);
    ASSERT_EQ_INT(r.kind, -1);
}

TEST(issue12_react_parse_refuses_bad_input)
{
    struct react_req r;
    const char *bad[] = {"r=boo",
                         "r=",
                         "r",
                         "r=clap&r=up",
                         "op=sideways",
                         "op=up&op=down",
                         "id=",
                         "id=a b",
                         "id=a&id=b",
                         "name=%zz",
                         "name=%4",
                         "name=a%00b",
                         "name=%0a",
                         "name=%C2%85",
                         "name=%C3",
                         "name=a&name=b",
                         "name=0123456789012345678901234567890123456789x",
                         "r=clapx"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ_INT(parse(bad[i], &r), -1);
    char longid[TOKEN_MAX + 8] = "id=";
    memset(longid + 3, 'a', TOKEN_MAX);
    longid[TOKEN_MAX + 3] = '\0';
    ASSERT_EQ_INT(parse(longid, &r), -1);
}

TEST(issue12_hand_queue_is_bounded_and_in_order)
{
    static struct shared_hand_queue q;
    struct shared_hand_event e = {.op = HAND_UP}, out;
    for (uint32_t i = 0; i < SHARED_HAND_QUEUE; i++) {
        e.id = i + 1;
        ASSERT_EQ_INT(shared_hand_push(&q, &e), 0);
    }
    e.id = 9999;
    ASSERT_EQ_INT(shared_hand_push(&q, &e), -ENOSPC);
    ASSERT_EQ_INT(shared_hand_pop(&q, &out), 1);
    ASSERT(out.id == 1);
    ASSERT_EQ_INT(shared_hand_push(&q, &e), 0); /* room again */
    for (uint32_t i = 1; i < SHARED_HAND_QUEUE; i++) {
        ASSERT_EQ_INT(shared_hand_pop(&q, &out), 1);
        ASSERT(out.id == i + 1);
    }
    ASSERT_EQ_INT(shared_hand_pop(&q, &out), 1);
    ASSERT(out.id == 9999);
    ASSERT_EQ_INT(shared_hand_pop(&q, &out), 0);
}

static struct shared_hand_event ev(uint64_t id, int op, int64_t at, const char *name)
{
    struct shared_hand_event e = {.id = id, .op = (uint8_t)op, .at_ms = at, .slot = 2};
    snprintf(e.name, sizeof(e.name), "%s", name);
    return e;
}

TEST(issue12_hands_table_order_bound_expiry_invites)
{
    struct shared *sh = shared_create(2, NULL);
    static struct hands h;
    hands_init(&h, sh, 2);
    struct shared_space *ss = &sh->spaces[2];
    struct shared_hand_event e;
    for (uint64_t i = 1; i <= 3; i++) {
        e = ev(i, HAND_UP, 1000 * (int64_t)i, "x");
        ASSERT_EQ_INT(hands_apply(&h, sh, &e, 3), 1);
    }
    e = ev(4, HAND_UP, 5000, "late");
    ASSERT_EQ_INT(hands_apply(&h, sh, &e, 3), 0); /* the bound */
    ASSERT(sh->main.hands_dropped == 1 && h.n == 3 && SHM_GET(ss->hands_n) == 3);
    e = ev(9, HAND_KEEP, 5500, "");
    ASSERT_EQ_INT(hands_apply(&h, sh, &e, 3), 0); /* a refresh never adds a hand */
    ASSERT(h.n == 3);
    e = ev(1, HAND_KEEP, 6000, "");
    ASSERT_EQ_INT(hands_apply(&h, sh, &e, 3), 0); /* raised again: keeps its place */
    ASSERT(h.h[0].id == 1 && h.h[0].seen_ms == 6000);
    ASSERT_EQ_INT(hands_invite(&h, ss, 2), 0);
    ASSERT(ss->hand_invited[0] == 2 && h.h[1].invited);
    ASSERT_EQ_INT(hands_invite(&h, ss, 77), -ENOENT);
    e = ev(2, HAND_DOWN, 6500, "");
    ASSERT_EQ_INT(hands_apply(&h, sh, &e, 3), 1);
    ASSERT(ss->hand_invited[0] == 0 && h.n == 2 && h.h[0].id == 1 && h.h[1].id == 3);
    ASSERT_EQ_INT(hands_dismiss(&h, ss, 3), 0);
    ASSERT_EQ_INT(hands_dismiss(&h, ss, 3), -ENOENT);
    ASSERT_EQ_INT(hands_expire(&h, ss, 6000 + 10000, 10000), 0);
    ASSERT_EQ_INT(hands_expire(&h, ss, 6000 + 10001, 10000), 1);
    ASSERT(h.n == 0 && SHM_GET(ss->hands_n) == 0);
    /* the invitations kept are the newest SHARED_HAND_INVITES */
    for (uint64_t i = 10; i < 10 + SHARED_HAND_INVITES + 1; i++) {
        e = ev(i, HAND_UP, 20000, "");
        hands_apply(&h, sh, &e, 100);
        ASSERT_EQ_INT(hands_invite(&h, ss, i), 0);
    }
    int newest = 0, oldest = 0;
    for (int i = 0; i < SHARED_HAND_INVITES; i++) {
        newest += ss->hand_invited[i] == 10 + SHARED_HAND_INVITES;
        oldest += ss->hand_invited[i] == 10;
    }
    ASSERT(!h.h[0].invited && h.h[1].invited && newest == 1 && oldest == 0);
    shared_destroy(sh);
}

TEST(issue12_reactions_summed_exactly_across_workers)
{
    struct shared *sh = shared_create(2, NULL);
    sh->workers[0].reactions[2][0] = 5; /* from before the space: not counted */
    static struct hands h;
    hands_init(&h, sh, 2);
    sh->workers[0].reactions[2][0] += 3;
    sh->workers[1].reactions[2][0] += 4;
    sh->workers[1].reactions[2][5] += 1;
    sh->workers[1].reactions[3][0] += 100; /* another slot */
    ASSERT_EQ_INT(hands_sum(&h, sh, 2), 1);
    ASSERT(h.per_s[0] == 7 && h.per_s[5] == 1 && h.total[0] == 7);
    ASSERT_EQ_INT(hands_sum(&h, sh, 2), 1); /* a second of none after some: changed */
    ASSERT(h.per_s[0] == 0 && h.total[0] == 7);
    ASSERT_EQ_INT(hands_sum(&h, sh, 2), 0);
    sh->workers[1].reactions[2][0] = 2; /* a restarted worker counts from 0 again */
    hands_sum(&h, sh, 2);
    ASSERT(h.per_s[0] == 2 && h.total[0] == 9);
    sh->workers[1].pid = 4242; /* restarted, and already past the old value: by its pid */
    sh->workers[1].reactions[2][0] = 6;
    hands_sum(&h, sh, 2);
    ASSERT(h.per_s[0] == 6 && h.total[0] == 15);
    struct buf b = {0};
    hands_json(&h, 0, &b, 0, 96);
    ASSERT(strstr(b.data, "\"reactions_total\":{\"clap\":15,"));
    ASSERT(strstr(b.data, "\"hands_count\":0"));
    buf_free(&b);
    shared_destroy(sh);
}

TEST(issue12_listener_ids_are_their_own_purpose)
{
    uint8_t key[TOKEN_SECRET_LEN] = {7};
    struct token t = {.purpose = TOKEN_LISTENER, .expiry = 2000, .addr = {1, 2}}, out;
    snprintf(t.space, sizeof(t.space), "talk");
    char tok[TOKEN_MAX];
    ASSERT(token_mint(key, &t, tok, sizeof(tok)) > 0);
    const char *why;
    ASSERT_EQ_INT(token_check(key, TOKEN_LISTENER, tok, strlen(tok), 1000, &out, &why), 0);
    ASSERT(out.id == t.id && out.addr[1] == 2);
    ASSERT_EQ_INT(token_check(key, TOKEN_SESSION, tok, strlen(tok), 1000, &out, &why), -1);
    ASSERT_EQ_STR(why, "not a session id");
    struct token s = t;
    s.purpose = TOKEN_SESSION;
    s.id = 0;
    ASSERT(token_mint(key, &s, tok, sizeof(tok)) > 0);
    ASSERT_EQ_INT(token_check(key, TOKEN_LISTENER, tok, strlen(tok), 1000, &out, &why), -1);
    ASSERT_EQ_STR(why, "not a listener id");
}

TEST(issue12_hands_document_stays_bounded)
{
    struct shared *sh = shared_create(1, NULL);
    static struct hands h;
    hands_init(&h, sh, 2);
    struct shared_hand_event e;
    for (uint64_t i = 1; i <= SHARED_HANDS_MAX; i++) {
        e = ev(i, HAND_UP, (int64_t)i, "\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\");
        ASSERT_EQ_INT(hands_apply(&h, sh, &e, SHARED_HANDS_MAX), 1);
    }
    struct buf b = {0};
    hands_json(&h, 0, &b, 0, 96);
    ASSERT(b.len + 96 <= SHARED_STATE_MAX);
    ASSERT(strstr(b.data, "\"hands_count\":1000"));
    /* a document already near full lists fewer, never overflows */
    struct buf c = {0};
    for (int i = 0; i < 7000; i++)
        buf_puts(&c, " ");
    hands_json(&h, 0, &c, 0, 96);
    ASSERT(c.len + 96 <= SHARED_STATE_MAX && c.len > 7000);
    buf_free(&b);
    buf_free(&c);
    shared_destroy(sh);
}

int main(void)
{
    return RUN_TESTS();
}
