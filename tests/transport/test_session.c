//  test_session - the session state machine through a loopback double.
//
//  Two sessions (side 0 = node A, side 1 = node B) whose send_frame
//  callbacks copy each frame into one test-controlled queue; pumping the
//  queue decodes a frame with brg__wire_decode and hands it to the other
//  side (a frame sent on our outbox arrives on the peer's inbox, one sent
//  through our inbox ROUTER arrives on the peer's outbox). The test can
//  drop, duplicate or cut frames and advances a fake clock. deliver
//  callbacks log every message with its target. Like the node's owner,
//  the pump creates side 1's session (acceptor) when its first frame
//  arrives, and flushes both sessions after every step.
#include <brigade.h>

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/session_driver.h"
#include "msg.h"
#include "tracing.h"
#include "transport/session.h"

#define MS 1000000ull

//  ---------------------------------------------------------------------------
//  The loopback double.

typedef struct {
    int from;     // side that sent it
    bool inbound; // the sender's send_frame flag
    uint8_t *data;
    size_t len;
} lb_frame_t;

typedef struct {
    uint64_t to;       // target id (0 with a name)
    char name[64];     // target name, or ""
    brg_msg_t *msg;    // owned by the log
    bool ending;       // delivered while the side was being ended by the test
    uint32_t frame_no; // how many deliver calls this side had before this one
} lb_entry_t;

typedef struct lb_side lb_side_t;
typedef void (*lb_react_fn)(lb_side_t *side, uint64_t to, const brg_msg_t *msg);

struct lb_side {
    int idx;
    brg__session_cfg_t cfg;
    brg__session_t *s;
    brg__session_t *old; // a session replaced (kept until teardown)
    lb_entry_t *log;
    size_t nlog, caplog;
    uint32_t deliver_calls;
    int ups, endeds;
    brg__end_reason_t reason;
    bool ending;
    lb_react_fn react; // called for each delivered message (not while ending)
    brg_system_t *sys; // set: deliveries go to this system (brg__remote_deliver)
};

static lb_side_t S[2];
static lb_frame_t *Q;
static size_t QN, QCAP;
static uint64_t NOW = 1000 * MS;
static brg__frame_t FR; // decoded frames (big: keep it off the stack)
static brg__wire_limits_t LIMITS;
static const uint8_t NODE_A[16] = {0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t NODE_B[16] = {0xb0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static brg_ref_t
node_ref(const uint8_t node[16], uint64_t id)
{
    brg_ref_t ref = {0, 0, id};
    for (int i = 0; i < 8; i++) {
        ref.node_hi = ref.node_hi << 8 | node[i];
        ref.node_lo = ref.node_lo << 8 | node[8 + i];
    }
    return ref;
}

static brg_ref_t
side_ref(int side, uint64_t id)
{
    return node_ref(side == 0 ? NODE_A : NODE_B, id);
}

static void
lb_send_frame(void *arg, bool inbound, const void *data, size_t len)
{
    lb_side_t *side = arg;
    if (QN == QCAP) {
        QCAP = QCAP ? QCAP * 2 : 64;
        Q = realloc(Q, QCAP * sizeof(*Q));
        ck_assert_ptr_nonnull(Q);
    }
    uint8_t *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, data, len);
    Q[QN++] = (lb_frame_t){side->idx, inbound, copy, len};
}

static void
lb_deliver(void *arg, const brg__remote_target_t *to, brg_msg_t **msgs, size_t n)
{
    lb_side_t *side = arg;
    if (side->sys) {
        brg__remote_deliver(side->sys, to, msgs, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (side->nlog == side->caplog) {
            side->caplog = side->caplog ? side->caplog * 2 : 256;
            side->log = realloc(side->log, side->caplog * sizeof(*side->log));
            ck_assert_ptr_nonnull(side->log);
        }
        lb_entry_t *e = &side->log[side->nlog++];
        memset(e, 0, sizeof(*e));
        e->to = to[i].id;
        if (to[i].name)
            snprintf(e->name, sizeof(e->name), "%s", to[i].name);
        e->msg = msgs[i];
        e->ending = side->ending;
        e->frame_no = side->deliver_calls;
        if (side->react && !side->ending)
            side->react(side, to[i].id, msgs[i]);
    }
    side->deliver_calls++;
}

static void
lb_up(void *arg)
{
    ((lb_side_t *)arg)->ups++;
}

static void
lb_ended(void *arg, brg__end_reason_t reason)
{
    lb_side_t *side = arg;
    side->endeds++;
    side->reason = reason;
}

static const brg__session_io_t IO = {lb_send_frame, lb_deliver, lb_up, lb_ended, NULL, NULL, NULL};

static void
lb_cfg(brg__session_cfg_t *cfg, const uint8_t node[16], const char *name)
{
    brg__session_cfg_default(cfg);
    memcpy(cfg->node, node, 16);
    snprintf(cfg->name, sizeof(cfg->name), "%s", name);
    snprintf(cfg->cluster, sizeof(cfg->cluster), "test");
    snprintf(cfg->ep, sizeof(cfg->ep), "inproc://%s", name);
    cfg->tick_ms = 100;
    cfg->timeout_ms = 1000;
    cfg->handshake_ms = 500;
}

static void
setup(void)
{
    memset(S, 0, sizeof(S));
    for (int i = 0; i < 2; i++)
        S[i].idx = i;
    lb_cfg(&S[0].cfg, NODE_A, "a");
    lb_cfg(&S[1].cfg, NODE_B, "b");
    S[0].cfg.sess = 0xaaaa;
    S[1].cfg.sess = 0xbbbb;
    brg__wire_limits_default(&LIMITS);
    QN = 0;
}

static void
teardown(void)
{
    for (int i = 0; i < 2; i++) {
        brg__session_destroy(&S[i].s);
        brg__session_destroy(&S[i].old);
        for (size_t k = 0; k < S[i].nlog; k++)
            brg_msg_destroy(&S[i].log[k].msg);
        free(S[i].log);
    }
    for (size_t k = 0; k < QN; k++)
        free(Q[k].data);
    free(Q);
    Q = NULL;
    QN = QCAP = 0;
}

//  Side 0 dials side 1.
static void
lb_start(void)
{
    S[0].s = brg__session_new(&S[0].cfg, &IO, &S[0], true, NOW);
    ck_assert_ptr_nonnull(S[0].s);
}

static lb_frame_t
lb_pop(void)
{
    ck_assert_uint_gt(QN, 0);
    lb_frame_t f = Q[0];
    memmove(Q, Q + 1, (QN - 1) * sizeof(*Q));
    QN--;
    return f;
}

static void
lb_drop_all(void)
{
    for (size_t k = 0; k < QN; k++)
        free(Q[k].data);
    QN = 0;
}

//  Hand frame f to the other side; returns what on_frame returned.
static int
lb_feed(lb_frame_t f)
{
    lb_side_t *dst = &S[1 - f.from];
    bool inbound = !f.inbound;
    int werr = 0;
    int rc = brg__wire_decode(f.data, f.len, &LIMITS, &FR, &werr);
    ck_assert_int_eq(rc, BRG_OK);
    if (!dst->s) {
        dst->s = brg__session_new(&dst->cfg, &IO, dst, false, NOW);
        ck_assert_ptr_nonnull(dst->s);
    }
    rc = brg__session_on_frame(dst->s, &FR, inbound, NOW);
    if (rc == BRG_EEXIST) {
        // Replaced: the owner starts a new session from the same HELLO.
        ck_assert_ptr_null(dst->old);
        dst->old = dst->s;
        dst->s = brg__session_new(&dst->cfg, &IO, dst, false, NOW);
        ck_assert_ptr_nonnull(dst->s);
        rc = brg__session_on_frame(dst->s, &FR, inbound, NOW);
    }
    return rc;
}

//  Deliver the oldest frame in flight; returns what on_frame returned.
static int
lb_step(void)
{
    lb_frame_t f = lb_pop();
    int rc = lb_feed(f);
    free(f.data);
    return rc;
}

static void
lb_flush(void)
{
    for (int i = 0; i < 2; i++)
        if (S[i].s)
            brg__session_flush(S[i].s);
}

//  Deliver every frame in flight (and those they cause).
static void
lb_run(void)
{
    lb_flush();
    while (QN > 0) {
        lb_frame_t f = lb_pop();
        lb_feed(f);
        free(f.data);
        lb_flush();
    }
}

//  Advance the clock by ms in steps of step_ms, running both timers and
//  (if deliver) every frame in flight after each step.
static void
lb_advance(uint64_t ms, uint64_t step_ms, bool deliver)
{
    for (uint64_t t = 0; t < ms; t += step_ms) {
        NOW += step_ms * MS;
        for (int i = 0; i < 2; i++)
            if (S[i].s)
                brg__session_timer(S[i].s, NOW);
        if (deliver)
            lb_run();
    }
}

static void
lb_handshake(void)
{
    lb_start();
    lb_run();
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_UP);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
}

//  A message from side `from`'s actor sid to side 1-from's actor tid.
static brg_msg_t *
mk(int kind, int from, uint64_t sid, uint64_t corr, const char *tag)
{
    brg_msg_t *m = brg_msg_new(tag);
    ck_assert_ptr_nonnull(m);
    m->kind = (uint8_t)kind;
    m->sender = sid ? side_ref(from, sid) : BRG_REF_NONE;
    m->corr = corr;
    return m;
}

static int
push(int from, uint64_t tid, brg_msg_t *m)
{
    brg_msg_t *msg = m;
    int rc = brg__session_push(S[from].s, side_ref(1 - from, tid), NULL, &msg);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return rc;
}

static void
push_send(int from, uint64_t sid, uint64_t tid, int64_t seq)
{
    brg_msg_t *m = mk(BRG__MSG_USER, from, sid, 0, "data");
    ck_assert_int_eq(brg_msg_add_int(m, seq), BRG_OK);
    ck_assert_int_eq(push(from, tid, m), BRG_OK);
}

static void
push_ctl(int from, int kind, uint64_t sid, uint64_t tid, uint64_t corr)
{
    const char *tag = kind == BRG__MSG_SYS_DOWN ? BRG_TAG_DOWN : BRG_TAG_EXIT;
    brg_msg_t *m = mk(kind, from, sid, corr, tag);
    if (kind == BRG__MSG_SYS_DOWN)
        ck_assert_int_eq(brg_msg_add_uint(m, corr), BRG_OK);
    if (kind == BRG__MSG_SYS_EXIT || kind == BRG__MSG_SYS_DOWN) {
        ck_assert_int_eq(brg_msg_add_int(m, BRG_EXIT_FAILED), BRG_OK);
        ck_assert_int_eq(brg_msg_add_int(m, 0), BRG_OK);
        ck_assert_int_eq(brg_msg_add_str(m, ""), BRG_OK);
    }
    ck_assert_int_eq(push(from, tid, m), BRG_OK);
}

static void
push_ask(int from, uint64_t sid, uint64_t tid, uint64_t corr)
{
    ck_assert_int_eq(push(from, tid, mk(BRG__MSG_USER, from, sid, corr, "ask")), BRG_OK);
}

static void
push_reply(int from, uint64_t sid, uint64_t tid, uint64_t corr)
{
    brg_msg_t *m = mk(BRG__MSG_REPLY, from, sid, corr, "answer");
    ck_assert_int_eq(brg_msg_add_uint(m, corr), BRG_OK);
    ck_assert_int_eq(push(from, tid, m), BRG_OK);
}

static brg__session_stats_t
stats(int side)
{
    brg__session_stats_t st;
    brg__session_stats(S[side].s, &st);
    return st;
}

//  End side i with reason, as the test's owner (answers flagged `ending`).
static void
lb_end(int i, brg__end_reason_t reason)
{
    S[i].ending = true;
    brg__session_end(S[i].s, reason);
    S[i].ending = false;
}

//  The exit reason kind of an EXIT or DOWN message, read as an actor
//  reads it (brg_msg_read_exit / brg_msg_read_down).
static int
reason_kind(const brg_msg_t *m)
{
    brg_ref_t from;
    brg_exit_reason_t reason;
    uint64_t mon;
    if (m->kind == BRG__MSG_SYS_DOWN) {
        ck_assert_int_eq(brg_msg_read_down(m, &from, &mon, &reason), BRG_OK);
        ck_assert_uint_eq(mon, m->corr);
    } else {
        ck_assert_int_eq(brg_msg_read_exit(m, &from, &reason), BRG_OK);
    }
    ck_assert(brg_ref_eq(from, m->sender));
    return (int)reason.kind;
}

//  How many log entries of side i match (kind, to, from id, corr); corr
//  UINT64_MAX matches any.
static int
count(int i, int kind, uint64_t to, uint64_t from, uint64_t corr)
{
    int n = 0;
    for (size_t k = 0; k < S[i].nlog; k++) {
        const brg_msg_t *m = S[i].log[k].msg;
        if (m->kind == kind && S[i].log[k].to == to && m->sender.id == from &&
            (corr == UINT64_MAX || m->corr == corr))
            n++;
    }
    return n;
}

//  The code of the first ERROR frame side `from` has in flight (0: none);
//  take removes it from the queue.
static int
find_error(int from, bool take)
{
    for (size_t k = 0; k < QN; k++) {
        if (Q[k].from != from)
            continue;
        int werr = 0;
        ck_assert_int_eq(brg__wire_decode(Q[k].data, Q[k].len, &LIMITS, &FR, &werr), BRG_OK);
        if (FR.type != BRG__FRAME_ERROR)
            continue;
        int code = FR.code;
        if (take) {
            free(Q[k].data);
            memmove(Q + k, Q + k + 1, (QN - k - 1) * sizeof(*Q));
            QN--;
        }
        return code;
    }
    return 0;
}

static int
take_error(int from)
{
    return find_error(from, true);
}

static int
peek_error(int from)
{
    return find_error(from, false);
}

//  ---------------------------------------------------------------------------
//  Handshake.

START_TEST(test_session_handshake_brings_both_sides_up_once)
{
    lb_handshake();
    ck_assert_int_eq(S[0].ups, 1);
    ck_assert_int_eq(S[1].ups, 1);
    ck_assert_int_eq(S[0].endeds + S[1].endeds, 0);
    brg_ref_t pa = brg__session_peer_node(S[0].s);
    ck_assert(pa.node_hi == side_ref(1, 0).node_hi && pa.node_lo == side_ref(1, 0).node_lo);
    ck_assert_uint_eq(pa.id, 0);
    ck_assert_str_eq(brg__session_peer(S[0].s)->name, "b");
    ck_assert_str_eq(brg__session_peer(S[1].s)->name, "a");
    ck_assert_uint_eq(brg__session_peer(S[1].s)->sess, 0xaaaa);
    ck_assert_uint_eq(brg__session_peer(S[0].s)->sess, 0xbbbb);
    // Each side sent HELLO and WELCOME, nothing else.
    ck_assert_uint_eq(stats(0).frames_out, 2);
    ck_assert_uint_eq(stats(1).frames_out, 2);
}
END_TEST

START_TEST(test_session_simultaneous_dials_bring_both_up_with_one_hello_each)
{
    lb_start();
    S[1].s = brg__session_new(&S[1].cfg, &IO, &S[1], true, NOW); // B dials A meanwhile
    ck_assert_ptr_nonnull(S[1].s);
    lb_run();
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_UP);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    ck_assert_int_eq(S[0].ups + S[1].ups, 2);
    ck_assert_uint_eq(stats(0).frames_out, 2); // its HELLO, its WELCOME
    ck_assert_uint_eq(stats(1).frames_out, 2);
    push_send(1, 1, 1, 1);
    lb_run();
    ck_assert_uint_eq(S[0].nlog, 1);
}
END_TEST

