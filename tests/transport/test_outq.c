//  test_outq - the node's outbound queue: FIFO per producer, nothing lost,
//  the doorbell rung only on the idle -> busy transition
//  (transport/outq.h).
#include "test_util.h"

#include <poll.h>
#include <unistd.h>

#include "transport/outq.h"

typedef struct {
    brg__outq_node_t link;
    int producer;
    int seq;
} oq_item_t;

//  The doorbell's count, read and reset (0 if it was not rung).
static uint64_t
oq_bell(brg__outq_t *q)
{
    uint64_t n = 0;
    if (read(q->efd, &n, sizeof n) != (ssize_t)sizeof n)
        return 0;
    return n;
}

START_TEST(test_outq_grab_returns_items_in_push_order)
{
    brg__outq_t q;
    ck_assert_int_eq(brg__outq_init(&q), BRG_OK);
    oq_item_t items[5];
    for (int i = 0; i < 5; i++) {
        items[i].seq = i;
        brg__outq_push(&q, &items[i].link);
    }
    brg__outq_node_t *n = brg__outq_grab(&q);
    for (int i = 0; i < 5; i++) {
        ck_assert_ptr_nonnull(n);
        ck_assert_int_eq(((oq_item_t *)n)->seq, i);
        n = n->next;
    }
    ck_assert_ptr_null(n);
    ck_assert_ptr_null(brg__outq_grab(&q));
    brg__outq_fini(&q);
}
END_TEST

START_TEST(test_outq_bell_rings_once_per_idle_to_busy_transition)
{
    brg__outq_t q;
    ck_assert_int_eq(brg__outq_init(&q), BRG_OK);
    oq_item_t items[6];
    // Idle: the first push rings, the next ones do not.
    for (int i = 0; i < 3; i++)
        brg__outq_push(&q, &items[i].link);
    ck_assert_uint_eq(oq_bell(&q), 1);
    // Busy (grabbed, not idle): pushes never ring.
    brg__outq_grab(&q);
    brg__outq_push(&q, &items[3].link);
    ck_assert_uint_eq(oq_bell(&q), 0);
    // Going idle fails while an item waits; the consumer grabs it instead.
    ck_assert(!brg__outq_try_idle(&q));
    brg__outq_node_t *n = brg__outq_grab(&q);
    ck_assert_ptr_eq(n, &items[3].link);
    ck_assert_ptr_null(n->next);
    // Idle again: the next push rings.
    ck_assert(brg__outq_try_idle(&q));
    brg__outq_push(&q, &items[4].link);
    brg__outq_push(&q, &items[5].link);
    ck_assert_uint_eq(oq_bell(&q), 1);
    brg__outq_fini(&q);
}
END_TEST

#define OQ_PRODUCERS 4

static brg__outq_t oq_q;
static int oq_per_producer;

static void *
oq_producer(void *arg)
{
    int p = (int)(intptr_t)arg;
    for (int i = 0; i < oq_per_producer; i++) {
        oq_item_t *it = malloc(sizeof *it);
        it->producer = p;
        it->seq = i;
        brg__outq_push(&oq_q, &it->link);
        if (i % 1000 == 0)
            sched_yield();
    }
    return NULL;
}

//  The consumer as the I/O thread runs it: grab until empty, go idle,
//  sleep on the doorbell. A lost wake-up would hang it (the test's timeout).
static void
oq_run(int per_producer)
{
    oq_per_producer = per_producer;
    ck_assert_int_eq(brg__outq_init(&oq_q), BRG_OK);
    pthread_t t[OQ_PRODUCERS];
    for (int p = 0; p < OQ_PRODUCERS; p++)
        pthread_create(&t[p], NULL, oq_producer, (void *)(intptr_t)p);
    int next[OQ_PRODUCERS] = {0};
    long total = 0, want = (long)OQ_PRODUCERS * per_producer;
    uint64_t sleeps = 0;
    while (total < want) {
        brg__outq_node_t *n = brg__outq_grab(&oq_q);
        while (n != NULL) {
            oq_item_t *it = (oq_item_t *)n;
            n = n->next;
            ck_assert_int_eq(it->seq, next[it->producer]);
            next[it->producer]++;
            total++;
            free(it);
        }
        if (total < want && brg__outq_try_idle(&oq_q)) {
            struct pollfd pfd = {oq_q.efd, POLLIN, 0};
            ck_assert_int_eq(poll(&pfd, 1, -1), 1);
            brg__outq_drain_bell(&oq_q);
            sleeps++;
        }
    }
    for (int p = 0; p < OQ_PRODUCERS; p++) {
        pthread_join(t[p], NULL);
        ck_assert_int_eq(next[p], per_producer);
    }
    ck_assert_ptr_null(brg__outq_grab(&oq_q));
    brg__outq_fini(&oq_q);
}

START_TEST(test_outq_four_producers_lose_nothing_and_keep_their_order)
{
    oq_run(50000);
}
END_TEST

START_TEST(test_outq_stress_four_producers_two_million_items)
{
    oq_run(500000);
}
END_TEST

static Suite *
outq_suite(void)
{
    Suite *s = suite_create("outq");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_outq_grab_returns_items_in_push_order);
    tcase_add_test(core, test_outq_bell_rings_once_per_idle_to_busy_transition);
    tcase_add_test(core, test_outq_four_producers_lose_nothing_and_keep_their_order);
    suite_add_tcase(s, core);
    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress, test_outq_stress_four_producers_two_million_items);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(outq_suite());
}
