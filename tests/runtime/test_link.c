//  test_link - exit reasons, links, monitors, trapped exits, brg_exit and
//  brg_fail, case by case (Erlang semantics, include/brigade/link.h).
//
//  Most tests drive "probe" actors with commands from the test thread and
//  read what the probes saw (EXIT, DOWN and result messages) from a shared
//  event log. A probe holds its worker on "hold" until the test opens the
//  gate, which is how a test puts a signal in flight at a chosen moment.
#include "test_util.h"

//  ---------------------------------------------------------------------------
//  The event log and the probe

#define TL_PROBES 8
#define TL_EVENTS 64
#define TL_QUIET_MS 50 // how long "nothing else arrives" is watched for

typedef struct {
    int probe;                // which probe saw it
    char tag[16];             // "exit", "down" or "result"
    brg_ref_t from;           // sender
    brg_exit_reason_t reason; // EXIT and DOWN
    uint64_t monitor;         // DOWN
} tl_event_t;

static pthread_mutex_t tl_lock = PTHREAD_MUTEX_INITIALIZER;
static tl_event_t tl_events[TL_EVENTS];
static atomic_int tl_nevents;
static atomic_int tl_acks[TL_PROBES];   // commands a probe has handled
static atomic_int tl_rc[TL_PROBES];     // the last command's result
static atomic_ullong tl_mon[TL_PROBES]; // the last monitor id a probe got
static brg_ref_t tl_spawned[TL_PROBES]; // the last child a probe spawned (tl_lock)
static atomic_int tl_gate, tl_held;

static void
tl_record(int probe, const char *tag, brg_ref_t from, const brg_exit_reason_t *reason,
          uint64_t monitor)
{
    pthread_mutex_lock(&tl_lock);
    int n = atomic_load(&tl_nevents);
    if (n < TL_EVENTS) {
        tl_event_t *e = &tl_events[n];
        e->probe = probe;
        snprintf(e->tag, sizeof(e->tag), "%s", tag);
        e->from = from;
        if (reason)
            e->reason = *reason;
        e->monitor = monitor;
        atomic_store(&tl_nevents, n + 1);
    }
    pthread_mutex_unlock(&tl_lock);
}

static tl_event_t
tl_event(int i)
{
    pthread_mutex_lock(&tl_lock);
    tl_event_t e = tl_events[i];
    pthread_mutex_unlock(&tl_lock);
    return e;
}

//  Events of one probe with one tag.
static int
tl_count(int probe, const char *tag)
{
    int n = 0;
    pthread_mutex_lock(&tl_lock);
    for (int i = 0; i < atomic_load(&tl_nevents); i++)
        if (tl_events[i].probe == probe && strcmp(tl_events[i].tag, tag) == 0)
            n++;
    pthread_mutex_unlock(&tl_lock);
    return n;
}

//  The first event of a probe with a tag (the test fails if there is none).
static tl_event_t
tl_first(int probe, const char *tag)
{
    for (int i = 0; i < atomic_load(&tl_nevents); i++) {
        tl_event_t e = tl_event(i);
        if (e.probe == probe && strcmp(e.tag, tag) == 0)
            return e;
    }
    ck_abort_msg("probe %d saw no %s", probe, tag);
    return tl_event(0);
}

static int
tl_init_fail(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    brg_fail(ctx, -1234, "init boom");
    return BRG_OK;
}

