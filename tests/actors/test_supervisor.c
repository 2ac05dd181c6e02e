//  test_supervisor - OTP supervisor semantics, case by case: the decision
//  table (strategy x restart type x exit reason), start and stop order,
//  shutdown timeouts, restart intensity and escalation up a tree, names
//  restored after restarts, the dynamic supervisor, the query protocol, and
//  a stress storm of failing dynamic children whose counts must add up.
//
//  Supervisors are spawned by a "parent" actor that traps exits, so each
//  test can read the reason its supervisor exited with. Children are
//  "workers" whose start function and shutdown behaviour are set per child
//  kind; workers that trap exits log their graceful shutdown ("-id") in
//  their behaviour, before their EXIT is sent, so the log shows the order in
//  which the supervisor stopped them.
#include "test_util.h"

//  ---------------------------------------------------------------------------
//  The log of starts and graceful stops: "+a +b -b ..."

static pthread_mutex_t ts_lock = PTHREAD_MUTEX_INITIALIZER;
static char ts_log[4096];

static void
ts_logf(const char *prefix, const char *id)
{
    pthread_mutex_lock(&ts_lock);
    size_t len = strlen(ts_log);
    snprintf(ts_log + len, sizeof(ts_log) - len, "%s%s%s", len ? " " : "", prefix, id);
    pthread_mutex_unlock(&ts_lock);
}

static bool
ts_log_is(const char *expected)
{
    pthread_mutex_lock(&ts_lock);
    bool same = strcmp(ts_log, expected) == 0;
    pthread_mutex_unlock(&ts_lock);
    return same;
}

#define TS_WAIT_LOG(expected)                                                                      \
    do {                                                                                           \
        uint64_t deadline_ = tu_now_ms() + (uint64_t)(TU_WAIT_MS * tu_multiplier());               \
        while (!ts_log_is(expected) && tu_now_ms() < deadline_)                                    \
            tu_sleep_ms(1);                                                                        \
        pthread_mutex_lock(&ts_lock);                                                              \
        ck_assert_str_eq(ts_log, expected);                                                        \
        pthread_mutex_unlock(&ts_lock);                                                            \
    } while (0)

//  ---------------------------------------------------------------------------
//  Workers and their start function

typedef struct {
    const char *id;
    bool trap;           // trap exits: stop gracefully on shutdown, logging "-id"
    bool stubborn;       // trap exits and ignore shutdown requests (logging "~id")
    bool init_fails;     // fail in init, before the supervisor can link
    bool unlinked;       // the start function spawns without BRG_SPAWN_LINK
    bool quiet;          // log nothing (stress)
    int fail_start_from; // the start function fails from this call on (0: never)
    int ignore_from;     // the start function says BRG_CHILD_IGNORE from this call on
    atomic_int calls;    // start function calls
    atomic_int starts;   // children started
} ts_kind_t;

static ts_kind_t ts_kinds[8];
static atomic_int ts_stops; // worker states destroyed

typedef struct {
    ts_kind_t *kind;
    int64_t arg; // the dynamic start argument, or -1
} ts_state_t;

static void
ts_state_free(void *state)
{
    atomic_fetch_add(&ts_stops, 1);
    free(state);
}

static int
ts_worker_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    ts_state_t *st = brg_state(ctx);
    if (st->kind->trap || st->kind->stubborn)
        brg_trap_exits(ctx, true);
    if (st->kind->init_fails)
        brg_fail(ctx, -200, "init failed");
    return BRG_OK;
}

static int
ts_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    ts_state_t *st = brg_state(ctx);
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        brg_ref_t from;
        brg_exit_reason_t reason;
        if (brg_msg_read_exit(msg, &from, &reason) != BRG_OK || !brg_ref_is_none(from))
            return BRG_OK;
        if (st->kind->stubborn) {
            ts_logf("~", st->kind->id);
            return BRG_OK;
        }
        // A graceful shutdown: clean up (log), then exit with shutdown.
        ts_logf("-", st->kind->id);
        brg_trap_exits(ctx, false);
        return brg_exit(brg_ctx_system(ctx), brg_self(ctx), BRG_EXIT_SHUTDOWN);
    }
    if (brg_msg_is(msg, "ping")) {
        brg_msg_t *pong = brg_msg_new_int("pong", st->arg);
        return brg_reply(ctx, &pong);
    }
    if (brg_msg_is(msg, "fail")) {
        brg_fail(ctx, -100, "boom");
        return BRG_OK;
    }
    if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

static int
ts_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    ts_kind_t *kind = arg;
    int call = atomic_fetch_add(&kind->calls, 1) + 1;
    if (kind->fail_start_from && call >= kind->fail_start_from)
        return BRG_EINVAL;
    if (kind->ignore_from && call >= kind->ignore_from)
        return BRG_CHILD_IGNORE;
    ts_state_t *st = malloc(sizeof(*st));
    if (!st)
        return BRG_ENOMEM;
    st->kind = kind;
    st->arg = -1;
    size_t pos = 0;
    if (args)
        brg_msg_read_int(args, &pos, &st->arg);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = st;
    opts.state_destroy = ts_state_free;
    opts.init = ts_worker_init;
    opts.flags = kind->unlinked ? 0 : BRG_SPAWN_LINK;
    int rc = brg_spawn(sup_ctx, ts_worker, &opts, child);
    if (rc != BRG_OK) {
        free(st);
        return rc;
    }
    atomic_fetch_add(&kind->starts, 1);
    if (!kind->quiet)
        ts_logf("+", kind->id);
    return BRG_OK;
}

//  Kind i, with this id, and a child spec that starts it.
static brg_child_spec_t
ts_spec(int i, const char *id, brg_restart_t restart)
{
    ts_kinds[i].id = id;
    brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = id;
    spec.start = ts_start;
    spec.arg = &ts_kinds[i];
    spec.restart = restart;
    return spec;
}

//  ---------------------------------------------------------------------------
//  The parent: spawns supervisors, traps their exits, watches actors

typedef struct {
    char tag[8]; // "exit" or "down"
    brg_ref_t from;
    brg_exit_reason_t reason;
} ts_signal_t;

static brg_supervisor_opts_t ts_opts; // what the next "spawn" spawns
static brg_ref_t ts_parent_ref;
static brg_ref_t ts_sup_ref;       // the last supervisor spawned (ts_lock)
static atomic_int ts_parent_rc;    // the last command's result
static atomic_int ts_parent_acks;  // commands handled
static atomic_int ts_asked;        // what the last brg_ask of "which" read
static ts_signal_t ts_signals[64]; // EXIT and DOWN the parent saw (ts_lock)
static atomic_int ts_nsignals;

static void
ts_signal_add(const char *tag, brg_ref_t from, const brg_exit_reason_t *reason)
{
    pthread_mutex_lock(&ts_lock);
    int n = atomic_load(&ts_nsignals);
    if (n < 64) {
        snprintf(ts_signals[n].tag, sizeof(ts_signals[n].tag), "%s", tag);
        ts_signals[n].from = from;
        ts_signals[n].reason = *reason;
        atomic_store(&ts_nsignals, n + 1);
    }
    pthread_mutex_unlock(&ts_lock);
}

static bool
ts_signal_find(const char *tag, brg_ref_t from, ts_signal_t *out)
{
    bool found = false;
    pthread_mutex_lock(&ts_lock);
    for (int i = 0; i < atomic_load(&ts_nsignals) && !found; i++) {
        if (strcmp(ts_signals[i].tag, tag) == 0 && brg_ref_eq(ts_signals[i].from, from)) {
            *out = ts_signals[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&ts_lock);
    return found;
}

//  Wait for the parent to see tag ("exit" or "down") from `from`.
static brg_exit_reason_t
ts_wait_signal(const char *tag, brg_ref_t from)
{
    ts_signal_t s;
    TU_WAIT_UNTIL(ts_signal_find(tag, from, &s), TU_WAIT_MS);
    return s.reason;
}

static int
ts_on_which(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    brg_child_info_t info[4];
    atomic_store(&ts_asked, status == BRG_OK ? brg_supervisor_read_which(reply, info, 4) : status);
    return BRG_OK;
}

static int
ts_parent_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    brg_trap_exits(ctx, true);
    return BRG_OK;
}

static int
ts_parent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t ref;
    brg_exit_reason_t reason;
    uint64_t mon;
    size_t pos = 0;
    int rc = BRG_OK;
    if (brg_msg_read_exit(msg, &ref, &reason) == BRG_OK) {
        ts_signal_add("exit", ref, &reason);
        return BRG_OK;
    }
    if (brg_msg_read_down(msg, &ref, &mon, &reason) == BRG_OK) {
        ts_signal_add("down", ref, &reason);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "spawn")) {
        rc = brg_supervisor_spawn(ctx, &ts_opts, &ref);
        pthread_mutex_lock(&ts_lock);
        ts_sup_ref = rc == BRG_OK ? ref : BRG_REF_NONE;
        pthread_mutex_unlock(&ts_lock);
    } else if (brg_msg_is(msg, "monitor")) {
        brg_msg_read_ref(msg, &pos, &ref);
        rc = brg_monitor(ctx, ref, &mon);
    } else if (brg_msg_is(msg, "ask_which")) {
        brg_msg_read_ref(msg, &pos, &ref);
        brg_msg_t *req = brg_supervisor_msg_which();
        rc = brg_ask(ctx, ref, &req, TU_WAIT_MS, ts_on_which, NULL);
    } else if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    } else {
        return BRG_UNHANDLED;
    }
    atomic_store(&ts_parent_rc, rc);
    atomic_fetch_add(&ts_parent_acks, 1);
    return BRG_OK;
}

static void
ts_parent_cmd(brg_msg_t *msg)
{
    int before = atomic_load(&ts_parent_acks);
    ck_assert_int_eq(brg_system_send(tu_sys, ts_parent_ref, &msg), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&ts_parent_acks) > before, TU_WAIT_MS);
}

//  The parent monitors ref (its DOWN then shows in the signals).
static void
ts_watch(brg_ref_t ref)
{
    brg_msg_t *msg = brg_msg_new("monitor");
    brg_msg_add_ref(msg, ref);
    ts_parent_cmd(msg);
    ck_assert_int_eq(atomic_load(&ts_parent_rc), BRG_OK);
}

static void
ts_setup(void)
{
    tu_setup();
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = ts_parent_init;
    ck_assert_int_eq(brg_system_spawn(tu_sys, ts_parent, &opts, &ts_parent_ref), BRG_OK);
}

//  Spawn a supervisor from the parent with these options; returns the
//  spawn's result and, on BRG_OK, the supervisor in *sup.
static int
ts_try_spawn(const brg_supervisor_opts_t *opts, brg_ref_t *sup)
{
    ts_opts = *opts; // read by the parent after our send: the send orders it
    ts_parent_cmd(brg_msg_new("spawn"));
    pthread_mutex_lock(&ts_lock);
    *sup = ts_sup_ref;
    pthread_mutex_unlock(&ts_lock);
    return atomic_load(&ts_parent_rc);
}

static brg_ref_t
ts_spawn(brg_strategy_t strategy, const brg_child_spec_t *specs, size_t n)
{
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.strategy = strategy;
    opts.children = specs;
    opts.n_children = n;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    return sup;
}

static brg_supervisor_counts_t
ts_counts(brg_ref_t sup)
{
    brg_supervisor_counts_t counts;
    ck_assert_int_eq(brg_supervisor_count(tu_sys, sup, TU_WAIT_MS, &counts), BRG_OK);
    return counts;
}

#define TS_WAIT_COUNTS(sup, cond)                                                                  \
    do {                                                                                           \
        brg_supervisor_counts_t c_;                                                                \
        uint64_t deadline_ = tu_now_ms() + (uint64_t)(TU_WAIT_MS * tu_multiplier());               \
        for (;;) {                                                                                 \
            c_ = ts_counts(sup);                                                                   \
            if (cond)                                                                              \
                break;                                                                             \
            ck_assert_msg(tu_now_ms() < deadline_,                                                 \
                          "timed out waiting for %s: children %llu running %llu restarts %llu "    \
                          "exits %llu",                                                            \
                          #cond, (unsigned long long)c_.children, (unsigned long long)c_.running,  \
                          (unsigned long long)c_.restarts, (unsigned long long)c_.exits);          \
            tu_sleep_ms(1);                                                                        \
        }                                                                                          \
    } while (0)

