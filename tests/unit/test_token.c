/* Unit tests for tokens (issue 8): the purpose is signed, the format is exact, every refusal
 * has a reason; and the shared used-ticket table (issue 8 item 5) that makes tickets
 * single-use across workers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "shm/shared.h"
#include "token/token.h"

static const uint8_t secret[TOKEN_SECRET_LEN] = {42, 1, 2};
static const int64_t now = 1800000000;

static int mint_stage(const char *role, int reusable, char *out, struct token *m)
{
    *m = (struct token){.purpose = TOKEN_STAGE, .expiry = now + 3600, .reusable = reusable};
    snprintf(m->space, sizeof(m->space), "room");
    snprintf(m->role, sizeof(m->role), "%s", role);
    return token_mint(secret, m, out, TOKEN_MAX);
}

static int mint_admit(char *out, struct token *m)
{
    *m = (struct token){.purpose = TOKEN_ADMIT, .admit_us = now * 1000000 + 333, .expiry = now + 60};
    snprintf(m->space, sizeof(m->space), "room");
    for (int i = 0; i < 16; i++)
        m->addr[i] = (uint8_t)(0xf0 + i);
    return token_mint(secret, m, out, TOKEN_MAX);
}

TEST(token_stage_round_trip_with_id_and_reusable)
{
    char tok[TOKEN_MAX];
    struct token m, t;
    const char *why = NULL;
    int n = mint_stage("speaker", 0, tok, &m);
    ASSERT(n > 0 && n < TOKEN_MAX);
    ASSERT(m.id != 0); /* made by token_mint */
    ASSERT_EQ_INT(token_check(secret, TOKEN_STAGE, tok, (size_t)n, now, &t, &why), 0);
    ASSERT_EQ_STR(t.space, "room");
    ASSERT_EQ_STR(t.role, "speaker");
    ASSERT_EQ_UINT(t.id, m.id);
    ASSERT_EQ_INT(t.reusable, 0);
    ASSERT_EQ_INT(t.expiry, now + 3600);
    struct token m2;
    char tok2[TOKEN_MAX];
    n = mint_stage("speaker", 1, tok2, &m2);
    ASSERT_EQ_INT(token_check(secret, TOKEN_STAGE, tok2, (size_t)n, now, &t, &why), 0);
    ASSERT_EQ_INT(t.reusable, 1);
    ASSERT(m2.id != m.id); /* one id per token */
}

TEST(token_admit_round_trip_binds_address)
{
    char tok[TOKEN_MAX];
    struct token m, t;
    const char *why = NULL;
    int n = mint_admit(tok, &m);
    ASSERT(n > 0);
    ASSERT_EQ_INT(token_check(secret, TOKEN_ADMIT, tok, (size_t)n, now, &t, &why), 0);
    ASSERT_EQ_INT(t.admit_us, now * 1000000 + 333); /* microseconds survive */
    ASSERT(memcmp(t.addr, m.addr, 16) == 0);
    ASSERT_EQ_UINT(t.id, m.id);
}

TEST(ticket_not_a_stage_token)
{
    char tok[TOKEN_MAX];
    struct token m, t;
    const char *why = NULL;
    int n = mint_admit(tok, &m);
    ASSERT_EQ_INT(token_check(secret, TOKEN_STAGE, tok, (size_t)n, now, &t, &why), -1);
    ASSERT(why != NULL);
    ASSERT(strstr(why, "not a stage token") != NULL);
    n = mint_stage("host", 0, tok, &m);
    why = NULL;
    ASSERT_EQ_INT(token_check(secret, TOKEN_ADMIT, tok, (size_t)n, now, &t, &why), -1);
    ASSERT(why != NULL && strstr(why, "not an admission ticket") != NULL);
}

TEST(token_refusals_always_have_a_reason)
{
    static const char *const bad[] = {"", ".", "a.b", "forged.token", "....", "djF8.x",
                                      /* a v1 token of the old format */
                                      "djF8cm9vbXxob3N0fDE3OTU2OTk0MzF8NzBiZWRhNzQxY2Ex."
                                      "ZWs8Y4TNSd9V07ItZZuq3dxxhR2PaXL8GBte29gk9YU"};
    struct token t;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (int p = TOKEN_STAGE; p <= TOKEN_ADMIT; p++) {
            const char *why = NULL;
            ASSERT_EQ_INT(token_check(secret, p, bad[i], strlen(bad[i]), now, &t, &why), -1);
            ASSERT(why != NULL && why[0]);
        }
    /* too long */
    char big[TOKEN_MAX + 10];
    memset(big, 'A', sizeof(big));
    big[20] = '.';
    const char *why = NULL;
    ASSERT_EQ_INT(token_check(secret, TOKEN_STAGE, big, sizeof(big), now, &t, &why), -1);
    ASSERT(why != NULL);
}