START_TEST(test_session_handshake_refuses_another_version_with_error_1)
{
    lb_start();
    lb_frame_t f = lb_pop();
    // [1, 0, {...}]: the version is the byte after the array header.
    ck_assert_uint_eq(f.data[1], 1);
    f.data[1] = 2;
    S[1].s = brg__session_new(&S[1].cfg, &IO, &S[1], false, NOW);
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, f.data, f.len, true, NOW), BRG_EPROTO);
    free(f.data);
    ck_assert_int_eq(S[1].reason, BRG__END_PROTOCOL);
    ck_assert_int_eq(QN, 1);
    ck_assert(Q[0].inbound); // answered on the connection the HELLO came on
    lb_run();
    ck_assert_int_eq(S[0].endeds, 1);
    ck_assert_int_eq(S[0].reason, BRG__END_PROTOCOL);
    ck_assert_int_eq(S[0].ups + S[1].ups, 0);
}
END_TEST

START_TEST(test_session_handshake_answers_version_error_code)
{
    lb_start();
    lb_frame_t f = lb_pop();
    f.data[1] = 2;
    S[1].s = brg__session_new(&S[1].cfg, &IO, &S[1], false, NOW);
    brg__session_on_bytes(S[1].s, f.data, f.len, true, NOW);
    free(f.data);
    ck_assert_int_eq(take_error(1), BRG__WERR_VERSION);
}
END_TEST

START_TEST(test_session_handshake_refuses_another_cluster)
{
    snprintf(S[1].cfg.cluster, sizeof(S[1].cfg.cluster), "other");
    lb_start();
    lb_step();
    ck_assert_int_eq(S[1].reason, BRG__END_PROTOCOL);
    ck_assert_int_eq(take_error(1), BRG__WERR_NOT_ALLOWED);
    ck_assert_int_eq(QN, 0); // no WELCOME, no reverse HELLO
    ck_assert_int_eq(S[0].ups + S[1].ups, 0);
}
END_TEST

START_TEST(test_session_handshake_refuses_a_connection_to_itself)
{
    memcpy(S[1].cfg.node, NODE_A, 16);
    lb_start();
    lb_step();
    ck_assert_int_eq(S[1].reason, BRG__END_PROTOCOL);
    ck_assert_int_eq(take_error(1), BRG__WERR_SELF);
}
END_TEST

START_TEST(test_session_handshake_times_out_without_welcome)
{
    lb_start();
    lb_drop_all();
    lb_advance(S[0].cfg.handshake_ms - 10, 10, false);
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_CONNECTING);
    lb_advance(10, 10, false);
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_ENDED);
    ck_assert_int_eq(S[0].reason, BRG__END_TIMEOUT);
}
END_TEST

START_TEST(test_session_acceptor_times_out_when_its_hello_is_not_welcomed)
{
    lb_start();
    lb_step(); // B takes A's HELLO: WELCOME and B's HELLO in flight
    lb_drop_all();
    lb_advance(S[1].cfg.handshake_ms, 10, false);
    ck_assert_int_eq(S[1].reason, BRG__END_TIMEOUT);
}
END_TEST

START_TEST(test_session_welcome_without_the_reverse_hello_is_not_up_and_times_out)
{
    lb_start();
    lb_step(); // B takes A's HELLO: its WELCOME and its own HELLO are in flight
    ck_assert_int_eq(QN, 2);
    lb_frame_t welcome = lb_pop(), hello = lb_pop();
    free(hello.data); // B's HELLO is lost
    lb_feed(welcome);
    free(welcome.data);
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_CONNECTING);
    lb_advance(S[0].cfg.handshake_ms, 10, true);
    ck_assert_int_eq(S[0].reason, BRG__END_TIMEOUT);
    ck_assert_int_eq(S[1].reason, BRG__END_TIMEOUT);
    ck_assert_int_eq(S[0].ups + S[1].ups, 0);
}
END_TEST

START_TEST(test_session_batch_before_hello_is_answered_no_session)
{
    lb_handshake();
    push_send(0, 1, 1, 1);
    lb_flush();
    lb_frame_t f = lb_pop();
    // A fresh acceptor that never saw a HELLO gets this BATCH.
    brg__session_t *fresh = brg__session_new(&S[1].cfg, &IO, &S[1], false, NOW);
    ck_assert_int_eq(brg__session_on_bytes(fresh, f.data, f.len, true, NOW), BRG_EPROTO);
    free(f.data);
    ck_assert_int_eq(take_error(1), BRG__WERR_NO_SESSION);
    ck_assert_int_eq(S[1].nlog, 0);
    brg__session_destroy(&fresh);
}
END_TEST

START_TEST(test_session_malformed_bytes_are_answered_error_3)
{
    lb_handshake();
    const uint8_t junk[] = {0x93, 0x01, 0x02, 0xc1};
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, junk, sizeof(junk), true, NOW), BRG_EPROTO);
    ck_assert_int_eq(take_error(1), BRG__WERR_MALFORMED);
    ck_assert_int_eq(S[1].reason, BRG__END_PROTOCOL);
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, junk, sizeof(junk), true, NOW), BRG_ENETWORK);
}
END_TEST

//  A client: one connection, our frames back through the inbox.
static void
client_hello(brg__wbuf_t *out, uint64_t sess)
{
    brg__hello_t h;
    memset(&h, 0, sizeof(h));
    memcpy(h.node, NODE_A, 16);
    h.sess = sess;
    h.client = true;
    snprintf(h.name, sizeof(h.name), "py");
    snprintf(h.cluster, sizeof(h.cluster), "test");
    ck_assert_int_eq(brg__wire_encode_hello(out, BRG__FRAME_HELLO, &h), BRG_OK);
}

START_TEST(test_session_client_is_up_after_its_hello_and_gets_frames_through_the_inbox)
{
    brg__wbuf_t w = {0};
    client_hello(&w, 77);
    S[1].s = brg__session_new(&S[1].cfg, &IO, &S[1], false, NOW);
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, w.data, w.size, true, NOW), BRG_OK);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    ck_assert_int_eq(QN, 1); // WELCOME only: no HELLO toward a client
    ck_assert(Q[0].inbound);
    lb_drop_all();
    // The client asks a named actor.
    brg__wbuf_reset(&w);
    brg_msg_t *req = mk(BRG__MSG_USER, 0, 5, 9, "greet");
    ck_assert_int_eq(brg__wire_batch_begin(&w, 1), BRG_OK);
    ck_assert_int_eq(brg__wire_batch_add(&w, node_ref(NODE_A, 0), BRG_REF_NONE, "echo", req),
                     BRG_OK);
    ck_assert_int_eq(brg__wire_batch_end(&w), BRG_OK);
    brg_msg_destroy(&req);
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, w.data, w.size, true, NOW), BRG_OK);
    ck_assert_int_eq(S[1].nlog, 1);
    ck_assert_str_eq(S[1].log[0].name, "echo");
    ck_assert_uint_eq(S[1].log[0].msg->corr, 9);
    ck_assert(brg_ref_eq(S[1].log[0].msg->sender, side_ref(0, 5)));
    // The reply goes back through the inbox; no TICKs to a client.
    push_reply(1, 3, 5, 9);
    lb_flush();
    ck_assert_int_eq(QN, 1);
    ck_assert(Q[0].inbound);
    lb_drop_all();
    lb_advance(5 * S[1].cfg.tick_ms, S[1].cfg.tick_ms, false);
    ck_assert_int_eq(QN, 0);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    // A client may not link: the frame is refused whole.
    brg__wbuf_reset(&w);
    ck_assert_int_eq(brg__wire_batch_begin(&w, 2), BRG_OK);
    brg_msg_t *m = mk(BRG__MSG_USER, 0, 5, 0, "x");
    ck_assert_int_eq(brg__wire_batch_add(&w, node_ref(NODE_A, 0), side_ref(1, 3), NULL, m), BRG_OK);
    brg_msg_destroy(&m);
    m = mk(BRG__MSG_SYS_LINK, 0, 5, 0, "brg.link");
    ck_assert_int_eq(brg__wire_batch_add(&w, node_ref(NODE_A, 0), side_ref(1, 3), NULL, m), BRG_OK);
    brg_msg_destroy(&m);
    ck_assert_int_eq(brg__wire_batch_end(&w), BRG_OK);
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, w.data, w.size, true, NOW), BRG_EPROTO);
    ck_assert_int_eq(take_error(1), BRG__WERR_NOT_ALLOWED);
    ck_assert_int_eq(S[1].nlog, 1); // the SEND before the LINK was not delivered either
    brg__wbuf_free(&w);
}
END_TEST

//  A message with a trace context: both nodes said "trace", so it arrives
//  with it; a client (whose HELLO says no "trace") gets 1.0 envelopes.
static brg_msg_t *
mk_traced(int kind, int from, uint64_t sid, uint64_t corr, const char *tag)
{
    brg_msg_t *m = mk(kind, from, sid, corr, tag);
    m->trace_flags = BRG__TRACE_PRESENT | BRG_TRACE_SAMPLED;
    for (int i = 0; i < 24; i++)
        m->trace_ids[i] = (uint8_t)(0x40 + i);
    return m;
}

START_TEST(test_session_trace_context_only_to_a_peer_that_said_trace)
{
    lb_handshake();
    ck_assert(brg__session_peer(S[0].s)->trace && brg__session_peer(S[1].s)->trace);
    ck_assert_int_eq(push(0, 3, mk_traced(BRG__MSG_USER, 0, 1, 0, "data")), BRG_OK);
    lb_run();
    ck_assert_uint_eq(S[1].nlog, 1);
    brg_trace_ctx_t tc;
    ck_assert(brg_msg_trace(S[1].log[0].msg, &tc));
    ck_assert_uint_eq(tc.trace_id[0], 0x40);
    ck_assert_uint_eq(tc.span_id[7], 0x40 + 23);
    ck_assert_uint_eq(tc.flags, BRG_TRACE_SAMPLED);
    lb_drop_all();
    // A client's session: the reply to it carries no ext map.
    brg__wbuf_t w = {0};
    client_hello(&w, 78);
    brg__session_t *cs = brg__session_new(&S[1].cfg, &IO, &S[1], false, NOW);
    ck_assert_int_eq(brg__session_on_bytes(cs, w.data, w.size, true, NOW), BRG_OK);
    ck_assert(!brg__session_peer(cs)->trace);
    lb_drop_all();
    brg_msg_t *r = mk_traced(BRG__MSG_REPLY, 1, 3, 9, "answer");
    ck_assert_int_eq(brg__session_push(cs, node_ref(NODE_A, 5), NULL, &r), BRG_OK);
    brg__session_flush(cs);
    ck_assert_int_eq(QN, 1);
    int werr = 0;
    ck_assert_int_eq(brg__wire_decode(Q[0].data, Q[0].len, &LIMITS, &FR, &werr), BRG_OK);
    brg__env_t env;
    ck_assert_int_eq(brg__wire_next_env(&FR, &env), BRG_OK);
    ck_assert_ptr_null(env.trace_ids);
    lb_drop_all();
    brg__session_destroy(&cs);
    brg__wbuf_free(&w);
}
END_TEST

START_TEST(test_session_client_session_ends_after_client_idle)
{
    S[1].cfg.client_idle_ms = 3000;
    brg__wbuf_t w = {0};
    client_hello(&w, 77);
    S[1].s = brg__session_new(&S[1].cfg, &IO, &S[1], false, NOW);
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, w.data, w.size, true, NOW), BRG_OK);
    brg__wbuf_free(&w);
    lb_drop_all();
    lb_advance(2900, 100, false);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    lb_advance(100, 100, false);
    ck_assert_int_eq(S[1].reason, BRG__END_TIMEOUT);
}
END_TEST

START_TEST(test_session_new_hello_from_same_node_replaces_the_session)
{
    lb_handshake();
    // B's actor 1 is linked with A's actor 1; A's actor 2 asked B's 2.
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 1, 0);
    push_send(0, 1, 1, 1);
    lb_run();
    ck_assert_uint_eq(stats(1).links, 1);
    // A (same node) starts a new session with a new id.
    brg__session_destroy(&S[0].s);
    S[0].cfg.sess = 0xa2a2;
    lb_start();
    lb_run();
    ck_assert_ptr_nonnull(S[1].old);
    ck_assert_int_eq(brg__session_state(S[1].old), BRG__SESS_ENDED);
    ck_assert_int_eq(S[1].reason, BRG__END_REPLACED);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    ck_assert_uint_eq(brg__session_peer(S[1].s)->sess, 0xa2a2);
    // The old session's link was answered once, after the data it delivered.
    ck_assert_int_eq(count(1, BRG__MSG_SYS_EXIT, 1, 1, UINT64_MAX), 1);
    ck_assert_uint_eq(S[1].nlog, 3);
    ck_assert_int_eq(S[1].log[0].msg->kind, BRG__MSG_SYS_LINK);
    ck_assert_int_eq(S[1].log[1].msg->kind, BRG__MSG_USER);
    ck_assert_int_eq(S[1].log[2].msg->kind, BRG__MSG_SYS_EXIT);
    ck_assert_int_eq(S[1].ups, 2);
    ck_assert_int_eq(S[0].ups, 2); // the old A session, then the new one
    ck_assert_uint_eq(stats(1).links, 0);
}
END_TEST