//  The children, checked to be n.
static void
ts_which(brg_ref_t sup, brg_child_info_t *out, int n)
{
    ck_assert_int_eq(brg_supervisor_which(tu_sys, sup, TU_WAIT_MS, out, (size_t)n), n);
}

//  Make a child exit with kind: normal (it stops), shutdown or killed (an
//  exit signal from outside), failed (it fails).
static void
ts_make_exit(brg_ref_t child, brg_exit_kind_t kind)
{
    switch (kind) {
    case BRG_EXIT_NORMAL:
        ck_assert_int_eq(tu_send_tag(tu_sys, child, "stop"), BRG_OK);
        break;
    case BRG_EXIT_FAILED:
        ck_assert_int_eq(tu_send_tag(tu_sys, child, "fail"), BRG_OK);
        break;
    default:
        ck_assert_int_eq(brg_exit(tu_sys, child, kind), BRG_OK);
        break;
    }
}

//  Wait a little and check that the counters did not move on.
static void
ts_assert_quiet(brg_ref_t sup, brg_supervisor_counts_t expected)
{
    tu_sleep_ms((uint64_t)(30 * tu_multiplier()));
    brg_supervisor_counts_t now = ts_counts(sup);
    ck_assert_uint_eq(now.exits, expected.exits);
    ck_assert_uint_eq(now.restarts, expected.restarts);
    ck_assert_uint_eq(now.running, expected.running);
}

//  ---------------------------------------------------------------------------
//  The decision table: 4 strategies x 3 restart types x 4 exit reasons

static const brg_exit_kind_t ts_reasons[4] = {BRG_EXIT_NORMAL, BRG_EXIT_SHUTDOWN, BRG_EXIT_KILLED,
                                              BRG_EXIT_FAILED};
static const char *const ts_strategy_names[4] = {"one_for_one", "one_for_all", "rest_for_one",
                                                 "dynamic"};
static const char *const ts_restart_names[3] = {"permanent", "transient", "temporary"};

START_TEST(test_supervisor_restarts_what_the_decision_table_says)
{
    brg_strategy_t strategy = (brg_strategy_t)(_i / 12);
    brg_restart_t restart = (brg_restart_t)((_i / 4) % 3);
    brg_exit_kind_t reason = ts_reasons[_i % 4];
    bool dynamic = strategy == BRG_STRATEGY_DYNAMIC;
    bool restarted = restart == BRG_RESTART_PERMANENT ||
                     (restart == BRG_RESTART_TRANSIENT &&
                      (reason == BRG_EXIT_KILLED || reason == BRG_EXIT_FAILED));
    // Static: a and c are permanent, b has the type under test; dynamic:
    // two children of the one spec, with arguments 1 and 2.
    int n = dynamic ? 2 : 3;
    int b = 1;
    brg_ref_t sup;
    if (dynamic) {
        brg_child_spec_t spec = ts_spec(1, "b", restart);
        sup = ts_spawn(strategy, &spec, 1);
        for (int i = 1; i <= 2; i++) {
            brg_msg_t *args = brg_msg_new_int("args", i);
            ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, &args, TU_WAIT_MS, NULL),
                             BRG_OK);
        }
    } else {
        brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                     ts_spec(1, "b", restart),
                                     ts_spec(2, "c", BRG_RESTART_PERMANENT)};
        sup = ts_spawn(strategy, specs, 3);
    }
    TS_WAIT_COUNTS(sup, c_.running == (uint64_t)n);
    brg_child_info_t before[3], after[3];
    ts_which(sup, before, n);

    ts_make_exit(before[b].ref, reason);
    // Which children go down and come back: only b, or the group.
    bool moved[3] = {false, restarted, false};
    if (restarted && strategy == BRG_STRATEGY_ONE_FOR_ALL)
        moved[0] = moved[2] = true;
    if (restarted && strategy == BRG_STRATEGY_REST_FOR_ONE)
        moved[2] = true;
    uint64_t exits = 0;
    for (int i = 0; i < n; i++)
        exits += (i == b || moved[i]);
    int listed = n;
    if (!restarted && (restart == BRG_RESTART_TEMPORARY || dynamic))
        listed = n - 1; // forgotten
    uint64_t running = restarted ? (uint64_t)n : (uint64_t)n - 1;
    TS_WAIT_COUNTS(sup,
                   c_.exits == exits && c_.running == running && c_.children == (uint64_t)listed);
    ts_which(sup, after, listed);

    char what[96];
    snprintf(what, sizeof(what), "%s, %s child, exit %s", ts_strategy_names[strategy],
             ts_restart_names[restart], brg_exit_kind_name(reason));
    if (listed == n - 1) {
        // b is gone; the others keep their place and their incarnation.
        ck_assert_msg(brg_ref_eq(after[0].ref, before[0].ref), "%s: a moved", what);
        if (!dynamic)
            ck_assert_msg(brg_ref_eq(after[1].ref, before[2].ref), "%s: c moved", what);
    } else {
        for (int i = 0; i < n; i++) {
            bool same = brg_ref_eq(after[i].ref, before[i].ref);
            if (!restarted && i == b) {
                ck_assert_msg(brg_ref_is_none(after[i].ref), "%s: b still listed as running", what);
                continue;
            }
            ck_assert_msg(same != moved[i], "%s: child %d %s", what, i,
                          moved[i] ? "was not restarted" : "was restarted");
            ck_assert_msg(!brg_ref_is_none(after[i].ref), "%s: child %d not running", what, i);
            ck_assert_uint_eq(after[i].restarts, moved[i] ? 1 : 0);
        }
    }
    if (dynamic && restarted) {
        // The restarted dynamic child got its start arguments again.
        brg_msg_t *ping = brg_msg_new("ping"), *pong = NULL;
        ck_assert_int_eq(brg_system_ask(tu_sys, after[1].ref, &ping, TU_WAIT_MS, &pong), BRG_OK);
        ck_assert_int_eq(tu_msg_int(pong), 2);
        brg_msg_destroy(&pong);
    }
    brg_supervisor_counts_t counts = ts_counts(sup);
    ck_assert_uint_eq(counts.restarts, exits * restarted);
    ts_assert_quiet(sup, counts);
    ck_assert(brg_system_is_alive(tu_sys, sup));
}
END_TEST

START_TEST(test_supervisor_group_restart_stops_a_temporary_sibling_for_good)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_TEMPORARY),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ALL, specs, 3);
    TS_WAIT_COUNTS(sup, c_.running == 3);
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    ts_make_exit(info[1].ref, BRG_EXIT_FAILED);
    TS_WAIT_COUNTS(sup, c_.exits == 3 && c_.running == 2 && c_.children == 2);
    ts_which(sup, info, 2);
    ck_assert_str_eq(info[0].id, "b");
    ck_assert_str_eq(info[1].id, "c");
    ck_assert_int_eq(atomic_load(&ts_kinds[0].starts), 1);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Order: start, stop, group restarts

START_TEST(test_supervisor_starts_in_order_and_shuts_down_in_reverse_order_with_reason_shutdown)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    for (int i = 0; i < 3; i++)
        ts_kinds[i].trap = true;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    TS_WAIT_LOG("+a +b +c");
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    brg_exit_reason_t why = ts_wait_signal("exit", sup);
    ck_assert_int_eq(why.kind, BRG_EXIT_SHUTDOWN);
    TS_WAIT_LOG("+a +b +c -c -b -a");
    TU_WAIT_UNTIL(atomic_load(&ts_stops) == 3, TU_WAIT_MS);
}
END_TEST

START_TEST(test_supervisor_one_for_all_stops_the_others_in_reverse_order_then_starts_all_in_order)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    for (int i = 0; i < 3; i++)
        ts_kinds[i].trap = true;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ALL, specs, 3);
    TS_WAIT_LOG("+a +b +c");
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    ts_make_exit(info[1].ref, BRG_EXIT_FAILED);
    TS_WAIT_LOG("+a +b +c -c -a +a +b +c");
    TS_WAIT_COUNTS(sup, c_.running == 3 && c_.restarts == 3);
}
END_TEST

START_TEST(test_supervisor_rest_for_one_restarts_the_child_and_those_started_after_it)
{
    brg_child_spec_t specs[4] = {
        ts_spec(0, "a", BRG_RESTART_PERMANENT), ts_spec(1, "b", BRG_RESTART_PERMANENT),
        ts_spec(2, "c", BRG_RESTART_PERMANENT), ts_spec(3, "d", BRG_RESTART_PERMANENT)};
    for (int i = 0; i < 4; i++)
        ts_kinds[i].trap = true;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_REST_FOR_ONE, specs, 4);
    TS_WAIT_LOG("+a +b +c +d");
    brg_child_info_t info[4];
    ts_which(sup, info, 4);
    ts_make_exit(info[1].ref, BRG_EXIT_KILLED);
    TS_WAIT_LOG("+a +b +c +d -d -c +b +c +d");
    TS_WAIT_COUNTS(sup, c_.running == 4 && c_.restarts == 3);
    brg_child_info_t now[4];
    ts_which(sup, now, 4);
    ck_assert(brg_ref_eq(now[0].ref, info[0].ref));
    ck_assert_uint_eq(now[0].restarts, 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Shutdown: timeouts, brutal kill, infinity

START_TEST(test_supervisor_shutdown_kills_a_child_that_ignores_it_after_its_timeout)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    ts_kinds[0].trap = true;     // cooperates
    ts_kinds[1].stubborn = true; // ignores the request: killed after 100 ms
    ts_kinds[2].trap = true;     // brutal: killed at once, never asked
    specs[0].shutdown_ms = BRG_SHUTDOWN_INFINITY;
    specs[1].shutdown_ms = 100;
    specs[2].shutdown_ms = BRG_SHUTDOWN_BRUTAL;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    TS_WAIT_LOG("+a +b +c");
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    for (int i = 0; i < 3; i++)
        ts_watch(info[i].ref);
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    ck_assert_int_eq(ts_wait_signal("down", info[2].ref).kind, BRG_EXIT_KILLED);
    ck_assert_int_eq(ts_wait_signal("down", info[1].ref).kind, BRG_EXIT_KILLED);
    ck_assert_int_eq(ts_wait_signal("down", info[0].ref).kind, BRG_EXIT_SHUTDOWN);
    TS_WAIT_LOG("+a +b +c ~b -a");
}
END_TEST

START_TEST(test_supervisor_a_restart_group_waits_for_each_stop_with_its_timeout)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    ts_kinds[0].trap = true;
    ts_kinds[2].stubborn = true;
    specs[2].shutdown_ms = 50;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ALL, specs, 3);
    TS_WAIT_LOG("+a +b +c");
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    ts_make_exit(info[1].ref, BRG_EXIT_FAILED);
    // c ignores the request and is killed; only then is a asked.
    TS_WAIT_LOG("+a +b +c ~c -a +a +b +c");
    TS_WAIT_COUNTS(sup, c_.running == 3 && c_.exits == 3);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Restart intensity and escalation

START_TEST(test_supervisor_fails_when_restarts_exceed_intensity_and_stops_its_children)
{
    brg_child_spec_t specs[2] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT)};
    ts_kinds[0].trap = true;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 2;
    opts.children = specs;
    opts.n_children = 2;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    for (uint64_t round = 1; round <= 2; round++) {
        brg_child_info_t info[2];
        TS_WAIT_COUNTS(sup, c_.running == 2);
        ts_which(sup, info, 2);
        ts_make_exit(info[1].ref, BRG_EXIT_FAILED);
        TS_WAIT_COUNTS(sup, c_.restarts == round && c_.running == 2);
    }
    brg_child_info_t info[2];
    ts_which(sup, info, 2);
    ts_make_exit(info[1].ref, BRG_EXIT_FAILED); // the third within 5 s: one too many
    // OTP: a supervisor that gives up exits with reason shutdown.
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    TS_WAIT_LOG("+a +b +b +b -a");
    TU_WAIT_DEAD(tu_sys, info[0].ref);
    TU_WAIT_DEAD(tu_sys, sup);
}
END_TEST

