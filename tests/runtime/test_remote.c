//  test_remote - the runtime's seam for a transport (runtime/remote.h)
//
//  Two systems in one process joined by a test loopback: each has a fake
//  transport whose ops->send copies the message into a queue, and an "I/O
//  thread" that hands each queue's contents, as one batch, to the other
//  system's brg__remote_deliver. A failure mode makes ops->send answer
//  BRG_ENETWORK or BRG_EBUSY the way remote.h says a transport must
//  (brg__remote_dead_letter).
#include "test_util.h"

#include "runtime/backpressure.h"
#include "runtime/msg.h"
#include "runtime/remote.h"
#include "runtime/system.h"

//  ---------------------------------------------------------------------------
//  The loopback transport

typedef struct {
    brg_ref_t to;
    bool named;
    char name[BRG_NAME_MAX + 1];
    brg_msg_t *msg;
} s_entry_t;

typedef struct {
    brg_system_t *sys; // the system this end is plugged into
    int index;         // 0 (system A) or 1 (system B)
    pthread_mutex_t lock;
    pthread_cond_t cond;
    s_entry_t *queue; // lock: what ops->send accepted, oldest first
    size_t n, cap;    // lock
    bool stop;        // lock: the I/O thread drains the queue and exits
    pthread_t io;
    atomic_int fail;                 // 0, or what ops->send answers: BRG_ENETWORK, BRG_EBUSY
    atomic_int sends;                // ops->send calls
    atomic_int kinds[16];            // ops->send calls by message kind
    atomic_int batches;              // brg__remote_deliver calls made by the I/O thread
    atomic_int shutdowns;            // ops->shutdown calls
    atomic_int destroys;             // ops->destroy calls
    atomic_int shutdown_seq;         // when shutdown / destroy came (s_seq)
    atomic_int destroy_seq;          //
    atomic_ullong alive_at_shutdown; // actors alive when shutdown came
    atomic_int sends_at_shutdown;    // ops->send calls before shutdown
    atomic_int send_in_shutdown_rc;  // what a brg_system_send from shutdown returned
    atomic_ullong last_corr;         // the corr of the last request sent
    //  The busy gate (remote.h, "Busy peers"): while gate_busy, a user send
    //  notes gate S_GATE busy; gate_wait records a waiter and answers
    //  gate_busy (or "open" with gate_says_open: the race where the gate
    //  opened between the send and the suspension).
    atomic_int gate_busy;
    atomic_int gate_waiters;
    atomic_int gate_waits; // gate_wait calls
    atomic_bool gate_says_open;
} s_end_t;

#define S_GATE 7u

static s_end_t s_ends[2];
static atomic_bool s_up[2]; // end i's system takes deliveries
static pthread_mutex_t s_into[2] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
static atomic_int s_seq;               // orders shutdown and destroy calls
static atomic_bool s_send_in_shutdown; // ops->shutdown tries a remote send
static brg_ref_t s_far;                // where that send goes

static brg_system_t *s_a, *s_b; // the two systems

static bool
s_is_user_lane(const brg_msg_t *msg)
{
    return msg->kind == BRG__MSG_USER || msg->kind == BRG__MSG_REPLY ||
           msg->kind == BRG__MSG_REPLY_ERROR;
}

static int
s_send(void *arg, brg_ref_t to, const char *name, brg_msg_t **msg_p)
{
    s_end_t *e = arg;
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    atomic_fetch_add(&e->sends, 1);
    atomic_fetch_add(&e->kinds[msg->kind & 15], 1);
    bool note_busy = s_is_user_lane(msg) && atomic_load(&e->gate_busy);
    if (msg->kind == BRG__MSG_USER && msg->corr)
        atomic_store(&e->last_corr, msg->corr);
    int fail = atomic_load(&e->fail);
    if (fail == BRG_EBUSY && !s_is_user_lane(msg))
        fail = 0; // control signals are never refused for space
    if (!fail && !atomic_load(&s_up[1 - e->index]))
        fail = BRG_ENETWORK;
    if (fail) {
        brg__remote_dead_letter(
            e->sys, to, msg, fail == BRG_EBUSY ? BRG_DEAD_REMOTE_BUSY : BRG_DEAD_REMOTE_DOWN, fail);
        return fail;
    }
    // A copy crosses, as bytes would: nothing may depend on the pointer.
    brg_msg_t *copy = brg_msg_dup(msg);
    ck_assert_ptr_nonnull(copy);
    brg_msg_destroy(&msg);
    pthread_mutex_lock(&e->lock);
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 64;
        e->queue = realloc(e->queue, e->cap * sizeof(*e->queue));
        ck_assert_ptr_nonnull(e->queue);
    }
    s_entry_t *entry = &e->queue[e->n++];
    entry->to = to;
    entry->named = name != NULL;
    if (name)
        snprintf(entry->name, sizeof(entry->name), "%s", name);
    entry->msg = copy;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    if (note_busy)
        brg__remote_note_busy(e->sys, S_GATE);
    return BRG_OK;
}

static bool
s_gate_wait(void *arg, uint32_t gate)
{
    s_end_t *e = arg;
    ck_assert_uint_eq(gate, S_GATE);
    atomic_fetch_add(&e->gate_waits, 1);
    atomic_exchange(&e->gate_waiters, 1); // seq_cst RMW, then a seq_cst load
    return !atomic_load(&e->gate_says_open) && atomic_load(&e->gate_busy);
}

//  The gate is no longer busy: open it for a recorded waiter.
static void
s_gate_release(s_end_t *e)
{
    atomic_exchange(&e->gate_busy, 0);
    if (atomic_exchange(&e->gate_waiters, 0))
        brg__remote_gate_open(e->sys, S_GATE);
}