TEST(token_fields_cannot_smuggle_separators)
{
    char tok[TOKEN_MAX];
    struct token m = {.purpose = TOKEN_STAGE, .expiry = now + 10};
    snprintf(m.space, sizeof(m.space), "room|admit");
    snprintf(m.role, sizeof(m.role), "host");
    ASSERT_EQ_INT(token_mint(secret, &m, tok, sizeof(tok)), -1);
    m = (struct token){.purpose = 0};
    ASSERT_EQ_INT(token_mint(secret, &m, tok, sizeof(tok)), -1);
}

TEST(ticket_single_use)
{
    struct shared *sh = shared_create(2, NULL);
    uint64_t id = 0x0123456789abcdefULL;
    ASSERT_EQ_INT(shared_ticket_use(sh, id, now + 60, now), 0);
    ASSERT_EQ_INT(shared_ticket_use(sh, id, now + 60, now), -EALREADY);
    ASSERT_EQ_INT(shared_ticket_use(sh, id, now + 60, now + 30), -EALREADY);
    /* another ticket in the same home slot is not confused with it */
    ASSERT_EQ_INT(shared_ticket_use(sh, id ^ (1ULL << 40), now + 60, now), 0);
    shared_destroy(sh);
}

TEST(ticket_table_bounded_and_reclaims_expired)
{
    struct shared *sh = shared_create(1, NULL);
    /* fill one probe window: same home slot, different high bits */
    for (uint64_t i = 0; i < SHARED_TICKET_PROBE; i++)
        ASSERT_EQ_INT(shared_ticket_use(sh, 7 | (i + 1) << 32, now + 60, now), 0);
    ASSERT_EQ_INT(shared_ticket_use(sh, 7 | 999ULL << 32, now + 60, now), -ENOSPC);
    /* once they expired, the slots are free again */
    ASSERT_EQ_INT(shared_ticket_use(sh, 7 | 999ULL << 32, now + 200, now + 61), 0);
    shared_destroy(sh);
}

TEST(secret_equal_issue10)
{
    ASSERT(token_secret_equal("p+a/s=s%w o", 11, "p+a/s=s%w o", 11));
    ASSERT(!token_secret_equal("p+a/s=s%w o", 10, "p+a/s=s%w o", 11)); /* a prefix */
    ASSERT(!token_secret_equal("p+a/s=s%w oo", 12, "p+a/s=s%w o", 11));
    ASSERT(!token_secret_equal("p a/s=s%w o", 11, "p+a/s=s%w o", 11));
    ASSERT(!token_secret_equal("", 0, "k", 1));
    ASSERT(token_secret_equal("", 0, "", 0));
    ASSERT(!token_secret_equal("a\0b", 3, "a\0c", 3)); /* bytes, not strings */
}

TEST(token_check_bound_space_and_address)
{
    char tok[TOKEN_MAX];
    struct token m, t;
    const char *why = NULL;
    int n = mint_admit(tok, &m);
    uint8_t other[16];
    memcpy(other, m.addr, 16);
    other[15] ^= 1;
    ASSERT_EQ_INT(token_check_bound(secret, TOKEN_ADMIT, tok, (size_t)n, now, "room", m.addr, &t,
                                    &why), 0);
    ASSERT(t.id == m.id);
    ASSERT_EQ_INT(token_check_bound(secret, TOKEN_ADMIT, tok, (size_t)n, now, "hall", m.addr, &t,
                                    &why), -1);
    ASSERT_EQ_STR(why, "issued for another space");
    ASSERT_EQ_INT(token_check_bound(secret, TOKEN_ADMIT, tok, (size_t)n, now, "room", other, &t,
                                    &why), -1);
    ASSERT_EQ_STR(why, "issued to another address");
    ASSERT_EQ_INT(token_check_bound(secret, TOKEN_ADMIT, tok, (size_t)n, now, "room", NULL, &t,
                                    &why), -1);
    ASSERT_EQ_STR(why, "issued to another address");
    /* the signature and purpose come first: a bound check never believes a forged payload */
    tok[2] ^= 1;
    ASSERT_EQ_INT(token_check_bound(secret, TOKEN_ADMIT, tok, (size_t)n, now, "hall", other, &t,
                                    &why), -1);
    ASSERT(strcmp(why, "issued for another space") != 0);
    tok[2] ^= 1;
    ASSERT_EQ_INT(token_check_bound(secret, TOKEN_SESSION, tok, (size_t)n, now, "room", m.addr,
                                    &t, &why), -1);
    ASSERT(strcmp(why, "issued to another address") != 0);
}

int main(void)
{
    return RUN_TESTS();
}
