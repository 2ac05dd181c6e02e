//  test_runq - a worker's run queue: FIFO order, capacity, stealing half, and
//  an owner racing thieves. The queue never dereferences its entries, so the
//  tests use small integers cast to actor pointers.
#include "test_util.h"

#include "runtime/runq.h"

#define A(i) ((brg__actor_t *)(uintptr_t)(i))
#define I(a) ((uintptr_t)(a))

static brg__runq_t s_q, s_thief;

START_TEST(test_runq_pops_in_push_order)
{
    brg__runq_init(&s_q);
    ck_assert_ptr_null(brg__runq_pop(&s_q));
    ck_assert_uint_eq(brg__runq_len(&s_q), 0);
    for (uintptr_t i = 1; i <= 100; i++)
        ck_assert(brg__runq_push(&s_q, A(i)));
    ck_assert_uint_eq(brg__runq_len(&s_q), 100);
    for (uintptr_t i = 1; i <= 100; i++)
        ck_assert_uint_eq(I(brg__runq_pop(&s_q)), i);
    ck_assert_ptr_null(brg__runq_pop(&s_q));
    ck_assert_uint_eq(brg__runq_len(&s_q), 0);
}
END_TEST

START_TEST(test_runq_interleaved_push_pop_keeps_fifo_across_the_ring_end)
{
    brg__runq_init(&s_q);
    uintptr_t next_in = 1, next_out = 1;
    // Many laps around the ring, with the fill level going up and down.
    for (int round = 0; round < 50 * (int)BRG__RUNQ_CAP; round++) {
        int pushes = 1 + round % 3, pops = 1 + (round / 7) % 3;
        for (int k = 0; k < pushes; k++)
            if (brg__runq_push(&s_q, A(next_in)))
                next_in++;
        for (int k = 0; k < pops; k++) {
            brg__actor_t *a = brg__runq_pop(&s_q);
            if (!a)
                break;
            ck_assert_uint_eq(I(a), next_out++);
        }
    }
    for (brg__actor_t *a; (a = brg__runq_pop(&s_q)) != NULL;)
        ck_assert_uint_eq(I(a), next_out++);
    ck_assert_uint_eq(next_out, next_in);
}
END_TEST

START_TEST(test_runq_counters_wrap_around_32_bits)
{
    brg__runq_init(&s_q);
    // White box: start the free-running counters just below the wrap.
    atomic_store(&s_q.head, UINT32_MAX - 10);
    atomic_store(&s_q.tail, UINT32_MAX - 10);
    for (uintptr_t i = 1; i <= BRG__RUNQ_CAP; i++)
        ck_assert(brg__runq_push(&s_q, A(i)));
    ck_assert(!brg__runq_push(&s_q, A(999)));
    ck_assert_uint_eq(brg__runq_len(&s_q), BRG__RUNQ_CAP);
    brg__runq_init(&s_thief);
    brg__actor_t *run = brg__runq_steal_into(&s_thief, &s_q);
    ck_assert_uint_eq(I(run), BRG__RUNQ_CAP / 2);
    for (uintptr_t i = 1; i < BRG__RUNQ_CAP / 2; i++)
        ck_assert_uint_eq(I(brg__runq_pop(&s_thief)), i);
    for (uintptr_t i = BRG__RUNQ_CAP / 2 + 1; i <= BRG__RUNQ_CAP; i++)
        ck_assert_uint_eq(I(brg__runq_pop(&s_q)), i);
    ck_assert_ptr_null(brg__runq_pop(&s_q));
}
END_TEST

START_TEST(test_runq_push_fails_when_full_and_changes_nothing)
{
    brg__runq_init(&s_q);
    for (uintptr_t i = 1; i <= BRG__RUNQ_CAP; i++)
        ck_assert(brg__runq_push(&s_q, A(i)));
    ck_assert(!brg__runq_push(&s_q, A(1000)));
    ck_assert_uint_eq(brg__runq_len(&s_q), BRG__RUNQ_CAP);
    ck_assert_uint_eq(I(brg__runq_pop(&s_q)), 1);
    ck_assert(brg__runq_push(&s_q, A(1001)));
    ck_assert(!brg__runq_push(&s_q, A(1002)));
    for (uintptr_t i = 2; i <= BRG__RUNQ_CAP; i++)
        ck_assert_uint_eq(I(brg__runq_pop(&s_q)), i);
    ck_assert_uint_eq(I(brg__runq_pop(&s_q)), 1001);
    ck_assert_ptr_null(brg__runq_pop(&s_q));
}
END_TEST