//  The I/O thread of one end: everything queued goes to the other system
//  as one batch, in order.
static void *
s_io_main(void *arg)
{
    s_end_t *e = arg;
    int peer = 1 - e->index;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        while (e->n == 0 && !e->stop)
            pthread_cond_wait(&e->cond, &e->lock);
        if (e->n == 0) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        s_entry_t *batch = e->queue;
        size_t n = e->n;
        e->queue = NULL;
        e->n = e->cap = 0;
        pthread_mutex_unlock(&e->lock);
        brg__remote_target_t *to = calloc(n, sizeof(*to));
        brg_msg_t **msgs = calloc(n, sizeof(*msgs));
        ck_assert(to && msgs);
        for (size_t i = 0; i < n; i++) {
            to[i].id = batch[i].to.id;
            to[i].name = batch[i].named ? batch[i].name : NULL;
            msgs[i] = batch[i].msg;
        }
        pthread_mutex_lock(&s_into[peer]);
        if (atomic_load(&s_up[peer])) {
            brg__remote_deliver(s_ends[peer].sys, to, msgs, n);
            atomic_fetch_add(&e->batches, 1);
        } else {
            // The peer went down with these on the way: counted here.
            for (size_t i = 0; i < n; i++)
                brg__remote_dead_letter(e->sys, batch[i].to, msgs[i], BRG_DEAD_REMOTE_DOWN,
                                        BRG_ENETWORK);
        }
        pthread_mutex_unlock(&s_into[peer]);
        for (size_t i = 0; i < n; i++)
            ck_assert_ptr_null(msgs[i]); // deliver took every message
        free(to);
        free(msgs);
        free(batch);
    }
    return NULL;
}

static void
s_shutdown(void *arg)
{
    s_end_t *e = arg;
    atomic_store(&e->shutdown_seq, atomic_fetch_add(&s_seq, 1) + 1);
    atomic_fetch_add(&e->shutdowns, 1);
    atomic_store(&e->alive_at_shutdown, tu_stats(e->sys).actors_alive);
    atomic_store(&e->sends_at_shutdown, atomic_load(&e->sends));
    if (atomic_load(&s_send_in_shutdown)) {
        brg_msg_t *late = brg_msg_new("late");
        atomic_store(&e->send_in_shutdown_rc, brg_system_send(e->sys, s_far, &late));
    }
    // Nothing is delivered into this system from now on; what it queued
    // still goes out, then the I/O thread stops.
    pthread_mutex_lock(&s_into[e->index]);
    atomic_store(&s_up[e->index], false);
    pthread_mutex_unlock(&s_into[e->index]);
    pthread_mutex_lock(&e->lock);
    e->stop = true;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->io, NULL);
}

static void
s_destroy(void *arg)
{
    s_end_t *e = arg;
    atomic_store(&e->destroy_seq, atomic_fetch_add(&s_seq, 1) + 1);
    atomic_fetch_add(&e->destroys, 1);
    ck_assert_uint_eq(e->n, 0);
    free(e->queue);
    e->queue = NULL;
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
}

static const brg__remote_ops_t s_ops = {s_send, s_shutdown, s_destroy, s_gate_wait};

static void
s_plug(int i, brg_system_t *sys)
{
    s_end_t *e = &s_ends[i];
    e->sys = sys;
    e->index = i;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    atomic_store(&s_up[i], true);
    ck_assert_int_eq(pthread_create(&e->io, NULL, s_io_main, e), 0);
    ck_assert_int_eq(brg__system_set_remote_ops(sys, &s_ops, e), BRG_OK);
}

static void
s_setup(void)
{
    s_a = tu_system_new(2);
    s_b = tu_system_new(1);
    ck_assert(s_a && s_b);
    s_plug(0, s_a);
    s_plug(1, s_b);
}

static void
s_check_end_closed(int i)
{
    ck_assert_int_eq(atomic_load(&s_ends[i].shutdowns), 1);
    ck_assert_int_eq(atomic_load(&s_ends[i].destroys), 1);
    ck_assert_int_lt(atomic_load(&s_ends[i].shutdown_seq), atomic_load(&s_ends[i].destroy_seq));
    ck_assert_uint_eq(atomic_load(&s_ends[i].alive_at_shutdown), 0);
}

static void
s_teardown(void)
{
    if (s_a) {
        ck_assert_int_eq(brg_system_destroy(&s_a), BRG_OK);
        s_check_end_closed(0);
    }
    if (s_b) {
        ck_assert_int_eq(brg_system_destroy(&s_b), BRG_OK);
        s_check_end_closed(1);
    }
}

//  The node ref of a system (id 0).
static brg_ref_t
s_node(brg_system_t *sys)
{
    return brg__system_ref(sys, 0);
}

//  ---------------------------------------------------------------------------
//  Actors

//  What the probes saw. One probe per test does the interesting thing.
static atomic_int s_hello;              // "hello" messages received
static brg_ref_t s_hello_from;          // the last one's sender (written before s_hello)
static atomic_int s_calls;              // reply callbacks
static atomic_int s_status = 1;         // the last callback's status
static atomic_llong s_value;            // the last reply's integer
static brg_ref_t s_reply_from;          // the last reply's sender
static atomic_int s_rc = 1;             // the last call a probe made
static atomic_int s_exits, s_downs;     // EXIT / DOWN messages received
static atomic_int s_reason = -1;        // the last EXIT / DOWN reason kind
static atomic_int s_reason_code;        // its code
static brg_ref_t s_signal_from;         // its sender
static atomic_ullong s_mon, s_down_mon; // a monitor id made, and the last DOWN's
static brg_ref_t s_target;              // what a probe acts on
static const char *s_name = "echo";     // the name a probe asks for
static brg_ref_t s_fwd_to;              // where the proxy forwards to
static atomic_int s_fwd_rc = 1;         // what its brg_forward returned

static int
s_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    if (reply) {
        s_reply_from = brg_msg_sender(reply);
        size_t pos = 0;
        int64_t v = 0;
        if (brg_msg_read_int(reply, &pos, &v) == BRG_OK)
            atomic_store(&s_value, v);
    }
    atomic_store(&s_status, status);
    atomic_fetch_add(&s_calls, 1);
    return BRG_OK;
}

//  The remote end: answers, fails, stops, greets and forwards on request.
static int
s_peer(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "double")) {
        brg_msg_t *r = brg_msg_new_int("doubled", 2 * tu_msg_int(msg));
        brg_reply(ctx, &r);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "hello")) {
        s_hello_from = brg_msg_sender(msg);
        atomic_fetch_add(&s_hello, 1);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "greet")) {
        // Greet the actor whose ref came in the payload, wherever it lives.
        size_t pos = 0;
        brg_ref_t who;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &who), BRG_OK);
        atomic_store(&s_rc, brg_send_tag(ctx, who, "hello"));
        return BRG_OK;
    }
    if (brg_msg_is(msg, "fail")) {
        brg_fail(ctx, BRG_EPROTO, "asked to fail");
        return BRG_OK;
    }
    if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "silent"))
        return BRG_OK; // an ask that is never answered
    return BRG_UNHANDLED;
}