START_TEST(test_session_duplicate_hello_with_same_id_is_a_protocol_error)
{
    lb_start();
    lb_frame_t f = lb_pop();
    lb_frame_t dup = f;
    dup.data = malloc(f.len);
    memcpy(dup.data, f.data, f.len);
    lb_feed(f);
    free(f.data);
    lb_drop_all();
    lb_feed(dup);
    free(dup.data);
    ck_assert_int_eq(S[1].reason, BRG__END_PROTOCOL);
    ck_assert_int_eq(take_error(1), BRG__WERR_MALFORMED);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Data: order, batching, sequence.

START_TEST(test_session_long_stream_arrives_in_order_in_full_batches)
{
    lb_handshake();
    const int n = 100000;
    uint64_t frames0 = stats(0).frames_out;
    for (int i = 1; i <= n; i++)
        push_send(0, 1 + (uint64_t)(i % 3), 7, i);
    lb_run();
    ck_assert_uint_eq(S[1].nlog, (size_t)n);
    for (int i = 1; i <= n; i++) {
        const lb_entry_t *e = &S[1].log[i - 1];
        int64_t v;
        size_t pos = 0;
        ck_assert_int_eq(brg_msg_read_int(e->msg, &pos, &v), BRG_OK);
        ck_assert_int_eq(v, i);
        ck_assert_uint_eq(e->to, 7);
        ck_assert_uint_eq(e->msg->sender.id, 1 + (uint64_t)(i % 3));
    }
    // 1024 envelopes per BATCH (these are small): ceil(n / 1024) frames.
    uint64_t frames = stats(0).frames_out - frames0;
    ck_assert_uint_eq(frames, (n + 1023) / 1024);
    ck_assert_uint_eq(stats(0).msgs_out, (uint64_t)n);
    ck_assert_uint_eq(stats(1).msgs_in, (uint64_t)n);
}
END_TEST

START_TEST(test_session_batch_is_sealed_at_64_kib_and_a_big_message_goes_alone)
{
    lb_handshake();
    char blob[10000];
    memset(blob, 'x', sizeof(blob));
    for (int i = 0; i < 20; i++) {
        brg_msg_t *m = mk(BRG__MSG_USER, 0, 1, 0, "blob");
        ck_assert_int_eq(brg_msg_add_bin(m, blob, sizeof(blob)), BRG_OK);
        ck_assert_int_eq(push(0, 2, m), BRG_OK);
    }
    brg_msg_t *big = mk(BRG__MSG_USER, 0, 1, 0, "big");
    char *huge = calloc(1, 200000);
    ck_assert_int_eq(brg_msg_add_bin(big, huge, 200000), BRG_OK);
    free(huge);
    ck_assert_int_eq(push(0, 2, big), BRG_OK);
    push_send(0, 1, 2, 1);
    lb_flush();
    // Frames: 6 of <= 64 KiB + the rest, the big one alone, then the last.
    size_t big_frames = 0;
    for (size_t k = 0; k < QN; k++) {
        if (Q[k].len > 64 * 1024 + 11000)
            big_frames++;
        if (Q[k].len > 100000) {
            ck_assert_int_eq(brg__wire_decode(Q[k].data, Q[k].len, &LIMITS, &FR, &(int){0}),
                             BRG_OK);
            ck_assert_uint_eq(FR.count, 1);
        }
    }
    ck_assert_uint_eq(big_frames, 1);
    ck_assert_uint_ge(QN, 4);
    lb_run();
    ck_assert_uint_eq(S[1].nlog, 22);
    ck_assert_str_eq(brg_msg_tag(S[1].log[20].msg), "big");
    ck_assert_str_eq(brg_msg_tag(S[1].log[21].msg), "data");
}
END_TEST

START_TEST(test_session_sequence_gap_ends_with_error_2_and_delivers_nothing_after_it)
{
    lb_handshake();
    for (int f = 1; f <= 3; f++) {
        push_send(0, 1, 1, f);
        lb_flush();
    }
    ck_assert_int_eq(QN, 3);
    lb_frame_t first = lb_pop();
    lb_feed(first);
    free(first.data);
    lb_frame_t lost = lb_pop(); // frame 2 vanishes
    free(lost.data);
    lb_frame_t third = lb_pop();
    ck_assert_int_eq(lb_feed(third), BRG_EPROTO);
    free(third.data);
    ck_assert_int_eq(S[1].reason, BRG__END_PROTOCOL);
    ck_assert_uint_eq(S[1].nlog, 1);
    ck_assert_int_eq(QN, 1);
    ck_assert_int_eq(peek_error(1), BRG__WERR_SEQUENCE);
    // The ERROR reaches A, which ends too; its 3 messages were never acked.
    lb_run();
    ck_assert_int_eq(S[0].reason, BRG__END_PROTOCOL);
    brg__session_stats_t st = stats(0);
    ck_assert_uint_eq(st.msgs_out, 3);
    ck_assert_uint_eq(st.msgs_acked + st.lost_in_flight, st.msgs_out);
    ck_assert_uint_eq(st.lost_in_flight, 3);
}
END_TEST

START_TEST(test_session_duplicated_or_reordered_batch_ends_it_without_a_second_delivery)
{
    lb_handshake();
    push_send(0, 1, 1, 1);
    lb_flush();
    push_send(0, 1, 1, 2);
    lb_flush();
    ck_assert_int_eq(QN, 2);
    // Reordered: frame 2 first is a gap.
    lb_frame_t first = lb_pop(), second = lb_pop();
    ck_assert_int_eq(lb_feed(second), BRG_EPROTO);
    ck_assert_uint_eq(S[1].nlog, 0);
    ck_assert_int_eq(take_error(1), BRG__WERR_SEQUENCE);
    free(first.data);
    free(second.data);
    // Duplicated (a new pair of sessions): frame 1 twice.
    teardown();
    setup();
    lb_handshake();
    push_send(0, 1, 1, 1);
    lb_flush();
    lb_frame_t f = lb_pop();
    lb_frame_t dup = {f.from, f.inbound, malloc(f.len), f.len};
    memcpy(dup.data, f.data, f.len);
    ck_assert_int_eq(lb_feed(f), BRG_OK);
    ck_assert_int_eq(lb_feed(dup), BRG_EPROTO);
    free(f.data);
    free(dup.data);
    ck_assert_uint_eq(S[1].nlog, 1);
    ck_assert_int_eq(S[1].reason, BRG__END_PROTOCOL);
    ck_assert_int_eq(take_error(1), BRG__WERR_SEQUENCE);
}
END_TEST

START_TEST(test_session_tick_acking_a_frame_never_sent_is_a_sequence_error)
{
    lb_handshake();
    brg__wbuf_t w = {0};
    ck_assert_int_eq(brg__wire_encode_tick(&w, 5), BRG_OK);
    ck_assert_int_eq(brg__session_on_bytes(S[0].s, w.data, w.size, true, NOW), BRG_EPROTO);
    brg__wbuf_free(&w);
    ck_assert_int_eq(take_error(0), BRG__WERR_SEQUENCE);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Liveness.

START_TEST(test_session_ticks_keep_it_alive_and_ack_what_arrived)
{
    lb_handshake();
    for (int i = 1; i <= 10; i++)
        push_send(0, 1, 1, i);
    lb_advance(10 * S[0].cfg.timeout_ms, 50, true);
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_UP);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    ck_assert_uint_eq(stats(0).msgs_acked, 10);
    // About one TICK per tick_ms each way.
    uint64_t ticks = stats(1).frames_out - 2;
    ck_assert_uint_ge(ticks, 10 * S[0].cfg.timeout_ms / S[0].cfg.tick_ms - 2);
    ck_assert_uint_le(ticks, 10 * S[0].cfg.timeout_ms / S[0].cfg.tick_ms + 2);
}
END_TEST

START_TEST(test_session_silence_ends_it_with_timeout_within_timeout_plus_tick)
{
    lb_handshake();
    uint64_t last_heard = NOW;
    // From now on nothing B sends reaches A.
    uint64_t ended_at = 0;
    for (int step = 0; step < 1000 && S[0].endeds == 0; step++) {
        NOW += 10 * MS;
        brg__session_timer(S[0].s, NOW);
        brg__session_timer(S[1].s, NOW);
        for (size_t k = 0; k < QN;) {
            if (Q[k].from == 1) {
                free(Q[k].data);
                memmove(Q + k, Q + k + 1, (QN - k - 1) * sizeof(*Q));
                QN--;
            } else {
                k++;
            }
        }
        if (S[0].endeds)
            ended_at = NOW;
    }
    ck_assert_int_eq(S[0].reason, BRG__END_TIMEOUT);
    ck_assert_uint_ge(ended_at - last_heard, (uint64_t)S[0].cfg.timeout_ms * MS);
    ck_assert_uint_le(ended_at - last_heard,
                      (uint64_t)(S[0].cfg.timeout_ms + S[0].cfg.tick_ms) * MS);
}
END_TEST

//  A peer that announces a huge timeout (days) does not switch A's silence
//  detection off: A waits at most 10 times its own timeout.
START_TEST(test_session_a_peers_huge_timeout_is_capped_at_ten_times_ours)
{
    S[1].cfg.timeout_ms = 4000000000u; // about 46 days
    lb_handshake();
    uint64_t last_heard = NOW;
    uint64_t ended_at = 0;
    for (int step = 0; step < 3000 && S[0].endeds == 0; step++) {
        NOW += 10 * MS;
        brg__session_timer(S[0].s, NOW);
        for (size_t k = 0; k < QN; k++)
            free(Q[k].data);
        QN = 0; // nothing of B's reaches A
        if (S[0].endeds)
            ended_at = NOW;
    }
    ck_assert_int_eq(S[0].reason, BRG__END_TIMEOUT);
    ck_assert_uint_ge(ended_at - last_heard, 10ull * S[0].cfg.timeout_ms * MS);
    ck_assert_uint_le(ended_at - last_heard, (10ull * S[0].cfg.timeout_ms + 20) * MS);
}
END_TEST

START_TEST(test_session_timer_returns_the_next_deadline)
{
    lb_handshake();
    uint64_t next = brg__session_timer(S[0].s, NOW);
    ck_assert_uint_eq(next, NOW + S[0].cfg.tick_ms * MS);
    NOW = next;
    next = brg__session_timer(S[0].s, NOW); // sends the TICK
    ck_assert_uint_eq(next, NOW + S[0].cfg.tick_ms * MS);
    ck_assert_int_eq(QN, 1);
}
END_TEST

START_TEST(test_session_bye_flushes_then_ends_both_sides)
{
    lb_handshake();
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 1, 0);
    lb_run();
    for (int i = 1; i <= 5; i++)
        push_send(0, 1, 1, i);
    brg__session_end(S[0].s, BRG__END_LOCAL); // no explicit flush
    ck_assert_int_eq(S[0].reason, BRG__END_LOCAL);
    lb_run();
    ck_assert_int_eq(S[1].reason, BRG__END_BYE);
    ck_assert_int_eq(count(1, BRG__MSG_USER, 1, 1, 0), 5);
    // B's link to A's actor is answered noconnection, after the 5 messages.
    ck_assert_int_eq(count(1, BRG__MSG_SYS_EXIT, 1, 1, 0), 1);
    ck_assert_int_eq(S[1].log[S[1].nlog - 1].msg->kind, BRG__MSG_SYS_EXIT);
    ck_assert_uint_eq(stats(0).dead_on_end, 0);
    brg_msg_t *late = mk(BRG__MSG_USER, 0, 1, 0, "late");
    ck_assert_int_eq(brg__session_push(S[0].s, side_ref(1, 1), NULL, &late), BRG_ENETWORK);
    ck_assert_ptr_nonnull(late); // given back for the caller's dead letter
    brg_msg_destroy(&late);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Tables.

START_TEST(test_session_end_answers_every_table_entry_exactly_once)
{
    lb_handshake();
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 11, 0);    // A1 links B11
    push_ctl(0, BRG__MSG_SYS_MONITOR, 2, 12, 5); // A2 watches B12 (mon 5)
    push_ask(0, 3, 13, 77);                      // A3 asks B13
    push_ctl(1, BRG__MSG_SYS_LINK, 14, 4, 0);    // B14 links A4
    push_ctl(1, BRG__MSG_SYS_MONITOR, 15, 5, 6); // B15 watches A5 (mon 6)
    lb_run();
    brg__session_stats_t a = stats(0), b = stats(1);
    ck_assert_uint_eq(a.links, 2);
    ck_assert_uint_eq(a.watching, 1);
    ck_assert_uint_eq(a.watched, 1);
    ck_assert_uint_eq(a.asks, 1);
    ck_assert_uint_eq(b.links, 2);
    ck_assert_uint_eq(b.watching, 1);
    ck_assert_uint_eq(b.watched, 1);
    ck_assert_uint_eq(b.asks, 0);
    size_t before = S[0].nlog;
    lb_end(0, BRG__END_CLOSED);
    ck_assert_uint_eq(S[0].nlog - before, 5);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_EXIT, 1, 11, 0), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_EXIT, 4, 14, 0), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DOWN, 2, 12, 5), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DEMONITOR, 5, 15, 6), 1);
    ck_assert_int_eq(count(0, BRG__MSG_REPLY_ERROR, 3, 0, 77), 1);
    for (size_t k = before; k < S[0].nlog; k++) {
        const brg_msg_t *m = S[0].log[k].msg;
        ck_assert(S[0].log[k].ending);
        ck_assert(m->sender.node_hi == side_ref(1, 0).node_hi &&
                  m->sender.node_lo == side_ref(1, 0).node_lo);
        if (m->kind == BRG__MSG_SYS_EXIT || m->kind == BRG__MSG_SYS_DOWN)
            ck_assert_int_eq(reason_kind(m), BRG_EXIT_NOCONNECTION);
        if (m->kind == BRG__MSG_REPLY_ERROR)
            ck_assert_int_eq(m->status, BRG_ENETWORK);
        if (m->kind == BRG__MSG_SYS_DOWN)
            ck_assert_str_eq(brg_msg_tag(m), BRG_TAG_DOWN);
        if (m->kind == BRG__MSG_SYS_DEMONITOR || m->kind == BRG__MSG_REPLY_ERROR)
            ck_assert_uint_eq(brg_msg_size(m), 0); // as the runtime builds them
    }
    a = stats(0);
    ck_assert_uint_eq(a.links + a.watching + a.watched + a.asks, 0);
    // B's side, ended later, answers its own entries.
    lb_end(1, BRG__END_CLOSED);
    ck_assert_int_eq(count(1, BRG__MSG_SYS_EXIT, 11, 1, 0), 1);
    ck_assert_int_eq(count(1, BRG__MSG_SYS_EXIT, 14, 4, 0), 1);
    ck_assert_int_eq(count(1, BRG__MSG_SYS_DOWN, 15, 5, 6), 1);
    ck_assert_int_eq(count(1, BRG__MSG_SYS_DEMONITOR, 12, 2, 5), 1);
    // Ending again answers nothing more.
    size_t after = S[0].nlog;
    lb_end(0, BRG__END_LOCAL);
    ck_assert_uint_eq(S[0].nlog, after);
    ck_assert_int_eq(S[0].endeds, 1);
}
END_TEST