START_TEST(test_supervisor_with_intensity_zero_fails_on_the_first_restart)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_TRANSIENT);
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 0;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    TS_WAIT_COUNTS(sup, c_.running == 1);
    brg_child_info_t info;
    ts_which(sup, &info, 1);
    ts_make_exit(info.ref, BRG_EXIT_KILLED);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    ck_assert_int_eq(atomic_load(&ts_kinds[0].starts), 1);
}
END_TEST

START_TEST(test_supervisor_restarts_spread_beyond_the_period_are_allowed)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 1;
    opts.period_ms = 100;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    for (uint64_t round = 1; round <= 3; round++) {
        TS_WAIT_COUNTS(sup, c_.running == 1 && c_.restarts == round - 1);
        tu_sleep_ms(150); // the previous restart leaves the window
        brg_child_info_t info;
        ts_which(sup, &info, 1);
        ts_make_exit(info.ref, BRG_EXIT_FAILED);
    }
    TS_WAIT_COUNTS(sup, c_.running == 1 && c_.restarts == 3);
    ck_assert(brg_system_is_alive(tu_sys, sup));
}
END_TEST

static brg_supervisor_opts_t ts_mid_opts; // the nested supervisor of the tree tests
static brg_child_spec_t ts_mid_specs[2];

START_TEST(test_supervisor_failure_escalates_up_a_tree_of_supervisors)
{
    // root (one_for_one, 1 restart in 5 s) -> mid (intensity 0) -> worker w.
    ts_mid_specs[0] = ts_spec(0, "w", BRG_RESTART_PERMANENT);
    ts_mid_specs[0].name = "w";
    brg_supervisor_opts_init(&ts_mid_opts);
    ts_mid_opts.intensity = 0;
    ts_mid_opts.children = ts_mid_specs;
    ts_mid_opts.n_children = 1;
    brg_child_spec_t mid;
    brg_child_spec_init(&mid);
    mid.id = "mid";
    mid.start = brg_supervisor_start;
    mid.arg = &ts_mid_opts;
    mid.shutdown_ms = BRG_SHUTDOWN_INFINITY;
    brg_ref_t root = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &mid, 1);
    TS_WAIT_COUNTS(root, c_.running == 1);
    brg_child_info_t first;
    ts_which(root, &first, 1);
    brg_ref_t w1;
    TU_WAIT_UNTIL(brg_whereis(tu_sys, "w", &w1) == BRG_OK, TU_WAIT_MS);

    // w fails: mid may not restart it (intensity 0), so mid gives up (exit
    // shutdown), and root restarts mid (permanent), which starts a fresh w.
    ts_make_exit(w1, BRG_EXIT_FAILED);
    TS_WAIT_COUNTS(root, c_.restarts == 1 && c_.running == 1);
    brg_child_info_t second;
    ts_which(root, &second, 1);
    ck_assert(!brg_ref_eq(second.ref, first.ref));
    ck_assert_uint_eq(second.restarts, 1);
    brg_ref_t w2;
    TU_WAIT_UNTIL(brg_whereis(tu_sys, "w", &w2) == BRG_OK && !brg_ref_eq(w2, w1), TU_WAIT_MS);
    TU_WAIT_DEAD(tu_sys, first.ref);

    // Again within root's period: root reaches its intensity and gives up
    // too; its parent gets the exit signal.
    ts_make_exit(w2, BRG_EXIT_FAILED);
    ck_assert_int_eq(ts_wait_signal("exit", root).kind, BRG_EXIT_SHUTDOWN);
    TU_WAIT_DEAD(tu_sys, second.ref);
    TU_WAIT_UNTIL(atomic_load(&ts_stops) == 2, TU_WAIT_MS);
    ck_assert(brg_system_is_alive(tu_sys, ts_parent_ref));
}
END_TEST

START_TEST(test_supervisor_that_gives_up_is_not_restarted_as_a_transient_child)
{
    // root -> mid (transient, intensity 0) -> w. w fails: mid gives up with
    // reason shutdown, which a transient child is not restarted for (OTP).
    ts_mid_specs[0] = ts_spec(1, "w", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_init(&ts_mid_opts);
    ts_mid_opts.intensity = 0;
    ts_mid_opts.children = ts_mid_specs;
    ts_mid_opts.n_children = 1;
    brg_child_spec_t mid;
    brg_child_spec_init(&mid);
    mid.id = "mid";
    mid.start = brg_supervisor_start;
    mid.arg = &ts_mid_opts;
    mid.restart = BRG_RESTART_TRANSIENT;
    mid.shutdown_ms = BRG_SHUTDOWN_INFINITY;
    brg_ref_t root = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &mid, 1);
    TS_WAIT_COUNTS(root, c_.running == 1);
    brg_child_info_t info;
    ts_which(root, &info, 1);
    brg_child_info_t w;
    TU_WAIT_UNTIL(brg_supervisor_which(tu_sys, info.ref, TU_WAIT_MS, &w, 1) == 1 &&
                      !brg_ref_is_none(w.ref),
                  TU_WAIT_MS);
    ts_make_exit(w.ref, BRG_EXIT_FAILED);
    TS_WAIT_COUNTS(root, c_.exits == 1 && c_.running == 0);
    brg_supervisor_counts_t counts = ts_counts(root);
    ck_assert_uint_eq(counts.restarts, 0);
    ck_assert_uint_eq(counts.children, 1);
    ts_assert_quiet(root, counts);
    ck_assert(brg_system_is_alive(tu_sys, root));
    ck_assert_int_eq(atomic_load(&ts_kinds[1].starts), 1);
}
END_TEST

START_TEST(test_supervisor_tree_shuts_down_depth_first_in_reverse_order)
{
    ts_mid_specs[0] = ts_spec(1, "x", BRG_RESTART_PERMANENT);
    ts_mid_specs[1] = ts_spec(2, "y", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_init(&ts_mid_opts);
    ts_mid_opts.children = ts_mid_specs;
    ts_mid_opts.n_children = 2;
    brg_child_spec_t specs[3] = {
        ts_spec(0, "a", BRG_RESTART_PERMANENT), {0}, ts_spec(3, "b", BRG_RESTART_PERMANENT)};
    brg_child_spec_init(&specs[1]);
    specs[1].id = "mid";
    specs[1].start = brg_supervisor_start;
    specs[1].arg = &ts_mid_opts;
    specs[1].shutdown_ms = BRG_SHUTDOWN_INFINITY;
    for (int i = 0; i < 4; i++)
        ts_kinds[i].trap = true;
    brg_ref_t root = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    TS_WAIT_LOG("+a +x +y +b");
    ck_assert_int_eq(brg_exit(tu_sys, root, BRG_EXIT_SHUTDOWN), BRG_OK);
    ck_assert_int_eq(ts_wait_signal("exit", root).kind, BRG_EXIT_SHUTDOWN);
    TS_WAIT_LOG("+a +x +y +b -b -y -x -a");
}
END_TEST

START_TEST(test_supervisor_group_restart_waits_for_a_nested_supervisor_to_come_up)
{
    ts_mid_specs[0] = ts_spec(1, "x", BRG_RESTART_PERMANENT);
    ts_mid_specs[1] = ts_spec(2, "y", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_init(&ts_mid_opts);
    ts_mid_opts.children = ts_mid_specs;
    ts_mid_opts.n_children = 2;
    brg_child_spec_t specs[3] = {
        ts_spec(0, "a", BRG_RESTART_PERMANENT), {0}, ts_spec(3, "b", BRG_RESTART_PERMANENT)};
    brg_child_spec_init(&specs[1]);
    specs[1].id = "mid";
    specs[1].start = brg_supervisor_start;
    specs[1].arg = &ts_mid_opts;
    specs[1].shutdown_ms = BRG_SHUTDOWN_INFINITY;
    for (int i = 0; i < 4; i++)
        ts_kinds[i].trap = true;
    brg_ref_t root = ts_spawn(BRG_STRATEGY_ONE_FOR_ALL, specs, 3);
    TS_WAIT_LOG("+a +x +y +b");
    brg_child_info_t info[3];
    ts_which(root, info, 3);
    ts_make_exit(info[0].ref, BRG_EXIT_FAILED);
    // Down in reverse order (mid takes its own children down first), up in
    // order, and b only once mid's children are all up.
    TS_WAIT_LOG("+a +x +y +b -b -y -x +a +x +y +b");
    TS_WAIT_COUNTS(root, c_.running == 3 && c_.restarts == 3);
}
END_TEST

START_TEST(test_supervisor_nested_supervisor_that_cannot_start_fails_its_parent_start)
{
    ts_mid_specs[0] = ts_spec(1, "x", BRG_RESTART_PERMANENT);
    ts_kinds[1].fail_start_from = 1;
    brg_supervisor_opts_init(&ts_mid_opts);
    ts_mid_opts.children = ts_mid_specs;
    ts_mid_opts.n_children = 1;
    brg_child_spec_t specs[3] = {
        ts_spec(0, "a", BRG_RESTART_PERMANENT), {0}, ts_spec(2, "b", BRG_RESTART_PERMANENT)};
    brg_child_spec_init(&specs[1]);
    specs[1].id = "mid";
    specs[1].start = brg_supervisor_start;
    specs[1].arg = &ts_mid_opts;
    ts_kinds[0].trap = true;
    brg_ref_t root = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    brg_exit_reason_t why = ts_wait_signal("exit", root);
    ck_assert_int_eq(why.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(why.code, BRG_EINVAL); // the code travels up from x's start
    ck_assert_str_eq(why.text, "failed to start child mid");
    TS_WAIT_LOG("+a -a");
    ck_assert_int_eq(atomic_load(&ts_kinds[2].calls), 0); // b never started
}
END_TEST

START_TEST(test_supervisor_stops_its_children_and_exits_when_its_parent_exits_normally)
{
    brg_child_spec_t specs[2] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT)};
    ts_kinds[0].trap = ts_kinds[1].trap = true;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 2);
    TS_WAIT_LOG("+a +b");
    ck_assert_int_eq(tu_send_tag(tu_sys, ts_parent_ref, "stop"), BRG_OK);
    TS_WAIT_LOG("+a +b -b -a");
    TU_WAIT_DEAD(tu_sys, sup);
    TU_WAIT_UNTIL(atomic_load(&ts_stops) == 2, TU_WAIT_MS);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Failed starts

START_TEST(test_supervisor_that_cannot_start_a_child_stops_the_others_and_fails)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    ts_kinds[0].trap = true;
    ts_kinds[1].fail_start_from = 1;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    brg_exit_reason_t why = ts_wait_signal("exit", sup);
    ck_assert_int_eq(why.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(why.code, BRG_EINVAL);
    ck_assert_str_eq(why.text, "failed to start child b");
    TS_WAIT_LOG("+a -a");
    ck_assert_int_eq(atomic_load(&ts_kinds[2].calls), 0);
}
END_TEST

START_TEST(test_supervisor_counts_failed_restarts_against_intensity_and_escalates)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    ts_kinds[0].fail_start_from = 2; // only the first start works
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 3;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    TS_WAIT_COUNTS(sup, c_.running == 1);
    brg_child_info_t info;
    ts_which(sup, &info, 1);
    ts_make_exit(info.ref, BRG_EXIT_FAILED);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    // The first start, then three restarts allowed (each failing), then the
    // fourth restart is one too many.
    ck_assert_int_eq(atomic_load(&ts_kinds[0].calls), 4);
}
END_TEST

