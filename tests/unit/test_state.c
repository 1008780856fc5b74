/* Unit tests for the record stream an upgrade hands to the next binary (util/state.h). */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "util/state.h"

TEST(state_records_round_trip)
{
    struct buf b = {0};
    uint64_t big[40];
    for (int i = 0; i < 40; i++)
        big[i] = (uint64_t)i * 0x0101010101010101ull;
    state_put(&b, 1, 3, "abc", 3);
    state_put(&b, 2, 1, big, sizeof(big));
    state_put(&b, 7, 2, NULL, 0);
    ASSERT_EQ_UINT(b.len % 8, 0); /* records stay aligned for the structs they carry */
    struct state_reader r = {(const uint8_t *)b.data, (const uint8_t *)b.data + b.len};
    uint16_t type, ver;
    const void *p;
    uint32_t len;
    ASSERT_EQ_INT(state_next(&r, &type, &ver, &p, &len), 1);
    ASSERT_EQ_INT(type, 1);
    ASSERT_EQ_INT(ver, 3);
    ASSERT_EQ_UINT(len, 3);
    ASSERT_EQ_MEM(p, "abc", 3);
    ASSERT_EQ_INT(state_next(&r, &type, &ver, &p, &len), 1);
    ASSERT_EQ_INT(type, 2);
    ASSERT_EQ_UINT(len, sizeof(big));
    ASSERT_EQ_MEM(p, big, sizeof(big));
    ASSERT_EQ_INT(state_next(&r, &type, &ver, &p, &len), 1);
    ASSERT_EQ_INT(type, 7);
    ASSERT_EQ_UINT(len, 0);
    ASSERT_EQ_INT(state_next(&r, &type, &ver, &p, &len), 0);
    buf_free(&b);
}

TEST(state_cut_short_is_refused)
{
    struct buf b = {0};
    state_put(&b, 1, 1, "0123456789", 10);
    for (size_t cut = 1; cut < b.len; cut++) {
        struct state_reader r = {(const uint8_t *)b.data, (const uint8_t *)b.data + cut};
        uint16_t type, ver;
        const void *p;
        uint32_t len;
        ASSERT_EQ_INT(state_next(&r, &type, &ver, &p, &len), -1);
    }
    buf_free(&b);
}

int main(void)
{
    return RUN_TESTS();
}