START_TEST(test_session_entries_removed_by_their_closing_signals_are_not_answered)
{
    lb_handshake();
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 11, 0);
    push_ctl(0, BRG__MSG_SYS_LINK, 2, 12, 0);
    push_ctl(0, BRG__MSG_SYS_MONITOR, 3, 13, 5);
    push_ctl(0, BRG__MSG_SYS_MONITOR, 4, 14, 6);
    push_ask(0, 5, 15, 77);
    push_ask(0, 6, 16, 78);
    push_ctl(1, BRG__MSG_SYS_MONITOR, 17, 7, 8); // B17 watches A7
    push_ctl(1, BRG__MSG_SYS_MONITOR, 18, 8, 9); // B18 watches A8
    push_ctl(1, BRG__MSG_SYS_LINK, 19, 9, 0);    // B19 links A9
    lb_run();
    push_ctl(0, BRG__MSG_SYS_UNLINK, 1, 11, 0);    // out UNLINK
    push_ctl(1, BRG__MSG_SYS_EXIT, 12, 2, 0);      // in EXIT
    push_ctl(0, BRG__MSG_SYS_DEMONITOR, 3, 13, 5); // out DEMONITOR
    push_ctl(1, BRG__MSG_SYS_DOWN, 14, 4, 6);      // in DOWN
    push_reply(1, 15, 5, 77);                      // in REPLY
    brg_msg_t *e = mk(BRG__MSG_REPLY_ERROR, 1, 16, 78, "brg.error");
    e->status = BRG_ENOACTOR;
    ck_assert_int_eq(push(1, 6, e), BRG_OK);       // in REPLY_ERROR
    push_ctl(0, BRG__MSG_SYS_DOWN, 7, 17, 8);      // out DOWN
    push_ctl(1, BRG__MSG_SYS_DEMONITOR, 18, 8, 9); // in DEMONITOR
    push_ctl(0, BRG__MSG_SYS_EXIT, 9, 19, 0);      // out EXIT
    lb_run();
    brg__session_stats_t a = stats(0), b = stats(1);
    ck_assert_uint_eq(a.links + a.watching + a.watched + a.asks, 0);
    ck_assert_uint_eq(b.links + b.watching + b.watched + b.asks, 0);
    size_t na = S[0].nlog, nb = S[1].nlog;
    lb_end(0, BRG__END_CLOSED);
    lb_end(1, BRG__END_CLOSED);
    ck_assert_uint_eq(S[0].nlog, na);
    ck_assert_uint_eq(S[1].nlog, nb);
}
END_TEST

START_TEST(test_session_answers_come_after_every_delivered_message)
{
    lb_handshake();
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 1, 0);
    push_ctl(0, BRG__MSG_SYS_MONITOR, 1, 1, 3);
    lb_run();
    for (int i = 1; i <= 3000; i++)
        push_send(1, 1, 1, i); // B1 sends to A1: three BATCHes
    lb_run();
    // The connection closes: A answers its entries after all 3000.
    lb_end(0, BRG__END_CLOSED);
    ck_assert_uint_eq(S[0].nlog, 3002);
    for (size_t k = 0; k < 3000; k++)
        ck_assert_int_eq(S[0].log[k].msg->kind, BRG__MSG_USER);
    ck_assert_int_eq(S[0].log[3000].msg->kind, BRG__MSG_SYS_EXIT);
    ck_assert_int_eq(S[0].log[3001].msg->kind, BRG__MSG_SYS_DOWN);
}
END_TEST

START_TEST(test_session_counters_add_up_after_a_cut)
{
    lb_handshake();
    for (int i = 1; i <= 2500; i++)
        push_send(0, 1, 1, i);
    lb_run();
    lb_advance(2 * S[0].cfg.tick_ms, S[0].cfg.tick_ms, true); // acked by B's TICKs
    ck_assert_uint_eq(stats(0).msgs_acked, 2500);
    for (int i = 1; i <= 2000; i++)
        push_send(0, 1, 1, i); // two frames, received but not acked yet
    lb_run();
    for (int i = 1; i <= 1500; i++)
        push_send(0, 1, 1, i); // two frames lost in flight
    lb_flush();
    lb_drop_all();
    for (int i = 1; i <= 7; i++)
        push_send(0, 1, 1, i); // never sent
    lb_end(0, BRG__END_CLOSED);
    brg__session_stats_t st = stats(0);
    ck_assert_uint_eq(st.msgs_out, 6000);
    ck_assert_uint_eq(st.msgs_acked, 2500);
    ck_assert_uint_eq(st.lost_in_flight, 3500);
    ck_assert_uint_eq(st.msgs_acked + st.lost_in_flight, st.msgs_out);
    ck_assert_uint_eq(st.dead_on_end, 7);
    ck_assert_uint_eq(stats(1).msgs_in, 4500);
}
END_TEST

//  More unacked frames than the session keeps ranges for (4096): the
//  newest range absorbs the rest, so acks past it count late and
//  lost_in_flight stays an upper bound.
START_TEST(test_session_many_unacked_frames_keep_lost_in_flight_an_upper_bound)
{
    lb_handshake();
    const int frames = 5000;
    for (int i = 1; i <= frames; i++) {
        push_send(0, 1, 1, i);
        lb_flush();
    }
    lb_run();
    ck_assert_uint_eq(stats(1).msgs_in, (uint64_t)frames);
    // B acks up to 1000: exact, the ranges are kept one per frame there.
    brg__wbuf_t w = {0};
    ck_assert_int_eq(brg__wire_encode_tick(&w, 1000), BRG_OK);
    ck_assert_int_eq(brg__session_on_bytes(S[0].s, w.data, w.size, true, NOW), BRG_OK);
    ck_assert_uint_eq(stats(0).msgs_acked, 1000);
    // 2000 more frames: the kept ranges move down, then merge again.
    for (int i = 1; i <= 2000; i++) {
        push_send(0, 1, 1, frames + i);
        lb_flush();
    }
    lb_run();
    brg__wbuf_reset(&w);
    ck_assert_int_eq(brg__wire_encode_tick(&w, 6000), BRG_OK);
    ck_assert_int_eq(brg__session_on_bytes(S[0].s, w.data, w.size, true, NOW), BRG_OK);
    brg__wbuf_free(&w);
    // Frames 1001..5999 are acked; frame 6000's range took 6001..7000
    // in, so it waits for an ack of 7000.
    ck_assert_uint_eq(stats(0).msgs_acked, 5999);
    lb_end(0, BRG__END_CLOSED);
    brg__session_stats_t st = stats(0);
    ck_assert_uint_eq(st.msgs_out, 7000);
    ck_assert_uint_eq(st.msgs_acked + st.lost_in_flight, st.msgs_out);
    ck_assert_uint_eq(st.lost_in_flight, 1001); // 6001..7000 were never acked, and 6000
}
END_TEST

START_TEST(test_session_table_bound_answers_links_and_monitors_at_once)
{
    S[0].cfg.max_table = 2;
    lb_handshake();
    // The third LINK is not sent: EXIT noconnection to its sender at once.
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 11, 0);
    push_ctl(0, BRG__MSG_SYS_LINK, 2, 12, 0);
    push_ctl(0, BRG__MSG_SYS_LINK, 3, 13, 0);
    ck_assert_uint_eq(S[0].nlog, 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_EXIT, 3, 13, 0), 1);
    ck_assert_int_eq(reason_kind(S[0].log[0].msg), BRG_EXIT_NOCONNECTION);
    ck_assert_uint_eq(stats(0).table_full, 1);
    // Linking a linked pair again takes no new entry.
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 11, 0);
    ck_assert_uint_eq(stats(0).table_full, 1);
    ck_assert_uint_eq(stats(0).links, 2);
    // Same for the third MONITOR: DOWN noconnection with its monitor id.
    push_ctl(0, BRG__MSG_SYS_MONITOR, 4, 14, 1);
    push_ctl(0, BRG__MSG_SYS_MONITOR, 4, 15, 2);
    push_ctl(0, BRG__MSG_SYS_MONITOR, 4, 16, 3);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DOWN, 4, 16, 3), 1);
    ck_assert_uint_eq(stats(0).table_full, 2);
    lb_run();
    ck_assert_int_eq(count(1, BRG__MSG_SYS_LINK, 13, 3, 0), 0);
    ck_assert_int_eq(count(1, BRG__MSG_SYS_LINK, 11, 1, 0), 2);
    ck_assert_int_eq(count(1, BRG__MSG_SYS_MONITOR, 16, 4, 3), 0);
    // At the end only the entries in the tables are answered.
    lb_end(0, BRG__END_CLOSED);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_EXIT, 3, 13, 0), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DOWN, 4, 16, 3), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_EXIT, 1, 11, 0), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DOWN, 4, 15, 2), 1);
}
END_TEST

START_TEST(test_session_inbound_link_or_monitor_past_the_bound_is_answered_over_the_wire)
{
    S[1].cfg.max_table = 2;
    lb_handshake();
    push_ctl(0, BRG__MSG_SYS_MONITOR, 4, 14, 1);
    push_ctl(0, BRG__MSG_SYS_MONITOR, 4, 15, 2);
    push_ctl(0, BRG__MSG_SYS_MONITOR, 4, 16, 3);
    push_ctl(0, BRG__MSG_SYS_LINK, 1, 11, 0);
    push_ctl(0, BRG__MSG_SYS_LINK, 2, 12, 0);
    push_ctl(0, BRG__MSG_SYS_LINK, 3, 13, 0);
    ck_assert_uint_eq(stats(0).watching, 3);
    ck_assert_uint_eq(stats(0).links, 3);
    lb_run();
    ck_assert_uint_eq(stats(1).table_full, 2);
    ck_assert_uint_eq(stats(1).watched, 2);
    ck_assert_uint_eq(stats(1).links, 2);
    ck_assert_int_eq(count(1, BRG__MSG_SYS_MONITOR, 16, 4, 3), 0); // not delivered
    ck_assert_int_eq(count(1, BRG__MSG_SYS_LINK, 13, 3, 0), 0);
    // The refused ones came back as DOWN / EXIT noconnection from the
    // target, and took A's entries with them.
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DOWN, 4, 16, 3), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_EXIT, 3, 13, 0), 1);
    ck_assert_int_eq(reason_kind(S[0].log[0].msg), BRG_EXIT_NOCONNECTION);
    ck_assert_uint_eq(stats(0).watching, 2);
    ck_assert_uint_eq(stats(0).links, 2);
    lb_end(0, BRG__END_CLOSED);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DOWN, 4, 14, 1), 1);
    ck_assert_int_eq(count(0, BRG__MSG_SYS_DOWN, 4, 16, 3), 1); // once, not twice
    ck_assert_int_eq(count(0, BRG__MSG_SYS_EXIT, 3, 13, 0), 1);
}
END_TEST

START_TEST(test_session_asks_past_the_bound_are_sent_without_an_entry)
{
    S[0].cfg.max_table = 2;
    lb_handshake();
    push_ask(0, 1, 11, 1);
    push_ask(0, 1, 11, 2);
    push_ask(0, 1, 11, 3);
    ck_assert_uint_eq(stats(0).asks, 2);
    ck_assert_uint_eq(stats(0).table_full, 1);
    lb_run();
    ck_assert_int_eq(count(1, BRG__MSG_USER, 11, 1, UINT64_MAX), 3);
    lb_end(0, BRG__END_CLOSED);
    ck_assert_int_eq(count(0, BRG__MSG_REPLY_ERROR, 1, 0, UINT64_MAX), 2);
}
END_TEST

START_TEST(test_session_push_refuses_what_cannot_go_on_the_wire)
{
    lb_handshake();
    // A control kind whose sender is not ours.
    brg_msg_t *m = mk(BRG__MSG_SYS_LINK, 1, 3, 0, "x");
    ck_assert_int_eq(brg__session_push(S[0].s, side_ref(1, 1), NULL, &m), BRG_EINVAL);
    ck_assert_ptr_nonnull(m);
    brg_msg_destroy(&m);
    // A kind that never leaves a node.
    m = mk(BRG__MSG_SYS_ASK_TIMEOUT, 0, 3, 1, "x");
    ck_assert_int_eq(brg__session_push(S[0].s, side_ref(1, 1), NULL, &m), BRG_EINVAL);
    brg_msg_destroy(&m);
    // A request forwarded for a third node's actor: sent, no ask entry.
    m = mk(BRG__MSG_USER, 0, 0, 9, "fwd");
    m->sender = node_ref((const uint8_t[16]){0xc0}, 4);
    ck_assert_int_eq(brg__session_push(S[0].s, side_ref(1, 1), NULL, &m), BRG_OK);
    ck_assert_uint_eq(stats(0).asks, 0);
    lb_run();
    ck_assert(brg_ref_eq(S[1].log[0].msg->sender, node_ref((const uint8_t[16]){0xc0}, 4)));
}
END_TEST

//  Append a msgpack ext ref (type 1, 24 bytes) to p.
static size_t
put_ext_ref(uint8_t *p, const uint8_t node[16], uint64_t id)
{
    p[0] = 0xc7; // ext 8
    p[1] = 24;
    p[2] = 1;
    memcpy(p + 3, node, 16);
    for (int i = 0; i < 8; i++)
        p[19 + i] = (uint8_t)(id >> (56 - 8 * i));
    return 27;
}