START_TEST(test_supervisor_sees_a_child_that_dies_before_it_is_linked_as_an_abnormal_exit)
{
    // The child fails in init. Spawned without BRG_SPAWN_LINK, it may be gone
    // before the supervisor's link reaches it (noproc); with it, the real
    // reason comes. Either way it is restarted, until intensity.
    for (int variant = 0; variant < 2; variant++) {
        brg_child_spec_t spec =
            ts_spec(variant, variant ? "linked" : "plain", BRG_RESTART_TRANSIENT);
        ts_kinds[variant].init_fails = true;
        ts_kinds[variant].unlinked = variant == 0;
        brg_supervisor_opts_t opts;
        brg_supervisor_opts_init(&opts);
        opts.intensity = 2;
        opts.children = &spec;
        opts.n_children = 1;
        brg_ref_t sup;
        ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
        ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
        ck_assert_int_eq(atomic_load(&ts_kinds[variant].starts), 3);
    }
}
END_TEST

//  ---------------------------------------------------------------------------
//  Names

START_TEST(test_supervisor_gives_a_restarted_child_its_registered_name_back)
{
    brg_child_spec_t spec = ts_spec(0, "cook", BRG_RESTART_PERMANENT);
    spec.name = "cook";
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &spec, 1);
    brg_ref_t first, second;
    TU_WAIT_UNTIL(brg_whereis(tu_sys, "cook", &first) == BRG_OK, TU_WAIT_MS);
    brg_child_info_t info;
    ts_which(sup, &info, 1);
    ck_assert(brg_ref_eq(info.ref, first));
    ts_make_exit(first, BRG_EXIT_FAILED);
    TS_WAIT_COUNTS(sup, c_.restarts == 1 && c_.running == 1);
    ck_assert_int_eq(brg_whereis(tu_sys, "cook", &second), BRG_OK);
    ck_assert(!brg_ref_eq(first, second));
    ts_which(sup, &info, 1);
    ck_assert(brg_ref_eq(info.ref, second));
    // Whoever sends by name reaches the new incarnation.
    brg_msg_t *ping = brg_msg_new("ping"), *pong = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, second, &ping, TU_WAIT_MS, &pong), BRG_OK);
    brg_msg_destroy(&pong);
}
END_TEST

START_TEST(test_supervisor_fails_to_start_a_child_whose_name_is_taken)
{
    brg_ref_t squatter = tu_spawn(tu_sys, ts_worker);
    ck_assert_int_eq(brg_register(tu_sys, "cook", squatter), BRG_OK);
    brg_stats_t before = tu_stats(tu_sys);
    brg_child_spec_t spec = ts_spec(0, "cook", BRG_RESTART_PERMANENT);
    spec.name = "cook";
    spec.shutdown_ms = 50; // how long it waits for the holder to go away
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &spec, 1);
    brg_child_info_t info;
    if (brg_supervisor_which(tu_sys, sup, TU_WAIT_MS, &info, 1) == 1) // unless it gave up
        ck_assert_int_ne(info.state, BRG_CHILD_RUNNING);
    brg_exit_reason_t why = ts_wait_signal("exit", sup);
    ck_assert_int_eq(why.code, BRG_EEXIST);
    ck_assert_str_eq(why.text, "failed to start child cook");
    // No child was left running unwatched; none was even started.
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_alive == before.actors_alive, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&ts_kinds[0].calls), 0);
    brg_ref_t holder;
    ck_assert_int_eq(brg_whereis(tu_sys, "cook", &holder), BRG_OK);
    ck_assert(brg_ref_eq(holder, squatter));
}
END_TEST

START_TEST(test_supervisor_registers_its_own_name)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = &spec;
    opts.n_children = 1;
    opts.name = "head_chef";
    brg_ref_t sup, found;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    ck_assert_int_eq(brg_whereis(tu_sys, "head_chef", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, sup));
}
END_TEST

//  ---------------------------------------------------------------------------
//  The dynamic supervisor

START_TEST(test_supervisor_dynamic_starts_children_with_their_arguments_at_run_time)
{
    brg_child_spec_t spec = ts_spec(0, "worker", BRG_RESTART_TRANSIENT);
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_DYNAMIC, &spec, 1);
    ck_assert_uint_eq(ts_counts(sup).children, 0);
    brg_ref_t kids[3];
    for (int i = 0; i < 3; i++) {
        brg_msg_t *args = brg_supervisor_msg_start();
        brg_msg_add_int(args, 10 + i);
        ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, &args, TU_WAIT_MS, &kids[i]),
                         BRG_OK);
        ck_assert_ptr_null(args);
    }
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(info[i].id, "worker");
        ck_assert(brg_ref_eq(info[i].ref, kids[i]));
        brg_msg_t *ping = brg_msg_new("ping"), *pong = NULL;
        ck_assert_int_eq(brg_system_ask(tu_sys, kids[i], &ping, TU_WAIT_MS, &pong), BRG_OK);
        ck_assert_int_eq(tu_msg_int(pong), 10 + i);
        brg_msg_destroy(&pong);
    }
    // No arguments at all is fine too.
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, NULL, TU_WAIT_MS, NULL), BRG_OK);
    ck_assert_uint_eq(ts_counts(sup).running, 4);
}
END_TEST

START_TEST(test_supervisor_dynamic_terminate_stops_a_child_for_good)
{
    brg_child_spec_t spec = ts_spec(0, "worker", BRG_RESTART_PERMANENT);
    ts_kinds[0].trap = true;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_DYNAMIC, &spec, 1);
    brg_ref_t a, b;
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, NULL, TU_WAIT_MS, &a), BRG_OK);
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, NULL, TU_WAIT_MS, &b), BRG_OK);
    ck_assert_int_eq(brg_supervisor_terminate_child(tu_sys, sup, a, TU_WAIT_MS), BRG_OK);
    TU_WAIT_DEAD(tu_sys, a);
    TS_WAIT_COUNTS(sup, c_.children == 1 && c_.running == 1 && c_.exits == 1);
    ck_assert_uint_eq(ts_counts(sup).restarts, 0);
    // Already terminated: OTP says ok, as for deleting what does not exist.
    ck_assert_int_eq(brg_supervisor_terminate_child(tu_sys, sup, a, TU_WAIT_MS), BRG_OK);
    brg_child_info_t info;
    ts_which(sup, &info, 1);
    ck_assert(brg_ref_eq(info.ref, b));
    TS_WAIT_LOG("+worker +worker -worker");
}
END_TEST

START_TEST(test_supervisor_terminate_child_returns_once_the_child_is_dead_and_removed)
{
    brg_child_spec_t spec = ts_spec(0, "worker", BRG_RESTART_PERMANENT);
    spec.shutdown_ms = 100;
    ts_kinds[0].stubborn = true; // ignores the request: killed after 100 ms
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_DYNAMIC, &spec, 1);
    brg_ref_t a;
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, NULL, TU_WAIT_MS, &a), BRG_OK);
    ck_assert_int_eq(brg_supervisor_terminate_child(tu_sys, sup, a, TU_WAIT_MS), BRG_OK);
    ck_assert(!brg_system_is_alive(tu_sys, a)); // no waiting: it is gone already
    brg_supervisor_counts_t counts = ts_counts(sup);
    ck_assert_uint_eq(counts.children, 0);
    ck_assert_uint_eq(counts.exits, 1);
    ck_assert_int_eq(atomic_load(&ts_stops), 1);
    TS_WAIT_LOG("+worker ~worker");
}
END_TEST

START_TEST(test_supervisor_dynamic_child_stuck_restarting_can_be_terminated)
{
    // Its restarts fail, again and again; terminate_child with its last ref
    // ends the loop and forgets it (OTP: a child restarting is found by the
    // pid it had).
    brg_child_spec_t spec = ts_spec(0, "worker", BRG_RESTART_PERMANENT);
    ts_kinds[0].fail_start_from = 2;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.strategy = BRG_STRATEGY_DYNAMIC;
    opts.intensity = BRG_SUPERVISOR_INTENSITY_MAX;
    opts.period_ms = 3600 * 1000;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup, a;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, NULL, TU_WAIT_MS, &a), BRG_OK);
    ts_make_exit(a, BRG_EXIT_FAILED);
    TU_WAIT_UNTIL(atomic_load(&ts_kinds[0].calls) > 10, TU_WAIT_MS);
    ck_assert_int_eq(brg_supervisor_terminate_child(tu_sys, sup, a, TU_WAIT_MS), BRG_OK);
    TS_WAIT_COUNTS(sup, c_.children == 0);
    int calls = atomic_load(&ts_kinds[0].calls);
    tu_sleep_ms((uint64_t)(30 * tu_multiplier()));
    ck_assert_int_eq(atomic_load(&ts_kinds[0].calls), calls); // the loop ended
    ck_assert(brg_system_is_alive(tu_sys, sup));
}
END_TEST

START_TEST(test_supervisor_dynamic_shutdown_stops_every_child)
{
    brg_child_spec_t spec = ts_spec(0, "worker", BRG_RESTART_PERMANENT);
    spec.shutdown_ms = BRG_SHUTDOWN_BRUTAL;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_DYNAMIC, &spec, 1);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, NULL, TU_WAIT_MS, NULL), BRG_OK);
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    TU_WAIT_UNTIL(atomic_load(&ts_stops) == 20, TU_WAIT_MS);
}
END_TEST

