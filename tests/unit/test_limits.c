/* Unit tests for admission bookkeeping: token buckets, the bounded address table, tokens. */
#include <string.h>
#include <time.h>

#include "harness.h"
#include "limits/limits.h"
#include "token/token.h"

TEST(bucket_allows_burst_then_rate)
{
    struct bucket b = {0};
    int64_t wait = 0;
    for (int i = 0; i < 20; i++)
        ASSERT(bucket_take(&b, 10, 20, 1000, &wait));
    ASSERT(!bucket_take(&b, 10, 20, 1000, &wait));
    ASSERT(wait > 0 && wait <= 101);
    ASSERT(bucket_take(&b, 10, 20, 1100, NULL)); /* 100 ms at 10/s: one token */
    ASSERT(!bucket_take(&b, 10, 20, 1100, NULL));
    ASSERT(bucket_take(&b, 10, 20, 100000, NULL)); /* refilled, but never past the burst */
    for (int i = 0; i < 19; i++)
        ASSERT(bucket_take(&b, 10, 20, 100000, NULL));
    ASSERT(!bucket_take(&b, 10, 20, 100000, NULL));
}

static struct addr_key key_n(uint32_t n)
{
    struct addr_key k = {0};
    k.b[10] = k.b[11] = 0xff;
    memcpy(k.b + 12, &n, 4);
    return k;
}

TEST(table_finds_and_counts)
{
    struct addr_table t;
    addr_table_init(&t, 1024);
    struct addr_key a = key_n(1), b = key_n(2);
    struct addr_entry *ea = addr_table_get(&t, &a, 1);
    ea->conns = 3;
    ASSERT(addr_table_get(&t, &a, 2) == ea);
    ASSERT(addr_table_get(&t, &b, 3) != ea);
    ASSERT_EQ_INT(addr_table_get(&t, &a, 4)->conns, 3);
    addr_table_free(&t);
}

TEST(table_memory_is_bounded_under_many_addresses)
{
    /* a million attacking addresses: the table never grows, busy entries are never evicted,
     * and newcomers that find no room are counted, not stored */
    struct addr_table t;
    addr_table_init(&t, 4096);
    uint32_t slots = t.mask + 1;
    struct addr_key keep = key_n(42);
    struct addr_entry *e = addr_table_get(&t, &keep, 0);
    e->conns = 1;
    uint64_t stored = 0;
    for (uint32_t i = 100; i < 1000100; i++) {
        struct addr_key k = key_n(i);
        struct addr_entry *x = addr_table_get(&t, &k, i);
        if (x) {
            stored++;
            if (i % 2)
                x->conns = 1; /* half of them hold a connection */
        }
    }
    ASSERT_EQ_UINT(t.mask + 1, slots);
    ASSERT(t.table_full > 0);
    ASSERT(stored > 0);
    struct addr_entry *again = addr_table_get(&t, &keep, 2000000);
    ASSERT(again == e && again->conns == 1);
    addr_table_free(&t);
}

TEST(addresses_parse_to_prefix_keys)
{
    struct addr_key a, b, c;
    ASSERT_EQ_INT(addr_key_parse(" 10.1.2.3 ", 10, &a), 0);
    ASSERT_EQ_INT(addr_key_parse("2001:db8:1:2:aaaa::1", 20, &b), 0);
    ASSERT_EQ_INT(addr_key_parse("2001:db8:1:2:bbbb::9", 20, &c), 0);
    ASSERT(memcmp(&b, &c, sizeof(b)) == 0); /* same /64 */
    ASSERT(memcmp(&a, &b, sizeof(a)) != 0);
    ASSERT_EQ_INT(addr_key_parse("not-an-ip", 9, &a), -1);
    ASSERT_EQ_INT(addr_key_parse("", 0, &a), -1);
}

TEST(tokens_forged_expired_and_other_space_refused)
{
    uint8_t secret[TOKEN_SECRET_LEN] = {7}, other[TOKEN_SECRET_LEN] = {8};
    char tok[TOKEN_MAX];
    struct token m = {.purpose = TOKEN_ADMIT, .admit_us = 1800000000123456, .expiry = 0}, t;
    const char *why;
    int64_t now = 1800000000;
    m.expiry = now + 60;
    snprintf(m.space, sizeof(m.space), "room");
    int n = token_mint(secret, &m, tok, sizeof(tok));
    ASSERT(n > 0);
    ASSERT_EQ_INT(token_check(secret, TOKEN_ADMIT, tok, (size_t)n, now, &t, &why), 0);
    ASSERT_EQ_STR(t.space, "room");
    ASSERT_EQ_INT(t.admit_us, 1800000000123456);
    /* expired */
    ASSERT_EQ_INT(token_check(secret, TOKEN_ADMIT, tok, (size_t)n, now + 61, &t, &why), -1);
    ASSERT_EQ_STR(why, "token expired");
    /* another server's secret */
    ASSERT_EQ_INT(token_check(other, TOKEN_ADMIT, tok, (size_t)n, now, &t, &why), -1);
    ASSERT_EQ_STR(why, "bad token signature");
    /* every single-character change is refused */
    for (int i = 0; i < n; i++) {
        char f[TOKEN_MAX];
        memcpy(f, tok, (size_t)n);
        f[i] = f[i] == 'A' ? 'B' : 'A';
        ASSERT_EQ_INT(token_check(secret, TOKEN_ADMIT, f, (size_t)n, now, &t, &why), -1);
    }
    ASSERT_EQ_INT(token_check(secret, TOKEN_ADMIT, "", 0, now, &t, &why), -1);
    ASSERT_EQ_INT(token_check(secret, TOKEN_ADMIT, ".", 1, now, &t, &why), -1);
}

int main(void)
{
    return RUN_TESTS();
}