START_TEST(test_session_stop_and_exit_signal_without_a_sender_cross)
{
    lb_handshake();
    // brg_actor_stop and brg_exit from outside any actor: no sender.
    ck_assert_int_eq(push(0, 3, mk(BRG__MSG_SYS_STOP, 0, 0, 0, "brg.stop")), BRG_OK);
    brg_msg_t *kill = mk(BRG__MSG_SYS_KILL, 0, 0, 0, "brg.exit");
    kill->status = BRG_EXIT_SHUTDOWN;
    ck_assert_int_eq(push(0, 4, kill), BRG_OK);
    // Other control kinds still need a local sender.
    brg_msg_t *link = mk(BRG__MSG_SYS_LINK, 0, 0, 0, "brg.link");
    ck_assert_int_eq(brg__session_push(S[0].s, side_ref(1, 5), NULL, &link), BRG_EINVAL);
    brg_msg_destroy(&link);
    lb_run();
    ck_assert_uint_eq(S[1].nlog, 2);
    ck_assert_int_eq(S[1].log[0].msg->kind, BRG__MSG_SYS_STOP);
    ck_assert(brg_ref_is_none(S[1].log[0].msg->sender));
    ck_assert_int_eq(S[1].log[1].msg->kind, BRG__MSG_SYS_KILL);
    ck_assert_int_eq(S[1].log[1].msg->status, BRG_EXIT_SHUTDOWN);
    ck_assert_uint_eq(S[1].log[1].to, 4);
}
END_TEST

START_TEST(test_session_target_on_another_node_is_delivered_to_id_0)
{
    lb_handshake();
    // [1, 2, 1, [0, ref(C:4), nil, 0, "x"], [0, ref(B:4), nil, 0, "x"]]:
    // encoders write ids, but the protocol allows `to` as a full ref.
    static const uint8_t node_c[16] = {0xc0};
    uint8_t f[128];
    size_t n = 0;
    f[n++] = 0x95;
    f[n++] = 1;
    f[n++] = 2;
    f[n++] = 1;
    const uint8_t *nodes[2] = {node_c, NODE_B};
    for (int e = 0; e < 2; e++) {
        f[n++] = 0x95;
        f[n++] = 0;
        n += put_ext_ref(f + n, nodes[e], 4);
        f[n++] = 0xc0;
        f[n++] = 0;
        f[n++] = 0xa1;
        f[n++] = 'x';
    }
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, f, n, true, NOW), BRG_OK);
    ck_assert_uint_eq(S[1].nlog, 2);
    ck_assert_uint_eq(S[1].log[0].to, 0);
    ck_assert_uint_eq(S[1].log[1].to, 4);
    ck_assert_uint_eq(S[1].log[0].frame_no, S[1].log[1].frame_no); // one deliver call
}
END_TEST

//  ---------------------------------------------------------------------------
//  Untrusted input at the limits (PROTOCOL.md sections 12 and 19): a frame at
//  a limit is taken, one byte or one entry over it is refused: ERROR 3 on
//  the connection it came on, the session ended (protocol), on_bytes
//  returns BRG_EPROTO (what the owner counts as rejected_frames), the frame
//  counted in frames_in and bytes_in, and nothing of it delivered.

//  A growable msgpack writer for frames built by hand.
typedef struct {
    uint8_t *b;
    size_t n, cap;
} mp_t;

static void
mp_raw(mp_t *m, const void *p, size_t n)
{
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->b = realloc(m->b, m->cap);
        ck_assert_ptr_nonnull(m->b);
    }
    if (p && n)
        memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void
mp_byte(mp_t *m, uint8_t c)
{
    mp_raw(m, &c, 1);
}

static void
mp_be(mp_t *m, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        mp_byte(m, (uint8_t)(v >> (8 * i)));
}

static void
mp_uint(mp_t *m, uint64_t v)
{
    if (v <= 0x7f) {
        mp_byte(m, (uint8_t)v);
    } else {
        mp_byte(m, 0xcf);
        mp_be(m, v, 8);
    }
}

//  A str of n bytes: copies of s if n > strlen(s) ('a' padding), else s's first n.
static void
mp_str(mp_t *m, const char *s, size_t n)
{
    if (n <= 31) {
        mp_byte(m, (uint8_t)(0xa0 | n));
    } else if (n <= 0xff) {
        mp_byte(m, 0xd9);
        mp_be(m, n, 1);
    } else {
        mp_byte(m, 0xda);
        mp_be(m, n, 2);
    }
    size_t len = strlen(s);
    for (size_t i = 0; i < n; i++)
        mp_byte(m, i < len ? (uint8_t)s[i] : 'a');
}

static void
mp_head(mp_t *m, uint8_t fix, uint8_t f32, uint32_t n)
{
    if (n <= 15) {
        mp_byte(m, (uint8_t)(fix | n));
    } else {
        mp_byte(m, f32);
        mp_be(m, n, 4);
    }
}

static void
mp_array(mp_t *m, uint32_t n)
{
    mp_head(m, 0x90, 0xdd, n);
}

static void
mp_map(mp_t *m, uint32_t n)
{
    mp_head(m, 0x80, 0xdf, n);
}

static void
mp_bin(mp_t *m, const uint8_t *p, size_t n)
{
    mp_byte(m, 0xc6);
    mp_be(m, n, 4);
    if (p) {
        mp_raw(m, p, n);
    } else {
        size_t at = m->n;
        mp_raw(m, NULL, n);
        memset(m->b + at, 0x5a, n);
    }
}

static void
mp_free(mp_t *m)
{
    free(m->b);
    memset(m, 0, sizeof(*m));
}

//  A HELLO as node A would send it to B, or a WELCOME as B would send it to
//  A, with the knobs of section 19.
typedef struct {
    int type;
    size_t name_len, cluster_len, ep_len; // 'a' padded
    const char *name, *cluster;           // or these bytes (name_len/cluster_len of them)
    uint32_t unknown;                     // unknown keys "u<i>", nil values
    size_t key_len;                       // ... the first one this long instead (0: as is)
    int features;                         // -1: no key; else entries of feature_len bytes
    size_t feature_len;
    int peers; // -1: no key; else entries with endpoints peer_ep_len, names peer_name_len
    size_t peer_ep_len, peer_name_len;
    size_t depth; // > 0: an unknown key "deep" whose value nests this deep
} hello_spec_t;

static hello_spec_t
hello_spec(int type)
{
    hello_spec_t h;
    memset(&h, 0, sizeof(h));
    h.type = type;
    h.name = "a";
    h.name_len = 1;
    h.cluster = "test";
    h.cluster_len = 4;
    h.ep_len = 20;
    h.features = -1;
    h.feature_len = 1;
    h.peers = -1;
    h.peer_ep_len = 1;
    h.peer_name_len = 1;
    return h;
}

static void
mp_hello(mp_t *m, const hello_spec_t *h)
{
    mp_array(m, 3);
    mp_byte(m, 1);
    mp_byte(m, (uint8_t)h->type);
    uint32_t keys = 6 + h->unknown + (h->features >= 0) + (h->peers >= 0) + (h->depth > 0);
    mp_map(m, keys);
    mp_str(m, "node", 4);
    mp_byte(m, 0xc4);
    mp_byte(m, 16);
    mp_raw(m, h->type == BRG__FRAME_WELCOME ? NODE_B : NODE_A, 16); // to side 0 : 1
    mp_str(m, "sess", 4);
    mp_uint(m, 0xaaaa);
    mp_str(m, "role", 4);
    mp_str(m, "node", 4);
    mp_str(m, "name", 4);
    mp_str(m, h->name, h->name_len);
    mp_str(m, "cluster", 7);
    mp_str(m, h->cluster, h->cluster_len);
    mp_str(m, "ep", 2);
    mp_str(m, "inproc://a", h->ep_len);
    for (uint32_t i = 0; i < h->unknown; i++) {
        char key[16];
        snprintf(key, sizeof(key), "u%u", i);
        mp_str(m, key, i == 0 && h->key_len ? h->key_len : strlen(key));
        mp_byte(m, 0xc0);
    }
    if (h->features >= 0) {
        mp_str(m, "features", 8);
        mp_array(m, (uint32_t)h->features);
        for (int i = 0; i < h->features; i++)
            mp_str(m, "f", h->feature_len);
    }
    if (h->peers >= 0) {
        mp_str(m, "peers", 5);
        mp_array(m, (uint32_t)h->peers);
        for (int i = 0; i < h->peers; i++) {
            uint8_t node[16] = {0xc0, (uint8_t)i};
            mp_array(m, 3);
            mp_byte(m, 0xc4);
            mp_byte(m, 16);
            mp_raw(m, node, 16);
            mp_str(m, "tcp://p", h->peer_ep_len);
            mp_str(m, "p", h->peer_name_len);
        }
    }
    if (h->depth > 0) {
        mp_str(m, "deep", 4);
        for (size_t i = 0; i < h->depth; i++)
            mp_byte(m, 0x91);
        mp_byte(m, 0xc0);
    }
}

//  Expect side i's session to refuse the bytes: ERROR code back on the
//  connection they came on, ended (protocol), counted, nothing delivered.
static const char *CASE = ""; // what the limit tests check now

static void
expect_refused(int i, const void *data, size_t len, bool inbound, int code)
{
    brg__session_stats_t before = stats(i);
    size_t nlog = S[i].nlog;
    size_t qn = QN;
    int rc = brg__session_on_bytes(S[i].s, data, len, inbound, NOW);
    ck_assert_msg(rc == BRG_EPROTO, "%s: taken (%d)", CASE, rc);
    ck_assert_int_eq(brg__session_state(S[i].s), BRG__SESS_ENDED);
    ck_assert_int_eq(S[i].reason, BRG__END_PROTOCOL);
    ck_assert_uint_gt(QN, qn);
    ck_assert_int_eq(Q[qn].from, i);
    ck_assert_int_eq(Q[qn].inbound, inbound); // back where it came from
    ck_assert_int_eq(take_error(i), code);
    ck_assert_uint_eq(stats(i).frames_in, before.frames_in + 1);
    ck_assert_uint_eq(stats(i).bytes_in, before.bytes_in + len);
    ck_assert_uint_eq(S[i].nlog, nlog);
    ck_assert_uint_eq(stats(i).msgs_in, before.msgs_in);
}

//  Expect side i's session to take the bytes: no ERROR, not ended, counted.
static void
expect_taken(int i, const void *data, size_t len, bool inbound)
{
    brg__session_stats_t before = stats(i);
    int rc = brg__session_on_bytes(S[i].s, data, len, inbound, NOW);
    ck_assert_msg(rc == BRG_OK, "%s: refused (%d, ERROR %d)", CASE, rc, peek_error(i));
    ck_assert_int_ne(brg__session_state(S[i].s), BRG__SESS_ENDED);
    ck_assert_int_eq(peek_error(i), 0);
    ck_assert_uint_eq(stats(i).frames_in, before.frames_in + 1);
    ck_assert_uint_eq(stats(i).bytes_in, before.bytes_in + len);
}

//  A HELLO (to a fresh acceptor, side 1) or a WELCOME (to a fresh dialer,
//  side 0), taken or refused with ERROR 3.
static void
check_hello(const hello_spec_t *h, bool ok)
{
    teardown();
    setup();
    if (h->cluster_len != 4 && h->cluster_len <= BRG__WIRE_NAME_MAX) {
        // Our own cluster is the HELLO's, padded as mp_str pads it.
        for (size_t i = 0; i < h->cluster_len; i++)
            S[0].cfg.cluster[i] = i < strlen(h->cluster) ? h->cluster[i] : 'a';
        S[0].cfg.cluster[h->cluster_len] = '\0';
        memcpy(S[1].cfg.cluster, S[0].cfg.cluster, sizeof(S[1].cfg.cluster));
    }
    int side = h->type == BRG__FRAME_HELLO ? 1 : 0;
    S[side].s = brg__session_new(&S[side].cfg, &IO, &S[side], side == 0, NOW);
    ck_assert_ptr_nonnull(S[side].s);
    lb_drop_all(); // the dialer's own HELLO
    mp_t m = {0};
    mp_hello(&m, h);
    if (ok)
        expect_taken(side, m.b, m.n, side == 1);
    else
        expect_refused(side, m.b, m.n, side == 1, BRG__WERR_MALFORMED);
    mp_free(&m);
}

START_TEST(test_session_hello_at_each_limit_is_taken_and_one_over_is_refused)
{
    for (int over = 0; over < 2; over++) {
        bool ok = !over;
        hello_spec_t h = hello_spec(BRG__FRAME_HELLO);
        h.name_len = 63 + (size_t)over; // name
        CASE = "name";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_HELLO);
        h.cluster = "c";
        h.cluster_len = 63 + (size_t)over; // cluster (both sides' own, when 63)
        CASE = "cluster (both sides' own, when 63)";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_HELLO);
        h.ep_len = 255 + (size_t)over; // endpoint
        CASE = "endpoint";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_HELLO);
        h.unknown = 26 + (uint32_t)over; // 6 known keys + 26 = 32 keys
        CASE = "6 known keys + 26 = 32 keys";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_HELLO);
        h.unknown = 1;
        h.key_len = 255 + (size_t)over; // key string
        CASE = "key string";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_HELLO);
        h.features = 32 + over; // features
        CASE = "features";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_HELLO);
        h.features = 1;
        h.feature_len = 255 + (size_t)over; // a feature string
        CASE = "a feature string";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_HELLO);
        h.depth = 64 + (size_t)over; // nesting of an unknown value
        CASE = "nesting of an unknown value";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_WELCOME);
        h.peers = 64 + over; // peers
        CASE = "peers";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_WELCOME);
        h.peers = 1;
        h.peer_ep_len = 255 + (size_t)over; // a peer's endpoint
        CASE = "a peer's endpoint";
        check_hello(&h, ok);
        h = hello_spec(BRG__FRAME_WELCOME);
        h.peers = 1;
        h.peer_name_len = 63 + (size_t)over; // a peer's name
        CASE = "a peer's name";
        check_hello(&h, ok);
    }
    // And the lower bounds: an empty name, cluster or peer endpoint.
    hello_spec_t h = hello_spec(BRG__FRAME_HELLO);
    h.name_len = 0;
    check_hello(&h, false);
    h = hello_spec(BRG__FRAME_WELCOME);
    h.peers = 1;
    h.peer_ep_len = 0;
    check_hello(&h, false);
    h.peer_ep_len = 1;
    h.peer_name_len = 0; // peer names may be empty
    check_hello(&h, true);
}
END_TEST