static int
tl_idle(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

//  After "hold" lets go: what the probe does next.
enum { TL_THEN_NOTHING = 0, TL_THEN_STOP, TL_THEN_FAIL, TL_THEN_DEMONITOR };

static int
tl_probe(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int id = *(int *)brg_state(ctx);
    size_t pos = 0;
    brg_ref_t ref = BRG_REF_NONE;
    int64_t n = 0;
    int rc = BRG_OK;
    brg_exit_reason_t reason;
    uint64_t mon;
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        if (brg_msg_read_exit(msg, &ref, &reason) == BRG_OK)
            tl_record(id, "exit", ref, &reason, 0);
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        if (brg_msg_read_down(msg, &ref, &mon, &reason) == BRG_OK)
            tl_record(id, "down", ref, &reason, mon);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "result")) {
        tl_record(id, "result", brg_msg_sender(msg), NULL, 0);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "ping")) {
        brg_msg_t *pong = brg_msg_new("pong");
        return brg_reply(ctx, &pong);
    }
    if (brg_msg_peek(msg, 0) == BRG_TYPE_EXT)
        brg_msg_read_ref(msg, &pos, &ref);
    else if (brg_msg_peek(msg, 0) == BRG_TYPE_INT)
        brg_msg_read_int(msg, &pos, &n);
    if (brg_msg_is(msg, "trap")) {
        brg_trap_exits(ctx, true);
    } else if (brg_msg_is(msg, "link")) {
        rc = brg_link(ctx, ref);
    } else if (brg_msg_is(msg, "unlink")) {
        rc = brg_unlink(ctx, ref);
    } else if (brg_msg_is(msg, "is_linked")) {
        rc = brg_is_linked(ctx, ref) ? 1 : 0;
    } else if (brg_msg_is(msg, "monitor")) {
        rc = brg_monitor(ctx, ref, &mon);
        atomic_store(&tl_mon[id], mon);
    } else if (brg_msg_is(msg, "demonitor")) {
        rc = brg_demonitor(ctx, atomic_load(&tl_mon[id]));
    } else if (brg_msg_is(msg, "hold")) {
        atomic_store(&tl_held, 1);
        tu_gate_wait(&tl_gate);
        if (n == TL_THEN_STOP)
            brg_stop(ctx);
        else if (n == TL_THEN_FAIL)
            brg_fail(ctx, -77, "failed while held");
        else if (n == TL_THEN_DEMONITOR)
            rc = brg_demonitor(ctx, atomic_load(&tl_mon[id]));
    } else if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
    } else if (brg_msg_is(msg, "fail")) {
        brg_fail(ctx, (int)n, "boom");
    } else if (brg_msg_is(msg, "fail_long")) {
        char text[200];
        memset(text, 'x', sizeof(text) - 1);
        text[sizeof(text) - 1] = '\0';
        brg_fail(ctx, -9, text);
    } else if (brg_msg_is(msg, "return")) {
        rc = (int)n; // a negative result fails the actor with this code
    } else if (brg_msg_is(msg, "send_then_stop")) {
        brg_send_tag(ctx, ref, "result");
        brg_stop(ctx);
    } else if (brg_msg_is(msg, "spawn_link") || brg_msg_is(msg, "spawn_monitor")) {
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.init = tl_init_fail;
        opts.flags = brg_msg_is(msg, "spawn_link") ? BRG_SPAWN_LINK : BRG_SPAWN_MONITOR;
        opts.monitor = &mon;
        brg_ref_t child = BRG_REF_NONE;
        rc = brg_spawn(ctx, tl_idle, &opts, &child);
        if (opts.flags == BRG_SPAWN_MONITOR)
            atomic_store(&tl_mon[id], mon);
        pthread_mutex_lock(&tl_lock);
        tl_spawned[id] = child;
        pthread_mutex_unlock(&tl_lock);
    } else {
        return BRG_UNHANDLED;
    }
    atomic_store(&tl_rc[id], rc);
    atomic_fetch_add(&tl_acks[id], 1);
    return brg_msg_is(msg, "return") ? rc : BRG_OK;
}

//  Send a command and wait until the probe has handled it; returns its rc.
static int
tl_cmd(brg_ref_t probe, int id, const char *tag)
{
    int before = atomic_load(&tl_acks[id]);
    ck_assert_int_eq(tu_send_tag(tu_sys, probe, tag), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tl_acks[id]) > before, TU_WAIT_MS);
    return atomic_load(&tl_rc[id]);
}

static int
tl_cmd_ref(brg_ref_t probe, int id, const char *tag, brg_ref_t arg)
{
    int before = atomic_load(&tl_acks[id]);
    brg_msg_t *msg = brg_msg_new(tag);
    ck_assert_int_eq(brg_msg_add_ref(msg, arg), BRG_OK);
    ck_assert_int_eq(brg_system_send(tu_sys, probe, &msg), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tl_acks[id]) > before, TU_WAIT_MS);
    return atomic_load(&tl_rc[id]);
}

//  Send a command without waiting for it (it may end the probe).
static void
tl_post_int(brg_ref_t probe, const char *tag, int64_t value)
{
    ck_assert_int_eq(tu_send_int(tu_sys, probe, tag, value), BRG_OK);
}

//  A round trip through probe: everything sent to it before has been handled.
static void
tl_sync(brg_ref_t probe)
{
    brg_msg_t *ping = brg_msg_new("ping"), *pong = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, probe, &ping, TU_WAIT_MS, &pong), BRG_OK);
    brg_msg_destroy(&pong);
}