START_TEST(test_runq_steal_takes_the_older_half)
{
    brg__runq_init(&s_q);
    brg__runq_init(&s_thief);
    for (uintptr_t i = 1; i <= 100; i++)
        brg__runq_push(&s_q, A(i));
    // 50 stolen: 1..49 into the thief's ring, 50 returned to run now.
    brg__actor_t *run = brg__runq_steal_into(&s_thief, &s_q);
    ck_assert_uint_eq(I(run), 50);
    ck_assert_uint_eq(brg__runq_len(&s_thief), 49);
    ck_assert_uint_eq(brg__runq_len(&s_q), 50);
    for (uintptr_t i = 1; i <= 49; i++)
        ck_assert_uint_eq(I(brg__runq_pop(&s_thief)), i);
    for (uintptr_t i = 51; i <= 100; i++)
        ck_assert_uint_eq(I(brg__runq_pop(&s_q)), i);

    // Odd counts round up; one entry is simply taken.
    brg__runq_push(&s_q, A(7));
    brg__runq_push(&s_q, A(8));
    brg__runq_push(&s_q, A(9));
    ck_assert_uint_eq(I(brg__runq_steal_into(&s_thief, &s_q)), 8);
    ck_assert_uint_eq(I(brg__runq_pop(&s_thief)), 7);
    ck_assert_uint_eq(I(brg__runq_steal_into(&s_thief, &s_q)), 9);
    ck_assert_uint_eq(brg__runq_len(&s_thief), 0);
    ck_assert_ptr_null(brg__runq_steal_into(&s_thief, &s_q));
}
END_TEST

START_TEST(test_runq_pop_batch_takes_the_oldest)
{
    brg__runq_init(&s_q);
    for (uintptr_t i = 1; i <= 10; i++)
        brg__runq_push(&s_q, A(i));
    brg__actor_t *out[16];
    ck_assert_uint_eq(brg__runq_pop_batch(&s_q, out, 4), 4);
    for (uintptr_t i = 0; i < 4; i++)
        ck_assert_uint_eq(I(out[i]), i + 1);
    ck_assert_uint_eq(brg__runq_pop_batch(&s_q, out, 16), 6);
    ck_assert_uint_eq(I(out[5]), 10);
    ck_assert_uint_eq(brg__runq_pop_batch(&s_q, out, 16), 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: the owner pushes and pops while three thieves steal.

#define S_ITEMS 500000u
#define S_THIEVES 3
static atomic_uchar s_taken[S_ITEMS + 1];
static atomic_uint s_taken_total;
static atomic_int s_owner_done;
static atomic_uint s_stolen_by_thieves;

static void
s_take(brg__actor_t *a)
{
    uintptr_t i = I(a);
    ck_assert_msg(i >= 1 && i <= S_ITEMS, "bogus entry %zu", (size_t)i);
    atomic_fetch_add_explicit(&s_taken[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s_taken_total, 1, memory_order_relaxed);
}

static void *
s_thief_main(void *arg)
{
    (void)arg;
    brg__runq_t *mine = aligned_alloc(64, sizeof(brg__runq_t));
    brg__runq_init(mine);
    for (;;) {
        bool done = atomic_load(&s_owner_done);
        brg__actor_t *a = brg__runq_steal_into(mine, &s_q);
        if (a) {
            s_take(a);
            atomic_fetch_add(&s_stolen_by_thieves, 1);
            // Drain what came along before stealing again (steal needs an
            // empty ring). Occasionally let another thief steal from us.
            while ((a = brg__runq_pop(mine)) != NULL) {
                s_take(a);
                atomic_fetch_add(&s_stolen_by_thieves, 1);
            }
        } else if (done) {
            break;
        } else {
            sched_yield();
        }
    }
    free(mine);
    return NULL;
}

START_TEST(test_runq_stress_owner_and_three_thieves_take_every_item_exactly_once)
{
    brg__runq_init(&s_q);
    pthread_t thieves[S_THIEVES];
    for (int t = 0; t < S_THIEVES; t++)
        pthread_create(&thieves[t], NULL, s_thief_main, NULL);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    for (uintptr_t i = 1; i <= S_ITEMS; i++) {
        while (!brg__runq_push(&s_q, A(i))) {
            brg__actor_t *a = brg__runq_pop(&s_q); // full: run one ourselves
            if (a)
                s_take(a);
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if (rng % 3 == 0) {
            brg__actor_t *a = brg__runq_pop(&s_q);
            if (a)
                s_take(a);
        }
    }
    for (brg__actor_t *a; (a = brg__runq_pop(&s_q)) != NULL;)
        s_take(a);
    atomic_store(&s_owner_done, 1);
    for (int t = 0; t < S_THIEVES; t++)
        pthread_join(thieves[t], NULL);
    ck_assert_uint_eq(atomic_load(&s_taken_total), S_ITEMS);
    for (uintptr_t i = 1; i <= S_ITEMS; i++)
        ck_assert_msg(atomic_load(&s_taken[i]) == 1, "item %zu taken %d times", (size_t)i,
                      (int)atomic_load(&s_taken[i]));
    ck_assert_uint_gt(atomic_load(&s_stolen_by_thieves), 0);
}
END_TEST

Suite *
runq_suite(void)
{
    Suite *s = suite_create("runq");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_runq_pops_in_push_order);
    tcase_add_test(core, test_runq_interleaved_push_pop_keeps_fifo_across_the_ring_end);
    tcase_add_test(core, test_runq_counters_wrap_around_32_bits);
    tcase_add_test(core, test_runq_push_fails_when_full_and_changes_nothing);
    tcase_add_test(core, test_runq_steal_takes_the_older_half);
    tcase_add_test(core, test_runq_pop_batch_takes_the_oldest);
    suite_add_tcase(s, core);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_set_timeout(stress, 300);
    tcase_add_test(stress, test_runq_stress_owner_and_three_thieves_take_every_item_exactly_once);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(runq_suite());
}