//  A BATCH [1, 2, 1, env] of one envelope to side 1 (UP) from A's actor 5:
//  SEND to `to` (a str when name_len > 0, else local id 7) with a tag of
//  tag_len bytes and one argument written by args (or none).
static void
mp_batch_head(mp_t *m, uint32_t envs)
{
    mp_array(m, 3 + envs);
    mp_byte(m, 1);
    mp_byte(m, BRG__FRAME_BATCH);
    mp_byte(m, 1);
}

static void
mp_env_head(mp_t *m, uint32_t nargs, const char *name, size_t name_len, const char *tag,
            size_t tag_len)
{
    mp_array(m, 5 + nargs);
    mp_byte(m, BRG__WK_SEND);
    if (name_len)
        mp_str(m, name, name_len);
    else
        mp_byte(m, 7);
    mp_byte(m, 5);
    mp_byte(m, 0);
    mp_str(m, tag, tag_len);
}

static void
up_fresh(void)
{
    teardown();
    setup();
    lb_handshake();
    lb_drop_all();
}

START_TEST(test_session_batch_at_each_limit_is_taken_and_one_over_is_refused)
{
    mp_t m = {0};
    for (int over = 0; over < 2; over++) {
        bool ok = !over;
        // The tag: 31 bytes.
        up_fresh();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 0, NULL, 0, "t", BRG_TAG_MAX + (size_t)over);
        if (ok) {
            expect_taken(1, m.b, m.n, true);
            ck_assert_uint_eq(S[1].nlog, 1);
            ck_assert_uint_eq(S[1].log[0].msg->tag_len, BRG_TAG_MAX);
        } else {
            expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        }
        mp_free(&m);
        // A name as `to`: 63 bytes.
        up_fresh();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 0, "n", BRG__WIRE_NAME_MAX + (size_t)over, "t", 1);
        if (ok) {
            expect_taken(1, m.b, m.n, true);
            ck_assert_uint_eq(S[1].nlog, 1);
            ck_assert_uint_eq(strlen(S[1].log[0].name), BRG__WIRE_NAME_MAX);
        } else {
            expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        }
        mp_free(&m);
        // Nesting: a payload argument 64 containers deep.
        up_fresh();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 1, NULL, 0, "t", 1);
        for (int i = 0; i < BRG_MSG_DEPTH_MAX + over; i++)
            mp_byte(&m, 0x91);
        mp_byte(&m, 0xc0);
        if (ok) {
            expect_taken(1, m.b, m.n, true);
            ck_assert_uint_eq(S[1].nlog, 1);
            ck_assert_int_eq(brg_msg_count(S[1].log[0].msg), 1);
        } else {
            expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        }
        mp_free(&m);
        // The payload: 16 MiB in all (one bin of 16 MiB - 5 bytes and its header).
        up_fresh();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 1, NULL, 0, "t", 1);
        mp_bin(&m, NULL, BRG_MSG_MAX - 5 + (size_t)over);
        if (ok) {
            expect_taken(1, m.b, m.n, true);
            ck_assert_uint_eq(S[1].nlog, 1);
            ck_assert_uint_eq(S[1].log[0].msg->size, BRG_MSG_MAX);
        } else {
            expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        }
        mp_free(&m);
        // Envelopes: 65 535 in one BATCH.
        up_fresh();
        uint32_t envs = 65535 + (uint32_t)over;
        mp_batch_head(&m, envs);
        for (uint32_t i = 0; i < envs; i++)
            mp_env_head(&m, 0, NULL, 0, "t", 1);
        if (ok) {
            expect_taken(1, m.b, m.n, true);
            ck_assert_uint_eq(S[1].nlog, 65535);
            ck_assert_uint_eq(stats(1).msgs_in, 65535);
        } else {
            expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        }
        mp_free(&m);
    }
    // The frame: max_frame bytes (the node's ZMQ_MAXMSGSIZE drops the
    // connection first; the codec refuses it too).
    for (int over = 0; over < 2; over++) {
        teardown();
        setup();
        S[1].cfg.limits.max_frame = 4096;
        lb_handshake();
        lb_drop_all();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 1, NULL, 0, "t", 1);
        mp_bin(&m, NULL, 4096 - m.n - 5 + (size_t)over);
        ck_assert_uint_eq(m.n, 4096 + (size_t)over);
        if (over)
            expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        else
            expect_taken(1, m.b, m.n, true);
        mp_free(&m);
    }
}
END_TEST

//  Thousands of levels: refused by the depth limit of an iterative walk,
//  never by recursing the C stack away (ASan's stack checks would see it).
START_TEST(test_session_deep_nesting_is_refused_without_recursion)
{
    const size_t depth = 200000;
    mp_t m = {0};
    for (int form = 0; form < 4; form++) {
        up_fresh();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 1, NULL, 0, "t", 1);
        for (size_t i = 0; i < depth; i++) {
            if (form == 0) {
                mp_byte(&m, 0x91); // [[[...]]]
            } else if (form == 1) {
                mp_byte(&m, 0x81); // {"k": {"k": ...}}
                mp_str(&m, "k", 1);
            } else if (form == 2) {
                mp_byte(&m, 0x81); // {{...}: nil}: containers as keys
            } else {
                mp_byte(&m, 0xdd); // array32 headers, 5 bytes a level
                mp_be(&m, 1, 4);
            }
        }
        for (size_t i = 0; i < (form == 2 ? depth + 1 : 1); i++)
            mp_byte(&m, 0xc0);
        expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        mp_free(&m);
    }
    // As the value of an unknown HELLO key.
    hello_spec_t h = hello_spec(BRG__FRAME_HELLO);
    h.depth = depth;
    check_hello(&h, false);
    // As the whole frame.
    up_fresh();
    for (size_t i = 0; i < depth; i++)
        mp_byte(&m, 0x92);
    mp_byte(&m, 0x01);
    expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
    mp_free(&m);
}
END_TEST

//  A name, a tag, a HELLO's name that is not UTF-8: the frame is malformed.
START_TEST(test_session_names_and_tags_that_are_not_utf8_are_refused)
{
    static const char *const bad[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "ok\xe2\x82"};
    mp_t m = {0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i]);
        up_fresh();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 0, NULL, 0, bad[i], n); // the tag
        expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        mp_free(&m);
        up_fresh();
        mp_batch_head(&m, 1);
        mp_env_head(&m, 0, bad[i], n, "t", 1); // the name in `to`
        expect_refused(1, m.b, m.n, true, BRG__WERR_MALFORMED);
        mp_free(&m);
        hello_spec_t h = hello_spec(BRG__FRAME_HELLO);
        h.name = bad[i];
        h.name_len = n;
        check_hello(&h, false);
    }
    // Valid UTF-8 of several bytes a character passes.
    up_fresh();
    mp_batch_head(&m, 1);
    mp_env_head(&m, 0, "caf\xc3\xa9", 5, "\xf0\x9f\x98\x80", 4);
    expect_taken(1, m.b, m.n, true);
    ck_assert_str_eq(S[1].log[0].name, "caf\xc3\xa9");
    ck_assert_str_eq(S[1].log[0].msg->tag, "\xf0\x9f\x98\x80");
    mp_free(&m);
    // Going out, a tag that is not UTF-8 fails that message alone.
    brg_msg_t *msg = mk(BRG__MSG_USER, 0, 1, 0, "\xc3\x28");
    ck_assert_int_eq(brg__session_push(S[0].s, side_ref(1, 2), NULL, &msg), BRG_EINVAL);
    ck_assert_ptr_nonnull(msg); // given back, for the caller's dead letter
    brg_msg_destroy(&msg);
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_UP);
}
END_TEST

//  Every frame's bytes count in bytes_in, not only BATCHes'.
START_TEST(test_session_bytes_in_counts_every_frame)
{
    lb_handshake();                                       // HELLO and WELCOME each way
    lb_advance(S[0].cfg.tick_ms, S[0].cfg.tick_ms, true); // a TICK each way
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(stats(i).frames_in, 3);
        ck_assert_uint_eq(stats(i).frames_in, stats(1 - i).frames_out);
        ck_assert_uint_eq(stats(i).bytes_in, stats(1 - i).bytes_out);
    }
}
END_TEST

//  ---------------------------------------------------------------------------
//  Two deterministic systems joined by two sessions: the answers of an
//  ended session, as actors see them.

static brg_ref_t R_B1;                   // the remote actor (system B)
static int R_hellos, R_exits, R_downs;   // what the linker (system A) received
static int R_calls, R_status;            // its ask's callbacks
static int R_exit_at, R_down_at, R_seen; // message order at the linker
static int R_exit_kind = -1, R_down_kind = -1;
static uint64_t R_mon, R_down_mon;

static int
r_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    R_calls++;
    R_status = status;
    return BRG_OK;
}

static int
r_linker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    brg_exit_reason_t reason;
    R_seen++;
    if (brg_msg_is(msg, "start")) {
        brg_trap_exits(ctx, true);
        ck_assert_int_eq(brg_link(ctx, R_B1), BRG_OK);
        ck_assert_int_eq(brg_monitor(ctx, R_B1, &R_mon), BRG_OK);
        brg_msg_t *ping = brg_msg_new("ping");
        ck_assert_int_eq(brg_ask(ctx, R_B1, &ping, 600000, r_on_reply, NULL), BRG_OK);
    } else if (brg_msg_is(msg, "hello")) {
        R_hellos++;
    } else if (brg_msg_read_exit(msg, &from, &reason) == BRG_OK) {
        ck_assert(brg_ref_eq(from, R_B1));
        R_exits++;
        R_exit_kind = (int)reason.kind;
        R_exit_at = R_seen;
    } else if (brg_msg_read_down(msg, &from, &R_down_mon, &reason) == BRG_OK) {
        ck_assert(brg_ref_eq(from, R_B1));
        R_downs++;
        R_down_kind = (int)reason.kind;
        R_down_at = R_seen;
    }
    return BRG_OK;
}

//  Answers a ping with three hellos and no reply.
static int
r_b1(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "ping"))
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(brg_send_tag(ctx, brg_msg_sender(msg), "hello"), BRG_OK);
    return BRG_OK;
}

static int
r_ops_send(void *arg, brg_ref_t to, const char *name, brg_msg_t **msg_p)
{
    lb_side_t *side = arg;
    int rc = side->s ? brg__session_push(side->s, to, name, msg_p) : BRG_ENETWORK;
    if (rc != BRG_OK) {
        brg__remote_dead_letter(side->sys, to, *msg_p, BRG_DEAD_REMOTE_DOWN, BRG_ENETWORK);
        *msg_p = NULL;
        return BRG_ENETWORK;
    }
    return BRG_OK;
}

static void
r_ops_shutdown(void *arg)
{
    lb_side_t *side = arg;
    if (side->s)
        brg__session_end(side->s, BRG__END_LOCAL);
}

static void
r_ops_destroy(void *arg)
{
}

static const brg__remote_ops_t R_OPS = {r_ops_send, r_ops_shutdown, r_ops_destroy, NULL};

static int R_dead[2][16];     // dead letters by system and message kind
static int R_dead_why[2][16]; // ... and by reason

static void
r_dead_letter(void *arg, brg_ref_t to, const brg_msg_t *msg, brg_dead_reason_t reason)
{
    R_dead[((lb_side_t *)arg)->idx][msg->kind & 15]++;
    R_dead_why[((lb_side_t *)arg)->idx][reason & 15]++;
}

static brg_system_t *
r_system(int i)
{
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.deterministic = true;
    cfg.dead_letter_fn = r_dead_letter;
    cfg.dead_letter_arg = &S[i];
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    char text[37];
    brg_system_node(sys, text);
    int k = 0;
    for (const char *c = text; *c && k < 32; c++) {
        if (*c == '-')
            continue;
        int v = *c <= '9' ? *c - '0' : (*c | 0x20) - 'a' + 10;
        S[i].cfg.node[k / 2] = (uint8_t)(S[i].cfg.node[k / 2] << 4 | v);
        k++;
    }
    ck_assert_int_eq(k, 32);
    S[i].sys = sys;
    ck_assert_int_eq(brg__system_set_remote_ops(sys, &R_OPS, &S[i]), BRG_OK);
    return sys;
}

static void
r_settle(void)
{
    for (int round = 0; round < 20; round++) {
        brg_system_run_until_idle(S[0].sys);
        brg_system_run_until_idle(S[1].sys);
        lb_run();
    }
}

START_TEST(test_session_actors_get_noconnection_and_enetwork_after_what_was_delivered)
{
    brg_system_t *sa = r_system(0), *sb = r_system(1);
    lb_handshake();
    ck_assert_int_eq(brg_system_spawn(sb, r_b1, NULL, &R_B1), BRG_OK);
    brg_ref_t linker;
    ck_assert_int_eq(brg_system_spawn(sa, r_linker, NULL, &linker), BRG_OK);
    brg_msg_t *start = brg_msg_new("start");
    ck_assert_int_eq(brg_system_send(sa, linker, &start), BRG_OK);
    r_settle();
    ck_assert_int_eq(R_hellos, 3);
    ck_assert_int_eq(R_calls, 0);
    ck_assert_uint_eq(stats(0).links, 1);
    ck_assert_uint_eq(stats(0).watching, 1);
    ck_assert_uint_eq(stats(0).asks, 1);
    ck_assert_uint_eq(stats(1).links, 1);
    ck_assert_uint_eq(stats(1).watched, 1);
    // The connection is cut.
    lb_drop_all();
    lb_end(0, BRG__END_CLOSED);
    lb_end(1, BRG__END_CLOSED);
    brg_system_run_until_idle(sa);
    brg_system_run_until_idle(sb);
    ck_assert_int_eq(R_exits, 1);
    ck_assert_int_eq(R_exit_kind, BRG_EXIT_NOCONNECTION);
    ck_assert_int_eq(R_downs, 1);
    ck_assert_int_eq(R_down_kind, BRG_EXIT_NOCONNECTION);
    ck_assert_uint_eq(R_down_mon, R_mon);
    ck_assert_int_eq(R_calls, 1);
    ck_assert_int_eq(R_status, BRG_ENETWORK);
    // start, 3 hellos, then the answers.
    ck_assert_int_gt(R_exit_at, 4);
    ck_assert_int_gt(R_down_at, 4);
    // B's actor, linked without trapping, died of noconnection.
    ck_assert(!brg_system_is_alive(sb, R_B1));
    // Its death's DOWN to the linker met the ended session: one counted
    // dead letter (the linker had its DOWN noconnection already). Nothing
    // else was lost.
    for (int k = 0; k < 16; k++) {
        ck_assert_int_eq(R_dead[0][k], 0);
        ck_assert_int_eq(R_dead[1][k], k == BRG__MSG_SYS_DOWN ? 1 : 0);
    }
    ck_assert_int_eq(brg_system_destroy(&sa), BRG_OK);
    ck_assert_int_eq(brg_system_destroy(&sb), BRG_OK);
    S[0].sys = S[1].sys = NULL;
}
END_TEST