START_TEST(test_supervisor_dynamic_requests_fail_cleanly)
{
    brg_child_spec_t spec = ts_spec(0, "worker", BRG_RESTART_PERMANENT);
    ts_kinds[0].fail_start_from = 2;
    brg_ref_t dyn = ts_spawn(BRG_STRATEGY_DYNAMIC, &spec, 1);
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, dyn, NULL, TU_WAIT_MS, NULL), BRG_OK);
    // The start function fails: its code comes back and nothing is listed.
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, dyn, NULL, TU_WAIT_MS, NULL), BRG_EINVAL);
    ck_assert_uint_eq(ts_counts(dyn).children, 1);
    ck_assert_int_eq(brg_supervisor_terminate_child(tu_sys, dyn, dyn, TU_WAIT_MS), BRG_ENOTFOUND);

    brg_child_spec_t one = ts_spec(1, "a", BRG_RESTART_PERMANENT);
    brg_ref_t fixed = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &one, 1);
    TS_WAIT_COUNTS(fixed, c_.running == 1);
    brg_child_info_t info;
    ts_which(fixed, &info, 1);
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, fixed, NULL, TU_WAIT_MS, NULL), BRG_EINVAL);
    // OTP: a static child is named by its id; a ref names none of them.
    ck_assert_int_eq(brg_supervisor_terminate_child(tu_sys, fixed, info.ref, TU_WAIT_MS),
                     BRG_ENOTFOUND);
    // And a dynamic child by its ref only.
    ck_assert_int_eq(brg_supervisor_terminate_child_id(tu_sys, dyn, "worker", TU_WAIT_MS),
                     BRG_EINVAL);
    // A dead supervisor: the ask says so.
    ck_assert_int_eq(brg_exit(tu_sys, fixed, BRG_EXIT_KILLED), BRG_OK);
    TU_WAIT_DEAD(tu_sys, fixed);
    ck_assert_int_eq(brg_supervisor_which(tu_sys, fixed, TU_WAIT_MS, &info, 1), BRG_ENOACTOR);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Static children by id (OTP's child_adm), the restarting state, ignore,
//  child types

START_TEST(test_supervisor_static_child_is_terminated_restarted_and_deleted_by_id)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    ts_kinds[0].trap = true;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &spec, 1);
    TS_WAIT_COUNTS(sup, c_.running == 1);
    brg_child_info_t info;
    ts_which(sup, &info, 1);
    ck_assert_int_eq(info.state, BRG_CHILD_RUNNING);
    brg_ref_t first = info.ref, again;
    ck_assert_int_eq(brg_supervisor_terminate_child_id(tu_sys, sup, "hej", TU_WAIT_MS),
                     BRG_ENOTFOUND);
    ck_assert_int_eq(brg_supervisor_delete_child(tu_sys, sup, "hej", TU_WAIT_MS), BRG_ENOTFOUND);
    ck_assert_int_eq(brg_supervisor_restart_child(tu_sys, sup, "hej", TU_WAIT_MS, NULL),
                     BRG_ENOTFOUND);
    ck_assert_int_eq(brg_supervisor_delete_child(tu_sys, sup, "a", TU_WAIT_MS), BRG_EEXIST);
    ck_assert_int_eq(brg_supervisor_restart_child(tu_sys, sup, "a", TU_WAIT_MS, NULL), BRG_EEXIST);

    // Terminated: dead when the call returns, kept as stopped, not restarted.
    ck_assert_int_eq(brg_supervisor_terminate_child_id(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);
    ck_assert(!brg_system_is_alive(tu_sys, first));
    ts_which(sup, &info, 1);
    ck_assert_int_eq(info.state, BRG_CHILD_STOPPED);
    ck_assert(brg_ref_is_none(info.ref));
    brg_supervisor_counts_t counts = ts_counts(sup);
    ck_assert_uint_eq(counts.running, 0);
    ts_assert_quiet(sup, counts);
    // Like deleting what does not exist, terminating it again succeeds.
    ck_assert_int_eq(brg_supervisor_terminate_child_id(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);

    ck_assert_int_eq(brg_supervisor_restart_child(tu_sys, sup, "a", TU_WAIT_MS, &again), BRG_OK);
    ck_assert(!brg_ref_eq(again, first));
    ck_assert(brg_system_is_alive(tu_sys, again));
    ts_which(sup, &info, 1);
    ck_assert(brg_ref_eq(info.ref, again));
    ck_assert_int_eq(brg_supervisor_terminate_child_id(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);
    ck_assert_int_eq(brg_supervisor_delete_child(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);
    ck_assert_int_eq(brg_supervisor_restart_child(tu_sys, sup, "a", TU_WAIT_MS, NULL),
                     BRG_ENOTFOUND);
    counts = ts_counts(sup);
    ck_assert_uint_eq(counts.children, 0);
    ck_assert_uint_eq(counts.workers, 0);
    TS_WAIT_LOG("+a -a +a -a");

    // Not for a dynamic supervisor (OTP: simple_one_for_one).
    brg_child_spec_t dspec = ts_spec(1, "d", BRG_RESTART_PERMANENT);
    brg_ref_t dyn = ts_spawn(BRG_STRATEGY_DYNAMIC, &dspec, 1);
    ck_assert_int_eq(brg_supervisor_restart_child(tu_sys, dyn, "d", TU_WAIT_MS, NULL), BRG_EINVAL);
    ck_assert_int_eq(brg_supervisor_delete_child(tu_sys, dyn, "d", TU_WAIT_MS), BRG_EINVAL);
}
END_TEST

START_TEST(test_supervisor_a_child_whose_restart_fails_shows_restarting_until_terminated)
{
    brg_child_spec_t specs[2] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT)};
    ts_kinds[0].fail_start_from = 2; // every restart fails
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = BRG_SUPERVISOR_INTENSITY_MAX;
    opts.period_ms = 3600 * 1000;
    opts.children = specs;
    opts.n_children = 2;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    TS_WAIT_COUNTS(sup, c_.running == 2);
    brg_child_info_t info[2];
    ts_which(sup, info, 2);
    ts_make_exit(info[0].ref, BRG_EXIT_FAILED);
    TU_WAIT_UNTIL(atomic_load(&ts_kinds[0].calls) > 10, TU_WAIT_MS);
    ts_which(sup, info, 2);
    ck_assert_int_eq(info[0].state, BRG_CHILD_RESTARTING);
    ck_assert(brg_ref_is_none(info[0].ref));
    ck_assert_int_eq(info[1].state, BRG_CHILD_RUNNING);
    ck_assert_int_eq(brg_supervisor_restart_child(tu_sys, sup, "a", TU_WAIT_MS, NULL), BRG_EBUSY);
    ck_assert_int_eq(brg_supervisor_delete_child(tu_sys, sup, "a", TU_WAIT_MS), BRG_EBUSY);
    // Terminating it ends the loop; it stays listed, stopped.
    ck_assert_int_eq(brg_supervisor_terminate_child_id(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);
    int calls = atomic_load(&ts_kinds[0].calls);
    tu_sleep_ms((uint64_t)(30 * tu_multiplier()));
    ck_assert_int_eq(atomic_load(&ts_kinds[0].calls), calls);
    ts_which(sup, info, 2);
    ck_assert_int_eq(info[0].state, BRG_CHILD_STOPPED);
    ck_assert_int_eq(brg_supervisor_delete_child(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);
    ck_assert(brg_system_is_alive(tu_sys, sup));
}
END_TEST

START_TEST(test_supervisor_ignored_starts_keep_static_specs_and_drop_the_rest)
{
    // OTP's sup_start_ignore_*: a static child whose start says ignore is
    // kept, not running; a temporary one, and a dynamic one, are not kept.
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "t", BRG_RESTART_TEMPORARY),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    ts_kinds[0].ignore_from = 1;
    ts_kinds[1].ignore_from = 1;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    TS_WAIT_COUNTS(sup, c_.running == 1);
    brg_child_info_t info[3];
    ts_which(sup, info, 2);
    ck_assert_str_eq(info[0].id, "a");
    ck_assert_int_eq(info[0].state, BRG_CHILD_STOPPED);
    ck_assert_str_eq(info[1].id, "c");
    ck_assert_int_eq(info[1].state, BRG_CHILD_RUNNING);
    brg_supervisor_counts_t counts = ts_counts(sup);
    ck_assert_uint_eq(counts.children, 2);
    ck_assert_uint_eq(counts.workers, 2);
    // restart_child of a child that ignores: ok, and no child.
    brg_ref_t ref = info[1].ref;
    ck_assert_int_eq(brg_supervisor_restart_child(tu_sys, sup, "a", TU_WAIT_MS, &ref), BRG_OK);
    ck_assert(brg_ref_is_none(ref));
    ts_which(sup, info, 2);
    ck_assert_int_eq(info[0].state, BRG_CHILD_STOPPED);
    // Ignored on a restart: stopped, not retried.
    ts_kinds[2].ignore_from = 2;
    ts_make_exit(info[1].ref, BRG_EXIT_FAILED);
    TS_WAIT_COUNTS(sup, c_.exits == 1 && c_.running == 0);
    ts_which(sup, info, 2);
    ck_assert_int_eq(info[1].state, BRG_CHILD_STOPPED);
    ts_assert_quiet(sup, ts_counts(sup));
    ck_assert_int_eq(atomic_load(&ts_kinds[2].calls), 2);

    brg_child_spec_t dspec = ts_spec(3, "d", BRG_RESTART_PERMANENT);
    ts_kinds[3].ignore_from = 1;
    brg_ref_t dyn = ts_spawn(BRG_STRATEGY_DYNAMIC, &dspec, 1);
    ref = sup;
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, dyn, NULL, TU_WAIT_MS, &ref), BRG_OK);
    ck_assert(brg_ref_is_none(ref));
    ck_assert_uint_eq(ts_counts(dyn).children, 0);
}
END_TEST

START_TEST(test_supervisor_child_types_set_default_shutdowns_and_are_counted)
{
    ts_mid_specs[0] = ts_spec(1, "x", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_init(&ts_mid_opts);
    ts_mid_opts.children = ts_mid_specs;
    ts_mid_opts.n_children = 1;
    brg_child_spec_t specs[3] = {
        ts_spec(0, "w", BRG_RESTART_TRANSIENT), {0}, ts_spec(2, "b", BRG_RESTART_PERMANENT)};
    specs[0].name = "w_name";
    brg_child_spec_init(&specs[1]);
    specs[1].id = "mid";
    specs[1].start = brg_supervisor_start;
    specs[1].arg = &ts_mid_opts;
    specs[1].type = BRG_CHILD_SUPERVISOR; // shutdown: infinity by default
    specs[2].shutdown_ms = BRG_SHUTDOWN_BRUTAL;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    TS_WAIT_COUNTS(sup, c_.running == 3);
    brg_child_about_t about;
    ck_assert_int_eq(brg_supervisor_get_childspec(tu_sys, sup, "w", TU_WAIT_MS, &about), BRG_OK);
    ck_assert_str_eq(about.id, "w");
    ck_assert_str_eq(about.name, "w_name");
    ck_assert_int_eq(about.restart, BRG_RESTART_TRANSIENT);
    ck_assert_int_eq(about.shutdown_ms, BRG_SHUTDOWN_WORKER_DEFAULT);
    ck_assert_int_eq(about.type, BRG_CHILD_WORKER);
    ck_assert_int_eq(brg_supervisor_get_childspec(tu_sys, sup, "mid", TU_WAIT_MS, &about), BRG_OK);
    ck_assert_str_eq(about.name, "");
    ck_assert_int_eq(about.shutdown_ms, BRG_SHUTDOWN_INFINITY);
    ck_assert_int_eq(about.type, BRG_CHILD_SUPERVISOR);
    ck_assert_int_eq(brg_supervisor_get_childspec(tu_sys, sup, "b", TU_WAIT_MS, &about), BRG_OK);
    ck_assert_int_eq(about.shutdown_ms, BRG_SHUTDOWN_BRUTAL);
    ck_assert_int_eq(brg_supervisor_get_childspec(tu_sys, sup, "nope", TU_WAIT_MS, &about),
                     BRG_ENOTFOUND);
    brg_supervisor_counts_t counts = ts_counts(sup);
    ck_assert_uint_eq(counts.supervisors, 1);
    ck_assert_uint_eq(counts.workers, 2);
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    ck_assert_int_eq(info[0].type, BRG_CHILD_WORKER);
    ck_assert_int_eq(info[1].type, BRG_CHILD_SUPERVISOR);
    // A dynamic supervisor's one spec, by its id; its children by type.
    brg_child_spec_t dspec = ts_spec(3, "d", BRG_RESTART_TEMPORARY);
    dspec.type = BRG_CHILD_SUPERVISOR;
    dspec.shutdown_ms = 250;
    brg_ref_t dyn = ts_spawn(BRG_STRATEGY_DYNAMIC, &dspec, 1);
    ck_assert_int_eq(brg_supervisor_start_child(tu_sys, dyn, NULL, TU_WAIT_MS, NULL), BRG_OK);
    ck_assert_int_eq(brg_supervisor_get_childspec(tu_sys, dyn, "d", TU_WAIT_MS, &about), BRG_OK);
    ck_assert_int_eq(about.shutdown_ms, 250);
    counts = ts_counts(dyn);
    ck_assert_uint_eq(counts.supervisors, 1);
    ck_assert_uint_eq(counts.workers, 0);
}
END_TEST

START_TEST(test_supervisor_add_child_starts_a_new_static_child_with_otp_errors)
{
    brg_child_spec_t a = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &a, 1);
    TS_WAIT_COUNTS(sup, c_.running == 1);
    brg_ref_t ref = BRG_REF_NONE;
    // The id is taken: running (already_started), then stopped (already_present).
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &a, TU_WAIT_MS, &ref), BRG_EEXIST);
    ck_assert_int_eq(brg_supervisor_terminate_child_id(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &a, TU_WAIT_MS, &ref), BRG_EEXIST);
    ck_assert_int_eq(brg_supervisor_delete_child(tu_sys, sup, "a", TU_WAIT_MS), BRG_OK);
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &a, TU_WAIT_MS, &ref), BRG_OK);
    ck_assert(brg_system_is_alive(tu_sys, ref));

    // Added last, supervised like the others: restarted when it fails.
    brg_child_spec_t b = ts_spec(1, "b", BRG_RESTART_PERMANENT);
    brg_ref_t bref;
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &b, TU_WAIT_MS, &bref), BRG_OK);
    brg_child_info_t info[4];
    ts_which(sup, info, 2);
    ck_assert_str_eq(info[1].id, "b");
    ck_assert(brg_ref_eq(info[1].ref, bref));
    ts_make_exit(bref, BRG_EXIT_FAILED);
    TS_WAIT_COUNTS(sup, c_.restarts == 1 && c_.running == 2);

    // Ignored: kept stopped, unless temporary; a failed start keeps nothing.
    brg_child_spec_t c = ts_spec(2, "c", BRG_RESTART_TRANSIENT);
    brg_child_spec_t t = ts_spec(3, "t", BRG_RESTART_TEMPORARY);
    brg_child_spec_t f = ts_spec(4, "f", BRG_RESTART_PERMANENT);
    ts_kinds[2].ignore_from = ts_kinds[3].ignore_from = 1;
    ts_kinds[4].fail_start_from = 1;
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &c, TU_WAIT_MS, &ref), BRG_OK);
    ck_assert(brg_ref_is_none(ref));
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &t, TU_WAIT_MS, &ref), BRG_OK);
    ck_assert(brg_ref_is_none(ref));
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &f, TU_WAIT_MS, &ref), BRG_EINVAL);
    ts_which(sup, info, 3);
    ck_assert_str_eq(info[2].id, "c");
    ck_assert_int_eq(info[2].state, BRG_CHILD_STOPPED);

    // Bad specs, a dynamic supervisor, a forged token.
    brg_child_spec_t bad = ts_spec(5, "x", BRG_RESTART_PERMANENT);
    bad.start = NULL;
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, sup, &bad, TU_WAIT_MS, NULL), BRG_EINVAL);
    brg_child_spec_t d = ts_spec(6, "d", BRG_RESTART_PERMANENT);
    brg_ref_t dyn = ts_spawn(BRG_STRATEGY_DYNAMIC, &d, 1);
    ck_assert_int_eq(brg_supervisor_add_child(tu_sys, dyn, &a, TU_WAIT_MS, NULL), BRG_EINVAL);
    brg_msg_t *forged = brg_msg_new_int(BRG_SUP_TAG_ADD, 12345), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, sup, &forged, TU_WAIT_MS, &reply), BRG_ENOTFOUND);
    ck_assert_uint_eq(ts_counts(sup).children, 3);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Queries and options