//  A probe: its id is its state, so it knows which slot of the arrays is its.
static brg_ref_t
tl_probe_new(int id)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    int *state = malloc(sizeof(int));
    ck_assert_ptr_nonnull(state);
    *state = id;
    opts.state = state;
    opts.state_destroy = free;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tl_probe, &opts, &ref), BRG_OK);
    return ref;
}

//  Wait until no further event arrives for a while, then return the count.
static int
tl_quiet_count(void)
{
    tu_sleep_ms((uint64_t)(TL_QUIET_MS * tu_multiplier()));
    return atomic_load(&tl_nevents);
}

//  ---------------------------------------------------------------------------
//  Monitors

START_TEST(test_link_monitor_gives_exactly_one_down_with_the_failure_reason)
{
    brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
    ck_assert_int_eq(tl_cmd_ref(watcher, 0, "monitor", target), BRG_OK);
    uint64_t mon = atomic_load(&tl_mon[0]);
    ck_assert_uint_ne(mon, 0);
    tl_post_int(target, "fail", -42);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "down");
    ck_assert(brg_ref_eq(e.from, target));
    ck_assert_uint_eq(e.monitor, mon);
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(e.reason.code, -42);
    ck_assert_str_eq(e.reason.text, "boom");
    ck_assert_int_eq(tl_quiet_count(), 1);
    ck_assert(brg_system_is_alive(tu_sys, watcher));
}
END_TEST

START_TEST(test_link_monitor_gives_down_normal_when_the_target_stops)
{
    brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
    tl_cmd_ref(watcher, 0, "monitor", target);
    tl_post_int(target, "stop", 0);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "down");
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_NORMAL);
    ck_assert(!brg_exit_is_abnormal(&e.reason));
    ck_assert_int_eq(tl_quiet_count(), 1);
}
END_TEST

START_TEST(test_link_monitor_on_an_already_dead_actor_gives_down_noproc)
{
    brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
    tl_post_int(target, "stop", 0);
    TU_WAIT_DEAD(tu_sys, target);
    ck_assert_int_eq(tl_cmd_ref(watcher, 0, "monitor", target), BRG_OK);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "down");
    ck_assert(brg_ref_eq(e.from, target));
    ck_assert_uint_eq(e.monitor, atomic_load(&tl_mon[0]));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_NOPROC);
    ck_assert_int_eq(tl_quiet_count(), 1);
}
END_TEST

START_TEST(test_link_monitor_that_reaches_an_actor_just_after_it_died_gives_down_noproc)
{
    brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
    tl_post_int(target, "hold", TL_THEN_STOP);
    TU_WAIT_UNTIL(atomic_load(&tl_held), TU_WAIT_MS);
    // The MONITOR request waits in the held target's mailbox; the target
    // then stops without ever handling it.
    ck_assert_int_eq(tl_cmd_ref(watcher, 0, "monitor", target), BRG_OK);
    atomic_store(&tl_gate, 1);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    ck_assert_int_eq(tl_first(0, "down").reason.kind, BRG_EXIT_NOPROC);
    ck_assert_int_eq(tl_quiet_count(), 1);
}
END_TEST

START_TEST(test_link_demonitor_drops_a_down_already_in_flight)
{
    brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
    tl_cmd_ref(watcher, 0, "monitor", target);
    tl_sync(target); // the target has the monitor
    // Hold the watcher, let the target die so its DOWN queues behind the
    // hold, then demonitor before the watcher reads its mailbox again.
    tl_post_int(watcher, "hold", TL_THEN_DEMONITOR);
    TU_WAIT_UNTIL(atomic_load(&tl_held), TU_WAIT_MS);
    tl_post_int(target, "fail", -1);
    TU_WAIT_DEAD(tu_sys, target);
    int before = atomic_load(&tl_acks[0]);
    atomic_store(&tl_gate, 1);
    TU_WAIT_UNTIL(atomic_load(&tl_acks[0]) > before, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&tl_rc[0]), BRG_OK);
    tl_sync(watcher);
    ck_assert_int_eq(tl_quiet_count(), 0);
    ck_assert_int_eq(tl_cmd(watcher, 0, "demonitor"), BRG_ENOTFOUND);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Links

START_TEST(test_link_to_a_dead_actor_returns_enoactor_and_sends_nothing)
{
    brg_ref_t a = tl_probe_new(0), dead = tl_probe_new(1);
    tl_cmd(a, 0, "trap");
    tl_post_int(dead, "stop", 0);
    TU_WAIT_DEAD(tu_sys, dead);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "link", dead), BRG_ENOACTOR);
    ck_assert_int_eq(tl_quiet_count(), 0);
    ck_assert(brg_system_is_alive(tu_sys, a));
}
END_TEST