//  Counts what reaches it.
static int R_got;

static int
r_counter(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    R_got++;
    return BRG_OK;
}

//  An envelope [kind, to, 5, corr, tag, args...] of A's actor 5, `to` a ref
//  when node is set, else the local id.
static size_t
put_env(uint8_t *p, int kind, const uint8_t *node, uint64_t id, uint64_t corr, const char *tag,
        const uint8_t *args, size_t args_len, int nargs)
{
    size_t n = 0;
    p[n++] = (uint8_t)(0x90 | (5 + nargs));
    p[n++] = (uint8_t)kind;
    if (node) {
        n += put_ext_ref(p + n, node, id);
    } else {
        p[n++] = 0xcf;
        for (int i = 0; i < 8; i++)
            p[n++] = (uint8_t)(id >> (56 - 8 * i));
    }
    p[n++] = 5;
    p[n++] = 0xcf;
    for (int i = 0; i < 8; i++)
        p[n++] = (uint8_t)(corr >> (56 - 8 * i));
    p[n++] = (uint8_t)(0xa0 | strlen(tag));
    memcpy(p + n, tag, strlen(tag));
    n += strlen(tag);
    if (args_len)
        memcpy(p + n, args, args_len);
    return n + args_len;
}

//  `to` as a ref (ext 1) to a node that is not the receiver: a dead letter
//  there, never a delivery to the receiver's actor with the same id; a
//  request among them is answered BRG_ENOACTOR to its sender's node.
START_TEST(test_session_ref_to_another_node_is_a_dead_letter_not_a_local_delivery)
{
    brg_system_t *sa = r_system(0), *sb = r_system(1);
    lb_handshake();
    brg_ref_t target;
    ck_assert_int_eq(brg_system_spawn(sb, r_counter, NULL, &target), BRG_OK);
    static const uint8_t node_c[16] = {0xc0, 0xde}; // no such node
    uint8_t f[512];
    size_t n = 0;
    f[n++] = 0x97; // [1, 2, 1, and four envelopes]
    f[n++] = 1;
    f[n++] = 2;
    f[n++] = 1;
    n += put_env(f + n, BRG__WK_SEND, node_c, target.id, 0, "x", NULL, 0, 0);
    n += put_env(f + n, BRG__WK_SEND, node_c, target.id, 9, "x", NULL, 0, 0); // a request
    n += put_env(f + n, BRG__WK_LINK, node_c, target.id, 0, "brg.exit", NULL, 0, 0);
    n += put_env(f + n, BRG__WK_SEND, S[1].cfg.node, target.id, 0, "x", NULL, 0, 0); // B itself
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, f, n, true, NOW), BRG_OK);
    ck_assert_uint_eq(stats(1).links, 0); // no entry for a LINK to nowhere
    r_settle();
    ck_assert_int_eq(R_got, 1); // only the envelope that names B
    ck_assert_int_eq(R_dead[1][BRG__MSG_USER], 2);
    ck_assert_int_eq(R_dead_why[1][BRG_DEAD_NO_ACTOR], 2);
    // The request's BRG_ENOACTOR went back to A (whose actor 5 is no more:
    // there it is a late reply).
    ck_assert_uint_eq(stats(0).msgs_in, 1);
    ck_assert_int_eq(R_dead[0][BRG__MSG_REPLY_ERROR], 1);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    ck_assert_int_eq(brg_system_destroy(&sa), BRG_OK);
    ck_assert_int_eq(brg_system_destroy(&sb), BRG_OK);
    S[0].sys = S[1].sys = NULL;
}
END_TEST

//  A REPLY or REPLY_ERROR for an ask that never was (no entry in the asks
//  table, no pending ask at the target): delivered, then dropped by the
//  target as a late reply (counted), never seen by its behaviour; the
//  session goes on.
START_TEST(test_session_reply_to_an_ask_that_never_was_is_a_counted_late_reply)
{
    brg_system_t *sa = r_system(0), *sb = r_system(1);
    lb_handshake();
    brg_ref_t target;
    ck_assert_int_eq(brg_system_spawn(sb, r_counter, NULL, &target), BRG_OK);
    static const uint8_t one[] = {0x01}, enoactor[] = {0xfd}; // 1, -3
    uint8_t f[512];
    size_t n = 0;
    f[n++] = 0x97; // [1, 2, 1, and four envelopes]
    f[n++] = 1;
    f[n++] = 2;
    f[n++] = 1;
    n += put_env(f + n, BRG__WK_REPLY, NULL, target.id, 4242, "r", one, 1, 1);
    n += put_env(f + n, BRG__WK_REPLY_ERROR, NULL, target.id, 4243, "brg.error", enoactor, 1, 1);
    n += put_env(f + n, BRG__WK_REPLY, NULL, target.id + 1000, 77, "r", NULL, 0, 0); // no actor
    n += put_env(f + n, BRG__WK_SEND, NULL, target.id, 0, "x", NULL, 0, 0);
    ck_assert_int_eq(brg__session_on_bytes(S[1].s, f, n, true, NOW), BRG_OK);
    ck_assert_int_eq(peek_error(1), 0);
    ck_assert_uint_eq(stats(1).msgs_in, 4);
    ck_assert_uint_eq(stats(1).asks, 0);
    r_settle();
    ck_assert_int_eq(R_got, 1); // the SEND only
    ck_assert_int_eq(R_dead[1][BRG__MSG_REPLY], 2);
    ck_assert_int_eq(R_dead[1][BRG__MSG_REPLY_ERROR], 1);
    ck_assert_int_eq(R_dead_why[1][BRG_DEAD_LATE_REPLY], 3);
    ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_UP);
    ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    ck_assert_int_eq(brg_system_destroy(&sa), BRG_OK);
    ck_assert_int_eq(brg_system_destroy(&sb), BRG_OK);
    S[0].sys = S[1].sys = NULL;
}
END_TEST

//  ---------------------------------------------------------------------------
//  A seeded random mix, cut at a random point.

#define R_ACTORS 6

//  An independent model of what each side's tables must hold.
typedef struct {
    bool link[R_ACTORS + 1][R_ACTORS + 1];            // [local][remote]
    uint64_t watching[R_ACTORS + 1][64];              // [watcher][mon] = target + 1
    uint64_t watched[R_ACTORS + 1][R_ACTORS + 1][64]; // [target][watcher][mon] = 1
    uint8_t ask_answers[R_ACTORS + 1][512];           // [asker][corr]: answers seen
    bool ask_open[R_ACTORS + 1][512];
    int next_mon[R_ACTORS + 1];
    int next_corr;
    uint8_t down_seen[R_ACTORS + 1][64]; // DOWNs (real + noconnection) per monitor
    bool demonitored[R_ACTORS + 1][64];
    int64_t sent_seq[R_ACTORS + 1][R_ACTORS + 1]; // [local][remote] SENDs pushed
    int64_t got_seq[R_ACTORS + 1][R_ACTORS + 1];  // [local][remote] SENDs delivered
    uint64_t pushed;                              // envelopes accepted by push
} r_model_t;

static r_model_t M[2];
static uint64_t RNG;

static uint64_t
r_next(void)
{
    RNG ^= RNG << 13;
    RNG ^= RNG >> 7;
    RNG ^= RNG << 17;
    return RNG;
}

static int
r_pick(int n)
{
    return (int)(r_next() % (uint64_t)n);
}

static void
r_push(int side, uint64_t tid, brg_msg_t *m)
{
    ck_assert_int_eq(push(side, tid, m), BRG_OK);
    M[side].pushed++;
}

static void
r_push_ctl(int side, int kind, uint64_t sid, uint64_t tid, uint64_t corr)
{
    push_ctl(side, kind, sid, tid, corr);
    M[side].pushed++;
}

//  What side's runtime does with a message delivered to its actor `to`.
static void
r_react(lb_side_t *s, uint64_t to, const brg_msg_t *m)
{
    int i = s->idx;
    r_model_t *md = &M[i];
    uint64_t from = m->sender.id;
    if (to == 0 || from == 0 || from > R_ACTORS || to > R_ACTORS)
        return;
    switch (m->kind) {
    case BRG__MSG_USER:
        if (m->corr != 0) {
            brg_msg_t *r = mk(BRG__MSG_REPLY, i, to, m->corr, "answer");
            r_push(i, from, r);
        } else {
            size_t pos = 0;
            int64_t v;
            ck_assert_int_eq(brg_msg_read_int(m, &pos, &v), BRG_OK);
            // Per pair FIFO, no gap, no duplicate.
            ck_assert_int_eq(v, md->got_seq[to][from] + 1);
            md->got_seq[to][from] = v;
        }
        break;
    case BRG__MSG_REPLY:
        ck_assert(md->ask_open[to][m->corr]);
        md->ask_open[to][m->corr] = false;
        md->ask_answers[to][m->corr]++;
        break;
    case BRG__MSG_SYS_LINK:
        md->link[to][from] = true;
        break;
    case BRG__MSG_SYS_UNLINK:
    case BRG__MSG_SYS_EXIT:
        md->link[to][from] = false;
        break;
    case BRG__MSG_SYS_MONITOR:
        md->watched[to][from][m->corr] = 1;
        break;
    case BRG__MSG_SYS_DEMONITOR:
        md->watched[to][from][m->corr] = 0;
        break;
    case BRG__MSG_SYS_DOWN:
        if (md->watching[to][m->corr] == from + 1)
            md->watching[to][m->corr] = 0;
        md->down_seen[to][m->corr]++;
        break;
    default:
        break;
    }
}

//  One random operation by side i's actor a toward the other side's b.
static void
r_op(int i)
{
    r_model_t *md = &M[i];
    uint64_t a = 1 + (uint64_t)r_pick(R_ACTORS), b = 1 + (uint64_t)r_pick(R_ACTORS);
    int op = r_pick(100);
    if (op < 50) {
        md->sent_seq[a][b]++;
        push_send(i, a, b, md->sent_seq[a][b]);
        md->pushed++;
    } else if (op < 60) {
        r_push_ctl(i, BRG__MSG_SYS_LINK, a, b, 0);
        md->link[a][b] = true;
    } else if (op < 65) {
        if (md->link[a][b]) {
            r_push_ctl(i, BRG__MSG_SYS_UNLINK, a, b, 0);
            md->link[a][b] = false;
        }
    } else if (op < 75) {
        if (md->next_mon[a] < 63) {
            uint64_t mon = (uint64_t)++md->next_mon[a];
            r_push_ctl(i, BRG__MSG_SYS_MONITOR, a, b, mon);
            md->watching[a][mon] = b + 1;
        }
    } else if (op < 80) {
        uint64_t mon = 1 + (uint64_t)r_pick(63);
        if (md->watching[a][mon]) {
            r_push_ctl(i, BRG__MSG_SYS_DEMONITOR, a, md->watching[a][mon] - 1, mon);
            md->watching[a][mon] = 0;
            md->demonitored[a][mon] = true;
        }
    } else if (op < 92) {
        if (md->next_corr < 511) {
            uint64_t corr = (uint64_t)++md->next_corr;
            push_ask(i, a, b, corr);
            md->pushed++;
            md->ask_open[a][corr] = true;
        }
    } else {
        // Actor a dies (and is at once restarted under the same id): EXIT
        // to its links, DOWN to its watchers, DEMONITOR to its targets.
        for (uint64_t r = 1; r <= R_ACTORS; r++) {
            if (md->link[a][r]) {
                r_push_ctl(i, BRG__MSG_SYS_EXIT, a, r, 0);
                md->link[a][r] = false;
            }
            for (uint64_t mon = 1; mon < 64; mon++)
                if (md->watched[a][r][mon]) {
                    r_push_ctl(i, BRG__MSG_SYS_DOWN, a, r, mon);
                    md->watched[a][r][mon] = 0;
                }
        }
        for (uint64_t mon = 1; mon < 64; mon++)
            if (md->watching[a][mon]) {
                r_push_ctl(i, BRG__MSG_SYS_DEMONITOR, a, md->watching[a][mon] - 1, mon);
                md->watching[a][mon] = 0;
                md->demonitored[a][mon] = true;
            }
    }
}