START_TEST(test_supervisor_queries_report_children_refs_and_restart_counts)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_TRANSIENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    TS_WAIT_COUNTS(sup, c_.running == 3);
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    ck_assert_str_eq(info[0].id, "a");
    ck_assert_str_eq(info[1].id, "b");
    ck_assert_str_eq(info[2].id, "c");
    for (int i = 0; i < 3; i++) {
        ck_assert(brg_system_is_alive(tu_sys, info[i].ref));
        ck_assert_uint_eq(info[i].restarts, 0);
    }
    ts_make_exit(info[2].ref, BRG_EXIT_FAILED);
    ts_make_exit(info[1].ref, BRG_EXIT_NORMAL); // transient, normal: not restarted
    TS_WAIT_COUNTS(sup, c_.exits == 2 && c_.running == 2);
    brg_supervisor_counts_t counts = ts_counts(sup);
    ck_assert_uint_eq(counts.children, 3);
    ck_assert_uint_eq(counts.restarts, 1);
    // Fewer slots than children: the count is still the whole.
    ck_assert_int_eq(brg_supervisor_which(tu_sys, sup, TU_WAIT_MS, info, 2), 3);
    ts_which(sup, info, 3);
    ck_assert(brg_ref_is_none(info[1].ref));
    ck_assert_uint_eq(info[2].restarts, 1);
    ck_assert_int_eq(brg_supervisor_which(tu_sys, sup, TU_WAIT_MS, NULL, 0), 3);

    // The same from an actor, with brg_ask and the reader.
    brg_msg_t *msg = brg_msg_new("ask_which");
    brg_msg_add_ref(msg, sup);
    atomic_store(&ts_asked, -1000);
    ts_parent_cmd(msg);
    TU_WAIT_UNTIL(atomic_load(&ts_asked) != -1000, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&ts_asked), 3);
}
END_TEST

START_TEST(test_supervisor_readers_reject_other_messages)
{
    brg_child_info_t info;
    brg_supervisor_counts_t counts;
    brg_ref_t ref;
    brg_msg_t *other = brg_msg_new("other");
    ck_assert_int_eq(brg_supervisor_read_which(other, &info, 1), BRG_ETYPE);
    ck_assert_int_eq(brg_supervisor_read_count(other, &counts), BRG_ETYPE);
    ck_assert_int_eq(brg_supervisor_read_started(other, &ref), BRG_ETYPE);
    brg_msg_destroy(&other);
    brg_msg_t *bad = brg_msg_new(BRG_SUP_TAG_WHICH);
    brg_msg_add_array(bad, 1);
    brg_msg_add_str(bad, "no ref, no count");
    ck_assert_int_eq(brg_supervisor_read_which(bad, &info, 1), BRG_EBADMSG);
    brg_msg_destroy(&bad);
    bad = brg_msg_new(BRG_SUP_TAG_COUNT);
    brg_msg_add_uint(bad, 1);
    ck_assert_int_eq(brg_supervisor_read_count(bad, &counts), BRG_EBADMSG);
    brg_msg_destroy(&bad);
    bad = brg_msg_new(BRG_SUP_TAG_STARTED);
    ck_assert_int_eq(brg_supervisor_read_started(bad, &ref), BRG_EBADMSG);
    brg_msg_destroy(&bad);
    brg_msg_t *term = brg_supervisor_msg_terminate(BRG_REF_NONE);
    ck_assert_str_eq(brg_msg_tag(term), BRG_SUP_TAG_TERMINATE);
    brg_msg_destroy(&term);
}
END_TEST

START_TEST(test_supervisor_spawn_rejects_bad_options_and_spawns_nothing)
{
    brg_child_spec_t specs[2] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "a", BRG_RESTART_PERMANENT)};
    brg_supervisor_opts_t opts;
    brg_stats_t before = tu_stats(tu_sys);
    brg_ref_t sup;
    for (int i = 0; i < 9; i++) {
        brg_supervisor_opts_init(&opts);
        opts.children = specs;
        opts.n_children = 1;
        specs[0] = ts_spec(0, "a", BRG_RESTART_PERMANENT);
        switch (i) {
        case 0:
            opts.n_children = 2; // duplicate id
            break;
        case 1:
            specs[0].start = NULL;
            break;
        case 2:
            specs[0].id = "";
            break;
        case 3:
            opts.intensity = -1;
            break;
        case 4:
            opts.period_ms = 0;
            break;
        case 5:
            specs[0].shutdown_ms = -3;
            break;
        case 6:
            opts.strategy = BRG_STRATEGY_DYNAMIC;
            opts.n_children = 2; // a dynamic supervisor has exactly one spec
            specs[1].id = "b";
            break;
        case 7:
            opts.strategy = BRG_STRATEGY_DYNAMIC;
            specs[0].name = "many"; // dynamic children cannot share a name
            break;
        case 8:
            specs[0].restart = (brg_restart_t)7;
            break;
        }
        ck_assert_msg(ts_try_spawn(&opts, &sup) == BRG_EINVAL, "case %d", i);
        ck_assert_int_eq(brg_supervisor_spawn_root(tu_sys, &opts, &sup), BRG_EINVAL);
        specs[1].id = "a";
    }
    ck_assert_uint_eq(tu_stats(tu_sys).actors_spawned, before.actors_spawned);
}
END_TEST

START_TEST(test_supervisor_root_runs_without_a_parent_and_stops_on_request)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    ts_kinds[0].trap = true;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(tu_sys, &opts, &sup), BRG_OK);
    TS_WAIT_COUNTS(sup, c_.running == 1);
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_DEAD(tu_sys, sup);
    TS_WAIT_LOG("+a -a");
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: a storm of failing dynamic children

#define TS_STORM_CHILDREN 2000
#define TS_STORM_ROUNDS 5

START_TEST(test_supervisor_stress_dynamic_children_failing_repeatedly_add_up)
{
    brg_stats_t base = tu_stats(tu_sys);
    brg_child_spec_t spec = ts_spec(0, "storm", BRG_RESTART_TRANSIENT);
    ts_kinds[0].quiet = true;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.strategy = BRG_STRATEGY_DYNAMIC;
    opts.intensity = BRG_SUPERVISOR_INTENSITY_MAX;
    opts.period_ms = 1000;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(tu_sys, &opts, &sup), BRG_OK);
    for (int i = 0; i < TS_STORM_CHILDREN; i++) {
        brg_msg_t *args = brg_msg_new_int("args", i);
        ck_assert_int_eq(brg_supervisor_start_child(tu_sys, sup, &args, TU_WAIT_MS, NULL), BRG_OK);
    }
    static brg_child_info_t info[TS_STORM_CHILDREN];
    for (uint64_t round = 1; round <= TS_STORM_ROUNDS; round++) {
        ck_assert_int_eq(brg_supervisor_which(tu_sys, sup, TU_WAIT_MS, info, TS_STORM_CHILDREN),
                         TS_STORM_CHILDREN);
        for (int i = 0; i < TS_STORM_CHILDREN; i++) {
            ck_assert(!brg_ref_is_none(info[i].ref));
            ck_assert_uint_eq(info[i].restarts, round - 1);
            ts_make_exit(info[i].ref, i % 2 ? BRG_EXIT_FAILED : BRG_EXIT_KILLED);
        }
        uint64_t failures = round * TS_STORM_CHILDREN;
        TS_WAIT_COUNTS(sup, c_.restarts == failures && c_.running == TS_STORM_CHILDREN);
        brg_supervisor_counts_t c = ts_counts(sup);
        ck_assert_uint_eq(c.exits, failures);
        ck_assert_uint_eq(c.children, TS_STORM_CHILDREN);
    }
    // Half leave normally (transient: forgotten), the rest are stopped.
    ck_assert_int_eq(brg_supervisor_which(tu_sys, sup, TU_WAIT_MS, info, TS_STORM_CHILDREN),
                     TS_STORM_CHILDREN);
    for (int i = 0; i < TS_STORM_CHILDREN; i += 2)
        ts_make_exit(info[i].ref, BRG_EXIT_NORMAL);
    uint64_t total = (uint64_t)TS_STORM_CHILDREN * TS_STORM_ROUNDS;
    TS_WAIT_COUNTS(sup, c_.children == TS_STORM_CHILDREN / 2 && c_.running == c_.children &&
                            c_.exits == total + TS_STORM_CHILDREN / 2);
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_DEAD(tu_sys, sup);
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_alive == base.actors_alive, TU_WAIT_MS);

    // Every start has its stop; every failure was one restart.
    int starts = TS_STORM_CHILDREN + (int)total;
    ck_assert_int_eq(atomic_load(&ts_kinds[0].starts), starts);
    ck_assert_int_eq(atomic_load(&ts_stops), starts);
    brg_stats_t end = tu_stats(tu_sys);
    ck_assert_uint_eq(end.actors_spawned - base.actors_spawned, (uint64_t)starts + 1);
    ck_assert_uint_eq(end.actors_failed - base.actors_failed, total);
}
END_TEST

//  A named worker under a nested supervisor that is killed again and again:
//  each new incarnation of the nested supervisor must start the worker
//  exactly once (never a start that fails on the name the old worker, dying
//  of its parent's exit signal on another thread, still holds).
#define TS_NAMED_KILLS 300

