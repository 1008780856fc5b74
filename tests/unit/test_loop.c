/* loop: work posted to the next turn (issue 10): it runs without an event, without waiting
 * for a timer, once per post, and what a callback posts again waits for the next turn. */
#include "harness.h"

#include "event/loop.h"

struct job {
    struct loop_post post;
    int runs;
    int again;             /* post itself again this many times */
    int64_t first_ms;      /* when it first ran */
    struct job *take_back; /* unpost this one when running */
    int turn_seen[4];      /* the loop turn (counted by a timer-free hook) of each run */
};

static int turn;

static void count_turn(struct loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    turn++;
}

static void job_run(struct loop *loop, struct loop_post *p)
{
    struct job *j = (struct job *)p;
    if (j->runs == 0)
        j->first_ms = loop_clock_ms();
    if (j->runs < 4)
        j->turn_seen[j->runs] = turn;
    j->runs++;
    if (j->take_back)
        loop_unpost(&j->take_back->post);
    if (j->again-- > 0)
        loop_post(loop, p, job_run);
}

static void stop_cb(struct loop *loop, struct loop_timer *t)
{
    (void)t;
    loop_stop(loop);
}

TEST(posted_work_runs_next_turn_without_waiting_issue10)
{
    struct loop loop;
    ASSERT_EQ_INT(loop_init(&loop), 0);
    loop.before_sleep = count_turn;
    struct job a = {0}, b = {0}, c = {0};
    a.again = 2;      /* runs three times, on three turns */
    b.take_back = &c; /* c was posted after b: taken back before its turn comes */
    loop_post(&loop, &a.post, job_run);
    loop_post(&loop, &a.post, job_run); /* posted already: still once */
    loop_post(&loop, &b.post, job_run);
    loop_post(&loop, &c.post, job_run);
    struct loop_timer stop = {0};
    loop_timer_start(&loop, &stop, 300, stop_cb);
    int64_t t0 = loop_clock_ms();
    loop_run(&loop);
    ASSERT_EQ_INT(a.runs, 3);
    ASSERT_EQ_INT(a.turn_seen[0], 0);
    ASSERT_EQ_INT(a.turn_seen[1], 1);
    ASSERT_EQ_INT(a.turn_seen[2], 2);
    ASSERT_EQ_INT(b.runs, 1);
    ASSERT_EQ_INT(c.runs, 0);
    ASSERT(a.first_ms - t0 < 100); /* not after the 300 ms timer, nor a 1 s idle wait */
    ASSERT(list_empty(&loop.posted));
    loop_close(&loop);
}

TEST(unposted_work_does_not_run_issue10)
{
    struct loop loop;
    ASSERT_EQ_INT(loop_init(&loop), 0);
    struct job a = {0};
    loop_unpost(&a.post); /* never posted: fine */
    loop_post(&loop, &a.post, job_run);
    loop_unpost(&a.post);
    struct loop_timer stop = {0};
    loop_timer_start(&loop, &stop, 50, stop_cb);
    loop_run(&loop);
    ASSERT_EQ_INT(a.runs, 0);
    loop_close(&loop);
}

int main(void)
{
    return RUN_TESTS();
}