START_TEST(test_link_that_reaches_an_actor_just_after_it_died_gives_exit_noproc)
{
    brg_ref_t a = tl_probe_new(0), target = tl_probe_new(1);
    tl_cmd(a, 0, "trap");
    tl_post_int(target, "hold", TL_THEN_STOP);
    TU_WAIT_UNTIL(atomic_load(&tl_held), TU_WAIT_MS);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "link", target), BRG_OK); // still alive: queued
    atomic_store(&tl_gate, 1);
    TU_WAIT_UNTIL(tl_count(0, "exit") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "exit");
    ck_assert(brg_ref_eq(e.from, target));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_NOPROC);
    ck_assert_int_eq(tl_quiet_count(), 1);
}
END_TEST

START_TEST(test_link_a_non_trapping_actor_linked_too_late_dies_with_noproc)
{
    brg_ref_t a = tl_probe_new(0), target = tl_probe_new(1), watcher = tl_probe_new(2);
    tl_cmd_ref(watcher, 2, "monitor", a);
    tl_post_int(target, "hold", TL_THEN_STOP);
    TU_WAIT_UNTIL(atomic_load(&tl_held), TU_WAIT_MS);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "link", target), BRG_OK);
    atomic_store(&tl_gate, 1);
    TU_WAIT_UNTIL(tl_count(2, "down") == 1, TU_WAIT_MS);
    ck_assert_int_eq(tl_first(2, "down").reason.kind, BRG_EXIT_NOPROC);
    TU_WAIT_DEAD(tu_sys, a);
}
END_TEST

START_TEST(test_link_linked_twice_then_dying_gives_one_exit_with_the_real_reason)
{
    // The parent links, then links again while the child is busy; the child
    // dies with that second LINK still in its mailbox. Linking twice is one
    // link: one EXIT, with the real reason (not noproc). A start function that
    // spawns with BRG_SPAWN_LINK and a supervisor that then calls brg_link
    // are this case.
    brg_ref_t parent = tl_probe_new(0), child = tl_probe_new(1);
    tl_cmd(parent, 0, "trap");
    tl_cmd_ref(parent, 0, "link", child);
    tl_sync(child); // both ends linked
    tl_post_int(child, "hold", TL_THEN_FAIL);
    TU_WAIT_UNTIL(atomic_load(&tl_held), TU_WAIT_MS);
    ck_assert_int_eq(tl_cmd_ref(parent, 0, "link", child), BRG_OK); // queued behind the hold
    atomic_store(&tl_gate, 1);
    TU_WAIT_UNTIL(tl_count(0, "exit") >= 1, TU_WAIT_MS);
    ck_assert_int_eq(tl_quiet_count(), 1);
    tl_event_t e = tl_first(0, "exit");
    ck_assert(brg_ref_eq(e.from, child));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(e.reason.code, -77);
    ck_assert_str_eq(e.reason.text, "failed while held");
}
END_TEST

START_TEST(test_link_abnormal_exit_propagates_along_a_chain_with_the_same_reason)
{
    brg_ref_t a = tl_probe_new(0), b = tl_probe_new(1), c = tl_probe_new(2);
    brg_ref_t observer = tl_probe_new(3);
    tl_cmd(observer, 3, "trap");
    ck_assert_int_eq(tl_cmd_ref(observer, 3, "link", a), BRG_OK);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "link", b), BRG_OK);
    ck_assert_int_eq(tl_cmd_ref(b, 1, "link", c), BRG_OK);
    tl_sync(a);
    tl_sync(b);
    tl_sync(c); // every LINK request has been applied
    tl_post_int(c, "return", BRG_ETIMEDOUT);
    TU_WAIT_UNTIL(tl_count(3, "exit") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(3, "exit");
    ck_assert(brg_ref_eq(e.from, a));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(e.reason.code, BRG_ETIMEDOUT);
    TU_WAIT_DEAD(tu_sys, a);
    TU_WAIT_DEAD(tu_sys, b);
    TU_WAIT_DEAD(tu_sys, c);
    ck_assert(brg_system_is_alive(tu_sys, observer));
}
END_TEST

START_TEST(test_link_normal_exit_does_not_kill_a_non_trapping_linked_actor)
{
    brg_ref_t a = tl_probe_new(0), b = tl_probe_new(1);
    tl_cmd_ref(a, 0, "link", b);
    tl_sync(b);
    tl_post_int(b, "stop", 0);
    TU_WAIT_DEAD(tu_sys, b);
    tl_sync(a); // the EXIT (normal) has been handled by now
    ck_assert(brg_system_is_alive(tu_sys, a));
    ck_assert_int_eq(tl_quiet_count(), 0);
}
END_TEST