START_TEST(test_supervisor_stress_killed_nested_supervisor_never_fails_on_a_held_name)
{
    ts_mid_specs[0] = ts_spec(1, "w", BRG_RESTART_PERMANENT);
    ts_mid_specs[0].name = "w";
    ts_kinds[1].quiet = true;
    brg_supervisor_opts_init(&ts_mid_opts);
    ts_mid_opts.children = ts_mid_specs;
    ts_mid_opts.n_children = 1;
    brg_child_spec_t mid;
    brg_child_spec_init(&mid);
    mid.id = "mid";
    mid.start = brg_supervisor_start;
    mid.arg = &ts_mid_opts;
    mid.shutdown_ms = BRG_SHUTDOWN_INFINITY;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = BRG_SUPERVISOR_INTENSITY_MAX;
    opts.children = &mid;
    opts.n_children = 1;
    brg_ref_t root;
    ck_assert_int_eq(ts_try_spawn(&opts, &root), BRG_OK);
    for (uint64_t i = 1; i <= TS_NAMED_KILLS; i++) {
        brg_child_info_t info;
        TS_WAIT_COUNTS(root, c_.running == 1);
        ts_which(root, &info, 1);
        brg_supervisor_counts_t mc;
        TU_WAIT_UNTIL(brg_supervisor_count(tu_sys, info.ref, TU_WAIT_MS, &mc) == BRG_OK &&
                          mc.running == 1,
                      TU_WAIT_MS);
        ck_assert_int_eq(brg_exit(tu_sys, info.ref, BRG_EXIT_KILLED), BRG_OK);
        TS_WAIT_COUNTS(root, c_.restarts >= i);
    }
    TS_WAIT_COUNTS(root, c_.running == 1);
    ck_assert_uint_eq(ts_counts(root).restarts, TS_NAMED_KILLS);
    brg_ref_t w;
    TU_WAIT_UNTIL(brg_whereis(tu_sys, "w", &w) == BRG_OK && brg_system_is_alive(tu_sys, w),
                  TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&ts_kinds[1].calls), TS_NAMED_KILLS + 1);
    ck_assert_int_eq(atomic_load(&ts_kinds[1].starts), TS_NAMED_KILLS + 1);
}
END_TEST

//  The same one level down: a named worker killed again and again is always
//  restarted at the first attempt.
#define TS_NAMED_CHILD_KILLS 1000

START_TEST(test_supervisor_stress_named_child_killed_1000_times_restarts_at_once_each_time)
{
    brg_child_spec_t spec = ts_spec(0, "w", BRG_RESTART_PERMANENT);
    spec.name = "w";
    ts_kinds[0].quiet = true;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = BRG_SUPERVISOR_INTENSITY_MAX;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    brg_ref_t w, prev = BRG_REF_NONE;
    for (uint64_t i = 1; i <= TS_NAMED_CHILD_KILLS; i++) {
        TU_WAIT_UNTIL(brg_whereis(tu_sys, "w", &w) == BRG_OK && !brg_ref_eq(w, prev), TU_WAIT_MS);
        ck_assert_int_eq(brg_exit(tu_sys, w, BRG_EXIT_KILLED), BRG_OK);
        prev = w;
        TS_WAIT_COUNTS(sup, c_.restarts >= i);
    }
    TS_WAIT_COUNTS(sup, c_.running == 1);
    ck_assert_uint_eq(ts_counts(sup).restarts, TS_NAMED_CHILD_KILLS);
    ck_assert_int_eq(atomic_load(&ts_kinds[0].calls), TS_NAMED_CHILD_KILLS + 1);
    ck_assert(brg_system_is_alive(tu_sys, sup));
}
END_TEST

//  ---------------------------------------------------------------------------
//  Reports (brigade/log.h): the fixture's system logs into tr_events.

typedef struct {
    brg_log_level_t level;
    char category[16];
    brg_ref_t actor;
    char text[BRG_LOG_TEXT_MAX + 1];
} tr_event_t;

static tr_event_t tr_events[64]; // ts_lock
static int tr_n;                 // ts_lock

static void
tr_hook(void *arg, const brg_log_event_t *ev)
{
    (void)arg;
    pthread_mutex_lock(&ts_lock);
    if (tr_n < 64) {
        tr_events[tr_n].level = ev->level;
        snprintf(tr_events[tr_n].category, sizeof(tr_events[tr_n].category), "%s", ev->category);
        tr_events[tr_n].actor = ev->actor;
        snprintf(tr_events[tr_n].text, sizeof(tr_events[tr_n].text), "%s", ev->text);
        tr_n++;
    }
    pthread_mutex_unlock(&ts_lock);
}

//  True if an event of this category, level and actor with exactly this text
//  was logged.
static bool
tr_logged(const char *category, brg_log_level_t level, brg_ref_t actor, const char *text)
{
    bool found = false;
    pthread_mutex_lock(&ts_lock);
    for (int i = 0; i < tr_n && !found; i++)
        found = strcmp(tr_events[i].category, category) == 0 && tr_events[i].level == level &&
                brg_ref_eq(tr_events[i].actor, actor) && strcmp(tr_events[i].text, text) == 0;
    pthread_mutex_unlock(&ts_lock);
    return found;
}

//  Events of a category so far.
static int
tr_count(const char *category)
{
    int n = 0;
    pthread_mutex_lock(&ts_lock);
    for (int i = 0; i < tr_n; i++)
        n += strcmp(tr_events[i].category, category) == 0;
    pthread_mutex_unlock(&ts_lock);
    return n;
}

static void
tr_setup(void)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.log_fn = tr_hook;
    tu_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tu_sys);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = ts_parent_init;
    ck_assert_int_eq(brg_system_spawn(tu_sys, ts_parent, &opts, &ts_parent_ref), BRG_OK);
}

static char *
tr_ref(brg_ref_t ref, char buf[BRG_REF_STRLEN])
{
    brg_ref_format(ref, buf, BRG_REF_STRLEN);
    return buf;
}

START_TEST(test_supervisor_reports_a_terminated_child_and_its_restart)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 5;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    brg_child_info_t info;
    TS_WAIT_COUNTS(sup, c_.running == 1);
    ts_which(sup, &info, 1);
    ts_make_exit(info.ref, BRG_EXIT_FAILED);
    TS_WAIT_COUNTS(sup, c_.restarts == 1 && c_.running == 1);
    char ref[BRG_REF_STRLEN];
    char want[256];
    snprintf(want, sizeof(want), "child 'a' (%s) terminated: failed code -100 \"boom\"",
             tr_ref(info.ref, ref));
    ck_assert(tr_logged("supervisor", BRG_LOG_ERROR, sup, want));
    ck_assert(tr_logged("supervisor", BRG_LOG_NOTICE, sup, "child 'a' exited, restarting: failed"));
    ck_assert(tr_logged("crash", BRG_LOG_ERROR, info.ref,
                        "failed: code -100 \"boom\"; last message 'fail'"));
    ck_assert_int_eq(tr_count("supervisor"), 2);
    // A normal exit of a permanent child is restarted without an error report.
    ts_which(sup, &info, 1);
    ts_make_exit(info.ref, BRG_EXIT_NORMAL);
    TS_WAIT_COUNTS(sup, c_.restarts == 2 && c_.running == 1);
    ck_assert(tr_logged("supervisor", BRG_LOG_NOTICE, sup, "child 'a' exited, restarting: normal"));
    ck_assert_int_eq(tr_count("supervisor"), 3);
}
END_TEST

START_TEST(test_supervisor_reports_giving_up_at_max_restart_intensity)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 0;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    brg_child_info_t info;
    TS_WAIT_COUNTS(sup, c_.running == 1);
    ts_which(sup, &info, 1);
    ts_make_exit(info.ref, BRG_EXIT_FAILED);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    ck_assert(tr_logged("supervisor", BRG_LOG_ERROR, sup,
                        "child 'a' exited, reached max restart intensity (0 in 5000 ms), giving "
                        "up: failed"));
    // Giving up is a shutdown, as in OTP: no crash report of the supervisor's own.
    ck_assert_int_eq(tr_count("crash"), 1); // the child's, made by ts_make_exit
}
END_TEST

START_TEST(test_supervisor_reports_a_child_killed_after_its_shutdown_time)
{
    brg_child_spec_t specs[3] = {ts_spec(0, "a", BRG_RESTART_PERMANENT),
                                 ts_spec(1, "b", BRG_RESTART_PERMANENT),
                                 ts_spec(2, "c", BRG_RESTART_PERMANENT)};
    ts_kinds[0].trap = true;     // stops in time: no report
    ts_kinds[1].stubborn = true; // killed after 50 ms: a shutdown error
    specs[1].shutdown_ms = 50;
    specs[2].shutdown_ms = BRG_SHUTDOWN_BRUTAL; // killed at once, as asked: no report
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, specs, 3);
    TS_WAIT_LOG("+a +b +c");
    brg_child_info_t info[3];
    ts_which(sup, info, 3);
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    char ref[BRG_REF_STRLEN];
    char want[256];
    snprintf(want, sizeof(want), "child 'b' (%s) did not stop within 50 ms; killed",
             tr_ref(info[1].ref, ref));
    ck_assert(tr_logged("supervisor", BRG_LOG_ERROR, sup, want));
    ck_assert_int_eq(tr_count("supervisor"), 1);
    ck_assert_int_eq(tr_count("crash"), 0);
}
END_TEST

START_TEST(test_supervisor_reports_a_child_that_could_not_be_restarted)
{
    brg_child_spec_t spec = ts_spec(0, "a", BRG_RESTART_PERMANENT);
    ts_kinds[0].fail_start_from = 2; // the first restart's start function fails
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.intensity = 1;
    opts.children = &spec;
    opts.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(ts_try_spawn(&opts, &sup), BRG_OK);
    brg_child_info_t info;
    TS_WAIT_COUNTS(sup, c_.running == 1);
    ts_which(sup, &info, 1);
    ts_make_exit(info.ref, BRG_EXIT_FAILED);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind,
                     BRG_EXIT_SHUTDOWN); // gave up, as OTP: shutdown
    ck_assert(tr_logged("supervisor", BRG_LOG_NOTICE, sup, "child 'a' exited, restarting: failed"));
    ck_assert(tr_logged("supervisor", BRG_LOG_ERROR, sup,
                        "child 'a' could not be restarted: failed BRG_EINVAL"));
    // The failed start counts as a failure: the second restart is one too many.
    ck_assert(tr_logged("supervisor", BRG_LOG_ERROR, sup,
                        "child 'a' exited, reached max restart intensity (1 in 5000 ms), giving "
                        "up: failed"));
    ck_assert_int_eq(tr_count("supervisor"), 4);
}
END_TEST

//  A child that fails when asked to shut down.
static int
tr_fails_on_shutdown(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, BRG_TAG_EXIT))
        brg_fail(ctx, BRG_ESYS, "flush failed");
    return BRG_OK;
}

static int
tr_trap_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    brg_trap_exits(ctx, true);
    return BRG_OK;
}

static brg_ref_t tr_child;

static int
tr_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    (void)args;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = tr_trap_init;
    opts.flags = BRG_SPAWN_LINK;
    int rc = brg_spawn(sup_ctx, tr_fails_on_shutdown, &opts, child);
    pthread_mutex_lock(&ts_lock);
    tr_child = *child;
    pthread_mutex_unlock(&ts_lock);
    return rc;
}

START_TEST(test_supervisor_reports_a_child_that_fails_while_shutting_down)
{
    brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "flusher";
    spec.start = tr_start;
    brg_ref_t sup = ts_spawn(BRG_STRATEGY_ONE_FOR_ONE, &spec, 1);
    TS_WAIT_COUNTS(sup, c_.running == 1);
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    ck_assert_int_eq(ts_wait_signal("exit", sup).kind, BRG_EXIT_SHUTDOWN);
    char ref[BRG_REF_STRLEN];
    char want[256];
    pthread_mutex_lock(&ts_lock);
    tr_ref(tr_child, ref);
    pthread_mutex_unlock(&ts_lock);
    snprintf(want, sizeof(want),
             "child 'flusher' (%s) failed while shutting down: failed BRG_ESYS \"flush failed\"",
             ref);
    ck_assert(tr_logged("supervisor", BRG_LOG_ERROR, sup, want));
    ck_assert_int_eq(tr_count("supervisor"), 1);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Synchronous start (brg_supervisor_spawn_sync)

//  Slow inits that record their order; one may fail or stop.
static atomic_int tsy_inits_done;
static atomic_int tsy_overlap; // an init began while another was running
static atomic_int tsy_running;
static atomic_int tsy_stops;

typedef struct {
    int sleep_ms;
    int fail_code; // < 0: the init fails with it
} tsy_kind_t;

static int
tsy_init(brg_ctx_t *ctx, void *arg)
{
    tsy_kind_t *k = arg;
    if (atomic_fetch_add(&tsy_running, 1) != 0)
        atomic_store(&tsy_overlap, 1);
    tu_sleep_ms((uint64_t)k->sleep_ms);
    atomic_fetch_sub(&tsy_running, 1);
    if (k->fail_code < 0)
        return k->fail_code;
    atomic_fetch_add(&tsy_inits_done, 1);
    (void)ctx;
    return BRG_OK;
}

static int
tsy_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

static void
tsy_free(void *state)
{
    (void)state;
    atomic_fetch_add(&tsy_stops, 1);
}

static int
tsy_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)args;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = tsy_init;
    opts.init_arg = arg;
    opts.state = arg; // not owned: the destructor only counts
    opts.state_destroy = tsy_free;
    opts.flags = BRG_SPAWN_LINK;
    return brg_spawn(sup_ctx, tsy_worker, &opts, child);
}