//  Forwards every message to s_fwd_to, ask and all.
static int
s_proxy(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    atomic_store(&s_fwd_rc, brg_forward(ctx, s_fwd_to));
    return BRG_OK;
}

//  The local end: does what the outside tells it to, to s_target.
static int
s_probe(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_exit_reason_t reason;
    brg_ref_t from;
    uint64_t mon;
    if (brg_msg_read_exit(msg, &from, &reason) == BRG_OK) {
        s_signal_from = from;
        atomic_store(&s_reason_code, reason.code);
        atomic_store(&s_reason, (int)reason.kind);
        atomic_fetch_add(&s_exits, 1);
        return BRG_OK;
    }
    if (brg_msg_read_down(msg, &from, &mon, &reason) == BRG_OK) {
        s_signal_from = from;
        atomic_store(&s_down_mon, mon);
        atomic_store(&s_reason_code, reason.code);
        atomic_store(&s_reason, (int)reason.kind);
        atomic_fetch_add(&s_downs, 1);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "hello")) {
        s_hello_from = brg_msg_sender(msg);
        atomic_fetch_add(&s_hello, 1);
        return BRG_OK;
    }
    int rc = BRG_OK;
    if (brg_msg_is(msg, "send")) {
        rc = brg_send_tag(ctx, s_target, "hello");
    } else if (brg_msg_is(msg, "ask") || brg_msg_is(msg, "ask-silent")) {
        brg_msg_t *q =
            brg_msg_is(msg, "ask") ? brg_msg_new_int("double", 21) : brg_msg_new("silent");
        rc = brg_ask(ctx, s_target, &q, 10000, s_on_reply, NULL);
    } else if (brg_msg_is(msg, "ask-named")) {
        brg_msg_t *q = brg_msg_new_int("double", 4);
        rc = brg_ask_named_at(ctx, s_target, s_name, &q, 10000, s_on_reply, NULL);
    } else if (brg_msg_is(msg, "send-named")) {
        brg_msg_t *m = brg_msg_new("hello");
        rc = brg_send_named_at(ctx, s_target, s_name, &m);
    } else if (brg_msg_is(msg, "link-trap")) {
        brg_trap_exits(ctx, true);
        rc = brg_link(ctx, s_target);
    } else if (brg_msg_is(msg, "link")) {
        rc = brg_link(ctx, s_target);
    } else if (brg_msg_is(msg, "unlink")) {
        rc = brg_unlink(ctx, s_target);
    } else if (brg_msg_is(msg, "monitor")) {
        rc = brg_monitor(ctx, s_target, &mon);
        atomic_store(&s_mon, mon);
    } else if (brg_msg_is(msg, "greet-me")) {
        // Send the remote end our own ref in a payload: it greets us back.
        brg_msg_t *m = brg_msg_new("greet");
        brg_msg_add_ref(m, brg_self(ctx));
        rc = brg_send(ctx, s_target, &m);
    } else {
        return BRG_UNHANDLED;
    }
    atomic_store(&s_rc, rc);
    return BRG_OK;
}

//  Tell a probe what to do (from outside) and wait until it has done it.
static void
s_do(brg_ref_t probe, const char *what)
{
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(s_a, probe, what), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_rc) != 1, TU_WAIT_MS);
}

//  The probe monitors s_target (a s_peer) and waits until the target has
//  handled the MONITOR: a greeting sent after it on the same path has
//  arrived. Needed before a stop or an exit signal, which take the system
//  lane and would otherwise overtake it (then the answer is noproc).
static void
s_monitor_settled(brg_ref_t probe)
{
    int hellos = atomic_load(&s_hello);
    s_do(probe, "monitor");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    s_do(probe, "send");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == hellos + 1, TU_WAIT_MS);
}

//  ---------------------------------------------------------------------------
//  Messages, asks, replies, forwards, names, refs in payloads

START_TEST(test_remote_send_reaches_the_other_system_with_its_sender)
{
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_do(probe, "send");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 1, TU_WAIT_MS);
    ck_assert(brg_ref_eq(s_hello_from, probe));
    // From outside too (no sender).
    ck_assert_int_eq(tu_send_tag(s_a, s_target, "hello"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 2, TU_WAIT_MS);
    ck_assert(brg_ref_is_none(s_hello_from));
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_ask_gets_the_reply_from_the_other_system)
{
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_do(probe, "ask");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_value), 42);
    ck_assert(brg_ref_eq(s_reply_from, s_target));
    // The reply travelled as a REPLY with the asker's corr.
    ck_assert_int_eq(atomic_load(&s_ends[1].kinds[BRG__MSG_REPLY]), 1);
    TU_WAIT_UNTIL(tu_stats(s_a).timers_active == 0, TU_WAIT_MS);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_system_ask_from_outside_gets_the_reply)
{
    s_target = tu_spawn(s_b, s_peer);
    brg_msg_t *q = brg_msg_new_int("double", 5);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(s_a, s_target, &q, 10000, &reply), BRG_OK);
    ck_assert_int_eq(tu_msg_int(reply), 10);
    ck_assert(brg_ref_eq(brg_msg_sender(reply), s_target));
    brg_msg_destroy(&reply);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_forward_across_two_hops_answers_the_original_asker)
{
    // probe (A) asks a proxy (B), which forwards the ask to a replier back
    // on A: the reply goes straight from the replier to the probe's callback.
    s_fwd_to = tu_spawn(s_a, s_peer);
    s_target = tu_spawn(s_b, s_proxy);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_do(probe, "ask");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&s_fwd_rc) != 1, TU_WAIT_MS); // stored after the forward
    ck_assert_int_eq(atomic_load(&s_fwd_rc), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_value), 42);
    ck_assert(brg_ref_eq(s_reply_from, s_fwd_to));
    // The reply went from A's replier to A's probe: it never crossed.
    ck_assert_int_eq(atomic_load(&s_ends[0].kinds[BRG__MSG_REPLY]), 0);
    ck_assert_int_eq(atomic_load(&s_ends[1].kinds[BRG__MSG_USER]), 1);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_named_send_and_ask_at_a_node_reach_the_named_actor)
{
    brg_ref_t echo;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "echo";
    ck_assert_int_eq(brg_system_spawn(s_b, s_peer, &opts, &echo), BRG_OK);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_target = s_node(s_b);
    s_do(probe, "send-named");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 1, TU_WAIT_MS);
    ck_assert(brg_ref_eq(s_hello_from, probe));
    s_do(probe, "ask-named");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_OK);
    ck_assert_int_eq(atomic_load(&s_value), 8);
    ck_assert(brg_ref_eq(s_reply_from, echo)); // the named actor's ref, not the node's
    // From outside, and with the node part of any ref of B.
    brg_ref_t node = echo;
    node.id = 12345;
    brg_msg_t *q = brg_msg_new_int("double", 7);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(s_a, node, "echo", &q, 10000, &reply), BRG_OK);
    ck_assert_int_eq(tu_msg_int(reply), 14);
    ck_assert(brg_ref_eq(brg_msg_sender(reply), echo));
    brg_msg_destroy(&reply);
    // This node's own names work the same way (the probe greets itself).
    ck_assert_int_eq(brg_register(s_a, "local", probe), BRG_OK);
    int sends = atomic_load(&s_ends[0].sends);
    s_target = s_node(s_a);
    s_name = "local";
    s_do(probe, "send-named");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 2, TU_WAIT_MS);
    ck_assert(brg_ref_eq(s_hello_from, probe));
    ck_assert_int_eq(atomic_load(&s_ends[0].sends), sends);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_named_ask_for_an_unknown_name_gets_enoactor_from_the_other_node)
{
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_target = s_node(s_b);
    s_name = "nobody";
    s_do(probe, "ask-named");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ENOACTOR);
    // Counted once, where the name was looked up (B); the answer crossed back.
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 1);
    ck_assert_int_eq(atomic_load(&s_ends[1].kinds[BRG__MSG_REPLY_ERROR]), 1);
    // An unknown local name fails at once, as brg_ask to a dead ref does.
    brg_msg_t *q = brg_msg_new("x");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(s_a, s_node(s_a), "nobody", &q, 1000, &reply),
                     BRG_ENOACTOR);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 2);
    // A name that cannot be one is the caller's mistake: nothing is sent.
    q = brg_msg_new("x");
    ck_assert_int_eq(brg_system_ask_named_at(s_a, s_node(s_b), "", &q, 1000, &reply), BRG_EINVAL);
    ck_assert_ptr_null(q);
    q = brg_msg_new("x");
    ck_assert_int_eq(brg_system_ask_named_at(s_a, s_node(s_b), NULL, &q, 1000, &reply), BRG_EINVAL);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 2);
}
END_TEST