START_TEST(test_link_trapping_actor_gets_exit_messages_for_normal_and_abnormal_exits)
{
    brg_ref_t a = tl_probe_new(0), b = tl_probe_new(1), c = tl_probe_new(2);
    tl_cmd(a, 0, "trap");
    tl_cmd_ref(a, 0, "link", b);
    tl_cmd_ref(a, 0, "link", c);
    tl_sync(b);
    tl_sync(c);
    tl_post_int(b, "stop", 0);
    TU_WAIT_UNTIL(tl_count(0, "exit") == 1, TU_WAIT_MS);
    tl_post_int(c, "fail", -5);
    TU_WAIT_UNTIL(tl_count(0, "exit") == 2, TU_WAIT_MS);
    tl_event_t first = tl_event(0), second = tl_event(1);
    ck_assert(brg_ref_eq(first.from, b));
    ck_assert_int_eq(first.reason.kind, BRG_EXIT_NORMAL);
    ck_assert(brg_ref_eq(second.from, c));
    ck_assert_int_eq(second.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(second.reason.code, -5);
    ck_assert(brg_system_is_alive(tu_sys, a));
}
END_TEST

START_TEST(test_link_unlink_means_a_later_exit_is_not_seen)
{
    brg_ref_t a = tl_probe_new(0), b = tl_probe_new(1);
    tl_cmd(a, 0, "trap");
    tl_cmd_ref(a, 0, "link", b);
    tl_sync(b);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "unlink", b), BRG_OK);
    tl_post_int(b, "fail", -1);
    TU_WAIT_DEAD(tu_sys, b);
    tl_sync(a);
    ck_assert_int_eq(tl_quiet_count(), 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  brg_exit

//  brg_is_linked sees both ends' links and unlinks, once the other end's
//  signal has been handled.
START_TEST(test_link_is_linked_follows_links_and_unlinks_from_either_end)
{
    brg_ref_t a = tl_probe_new(0), b = tl_probe_new(1);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "is_linked", b), 0);
    tl_cmd_ref(a, 0, "link", b);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "is_linked", b), 1); // our own end, at once
    tl_sync(b);
    ck_assert_int_eq(tl_cmd_ref(b, 1, "is_linked", a), 1); // the LINK was handled
    ck_assert_int_eq(tl_cmd_ref(b, 1, "unlink", a), BRG_OK);
    ck_assert_int_eq(tl_cmd_ref(b, 1, "is_linked", a), 0);
    tl_sync(a); // the UNLINK, sent before the ping, was handled before it
    ck_assert_int_eq(tl_cmd_ref(a, 0, "is_linked", b), 0);
    ck_assert_int_eq(tl_cmd_ref(a, 0, "is_linked", BRG_REF_NONE), 0);
}
END_TEST