static brg_child_spec_t
tsy_spec(const char *id, tsy_kind_t *k)
{
    brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = id;
    spec.start = tsy_start;
    spec.arg = k;
    return spec;
}

START_TEST(test_supervisor_spawn_sync_returns_once_every_child_init_has_run_in_order)
{
    static tsy_kind_t slow = {30, 0};
    static brg_child_spec_t inner[2];
    inner[0] = tsy_spec("i1", &slow);
    inner[1] = tsy_spec("i2", &slow);
    static brg_supervisor_opts_t nested;
    brg_supervisor_opts_init(&nested);
    nested.children = inner;
    nested.n_children = 2;
    brg_child_spec_t specs[3] = {tsy_spec("a", &slow), tsy_spec("b", &slow)};
    brg_child_spec_init(&specs[2]);
    specs[2].id = "nested";
    specs[2].start = brg_supervisor_start;
    specs[2].arg = &nested;
    specs[2].type = BRG_CHILD_SUPERVISOR;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = specs;
    opts.n_children = 3;
    brg_ref_t sup;
    brg_supervisor_start_error_t err;
    ck_assert_int_eq(brg_supervisor_spawn_sync(tu_sys, &opts, 10000, &sup, &err), BRG_OK);
    ck_assert_int_eq(atomic_load(&tsy_inits_done), 4); // the nested ones too
    ck_assert_int_eq(atomic_load(&tsy_overlap), 0);    // one after the other
    ck_assert(brg_system_is_alive(tu_sys, sup));
    ck_assert_int_eq(err.code, BRG_OK);
    brg_supervisor_counts_t c;
    ck_assert_int_eq(brg_supervisor_count(tu_sys, sup, 5000, &c), BRG_OK);
    ck_assert_uint_eq(c.running, 3);
    ck_assert_int_eq(brg_exit(tu_sys, sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_DEAD(tu_sys, sup);
}
END_TEST

START_TEST(test_supervisor_spawn_sync_reports_the_child_that_failed_in_init_and_its_code)
{
    static tsy_kind_t ok = {5, 0};
    static tsy_kind_t bad = {5, -321};
    brg_child_spec_t specs[3] = {tsy_spec("a", &ok), tsy_spec("b", &bad), tsy_spec("c", &ok)};
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = specs;
    opts.n_children = 3;
    opts.name = "sync_sup";
    brg_ref_t sup = BRG_REF_NONE;
    brg_supervisor_start_error_t err;
    ck_assert_int_eq(brg_supervisor_spawn_sync(tu_sys, &opts, 10000, &sup, &err), -321);
    ck_assert_str_eq(err.child_id, "b");
    ck_assert_int_eq(err.code, -321);
    ck_assert(brg_ref_is_none(sup));
    ck_assert_int_eq(atomic_load(&tsy_inits_done), 1); // c never started
    ck_assert_int_eq(atomic_load(&tsy_stops), 2);      // a stopped, b died
    brg_ref_t found;
    ck_assert_int_eq(brg_whereis(tu_sys, "sync_sup", &found), BRG_ENOTFOUND); // it is gone
    // A start function that fails names its child too.
    ts_kinds[0].fail_start_from = 1;
    brg_child_spec_t two[2] = {tsy_spec("x", &ok), ts_spec(0, "y", BRG_RESTART_PERMANENT)};
    opts.children = two;
    opts.n_children = 2;
    opts.name = NULL;
    ck_assert_int_eq(brg_supervisor_spawn_sync(tu_sys, &opts, 10000, &sup, &err), BRG_EINVAL);
    ck_assert_str_eq(err.child_id, "y");
}
END_TEST

static atomic_int tsy_inside_rc = 1;

static int
tsy_spawns_inside(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    atomic_store(&tsy_inside_rc,
                 brg_supervisor_spawn_sync(brg_ctx_system(ctx), &opts, 60000, NULL, NULL));
    return BRG_OK;
}

START_TEST(test_supervisor_spawn_sync_times_out_and_refuses_a_worker_thread)
{
    brg_ref_t a = tu_spawn(tu_sys, tsy_spawns_inside);
    ck_assert_int_eq(tu_send_tag(tu_sys, a, "go"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&tsy_inside_rc) != 1, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&tsy_inside_rc), BRG_EDEADLK);
    static tsy_kind_t slow = {400, 0};
    brg_child_spec_t specs[1] = {tsy_spec("slow", &slow)};
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = specs;
    opts.n_children = 1;
    brg_ref_t sup;
    brg_supervisor_start_error_t err;
    ck_assert_int_eq(brg_supervisor_spawn_sync(tu_sys, &opts, 50, &sup, &err), BRG_ETIMEDOUT);
    ck_assert_int_eq(err.code, BRG_ETIMEDOUT);
    TU_WAIT_UNTIL(atomic_load(&tsy_stops) == 1, TU_WAIT_MS); // shut down with its child
    ck_assert_int_eq(brg_supervisor_spawn_sync(tu_sys, &opts, -1, &sup, NULL), BRG_EINVAL);
}
END_TEST

Suite *
supervisor_suite(void)
{
    Suite *s = suite_create("supervisor");
    TCase *table = tcase_create("decision table");
    tcase_add_checked_fixture(table, ts_setup, tu_teardown);
    tcase_set_timeout(table, 20);
    tcase_add_loop_test(table, test_supervisor_restarts_what_the_decision_table_says, 0, 48);
    tcase_add_test(table, test_supervisor_group_restart_stops_a_temporary_sibling_for_good);
    suite_add_tcase(s, table);

    TCase *order = tcase_create("order and shutdown");
    tcase_add_checked_fixture(order, ts_setup, tu_teardown);
    tcase_add_test(order,
                   test_supervisor_spawn_sync_returns_once_every_child_init_has_run_in_order);
    tcase_add_test(order,
                   test_supervisor_spawn_sync_reports_the_child_that_failed_in_init_and_its_code);
    tcase_add_test(order, test_supervisor_spawn_sync_times_out_and_refuses_a_worker_thread);
    tcase_set_timeout(order, 20);
    tcase_add_test(
        order,
        test_supervisor_starts_in_order_and_shuts_down_in_reverse_order_with_reason_shutdown);
    tcase_add_test(
        order,
        test_supervisor_one_for_all_stops_the_others_in_reverse_order_then_starts_all_in_order);
    tcase_add_test(order,
                   test_supervisor_rest_for_one_restarts_the_child_and_those_started_after_it);
    tcase_add_test(order, test_supervisor_shutdown_kills_a_child_that_ignores_it_after_its_timeout);
    tcase_add_test(order, test_supervisor_a_restart_group_waits_for_each_stop_with_its_timeout);
    tcase_add_test(order,
                   test_supervisor_stops_its_children_and_exits_when_its_parent_exits_normally);
    tcase_add_test(order, test_supervisor_root_runs_without_a_parent_and_stops_on_request);
    suite_add_tcase(s, order);

    TCase *intensity = tcase_create("intensity and escalation");
    tcase_add_checked_fixture(intensity, ts_setup, tu_teardown);
    tcase_set_timeout(intensity, 20);
    tcase_add_test(intensity,
                   test_supervisor_fails_when_restarts_exceed_intensity_and_stops_its_children);
    tcase_add_test(intensity, test_supervisor_with_intensity_zero_fails_on_the_first_restart);
    tcase_add_test(intensity, test_supervisor_restarts_spread_beyond_the_period_are_allowed);
    tcase_add_test(intensity, test_supervisor_failure_escalates_up_a_tree_of_supervisors);
    tcase_add_test(intensity, test_supervisor_that_gives_up_is_not_restarted_as_a_transient_child);
    tcase_add_test(intensity, test_supervisor_tree_shuts_down_depth_first_in_reverse_order);
    tcase_add_test(intensity,
                   test_supervisor_group_restart_waits_for_a_nested_supervisor_to_come_up);
    tcase_add_test(intensity,
                   test_supervisor_nested_supervisor_that_cannot_start_fails_its_parent_start);
    tcase_add_test(intensity, test_supervisor_that_cannot_start_a_child_stops_the_others_and_fails);
    tcase_add_test(intensity,
                   test_supervisor_counts_failed_restarts_against_intensity_and_escalates);
    tcase_add_test(intensity,
                   test_supervisor_sees_a_child_that_dies_before_it_is_linked_as_an_abnormal_exit);
    suite_add_tcase(s, intensity);

    TCase *names = tcase_create("names, dynamic children, queries");
    tcase_add_checked_fixture(names, ts_setup, tu_teardown);
    tcase_set_timeout(names, 20);
    tcase_add_test(names, test_supervisor_gives_a_restarted_child_its_registered_name_back);
    tcase_add_test(names, test_supervisor_fails_to_start_a_child_whose_name_is_taken);
    tcase_add_test(names, test_supervisor_registers_its_own_name);
    tcase_add_test(names, test_supervisor_dynamic_starts_children_with_their_arguments_at_run_time);
    tcase_add_test(names, test_supervisor_dynamic_terminate_stops_a_child_for_good);
    tcase_add_test(names, test_supervisor_dynamic_shutdown_stops_every_child);
    tcase_add_test(names,
                   test_supervisor_terminate_child_returns_once_the_child_is_dead_and_removed);
    tcase_add_test(names, test_supervisor_dynamic_child_stuck_restarting_can_be_terminated);
    tcase_add_test(names, test_supervisor_dynamic_requests_fail_cleanly);
    tcase_add_test(names, test_supervisor_queries_report_children_refs_and_restart_counts);
    tcase_add_test(names, test_supervisor_static_child_is_terminated_restarted_and_deleted_by_id);
    tcase_add_test(names,
                   test_supervisor_a_child_whose_restart_fails_shows_restarting_until_terminated);
    tcase_add_test(names, test_supervisor_ignored_starts_keep_static_specs_and_drop_the_rest);
    tcase_add_test(names, test_supervisor_child_types_set_default_shutdowns_and_are_counted);
    tcase_add_test(names, test_supervisor_add_child_starts_a_new_static_child_with_otp_errors);
    tcase_add_test(names, test_supervisor_readers_reject_other_messages);
    tcase_add_test(names, test_supervisor_spawn_rejects_bad_options_and_spawns_nothing);
    suite_add_tcase(s, names);

    TCase *reports = tcase_create("reports");
    tcase_add_checked_fixture(reports, tr_setup, tu_teardown);
    tcase_set_timeout(reports, 20);
    tcase_add_test(reports, test_supervisor_reports_a_terminated_child_and_its_restart);
    tcase_add_test(reports, test_supervisor_reports_giving_up_at_max_restart_intensity);
    tcase_add_test(reports, test_supervisor_reports_a_child_that_could_not_be_restarted);
    tcase_add_test(reports, test_supervisor_reports_a_child_killed_after_its_shutdown_time);
    tcase_add_test(reports, test_supervisor_reports_a_child_that_fails_while_shutting_down);
    suite_add_tcase(s, reports);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, ts_setup, tu_teardown);
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress, test_supervisor_stress_dynamic_children_failing_repeatedly_add_up);
    tcase_add_test(stress,
                   test_supervisor_stress_killed_nested_supervisor_never_fails_on_a_held_name);
    tcase_add_test(stress,
                   test_supervisor_stress_named_child_killed_1000_times_restarts_at_once_each_time);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(supervisor_suite());
}