START_TEST(test_remote_refs_in_payloads_survive_the_trip_both_ways)
{
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_do(probe, "greet-me");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    // The peer read the probe's ref from the payload and greeted it.
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 1, TU_WAIT_MS);
    ck_assert(brg_ref_eq(s_hello_from, s_target));
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Links, monitors, exit signals, stops

START_TEST(test_remote_link_gets_exit_with_the_real_reason_normal_and_failed)
{
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_target = tu_spawn(s_b, s_peer);
    s_do(probe, "link-trap");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    // The LINK has crossed (signals keep their order with a later message).
    ck_assert_int_eq(tu_send_tag(s_a, s_target, "stop"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_exits) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NORMAL);
    ck_assert(brg_ref_eq(s_signal_from, s_target));

    s_target = tu_spawn(s_b, s_peer);
    s_do(probe, "link");
    ck_assert_int_eq(tu_send_tag(s_a, s_target, "fail"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_exits) == 2, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_FAILED);
    ck_assert_int_eq(atomic_load(&s_reason_code), BRG_EPROTO);

    // Not trapping: the failure takes the linked actor down with it.
    brg_ref_t plain = tu_spawn(s_a, s_probe);
    s_target = tu_spawn(s_b, s_peer);
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(s_a, plain, "link"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(tu_send_tag(s_a, s_target, "fail"), BRG_OK);
    TU_WAIT_DEAD(s_a, plain);
    TU_WAIT_UNTIL(tu_stats(s_a).actors_failed == 1, TU_WAIT_MS); // counted after the close
}
END_TEST

START_TEST(test_remote_failure_of_a_local_actor_reaches_its_remote_link)
{
    // The other way round: the dying actor's EXIT goes out through the
    // transport, and takes the remote (non-trapping) linked actor down.
    brg_ref_t probe = tu_spawn(s_b, s_probe);
    brg_ref_t local = tu_spawn(s_a, s_peer);
    s_target = local;
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(s_b, probe, "link"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    // The LINK must have arrived before the failure: same path, later.
    ck_assert_int_eq(tu_send_tag(s_b, local, "fail"), BRG_OK);
    TU_WAIT_DEAD(s_b, probe);
    TU_WAIT_UNTIL(tu_stats(s_b).actors_failed == 1, TU_WAIT_MS); // counted after the close
    ck_assert_int_ge(atomic_load(&s_ends[0].kinds[BRG__MSG_SYS_EXIT]), 1);
}
END_TEST

START_TEST(test_remote_monitor_gets_down_with_the_reason_and_noproc_for_a_dead_target)
{
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_target = tu_spawn(s_b, s_peer);
    s_do(probe, "monitor");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    uint64_t mon = atomic_load(&s_mon);
    ck_assert_int_eq(tu_send_tag(s_a, s_target, "fail"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_FAILED);
    ck_assert_int_eq(atomic_load(&s_reason_code), BRG_EPROTO);
    ck_assert_uint_eq(atomic_load(&s_down_mon), mon);
    ck_assert(brg_ref_eq(s_signal_from, s_target));

    s_target = tu_spawn(s_b, s_peer);
    s_do(probe, "monitor");
    ck_assert_int_eq(tu_send_tag(s_a, s_target, "stop"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 2, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NORMAL);

    // The target is dead already: B answers noproc, once.
    s_do(probe, "monitor");
    mon = atomic_load(&s_mon);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 3, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NOPROC);
    ck_assert_uint_eq(atomic_load(&s_down_mon), mon);
    // And a link to it: EXIT noproc.
    s_do(probe, "link-trap");
    TU_WAIT_UNTIL(atomic_load(&s_exits) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NOPROC);
    tu_sleep_ms(50);
    ck_assert_int_eq(atomic_load(&s_downs), 3);
    ck_assert_int_eq(atomic_load(&s_exits), 1);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_exit_and_stop_reach_an_actor_on_the_other_system)
{
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_target = tu_spawn(s_b, s_peer);
    s_monitor_settled(probe);
    ck_assert_int_eq(brg_exit(s_a, s_target, BRG_EXIT_KILLED), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_KILLED);

    s_target = tu_spawn(s_b, s_peer);
    s_monitor_settled(probe);
    ck_assert_int_eq(brg_exit(s_a, s_target, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 2, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_SHUTDOWN);

    s_target = tu_spawn(s_b, s_peer);
    s_monitor_settled(probe);
    ck_assert_int_eq(brg_actor_stop(s_a, s_target), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 3, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NORMAL);
    ck_assert_int_eq(atomic_load(&s_ends[0].kinds[BRG__MSG_SYS_STOP]), 1);
    ck_assert_int_eq(atomic_load(&s_ends[0].kinds[BRG__MSG_SYS_KILL]), 2);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Failures: the node is down or busy

START_TEST(test_remote_node_down_send_fails_with_enetwork_and_is_counted)
{
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    atomic_store(&s_ends[0].fail, BRG_ENETWORK);
    s_do(probe, "send");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_ENETWORK);
    ck_assert_int_eq(tu_send_tag(s_a, s_target, "x"), BRG_ENETWORK);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE_DOWN), 2);
    // The ask's callback comes once, at once, with BRG_ENETWORK.
    s_do(probe, "ask");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ENETWORK);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE_DOWN), 3);
    // From outside: BRG_ENETWORK, and no late reply left over.
    brg_msg_t *q = brg_msg_new_int("double", 1);
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(s_a, s_target, &q, 10000, &reply), BRG_ENETWORK);
    ck_assert_ptr_null(reply);
    tu_sleep_ms(50);
    ck_assert_int_eq(atomic_load(&s_calls), 1);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_LATE_REPLY), 0);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE_DOWN), 4);
    ck_assert_int_eq(atomic_load(&s_hello), 0);
}
END_TEST