static void
r_check_side(int i)
{
    r_model_t *md = &M[i];
    lb_side_t *s = &S[i];
    // Every answer of the end is flagged `ending` and comes after every
    // ordinary delivery.
    size_t first_ending = s->nlog;
    for (size_t k = 0; k < s->nlog; k++)
        if (s->log[k].ending) {
            first_ending = k;
            break;
        }
    for (size_t k = first_ending; k < s->nlog; k++)
        ck_assert(s->log[k].ending);
    // Answers match the model's open entries, one each.
    int want = 0;
    for (uint64_t l = 1; l <= R_ACTORS; l++) {
        for (uint64_t r = 1; r <= R_ACTORS; r++) {
            int n = 0;
            for (size_t k = first_ending; k < s->nlog; k++) {
                const brg_msg_t *m = s->log[k].msg;
                if (m->kind == BRG__MSG_SYS_EXIT && s->log[k].to == l && m->sender.id == r)
                    n++;
            }
            ck_assert_int_eq(n, md->link[l][r] ? 1 : 0);
            want += n;
            for (uint64_t mon = 1; mon < 64; mon++) {
                int d = 0;
                for (size_t k = first_ending; k < s->nlog; k++) {
                    const brg_msg_t *m = s->log[k].msg;
                    if (m->kind == BRG__MSG_SYS_DEMONITOR && s->log[k].to == l &&
                        m->sender.id == r && m->corr == mon)
                        d++;
                }
                ck_assert_int_eq(d, md->watched[l][r][mon]);
                want += d;
            }
        }
        for (uint64_t mon = 1; mon < 64; mon++) {
            int d = 0;
            for (size_t k = first_ending; k < s->nlog; k++) {
                const brg_msg_t *m = s->log[k].msg;
                if (m->kind == BRG__MSG_SYS_DOWN && s->log[k].to == l && m->corr == mon) {
                    ck_assert_uint_eq(m->sender.id + 1, md->watching[l][mon]);
                    ck_assert_int_eq(reason_kind(m), BRG_EXIT_NOCONNECTION);
                    d++;
                }
            }
            ck_assert_int_eq(d, md->watching[l][mon] ? 1 : 0);
            want += d;
            // A monitor that was not dropped got exactly one DOWN in all.
            if (mon <= (uint64_t)md->next_mon[l] && !md->demonitored[l][mon])
                ck_assert_int_eq(md->down_seen[l][mon] + d, 1);
            if (md->demonitored[l][mon])
                ck_assert_int_le(md->down_seen[l][mon] + d, 1);
        }
        for (uint64_t corr = 1; corr <= (uint64_t)md->next_corr; corr++) {
            int e = 0;
            for (size_t k = first_ending; k < s->nlog; k++) {
                const brg_msg_t *m = s->log[k].msg;
                if (m->kind == BRG__MSG_REPLY_ERROR && s->log[k].to == l && m->corr == corr) {
                    ck_assert_int_eq(m->status, BRG_ENETWORK);
                    e++;
                }
            }
            want += e;
            if (md->ask_answers[l][corr] || md->ask_open[l][corr])
                ck_assert_int_eq(md->ask_answers[l][corr] + e, 1); // one answer per ask
            else
                ck_assert_int_eq(e, 0);
        }
    }
    ck_assert_int_eq((int)(s->nlog - first_ending), want);
    brg__session_stats_t st = stats(i), peer = stats(1 - i);
    ck_assert_uint_eq(st.links + st.watching + st.watched + st.asks, 0);
    ck_assert_uint_eq(st.msgs_out, st.msgs_acked + st.lost_in_flight);
    ck_assert_uint_eq(md->pushed, st.msgs_out + st.dead_on_end);
    // What the peer received is at least what it acked, at most what left;
    // what did not arrive is within lost_in_flight.
    ck_assert_uint_ge(peer.msgs_in, st.msgs_acked);
    ck_assert_uint_le(peer.msgs_in, st.msgs_out);
    ck_assert_uint_le(st.msgs_out - peer.msgs_in, st.lost_in_flight);
}

static void
r_run(uint64_t seed)
{
    memset(M, 0, sizeof(M));
    RNG = seed * 0x9e3779b97f4a7c15ull | 1;
    S[0].react = r_react;
    S[1].react = r_react;
    lb_handshake();
    int steps = 200 + r_pick(2000);
    for (int step = 0; step < steps; step++) {
        r_op(r_pick(2));
        int what = r_pick(10);
        if (what < 3) {
            lb_flush();
        } else if (what < 5 && QN > 0) {
            lb_frame_t f = lb_pop(); // deliver one frame in flight
            lb_feed(f);
            free(f.data);
        } else if (what == 5) {
            NOW += (uint64_t)r_pick((int)S[0].cfg.tick_ms) * MS; // ticks, never silence
            brg__session_timer(S[0].s, NOW);
            brg__session_timer(S[1].s, NOW);
        }
        ck_assert_int_eq(brg__session_state(S[0].s), BRG__SESS_UP);
        ck_assert_int_eq(brg__session_state(S[1].s), BRG__SESS_UP);
    }
    // The cut: some frames in flight still arrive, the rest are lost, and
    // some pushes were never flushed. Each side then sees the connection
    // close, in a random order.
    if (r_pick(2))
        lb_flush();
    size_t keep = QN ? (size_t)r_pick((int)QN + 1) : 0;
    for (size_t k = 0; k < keep; k++) {
        lb_frame_t f = lb_pop();
        lb_feed(f);
        free(f.data);
    }
    lb_drop_all();
    int first = r_pick(2);
    lb_end(first, BRG__END_CLOSED);
    lb_end(1 - first, BRG__END_CLOSED);
    lb_drop_all();
    r_check_side(0);
    r_check_side(1);
}

START_TEST(test_session_random_mixes_cut_at_a_random_point_keep_every_invariant)
{
    for (uint64_t seed = 1; seed <= 40; seed++) {
        teardown();
        setup();
        r_run(seed + (uint64_t)_i * 1000);
    }
}
END_TEST

//  ---------------------------------------------------------------------------
//  The seeded fuzz loop: the scripts of tests/fuzz/session_driver.h, the
//  seeds mutated, without libFuzzer, so every build fuzzes the session a
//  little (the stress tier more). BRG_FUZZ_SEED picks another seed.

static void
fz_fail(const char *file, int line, const char *what)
{
    ck_abort_msg("%s:%d: session invariant broken: %s", file, line, what);
}

//  xorshift64*: a reproducible stream from the seed.
static uint64_t
fz_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Du;
}

//  One to four mutations of buf (len bytes, room for cap) in place:
//  bit flips, interesting bytes, truncation, a splice of another seed,
//  insertions (a random byte or a whole operation's opcode), deletions.
static size_t
fz_mutate(uint64_t *rng, uint8_t *buf, size_t len, size_t cap, const fz_seed_t *seeds, size_t n)
{
    static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                          0x09, 0x10, 0x11, 0x19, 0x7f, 0x80, 0x90, 0x9f, 0xc0,
                                          0xc1, 0xc7, 0xcf, 0xd9, 0xdd, 0xdf, 0xff};
    int rounds = 1 + (int)(fz_rand(rng) % 4);
    for (int r = 0; r < rounds; r++) {
        uint64_t op = fz_rand(rng) % 7;
        size_t at = len ? (size_t)(fz_rand(rng) % len) : 0;
        switch (op) {
        case 0:
            if (len)
                buf[at] ^= (uint8_t)(1u << (fz_rand(rng) % 8));
            break;
        case 1:
            if (len)
                buf[at] = interesting[fz_rand(rng) % sizeof interesting];
            break;
        case 2:
            len = at;
            break;
        case 3: { // splice: a piece of another seed over the tail from at
            const fz_seed_t *o = &seeds[fz_rand(rng) % n];
            size_t from = (size_t)(fz_rand(rng) % o->len);
            size_t k = o->len - from;
            if (at + k > cap)
                k = cap - at;
            memcpy(buf + at, o->data + from, k);
            if (at + k > len)
                len = at + k;
            break;
        }
        case 4:
        case 5:
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = op == 4 ? (uint8_t)fz_rand(rng) : (uint8_t)(fz_rand(rng) % 10);
                len++;
            }
            break;
        default: { // delete a run
            size_t k = 1 + (size_t)(fz_rand(rng) % 8);
            if (at + k > len)
                k = len - at;
            memmove(buf + at, buf + at + k, len - at - k);
            len -= k;
            break;
        }
        }
    }
    return len;
}

static void
fz_loop(uint64_t seed, long iterations)
{
    const char *env_seed = getenv("BRG_FUZZ_SEED");
    if (env_seed)
        seed = strtoull(env_seed, NULL, 0);
    fz_session_on_fail(fz_fail);
    fz_seed_t *seeds;
    size_t n = fz_session_seeds(&seeds);
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap = seeds[i].len > cap ? seeds[i].len : cap;
    cap *= 2;
    uint8_t *work = malloc(cap);
    ck_assert_ptr_nonnull(work);
    uint64_t rng = seed | 1;
    fz_totals_t before, after;
    fz_session_totals(&before);
    for (long it = 0; it < iterations; it++) {
        size_t k = (size_t)(fz_rand(&rng) % n);
        memcpy(work, seeds[k].data, seeds[k].len);
        size_t len = seeds[k].len;
        if (it >= (long)n) // the seeds themselves first
            len = fz_mutate(&rng, work, len, cap, seeds, n);
        // Exactly len bytes on the heap, so ASan catches a read past the end.
        uint8_t *exact = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(exact);
        memcpy(exact, work, len);
        fz_session_run(exact, len);
        free(exact);
    }
    fz_session_totals(&after);
    // The mutations must leave sessions that come up, deliver, answer their
    // tables and refuse frames, or the loop tests only one of those.
    ck_assert_uint_eq(after.runs - before.runs, (uint64_t)iterations);
    ck_assert_uint_gt(after.ups - before.ups, (uint64_t)iterations / 10);
    ck_assert_uint_gt(after.delivered - before.delivered, 0);
    ck_assert_uint_gt(after.answers - before.answers, 0);
    ck_assert_uint_gt(after.refused - before.refused, (uint64_t)iterations / 100);
    ck_assert_uint_gt(after.replaced - before.replaced, 0);
    ck_assert_uint_gt(after.timeouts - before.timeouts, 0);
    free(work);
    fz_session_seeds_free(seeds, n);
    fz_session_on_fail(NULL);
}

START_TEST(test_session_fuzz_mutated_scripts)
{
    fz_loop(0x5e550001u, 5000);
}
END_TEST

START_TEST(test_session_stress_fuzz_mutated_scripts)
{
    fz_loop(0x5e550002u, 300000); // about 4 s plain; the sanitizer builds of CI run it too
}
END_TEST

//  Writes the seed corpus of tests/fuzz/corpus/session (one file per
//  script) into the directory named by BRG_SESSION_CORPUS_DIR, when set.
START_TEST(test_session_write_corpus)
{
    const char *dir = getenv("BRG_SESSION_CORPUS_DIR");
    if (!dir)
        return;
    fz_seed_t *seeds;
    size_t n = fz_session_seeds(&seeds);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.bin", dir, seeds[i].name);
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(seeds[i].data, 1, seeds[i].len, f), seeds[i].len);
        fclose(f);
    }
    fz_session_seeds_free(seeds, n);
}
END_TEST

Suite *
session_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_session_handshake_brings_both_sides_up_once);
    tcase_add_test(tc, test_session_simultaneous_dials_bring_both_up_with_one_hello_each);
    tcase_add_test(tc, test_session_handshake_refuses_another_version_with_error_1);
    tcase_add_test(tc, test_session_handshake_answers_version_error_code);
    tcase_add_test(tc, test_session_handshake_refuses_another_cluster);
    tcase_add_test(tc, test_session_handshake_refuses_a_connection_to_itself);
    tcase_add_test(tc, test_session_handshake_times_out_without_welcome);
    tcase_add_test(tc, test_session_acceptor_times_out_when_its_hello_is_not_welcomed);
    tcase_add_test(tc, test_session_welcome_without_the_reverse_hello_is_not_up_and_times_out);
    tcase_add_test(tc, test_session_batch_before_hello_is_answered_no_session);
    tcase_add_test(tc, test_session_malformed_bytes_are_answered_error_3);
    tcase_add_test(tc, test_session_client_is_up_after_its_hello_and_gets_frames_through_the_inbox);
    tcase_add_test(tc, test_session_client_session_ends_after_client_idle);
    tcase_add_test(tc, test_session_trace_context_only_to_a_peer_that_said_trace);
    tcase_add_test(tc, test_session_new_hello_from_same_node_replaces_the_session);
    tcase_add_test(tc, test_session_duplicate_hello_with_same_id_is_a_protocol_error);
    tcase_add_test(tc, test_session_long_stream_arrives_in_order_in_full_batches);
    tcase_add_test(tc, test_session_batch_is_sealed_at_64_kib_and_a_big_message_goes_alone);
    tcase_add_test(tc, test_session_sequence_gap_ends_with_error_2_and_delivers_nothing_after_it);
    tcase_add_test(tc,
                   test_session_duplicated_or_reordered_batch_ends_it_without_a_second_delivery);
    tcase_add_test(tc, test_session_tick_acking_a_frame_never_sent_is_a_sequence_error);
    tcase_add_test(tc, test_session_ticks_keep_it_alive_and_ack_what_arrived);
    tcase_add_test(tc, test_session_silence_ends_it_with_timeout_within_timeout_plus_tick);
    tcase_add_test(tc, test_session_a_peers_huge_timeout_is_capped_at_ten_times_ours);
    tcase_add_test(tc, test_session_timer_returns_the_next_deadline);
    tcase_add_test(tc, test_session_bye_flushes_then_ends_both_sides);
    tcase_add_test(tc, test_session_end_answers_every_table_entry_exactly_once);
    tcase_add_test(tc, test_session_entries_removed_by_their_closing_signals_are_not_answered);
    tcase_add_test(tc, test_session_answers_come_after_every_delivered_message);
    tcase_add_test(tc, test_session_counters_add_up_after_a_cut);
    tcase_add_test(tc, test_session_many_unacked_frames_keep_lost_in_flight_an_upper_bound);
    tcase_add_test(tc, test_session_table_bound_answers_links_and_monitors_at_once);
    tcase_add_test(tc,
                   test_session_inbound_link_or_monitor_past_the_bound_is_answered_over_the_wire);
    tcase_add_test(tc, test_session_asks_past_the_bound_are_sent_without_an_entry);
    tcase_add_test(tc, test_session_push_refuses_what_cannot_go_on_the_wire);
    tcase_add_test(tc, test_session_stop_and_exit_signal_without_a_sender_cross);
    tcase_add_test(tc, test_session_target_on_another_node_is_delivered_to_id_0);
    tcase_add_test(tc, test_session_actors_get_noconnection_and_enetwork_after_what_was_delivered);
    tcase_add_loop_test(tc, test_session_random_mixes_cut_at_a_random_point_keep_every_invariant, 0,
                        5);
    tcase_add_test(tc, test_session_ref_to_another_node_is_a_dead_letter_not_a_local_delivery);
    tcase_add_test(tc, test_session_reply_to_an_ask_that_never_was_is_a_counted_late_reply);
    tcase_add_test(tc, test_session_hello_at_each_limit_is_taken_and_one_over_is_refused);
    tcase_add_test(tc, test_session_batch_at_each_limit_is_taken_and_one_over_is_refused);
    tcase_add_test(tc, test_session_deep_nesting_is_refused_without_recursion);
    tcase_add_test(tc, test_session_names_and_tags_that_are_not_utf8_are_refused);
    tcase_add_test(tc, test_session_bytes_in_counts_every_frame);
    tcase_add_test(tc, test_session_fuzz_mutated_scripts);
    tcase_add_test(tc, test_session_write_corpus);
    suite_add_tcase(s, tc);
    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_set_timeout(stress, 600);
    tcase_add_test(stress, test_session_stress_fuzz_mutated_scripts);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(session_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