START_TEST(test_link_exit_shutdown_stops_a_non_trapping_actor_with_reason_shutdown)
{
    brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
    tl_cmd_ref(watcher, 0, "monitor", target);
    tl_sync(target);
    ck_assert_int_eq(brg_exit(tu_sys, target, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    ck_assert_int_eq(tl_first(0, "down").reason.kind, BRG_EXIT_SHUTDOWN);
    ck_assert_int_eq(brg_exit(tu_sys, target, BRG_EXIT_SHUTDOWN), BRG_ENOACTOR);
}
END_TEST

START_TEST(test_link_exit_shutdown_to_a_trapping_actor_is_an_exit_message_from_nobody)
{
    brg_ref_t a = tl_probe_new(0);
    tl_cmd(a, 0, "trap");
    ck_assert_int_eq(brg_exit(tu_sys, a, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_UNTIL(tl_count(0, "exit") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "exit");
    ck_assert(brg_ref_is_none(e.from));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_SHUTDOWN);
    tl_sync(a);
    ck_assert(brg_system_is_alive(tu_sys, a));
}
END_TEST

START_TEST(test_link_exit_killed_kills_even_a_trapping_actor)
{
    brg_ref_t a = tl_probe_new(0), watcher = tl_probe_new(1), linked = tl_probe_new(2);
    tl_cmd(a, 0, "trap");
    tl_cmd(linked, 2, "trap");
    tl_cmd_ref(watcher, 1, "monitor", a);
    tl_cmd_ref(linked, 2, "link", a);
    tl_sync(a);
    ck_assert_int_eq(brg_exit(tu_sys, a, BRG_EXIT_KILLED), BRG_OK);
    TU_WAIT_DEAD(tu_sys, a);
    TU_WAIT_UNTIL(tl_count(1, "down") == 1 && tl_count(2, "exit") == 1, TU_WAIT_MS);
    ck_assert_int_eq(tl_first(1, "down").reason.kind, BRG_EXIT_KILLED);
    ck_assert_int_eq(tl_first(2, "exit").reason.kind, BRG_EXIT_KILLED);
    ck_assert_int_eq(tl_count(0, "exit"), 0);
}
END_TEST

START_TEST(test_link_exit_overtakes_ordinary_messages)
{
    brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
    tl_cmd_ref(watcher, 0, "monitor", target);
    tl_sync(target);
    tl_post_int(target, "hold", TL_THEN_NOTHING);
    TU_WAIT_UNTIL(atomic_load(&tl_held), TU_WAIT_MS);
    int before = atomic_load(&tl_acks[1]);
    for (int i = 0; i < 10; i++)
        tl_post_int(target, "trap", 0); // would be handled if the exit waited its turn
    ck_assert_int_eq(brg_exit(tu_sys, target, BRG_EXIT_SHUTDOWN), BRG_OK);
    atomic_store(&tl_gate, 1);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    ck_assert_int_eq(tl_first(0, "down").reason.kind, BRG_EXIT_SHUTDOWN);
    ck_assert_int_eq(atomic_load(&tl_acks[1]), before + 1); // only the hold
}
END_TEST

//  ---------------------------------------------------------------------------
//  Ordering, spawn flags, brg_fail and counters

START_TEST(test_link_result_sent_just_before_a_normal_exit_arrives_before_the_down)
{
    for (int round = 0; round < 50; round++) {
        atomic_store(&tl_nevents, 0);
        brg_ref_t watcher = tl_probe_new(0), target = tl_probe_new(1);
        tl_cmd_ref(watcher, 0, "monitor", target);
        brg_msg_t *msg = brg_msg_new("send_then_stop");
        brg_msg_add_ref(msg, watcher);
        ck_assert_int_eq(brg_system_send(tu_sys, target, &msg), BRG_OK);
        TU_WAIT_UNTIL(atomic_load(&tl_nevents) == 2, TU_WAIT_MS);
        ck_assert_str_eq(tl_event(0).tag, "result");
        ck_assert_str_eq(tl_event(1).tag, "down");
        ck_assert_int_eq(tl_event(1).reason.kind, BRG_EXIT_NORMAL);
        tl_post_int(watcher, "stop", 0);
        TU_WAIT_DEAD(tu_sys, watcher);
    }
}
END_TEST

START_TEST(test_link_spawn_link_with_init_that_fails_at_once_gives_the_exit_with_its_reason)
{
    brg_ref_t parent = tl_probe_new(0);
    tl_cmd(parent, 0, "trap");
    ck_assert_int_eq(tl_cmd(parent, 0, "spawn_link"), BRG_OK);
    TU_WAIT_UNTIL(tl_count(0, "exit") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "exit");
    pthread_mutex_lock(&tl_lock);
    brg_ref_t child = tl_spawned[0];
    pthread_mutex_unlock(&tl_lock);
    ck_assert(brg_ref_eq(e.from, child));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(e.reason.code, -1234);
    ck_assert_str_eq(e.reason.text, "init boom");
    ck_assert_int_eq(tl_quiet_count(), 1);
}
END_TEST

START_TEST(test_link_spawn_link_child_failing_at_once_takes_a_non_trapping_parent_along)
{
    brg_ref_t parent = tl_probe_new(0), watcher = tl_probe_new(1);
    tl_cmd_ref(watcher, 1, "monitor", parent);
    tl_post_int(parent, "spawn_link", 0);
    TU_WAIT_UNTIL(tl_count(1, "down") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(1, "down");
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(e.reason.code, -1234);
    TU_WAIT_DEAD(tu_sys, parent);
}
END_TEST

START_TEST(test_link_spawn_monitor_with_init_that_fails_at_once_gives_the_down_with_its_reason)
{
    brg_ref_t parent = tl_probe_new(0);
    ck_assert_int_eq(tl_cmd(parent, 0, "spawn_monitor"), BRG_OK);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "down");
    pthread_mutex_lock(&tl_lock);
    brg_ref_t child = tl_spawned[0];
    pthread_mutex_unlock(&tl_lock);
    ck_assert(brg_ref_eq(e.from, child));
    ck_assert_uint_eq(e.monitor, atomic_load(&tl_mon[0]));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(e.reason.code, -1234);
    ck_assert_str_eq(e.reason.text, "init boom");
    ck_assert_int_eq(tl_quiet_count(), 1);
    ck_assert(brg_system_is_alive(tu_sys, parent)); // a monitor never kills
}
END_TEST

START_TEST(test_link_fail_text_is_truncated_and_a_returned_code_is_named)
{
    brg_ref_t watcher = tl_probe_new(0), a = tl_probe_new(1), b = tl_probe_new(2);
    tl_cmd_ref(watcher, 0, "monitor", a);
    tl_cmd_ref(watcher, 0, "monitor", b);
    tl_sync(a);
    tl_sync(b);
    tl_post_int(a, "return", BRG_ENOMEM);
    TU_WAIT_UNTIL(tl_count(0, "down") == 1, TU_WAIT_MS);
    tl_event_t e = tl_first(0, "down");
    ck_assert(brg_ref_eq(e.from, a));
    ck_assert_int_eq(e.reason.code, BRG_ENOMEM);
    ck_assert_str_eq(e.reason.text, "BRG_ENOMEM");
    tl_post_int(b, "fail_long", 0);
    TU_WAIT_UNTIL(tl_count(0, "down") == 2, TU_WAIT_MS);
    e = tl_event(1);
    ck_assert(brg_ref_eq(e.from, b));
    ck_assert_int_eq(e.reason.code, -9);
    ck_assert_uint_eq(strlen(e.reason.text), BRG_EXIT_TEXT_MAX);
}
END_TEST

START_TEST(test_link_exit_kind_names_and_abnormal_test)
{
    ck_assert_str_eq(brg_exit_kind_name(BRG_EXIT_NORMAL), "normal");
    ck_assert_str_eq(brg_exit_kind_name(BRG_EXIT_SHUTDOWN), "shutdown");
    ck_assert_str_eq(brg_exit_kind_name(BRG_EXIT_KILLED), "killed");
    ck_assert_str_eq(brg_exit_kind_name(BRG_EXIT_FAILED), "failed");
    ck_assert_str_eq(brg_exit_kind_name(BRG_EXIT_NOPROC), "noproc");
    brg_exit_reason_t r = {BRG_EXIT_NORMAL, 0, ""};
    ck_assert(!brg_exit_is_abnormal(&r));
    for (int k = BRG_EXIT_SHUTDOWN; k <= BRG_EXIT_NOPROC; k++) {
        r.kind = (brg_exit_kind_t)k;
        ck_assert(brg_exit_is_abnormal(&r));
    }
}
END_TEST

START_TEST(test_link_read_exit_and_read_down_reject_other_messages)
{
    brg_msg_t *msg = brg_msg_new("brg.other");
    brg_ref_t from;
    uint64_t mon;
    brg_exit_reason_t r;
    ck_assert_int_eq(brg_msg_read_exit(msg, &from, &r), BRG_ETYPE);
    ck_assert_int_eq(brg_msg_read_down(msg, &from, &mon, &r), BRG_ETYPE);
    brg_msg_destroy(&msg);
    // A forged EXIT with a payload of the wrong shape is an error, not a crash.
    msg = brg_msg_new(BRG_TAG_EXIT);
    brg_msg_add_str(msg, "not a reason");
    ck_assert_int_lt(brg_msg_read_exit(msg, &from, &r), 0);
    brg_msg_destroy(&msg);
    msg = brg_msg_new(BRG_TAG_EXIT);
    brg_msg_add_int(msg, 99); // no such kind
    brg_msg_add_int(msg, 0);
    brg_msg_add_str(msg, "");
    ck_assert_int_eq(brg_msg_read_exit(msg, &from, &r), BRG_ERANGE);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_link_stats_count_failed_and_killed_actors_but_not_normal_or_shutdown)
{
    brg_stats_t before = tu_stats(tu_sys);
    brg_ref_t normal = tl_probe_new(0), shutdown = tl_probe_new(1);
    brg_ref_t failed = tl_probe_new(2), killed = tl_probe_new(3), returned = tl_probe_new(4);
    tl_post_int(normal, "stop", 0);
    ck_assert_int_eq(brg_exit(tu_sys, shutdown, BRG_EXIT_SHUTDOWN), BRG_OK);
    tl_post_int(failed, "fail", -3);
    ck_assert_int_eq(brg_exit(tu_sys, killed, BRG_EXIT_KILLED), BRG_OK);
    tl_post_int(returned, "return", BRG_EINVAL);
    TU_WAIT_DEAD(tu_sys, normal);
    TU_WAIT_DEAD(tu_sys, shutdown);
    TU_WAIT_DEAD(tu_sys, failed);
    TU_WAIT_DEAD(tu_sys, killed);
    TU_WAIT_DEAD(tu_sys, returned);
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_stopped == before.actors_stopped + 5, TU_WAIT_MS);
    brg_stats_t after = tu_stats(tu_sys);
    ck_assert_uint_eq(after.actors_failed - before.actors_failed, 3);
    ck_assert_uint_eq(after.actors_alive, before.actors_alive);
}
END_TEST

Suite *
link_suite(void)
{
    Suite *s = suite_create("link");
    TCase *mon = tcase_create("monitors");
    tcase_add_checked_fixture(mon, tu_setup, tu_teardown);
    tcase_set_timeout(mon, 20);
    tcase_add_test(mon, test_link_monitor_gives_exactly_one_down_with_the_failure_reason);
    tcase_add_test(mon, test_link_monitor_gives_down_normal_when_the_target_stops);
    tcase_add_test(mon, test_link_monitor_on_an_already_dead_actor_gives_down_noproc);
    tcase_add_test(mon,
                   test_link_monitor_that_reaches_an_actor_just_after_it_died_gives_down_noproc);
    tcase_add_test(mon, test_link_demonitor_drops_a_down_already_in_flight);
    suite_add_tcase(s, mon);

    TCase *links = tcase_create("links");
    tcase_add_checked_fixture(links, tu_setup, tu_teardown);
    tcase_set_timeout(links, 20);
    tcase_add_test(links, test_link_to_a_dead_actor_returns_enoactor_and_sends_nothing);
    tcase_add_test(links, test_link_that_reaches_an_actor_just_after_it_died_gives_exit_noproc);
    tcase_add_test(links, test_link_a_non_trapping_actor_linked_too_late_dies_with_noproc);
    tcase_add_test(links, test_link_linked_twice_then_dying_gives_one_exit_with_the_real_reason);
    tcase_add_test(links, test_link_abnormal_exit_propagates_along_a_chain_with_the_same_reason);
    tcase_add_test(links, test_link_normal_exit_does_not_kill_a_non_trapping_linked_actor);
    tcase_add_test(links,
                   test_link_trapping_actor_gets_exit_messages_for_normal_and_abnormal_exits);
    tcase_add_test(links, test_link_unlink_means_a_later_exit_is_not_seen);
    tcase_add_test(links, test_link_is_linked_follows_links_and_unlinks_from_either_end);
    suite_add_tcase(s, links);

    TCase *exits = tcase_create("exit signals");
    tcase_add_checked_fixture(exits, tu_setup, tu_teardown);
    tcase_set_timeout(exits, 20);
    tcase_add_test(exits, test_link_exit_shutdown_stops_a_non_trapping_actor_with_reason_shutdown);
    tcase_add_test(exits,
                   test_link_exit_shutdown_to_a_trapping_actor_is_an_exit_message_from_nobody);
    tcase_add_test(exits, test_link_exit_killed_kills_even_a_trapping_actor);
    tcase_add_test(exits, test_link_exit_overtakes_ordinary_messages);
    suite_add_tcase(s, exits);

    TCase *misc = tcase_create("ordering and counters");
    tcase_add_checked_fixture(misc, tu_setup, tu_teardown);
    tcase_set_timeout(misc, 30);
    tcase_add_test(misc, test_link_result_sent_just_before_a_normal_exit_arrives_before_the_down);
    tcase_add_test(
        misc, test_link_spawn_link_with_init_that_fails_at_once_gives_the_exit_with_its_reason);
    tcase_add_test(misc,
                   test_link_spawn_link_child_failing_at_once_takes_a_non_trapping_parent_along);
    tcase_add_test(
        misc, test_link_spawn_monitor_with_init_that_fails_at_once_gives_the_down_with_its_reason);
    tcase_add_test(misc, test_link_fail_text_is_truncated_and_a_returned_code_is_named);
    tcase_add_test(misc, test_link_exit_kind_names_and_abnormal_test);
    tcase_add_test(misc, test_link_read_exit_and_read_down_reject_other_messages);
    tcase_add_test(misc, test_link_stats_count_failed_and_killed_actors_but_not_normal_or_shutdown);
    suite_add_tcase(s, misc);
    return s;
}

int
main(void)
{
    return tu_run(link_suite());
}