START_TEST(test_remote_node_down_link_and_monitor_answer_noconnection)
{
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    atomic_store(&s_ends[0].fail, BRG_ENETWORK);
    s_do(probe, "monitor");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NOCONNECTION);
    ck_assert_uint_eq(atomic_load(&s_down_mon), atomic_load(&s_mon));
    ck_assert(brg_ref_eq(s_signal_from, s_target));
    s_do(probe, "link-trap");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_exits) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NOCONNECTION);
    ck_assert_int_eq(atomic_load(&s_reason_code), BRG_ENETWORK);
    // Exactly one answer each.
    tu_sleep_ms(50);
    ck_assert_int_eq(atomic_load(&s_downs), 1);
    ck_assert_int_eq(atomic_load(&s_exits), 1);
    // A non-trapping actor linked to an unreachable node dies of it.
    brg_ref_t plain = tu_spawn(s_a, s_probe);
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(s_a, plain, "link"), BRG_OK);
    TU_WAIT_DEAD(s_a, plain);
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE_DOWN), 3);
    ck_assert(brg_system_is_alive(s_b, s_target)); // nothing reached it
}
END_TEST

START_TEST(test_remote_node_busy_send_fails_with_ebusy_but_signals_pass)
{
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_monitor_settled(probe);
    atomic_store(&s_ends[0].fail, BRG_EBUSY);
    s_do(probe, "send");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_EBUSY);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE_BUSY), 1);
    s_do(probe, "ask");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_EBUSY);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE_BUSY), 2);
    // An exit signal is a control signal: it still crosses.
    ck_assert_int_eq(brg_exit(s_a, s_target, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_SHUTDOWN);
}
END_TEST

START_TEST(test_remote_without_a_transport_is_an_unreachable_node)
{
    // A third system, with no transport: every remote send is answered as
    // one to a node that is down, and counted as BRG_DEAD_REMOTE.
    brg_system_t *lone = tu_system_new(1);
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t probe = tu_spawn(lone, s_probe);
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(lone, probe, "monitor"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NOCONNECTION);
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(lone, probe, "ask"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_calls) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ENETWORK);
    ck_assert_int_eq(brg_actor_stop(lone, s_target), BRG_ENETWORK);
    ck_assert_int_eq(brg_exit(lone, s_target, BRG_EXIT_KILLED), BRG_ENETWORK);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE), 4);
    brg_system_destroy(&lone);
    ck_assert(brg_system_is_alive(s_b, s_target));
}
END_TEST

//  ---------------------------------------------------------------------------
//  The transport's side: signals on node loss, inbound checks, plugging

START_TEST(test_remote_signals_built_by_the_transport_answer_links_monitors_and_asks)
{
    // What a transport does when the connection to B is lost: EXIT and DOWN
    // noconnection, and an error reply for the pending ask.
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    s_target = tu_spawn(s_b, s_peer);
    s_do(probe, "link-trap");
    s_do(probe, "monitor");
    uint64_t mon = atomic_load(&s_mon);
    s_do(probe, "ask-silent");
    ck_assert_int_eq(atomic_load(&s_rc), BRG_OK);
    uint64_t corr = atomic_load(&s_ends[0].last_corr);
    brg_exit_reason_t lost;
    memset(&lost, 0, sizeof(lost));
    lost.kind = BRG_EXIT_NOCONNECTION;
    lost.code = BRG_ENETWORK;
    brg_msg_t *msgs[3] = {
        brg__remote_signal(BRG__MSG_SYS_EXIT, s_target, 0, 0, &lost),
        brg__remote_signal(BRG__MSG_SYS_DOWN, s_target, mon, 0, &lost),
        brg__remote_signal(BRG__MSG_REPLY_ERROR, s_target, corr, BRG_ENETWORK, NULL),
    };
    brg__remote_target_t to[3] = {{probe.id, NULL}, {probe.id, NULL}, {probe.id, NULL}};
    ck_assert_uint_eq(brg__remote_deliver(s_a, to, msgs, 3), 3);
    TU_WAIT_UNTIL(atomic_load(&s_exits) == 1 && atomic_load(&s_downs) == 1 &&
                      atomic_load(&s_calls) == 1,
                  TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NOCONNECTION);
    ck_assert_uint_eq(atomic_load(&s_down_mon), mon);
    ck_assert_int_eq(atomic_load(&s_status), BRG_ENETWORK);
    ck_assert_str_eq(brg_exit_kind_name(BRG_EXIT_NOCONNECTION), "noconnection");
    ck_assert(brg_exit_is_abnormal(&lost));
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_deliver_counts_what_it_cannot_deliver_and_answers_requests)
{
    brg_ref_t probe = tu_spawn(s_a, s_probe);
    brg_ref_t asker = tu_spawn(s_b, s_peer);
    // 1: to an unknown id; 2: a request to an unknown name (answered through
    // ops->send); 3: a timer tick (never crosses nodes); 4: an exit signal of
    // a kind a peer may not send; 5: a real message, still delivered.
    brg_msg_t *m[5];
    for (int i = 0; i < 5; i++) {
        m[i] = brg_msg_new("hello");
        m[i]->sender = asker;
    }
    m[1]->corr = 77;
    m[2]->kind = BRG__MSG_TIMER;
    m[3]->kind = BRG__MSG_SYS_KILL;
    m[3]->status = BRG_EXIT_NORMAL;
    brg__remote_target_t to[5] = {{probe.id + (1ull << 40), NULL},
                                  {0, "nobody"},
                                  {probe.id, NULL},
                                  {probe.id, NULL},
                                  {probe.id, NULL}};
    int sends = atomic_load(&s_ends[0].sends);
    ck_assert_uint_eq(brg__remote_deliver(s_a, to, m, 5), 1);
    for (int i = 0; i < 5; i++)
        ck_assert_ptr_null(m[i]);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 1, TU_WAIT_MS);
    ck_assert(brg_ref_eq(s_hello_from, asker));
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_NO_ACTOR), 4);
    // Only the request got an answer, an error reply back to its node.
    ck_assert_int_eq(atomic_load(&s_ends[0].sends), sends + 1);
    ck_assert_int_eq(atomic_load(&s_ends[0].kinds[BRG__MSG_REPLY_ERROR]), 1);
    ck_assert(brg_system_is_alive(s_a, probe));
}
END_TEST

START_TEST(test_remote_deliver_makes_many_actors_runnable_in_one_batch)
{
    enum { N = 200 };
    brg_ref_t refs[N];
    brg__remote_target_t to[2 * N];
    brg_msg_t *m[2 * N];
    for (int i = 3; i < N; i++)
        refs[i] = tu_spawn(s_a, s_probe);
    // Some of them run on the blocking pool: they go to its queue.
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_BLOCKING;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(brg_system_spawn(s_a, s_probe, &opts, &refs[i]), BRG_OK);
    for (int i = 0; i < 2 * N; i++) {
        m[i] = brg_msg_new("hello");
        to[i].id = refs[i % N].id;
        to[i].name = NULL;
    }
    ck_assert_uint_eq(brg__remote_deliver(s_a, to, m, 2 * N), 2 * N);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 2 * N, TU_WAIT_MS);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_deliver_into_a_deterministic_system_runs_in_its_steps)
{
    brg_config_t cfg;
    tu_config(&cfg, 1);
    cfg.deterministic = true;
    brg_system_t *det = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(det);
    brg_ref_t probe = tu_spawn(det, s_probe);
    brg_msg_t *m[2] = {brg_msg_new("hello"), brg_msg_new("hello")};
    brg__remote_target_t to[2] = {{probe.id, NULL}, {probe.id, NULL}};
    ck_assert_uint_eq(brg__remote_deliver(det, to, m, 2), 2);
    ck_assert_int_eq(atomic_load(&s_hello), 0); // nothing runs outside a step
    ck_assert_int_eq(brg_system_run_until_idle(det), 2);
    ck_assert_int_eq(atomic_load(&s_hello), 2);
    brg_system_destroy(&det);
}
END_TEST

START_TEST(test_remote_ops_are_plugged_in_once)
{
    ck_assert_int_eq(brg__system_set_remote_ops(s_a, &s_ops, &s_ends[0]), BRG_EEXIST);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Ordering and destroy

//  Per-sender order at the receiver: sender k's messages carry 0, 1, 2, ...
enum { S_SENDERS_MAX = 8 };
static atomic_llong s_next[S_SENDERS_MAX]; // next expected number per sender
static atomic_int s_out_of_order;
static atomic_llong s_received;
static atomic_int s_per_sender = 2000;

static int
s_sink(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    size_t pos = 0;
    int64_t k, i;
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &k), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &i), BRG_OK);
    if (atomic_load(&s_next[k]) != i)
        atomic_fetch_add(&s_out_of_order, 1);
    atomic_store(&s_next[k], i + 1);
    atomic_fetch_add(&s_received, 1);
    return BRG_OK;
}

static int
s_flooder(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t k = tu_msg_int(msg);
    int n = atomic_load(&s_per_sender);
    for (int i = 0; i < n; i++) {
        brg_msg_t *m = brg_msg_new_int("seq", k);
        brg_msg_add_int(m, i);
        ck_assert_int_eq(brg_send(ctx, s_target, &m), BRG_OK);
    }
    return BRG_OK;
}

static void
s_flood(int senders, int per_sender)
{
    atomic_store(&s_per_sender, per_sender);
    s_target = tu_spawn(s_b, s_sink);
    for (int k = 0; k < senders; k++)
        ck_assert_int_eq(tu_send_int(s_a, tu_spawn(s_a, s_flooder), "go", k), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_received) == (long long)senders * per_sender, 60000);
    ck_assert_int_eq(atomic_load(&s_out_of_order), 0);
    for (int k = 0; k < senders; k++)
        ck_assert_int_eq(atomic_load(&s_next[k]), per_sender);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}

START_TEST(test_remote_messages_keep_their_order_per_sender_and_receiver)
{
    s_flood(4, 2000);
}
END_TEST

START_TEST(test_remote_stress_a_flood_from_many_senders_keeps_order_and_loses_nothing)
{
    s_flood(S_SENDERS_MAX, 50000);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Busy peers: a sender is suspended on the transport's gate

static atomic_int s_rounds;     // activations of the streamer that sent
static atomic_int s_rounds_max; // it stops sending after this many
static atomic_int s_per_round;  // "hello"s per activation

//  Sends s_per_round greetings to s_target per activation, then asks
//  itself for another round, s_rounds_max times.
static int
s_streamer(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    if (atomic_load(&s_rounds) >= atomic_load(&s_rounds_max))
        return BRG_OK;
    for (int i = 0; i < atomic_load(&s_per_round); i++)
        ck_assert_int_eq(brg_send_tag(ctx, s_target, "hello"), BRG_OK);
    atomic_fetch_add(&s_rounds, 1);
    return brg_send_tag(ctx, brg_self(ctx), "go");
}

static brg_ref_t
s_stream(int rounds, int per_round)
{
    atomic_store(&s_rounds_max, rounds);
    atomic_store(&s_per_round, per_round);
    s_target = tu_spawn(s_b, s_peer);
    brg_ref_t st = tu_spawn(s_a, s_streamer);
    ck_assert_int_eq(tu_send_tag(s_a, st, "go"), BRG_OK);
    return st;
}

START_TEST(test_remote_sender_to_a_busy_peer_is_suspended_until_the_gate_opens)
{
    s_end_t *e = &s_ends[0];
    atomic_store(&e->gate_busy, 1);
    s_stream(50, 10);
    // One activation's sends, then it waits on the gate: its "go" stays
    // in the mailbox, whatever the workers do meanwhile.
    TU_WAIT_UNTIL(brg__bp_suspended(s_a->sched) == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 10, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_rounds), 1);
    ck_assert_int_eq(atomic_load(&e->gate_waits), 1);
    ck_assert_uint_eq(brg__bp_suspensions(s_a->sched), 1);
    tu_sleep_us(20000);
    ck_assert_int_eq(atomic_load(&s_rounds), 1);
    s_gate_release(e);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 500, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_rounds), 50);
    ck_assert_uint_eq(brg__bp_suspended(s_a->sched), 0);
    ck_assert_uint_eq(brg__bp_suspensions(s_a->sched), 1);
    ck_assert_uint_eq(atomic_load(&tu_dead.total), 0);
}
END_TEST

START_TEST(test_remote_sender_is_not_suspended_on_a_gate_that_opened_before_it_waited)
{
    s_end_t *e = &s_ends[0];
    atomic_store(&e->gate_says_open, true);
    atomic_store(&e->gate_busy, 1);
    s_stream(50, 10);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 500, TU_WAIT_MS);
    // Every activation noted the gate and asked; none was held back.
    ck_assert_int_eq(atomic_load(&e->gate_waits), 50);
    ck_assert_uint_eq(brg__bp_suspensions(s_a->sched), 0);
    ck_assert_uint_eq(brg__bp_suspended(s_a->sched), 0);
}
END_TEST

START_TEST(test_remote_sender_suspended_on_a_gate_still_stops_and_is_killed)
{
    s_end_t *e = &s_ends[0];
    atomic_store(&e->gate_busy, 1);
    brg_ref_t st = s_stream(50, 10);
    TU_WAIT_UNTIL(brg__bp_suspended(s_a->sched) == 1, TU_WAIT_MS);
    ck_assert_int_eq(brg_actor_stop(s_a, st), BRG_OK);
    TU_WAIT_DEAD(s_a, st);
    ck_assert_uint_eq(brg__bp_suspended(s_a->sched), 0);
    ck_assert_int_eq(atomic_load(&s_rounds), 1);
    s_gate_release(e); // opens on nobody
    // Another one, killed this time.
    atomic_store(&s_rounds, 0);
    atomic_store(&e->gate_busy, 1);
    st = s_stream(50, 10);
    TU_WAIT_UNTIL(brg__bp_suspended(s_a->sched) == 1, TU_WAIT_MS);
    ck_assert_int_eq(brg_exit(s_a, st, BRG_EXIT_KILLED), BRG_OK);
    TU_WAIT_DEAD(s_a, st);
    ck_assert_uint_eq(brg__bp_suspended(s_a->sched), 0);
}
END_TEST

//  A dying actor's last sends may meet a busy gate (the error replies to
//  the asks still in its mailbox): that must not hold back the next actor
//  its worker runs. The holder blocks until let go, with a remote ask and
//  a stop queued behind it; then it greets s_target (which goes to its
//  worker's LIFO slot, so that it runs there next) and dies.
static atomic_int s_hold_gate;
static atomic_int s_holding; // the holder is inside "block"

static int
s_holder(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "block")) {
        atomic_store(&s_holding, 1);
        tu_gate_wait(&s_hold_gate);
        return brg_send_tag(ctx, s_target, "hello");
    }
    return BRG_OK;
}

static brg_ref_t s_held;

static void *
s_remote_asker(void *arg)
{
    (void)arg;
    brg_msg_t *q = brg_msg_new("silent"), *r = NULL;
    int rc = brg_system_ask(s_b, s_held, &q, 10000, &r);
    brg_msg_destroy(&r);
    return (void *)(intptr_t)rc;
}

START_TEST(test_remote_a_dying_actors_last_sends_hold_back_no_other_actor)
{
    s_end_t *e = &s_ends[0];
    for (int round = 0; round < 5; round++) {
        atomic_store(&s_hold_gate, 0);
        atomic_store(&s_holding, 0);
        atomic_store(&s_hello, 0);
        atomic_store(&e->gate_busy, 1);
        s_target = tu_spawn(s_a, s_peer); // local: it waits for nobody
        s_held = tu_spawn(s_a, s_holder);
        ck_assert_int_eq(tu_send_tag(s_a, s_held, "block"), BRG_OK);
        // Inside "block" before the stop is sent: a stop that came first
        // would overtake "block" (system lane), and no "hello" would ever
        // be sent (CI under load saw that).
        TU_WAIT_UNTIL(atomic_load(&s_holding) == 1, TU_WAIT_MS);
        int delivered = atomic_load(&s_ends[1].batches);
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, s_remote_asker, NULL), 0);
        TU_WAIT_UNTIL(atomic_load(&s_ends[1].batches) > delivered, TU_WAIT_MS); // queued
        ck_assert_int_eq(brg_actor_stop(s_a, s_held), BRG_OK);
        atomic_store(&s_hold_gate, 1);
        void *rc;
        pthread_join(t, &rc);
        // Answered at the holder's death, through the busy gate.
        ck_assert_int_ne((int)(intptr_t)rc, BRG_OK);
        TU_WAIT_UNTIL(atomic_load(&s_hello) == 1, TU_WAIT_MS);
        ck_assert_int_eq(tu_send_tag(s_a, s_target, "hello"), BRG_OK);
        TU_WAIT_UNTIL(atomic_load(&s_hello) == 2, TU_WAIT_MS);
        ck_assert_int_eq(atomic_load(&e->gate_waits), 0);
        ck_assert_uint_eq(brg__bp_suspended(s_a->sched), 0);
        s_gate_release(e);
    }
}
END_TEST

//  The gate flips from another thread at random moments while the streamer
//  runs: no suspension is ever left without its wake-up (the Dekker pair in
//  remote.h), so every round runs.
static atomic_bool s_flipping;

static void *
s_flipper(void *arg)
{
    s_end_t *e = arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    while (atomic_load(&s_flipping)) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        atomic_store(&e->gate_busy, 1);
        if (rng & 1)
            tu_sleep_us((unsigned)(rng >> 8) % 200);
        s_gate_release(e);
        if (rng & 2)
            tu_sleep_us((unsigned)(rng >> 16) % 100);
    }
    return NULL;
}

START_TEST(test_remote_stress_a_flipping_gate_never_strands_a_sender)
{
    s_end_t *e = &s_ends[0];
    atomic_store(&s_flipping, true);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, s_flipper, e), 0);
    const int rounds = 20000;
    s_stream(rounds, 3);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 3 * rounds, 120000);
    atomic_store(&s_flipping, false);
    pthread_join(t, NULL);
    ck_assert_int_eq(atomic_load(&s_rounds), rounds);
    ck_assert_uint_gt(brg__bp_suspensions(s_a->sched), 0); // it did wait, many times
    ck_assert_uint_eq(brg__bp_suspended(s_a->sched), 0);
}
END_TEST

START_TEST(test_remote_destroy_shuts_the_transport_down_after_the_last_actor_then_frees_it)
{
    // A watcher on B monitors an actor on A; destroying A stops it, and its
    // DOWN must have gone to the transport before ops->shutdown, which
    // still delivers it.
    brg_ref_t watched = tu_spawn(s_a, s_peer);
    brg_ref_t watcher = tu_spawn(s_b, s_probe);
    s_target = watched;
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(s_b, watcher, "monitor"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_rc) != 1, TU_WAIT_MS);
    // A greeting sent after the MONITOR: once it is handled, so is the
    // MONITOR (one path, in order), before destroy's stop overtakes it.
    atomic_store(&s_rc, 1);
    ck_assert_int_eq(tu_send_tag(s_b, watcher, "send"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&s_hello) == 1, TU_WAIT_MS);
    ck_assert(brg_ref_eq(s_hello_from, watcher));
    s_far = tu_spawn(s_b, s_peer);
    atomic_store(&s_send_in_shutdown, true);
    ck_assert_int_eq(brg_system_destroy(&s_a), BRG_OK);
    s_check_end_closed(0);
    ck_assert_int_eq(atomic_load(&s_ends[0].kinds[BRG__MSG_SYS_DOWN]), 1);
    ck_assert_int_ge(atomic_load(&s_ends[0].sends_at_shutdown), 1);
    // A send after shutdown began never reached ops->send: a dead letter.
    ck_assert_int_eq(atomic_load(&s_ends[0].send_in_shutdown_rc), BRG_ENETWORK);
    ck_assert_int_eq(atomic_load(&s_ends[0].sends), atomic_load(&s_ends[0].sends_at_shutdown));
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_SHUTDOWN), 1);
    TU_WAIT_UNTIL(atomic_load(&s_downs) == 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&s_reason), BRG_EXIT_NORMAL);
    ck_assert(brg_ref_eq(s_signal_from, watched));
    ck_assert_int_eq(atomic_load(&s_ends[1].shutdowns), 0); // B's transport untouched
}
END_TEST

Suite *
remote_suite(void)
{
    Suite *s = suite_create("remote");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 30);
    tcase_add_checked_fixture(core, s_setup, s_teardown);
    tcase_add_test(core, test_remote_send_reaches_the_other_system_with_its_sender);
    tcase_add_test(core, test_remote_ask_gets_the_reply_from_the_other_system);
    tcase_add_test(core, test_remote_system_ask_from_outside_gets_the_reply);
    tcase_add_test(core, test_remote_forward_across_two_hops_answers_the_original_asker);
    tcase_add_test(core, test_remote_named_send_and_ask_at_a_node_reach_the_named_actor);
    tcase_add_test(core,
                   test_remote_named_ask_for_an_unknown_name_gets_enoactor_from_the_other_node);
    tcase_add_test(core, test_remote_refs_in_payloads_survive_the_trip_both_ways);
    tcase_add_test(core, test_remote_link_gets_exit_with_the_real_reason_normal_and_failed);
    tcase_add_test(core, test_remote_failure_of_a_local_actor_reaches_its_remote_link);
    tcase_add_test(core,
                   test_remote_monitor_gets_down_with_the_reason_and_noproc_for_a_dead_target);
    tcase_add_test(core, test_remote_exit_and_stop_reach_an_actor_on_the_other_system);
    tcase_add_test(core, test_remote_node_down_send_fails_with_enetwork_and_is_counted);
    tcase_add_test(core, test_remote_node_down_link_and_monitor_answer_noconnection);
    tcase_add_test(core, test_remote_node_busy_send_fails_with_ebusy_but_signals_pass);
    tcase_add_test(core, test_remote_without_a_transport_is_an_unreachable_node);
    tcase_add_test(core, test_remote_signals_built_by_the_transport_answer_links_monitors_and_asks);
    tcase_add_test(core, test_remote_deliver_counts_what_it_cannot_deliver_and_answers_requests);
    tcase_add_test(core, test_remote_deliver_makes_many_actors_runnable_in_one_batch);
    tcase_add_test(core, test_remote_deliver_into_a_deterministic_system_runs_in_its_steps);
    tcase_add_test(core, test_remote_ops_are_plugged_in_once);
    tcase_add_test(core, test_remote_sender_to_a_busy_peer_is_suspended_until_the_gate_opens);
    tcase_add_test(core,
                   test_remote_sender_is_not_suspended_on_a_gate_that_opened_before_it_waited);
    tcase_add_test(core, test_remote_sender_suspended_on_a_gate_still_stops_and_is_killed);
    tcase_add_test(core, test_remote_a_dying_actors_last_sends_hold_back_no_other_actor);
    tcase_add_test(core, test_remote_messages_keep_their_order_per_sender_and_receiver);
    tcase_add_test(core,
                   test_remote_destroy_shuts_the_transport_down_after_the_last_actor_then_frees_it);
    suite_add_tcase(s, core);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, s_setup, s_teardown);
    tcase_set_timeout(stress, 300);
    tcase_add_test(stress, test_remote_stress_a_flipping_gate_never_strands_a_sender);
    tcase_add_test(stress,
                   test_remote_stress_a_flood_from_many_senders_keeps_order_and_loses_nothing);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(remote_suite());
}
