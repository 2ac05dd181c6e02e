//  test_rspawn - remote spawn of registered kinds (docs/PROTOCOL.md section
//  20, "spawn"): two nodes in one process, joined over inproc:// and over
//  tcp://127.0.0.1 with CURVE (Check's loop index 0 = inproc, 1 = tcp), and
//  a raw ZeroMQ client with a client key.
//
//  Node b registers the kinds: "worker" (remote-spawnable; its init keeps
//  its first argument, "fail" makes it fail), "crash" (remote-spawnable;
//  its init fails) and "local" (not remote-spawnable). A parent actor on
//  node a spawns them on b on the test's command and records what it gets:
//  the spawn result, EXIT and DOWN.
#include "test_util.h"

#include <brigade/kind.h>
#include <brigade/node.h>
#include <brigade/supervisor.h>
#include <msgpack.h>
#include <unistd.h>
#include <zmq.h>

static brg_system_t *tr_sys[2];
static brg_node_t *tr_node[2];
static int tr_transport; // 0 inproc, 1 tcp (CURVE)

//  ---------------------------------------------------------------------------
//  What the parent records.

typedef struct {
    char tag[32];
    int status;      // "spawned": the result
    brg_ref_t child; // "spawned": the child; EXIT / DOWN: who
    uint64_t mon;    // DOWN: its monitor; "spawned": the id opts gave
    brg_exit_reason_t reason;
} tr_event_t;

#define TR_EVENTS 64
static pthread_mutex_t tr_lock = PTHREAD_MUTEX_INITIALIZER;
static tr_event_t tr_events[TR_EVENTS];
static int tr_nevents;

static void
tr_record(const tr_event_t *e)
{
    pthread_mutex_lock(&tr_lock);
    if (tr_nevents < TR_EVENTS)
        tr_events[tr_nevents++] = *e;
    pthread_mutex_unlock(&tr_lock);
}

static int
tr_count(const char *tag)
{
    int c = 0;
    pthread_mutex_lock(&tr_lock);
    for (int i = 0; i < tr_nevents; i++)
        c += strcmp(tr_events[i].tag, tag) == 0;
    pthread_mutex_unlock(&tr_lock);
    return c;
}

//  The k-th event with this tag (0 first), and its position in the log.
static tr_event_t
tr_find(const char *tag, int k, int *at)
{
    tr_event_t e;
    memset(&e, 0, sizeof e);
    pthread_mutex_lock(&tr_lock);
    for (int i = 0; i < tr_nevents; i++) {
        if (strcmp(tr_events[i].tag, tag) == 0 && k-- == 0) {
            e = tr_events[i];
            if (at != NULL)
                *at = i;
            break;
        }
    }
    pthread_mutex_unlock(&tr_lock);
    return e;
}

//  ---------------------------------------------------------------------------
//  The kinds of node b.

static atomic_long tr_init_arg;   // the worker's init argument, last seen
static atomic_int tr_crash_inits; // inits of "crash" run

static int
tr_worker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "fail"))
        return BRG_EFAILED;
    if (brg_msg_is(msg, "stop"))
        brg_stop(ctx);
    if (brg_msg_is(msg, "ping")) {
        brg_msg_t *r = brg_msg_new_int("pong", *(int64_t *)brg_state(ctx));
        brg_reply(ctx, &r);
    }
    return BRG_OK;
}

static int
tr_worker_init(brg_ctx_t *ctx, const brg_msg_t *args)
{
    size_t pos = 0;
    int64_t v = -1;
    if (brg_msg_size(args) > 0 && brg_msg_read_int(args, &pos, &v) != BRG_OK)
        return BRG_EINVAL;
    *(int64_t *)brg_state(ctx) = v;
    atomic_store(&tr_init_arg, v);
    return BRG_OK;
}

static int
tr_crash_init(brg_ctx_t *ctx, const brg_msg_t *args)
{
    (void)ctx;
    (void)args;
    atomic_fetch_add(&tr_crash_inits, 1);
    return BRG_EFAILED;
}

static void
tr_register_kinds(brg_system_t *sys)
{
    brg_kind_t k;
    brg_kind_init(&k);
    k.behaviour = tr_worker;
    k.init = tr_worker_init;
    k.state_size = sizeof(int64_t);
    k.flags = BRG_KIND_REMOTE;
    ck_assert_int_eq(brg_kind_register(sys, "worker", &k), BRG_OK);
    k.init = tr_crash_init;
    ck_assert_int_eq(brg_kind_register(sys, "crash", &k), BRG_OK);
    k.init = tr_worker_init;
    k.flags = 0;
    ck_assert_int_eq(brg_kind_register(sys, "local", &k), BRG_OK);
}

//  ---------------------------------------------------------------------------
//  The parent on node a. Command "spawn" [node, kind, flags, name or nil,
//  init argument]: brg_spawn_remote; records "spawned", EXIT and DOWN.

static int
tr_on_spawned(brg_ctx_t *ctx, int status, brg_ref_t child, void *arg)
{
    (void)ctx;
    tr_event_t e;
    memset(&e, 0, sizeof e);
    snprintf(e.tag, sizeof e.tag, "spawned");
    e.status = status;
    e.child = child;
    e.mon = (uint64_t)(uintptr_t)arg;
    tr_record(&e);
    return BRG_OK;
}

static int
tr_parent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    tr_event_t e;
    memset(&e, 0, sizeof e);
    snprintf(e.tag, sizeof e.tag, "%s", brg_msg_tag(msg));
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        ck_assert_int_eq(brg_msg_read_exit(msg, &e.child, &e.reason), BRG_OK);
    } else if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        ck_assert_int_eq(brg_msg_read_down(msg, &e.child, &e.mon, &e.reason), BRG_OK);
    } else if (brg_msg_is(msg, "spawn")) {
        size_t pos = 0;
        brg_ref_t node;
        char kind[64], name[64];
        int64_t flags, v;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &node), BRG_OK);
        ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, kind, sizeof kind), BRG_OK);
        ck_assert_int_eq(brg_msg_read_int(msg, &pos, &flags), BRG_OK);
        bool named = brg_msg_peek(msg, pos) == BRG_TYPE_STR;
        if (named)
            ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, name, sizeof name), BRG_OK);
        else
            ck_assert_int_eq(brg_msg_read_nil(msg, &pos), BRG_OK);
        ck_assert_int_eq(brg_msg_read_int(msg, &pos, &v), BRG_OK);
        brg_trap_exits(ctx, true);
        brg_kind_spawn_opts_t opts;
        brg_kind_spawn_opts_init(&opts);
        uint64_t mon = 0;
        opts.flags = (unsigned)flags;
        opts.name = named ? name : NULL;
        opts.monitor = &mon;
        brg_msg_t *args = brg_msg_new("args");
        ck_assert_int_eq(brg_msg_add_int(args, v), BRG_OK);
        // The monitor id is known now, before the answer: pass it along.
        // (mon is written by brg_spawn_remote; the callback gets a copy.)
        int rc = brg_spawn_remote(ctx, node, kind, args, &opts, 5000, tr_on_spawned, NULL);
        brg_msg_destroy(&args);
        ck_assert_int_eq(rc, BRG_OK);
        ck_assert((flags & BRG_SPAWN_MONITOR) ? mon != 0 : mon == 0);
        e.mon = mon;
        snprintf(e.tag, sizeof e.tag, "asked");
    } else if (brg_msg_is(msg, "spawn_late")) {
        // A linked spawn whose reply must come after its 1 ms deadline:
        // this behaviour sleeps until both are in the mailbox, and the
        // timeout, in the system lane, is handled first.
        size_t pos = 0;
        brg_ref_t node;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &node), BRG_OK);
        brg_kind_spawn_opts_t opts;
        brg_kind_spawn_opts_init(&opts);
        opts.flags = BRG_SPAWN_LINK;
        opts.name = "late";
        ck_assert_int_eq(brg_spawn_remote(ctx, node, "worker", NULL, &opts, 1, tr_on_spawned, NULL),
                         BRG_OK);
        usleep(300 * 1000);
        snprintf(e.tag, sizeof e.tag, "asked");
    }
    tr_record(&e);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Nodes.

//  Node a's log, for the supervisor's reports (tu_log_keep, tests/test_util.h).
static bool
tr_logged(const char *text)
{
    return tu_log_count(text, NULL) > 0;
}

static void
tr_make(int i, const char *name)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    if (i == 0) {
        cfg.log_fn = tu_log_keep;
        cfg.log_level = BRG_LOG_INFO;
    }
    tr_sys[i] = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tr_sys[i]);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    nc.name = name;
    char ep[128];
    if (tr_transport == 0)
        snprintf(ep, sizeof ep, "inproc://test-rspawn-%d-%d", (int)getpid(), i);
    else
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:0");
    nc.listen[0] = ep;
    nc.tick_ms = 100;
    nc.timeout_ms = 2000;
    tr_node[i] = brg_node_new(tr_sys[i], &nc);
    ck_assert_ptr_nonnull(tr_node[i]);
}

static bool
tr_sees(int i, brg_ref_t peer)
{
    brg_ref_t peers[4];
    int n = brg_node_peers(tr_node[i], peers, 4);
    for (int k = 0; k < n && k < 4; k++)
        if (brg_ref_eq(peers[k], peer))
            return true;
    return false;
}

//  Nodes a (0) and b (1), joined; b has the kinds. Returns b's node ref.
static brg_ref_t
tr_pair(int transport)
{
    tr_transport = transport;
    tr_make(0, "a");
    tr_make(1, "b");
    tr_register_kinds(tr_sys[1]);
    char ep[256];
    ck_assert_int_eq(brg_node_endpoint(tr_node[1], 0, ep, sizeof ep), BRG_OK);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(tr_node[0], ep, 5000, &peer), BRG_OK);
    TU_WAIT_UNTIL(tr_sees(1, brg_node_self(tr_node[0])), TU_WAIT_MS);
    return peer;
}

static brg_ref_t
tr_spawn_parent(void)
{
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tr_sys[0], tr_parent, NULL, &ref), BRG_OK);
    return ref;
}

//  Have the parent spawn `kind` on node nb; wait for the result. Returns
//  the "spawned" event (its mon: the monitor id brg_spawn_remote gave).
static tr_event_t
tr_rspawn(brg_ref_t parent, brg_ref_t nb, const char *kind, unsigned flags, const char *name,
          int64_t v)
{
    int before = tr_count("spawned");
    int asked = tr_count("asked");
    brg_msg_t *m = brg_msg_new("spawn");
    brg_msg_add_ref(m, nb);
    brg_msg_add_str(m, kind);
    brg_msg_add_int(m, flags);
    if (name != NULL)
        brg_msg_add_str(m, name);
    else
        brg_msg_add_nil(m);
    brg_msg_add_int(m, v);
    ck_assert_int_eq(brg_system_send(tr_sys[0], parent, &m), BRG_OK);
    TU_WAIT_UNTIL(tr_count("spawned") > before, TU_WAIT_MS);
    tr_event_t e = tr_find("spawned", before, NULL);
    e.mon = tr_find("asked", asked, NULL).mon;
    return e;
}

static void
tr_setup(void)
{
    pthread_mutex_lock(&tr_lock);
    tr_nevents = 0;
    pthread_mutex_unlock(&tr_lock);
    atomic_store(&tr_init_arg, 0);
    atomic_store(&tr_crash_inits, 0);
    tu_log_clear();
}

static void
tr_teardown(void)
{
    for (int i = 0; i < 2; i++)
        if (tr_sys[i] != NULL)
            ck_assert_int_eq(brg_system_destroy(&tr_sys[i]), BRG_OK);
}

//  ---------------------------------------------------------------------------
//  Tests.

START_TEST(test_rspawn_a_linked_child_runs_there_with_its_args_and_its_failure_gives_exit)
{
    brg_ref_t nb = tr_pair(_i);
    brg_ref_t parent = tr_spawn_parent();
    tr_event_t s = tr_rspawn(parent, nb, "worker", BRG_SPAWN_LINK, "w1", 42);
    ck_assert_int_eq(s.status, BRG_OK);
    ck_assert(brg_ref_eq((brg_ref_t){s.child.node_hi, s.child.node_lo, 0}, nb));
    ck_assert(brg_system_is_alive(tr_sys[1], s.child));
    TU_WAIT_UNTIL(atomic_load(&tr_init_arg) == 42, TU_WAIT_MS); // init runs after the answer
    brg_ref_t named;
    ck_assert_int_eq(brg_whereis(tr_sys[1], "w1", &named), BRG_OK);
    ck_assert(brg_ref_eq(named, s.child));
    // The child answers from node b with its init argument.
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask(tr_sys[0], s.child, &q, 5000, &r), BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 42);
    brg_msg_destroy(&r);
    // It fails: the parent (trapping exits) gets its EXIT with the reason.
    ck_assert_int_eq(tu_send_int(tr_sys[0], s.child, "fail", 0), BRG_OK);
    TU_WAIT_UNTIL(tr_count(BRG_TAG_EXIT) == 1, TU_WAIT_MS);
    tr_event_t x = tr_find(BRG_TAG_EXIT, 0, NULL);
    ck_assert(brg_ref_eq(x.child, s.child));
    ck_assert_int_eq(x.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(x.reason.code, BRG_EFAILED);
    TU_WAIT_DEAD(tr_sys[1], s.child);
    // The name is taken while a child holds it: a second spawn under it is
    // refused. (w1 is dead now, so use a live one.)
    s = tr_rspawn(parent, nb, "worker", 0, "w2", 1);
    ck_assert_int_eq(s.status, BRG_OK);
    s = tr_rspawn(parent, nb, "worker", 0, "w2", 2);
    ck_assert_int_eq(s.status, BRG_EEXIST);
    ck_assert(brg_ref_is_none(s.child));
    tu_sleep_ms(50);
    ck_assert_int_eq(tr_count(BRG_TAG_EXIT), 1);
}
END_TEST

//  The child dies in its init, before anything could link to or monitor it
//  afterwards: the atomic link and monitor still give the real reason.
START_TEST(test_rspawn_a_child_that_crashes_in_init_gives_down_and_exit_with_the_real_reason)
{
    brg_ref_t nb = tr_pair(_i);
    brg_ref_t parent = tr_spawn_parent();
    tr_event_t s = tr_rspawn(parent, nb, "crash", BRG_SPAWN_MONITOR, NULL, 0);
    ck_assert_int_eq(s.status, BRG_OK);
    ck_assert_uint_ne(s.mon, 0);
    TU_WAIT_UNTIL(tr_count(BRG_TAG_DOWN) == 1, TU_WAIT_MS);
    int at_spawned = -1, at_down = -1;
    tr_find("spawned", 0, &at_spawned);
    tr_event_t d = tr_find(BRG_TAG_DOWN, 0, &at_down);
    ck_assert_int_lt(at_spawned, at_down); // the result first, then the DOWN
    ck_assert(brg_ref_eq(d.child, s.child));
    ck_assert_uint_eq(d.mon, s.mon);
    ck_assert_int_eq(d.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(d.reason.code, BRG_EFAILED);
    // Linked: the EXIT, with the same reason.
    s = tr_rspawn(parent, nb, "crash", BRG_SPAWN_LINK, NULL, 0);
    ck_assert_int_eq(s.status, BRG_OK);
    TU_WAIT_UNTIL(tr_count(BRG_TAG_EXIT) == 1, TU_WAIT_MS);
    tr_event_t x = tr_find(BRG_TAG_EXIT, 0, NULL);
    ck_assert(brg_ref_eq(x.child, s.child));
    ck_assert_int_eq(x.reason.kind, BRG_EXIT_FAILED);
    ck_assert_int_eq(x.reason.code, BRG_EFAILED);
    ck_assert_int_eq(atomic_load(&tr_crash_inits), 2);
    // Exactly one of each, also later (the MONITOR the parent sends after
    // the result reaches a dead child: its noproc DOWN is dropped).
    tu_sleep_ms(200);
    ck_assert_int_eq(tr_count(BRG_TAG_DOWN), 1);
    ck_assert_int_eq(tr_count(BRG_TAG_EXIT), 1);
}
END_TEST

START_TEST(test_rspawn_unknown_and_local_only_kinds_are_refused_and_nothing_is_spawned)
{
    brg_ref_t nb = tr_pair(_i);
    brg_ref_t parent = tr_spawn_parent();
    brg_stats_t before = tu_stats(tr_sys[1]);
    tr_event_t s = tr_rspawn(parent, nb, "nobody", BRG_SPAWN_LINK, NULL, 0);
    ck_assert_int_eq(s.status, BRG_ENOTFOUND);
    ck_assert(brg_ref_is_none(s.child));
    s = tr_rspawn(parent, nb, "local", BRG_SPAWN_LINK | BRG_SPAWN_MONITOR, NULL, 0);
    ck_assert_int_eq(s.status, BRG_EPERM);
    ck_assert_uint_eq(tu_stats(tr_sys[1]).actors_spawned, before.actors_spawned);
    // ... but b itself may spawn its local kind.
    brg_ref_t child;
    brg_msg_t *args = brg_msg_new_int("args", 7);
    ck_assert_int_eq(brg_system_spawn_kind(tr_sys[1], "local", args, NULL, &child), BRG_OK);
    brg_msg_destroy(&args);
    TU_WAIT_UNTIL(atomic_load(&tr_init_arg) == 7, TU_WAIT_MS);
    // The blocking variant, from outside the system: the same answers.
    ck_assert_int_eq(brg_system_spawn_remote(tr_sys[0], nb, "nobody", NULL, NULL, 5000, &child),
                     BRG_ENOTFOUND);
    ck_assert_int_eq(brg_system_spawn_remote(tr_sys[0], nb, "local", NULL, NULL, 5000, &child),
                     BRG_EPERM);
    args = brg_msg_new_int("args", 9);
    ck_assert_int_eq(brg_system_spawn_remote(tr_sys[0], nb, "worker", args, "w", 5000, &child),
                     BRG_OK);
    brg_msg_destroy(&args);
    ck_assert(brg_system_is_alive(tr_sys[1], child));
    TU_WAIT_UNTIL(atomic_load(&tr_init_arg) == 9, TU_WAIT_MS);
    // This node is no remote node; a bad kind name never leaves.
    ck_assert_int_eq(brg_system_spawn_remote(tr_sys[0], brg_node_self(tr_node[0]), "worker", NULL,
                                             NULL, 5000, &child),
                     BRG_EINVAL);
    ck_assert_int_eq(brg_system_spawn_remote(tr_sys[0], nb, "", NULL, NULL, 5000, &child),
                     BRG_EINVAL);
    ck_assert_int_eq(tr_count(BRG_TAG_EXIT) + tr_count(BRG_TAG_DOWN), 0);
}
END_TEST

//  The link and the monitor are in both nodes' tables: a lost connection
//  gives the parent EXIT and DOWN noconnection, and the linked child on b
//  EXIT noconnection from the parent (it does not trap exits: it dies).
//  OTP's spawn_request_abandon: a spawn reply that comes after the deadline
//  ends the linked child (unlinked first), and the requester, not trapping
//  exits, lives on and hears nothing of it.
START_TEST(test_rspawn_a_linked_child_whose_reply_came_too_late_is_ended)
{
    brg_ref_t nb = tr_pair(_i);
    brg_ref_t parent = tu_spawn(tr_sys[0], tr_parent);
    brg_msg_t *m = brg_msg_new("spawn_late");
    ck_assert_int_eq(brg_msg_add_ref(m, nb), BRG_OK);
    ck_assert_int_eq(brg_system_send(tr_sys[0], parent, &m), BRG_OK);
    TU_WAIT_UNTIL(tr_count("spawned") == 1, TU_WAIT_MS);
    ck_assert_int_eq(tr_find("spawned", 0, NULL).status, BRG_ETIMEDOUT);
    // The child existed on b (named "late") and is ended there.
    brg_ref_t child;
    TU_WAIT_UNTIL(tr_logged("is abandoned and ended"), TU_WAIT_MS);
    TU_WAIT_UNTIL(brg_whereis(tr_sys[1], "late", &child) == BRG_ENOTFOUND, TU_WAIT_MS);
    // The parent did not trap exits: an EXIT from the child would have
    // ended it. It still answers, and it recorded no EXIT.
    tu_sleep_us(200 * 1000);
    ck_assert(brg_system_is_alive(tr_sys[0], parent));
    ck_assert_int_eq(tr_count(BRG_TAG_EXIT), 0);
}
END_TEST

START_TEST(test_rspawn_a_lost_node_gives_noconnection_on_both_sides)
{
    brg_ref_t nb = tr_pair(_i);
    brg_ref_t parent = tr_spawn_parent();
    tr_event_t linked = tr_rspawn(parent, nb, "worker", BRG_SPAWN_LINK, NULL, 1);
    tr_event_t watched = tr_rspawn(parent, nb, "worker", BRG_SPAWN_MONITOR, NULL, 2);
    ck_assert_int_eq(linked.status, BRG_OK);
    ck_assert_int_eq(watched.status, BRG_OK);
    // Let the parent's MONITOR reach b (a round trip through the service).
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tr_sys[0], nb, BRG_NODE_SERVICE, &q, 5000, &r),
                     BRG_OK);
    brg_msg_destroy(&r);
    ck_assert_int_eq(brg_node_disconnect(tr_node[0], nb), BRG_OK);
    TU_WAIT_UNTIL(tr_count(BRG_TAG_EXIT) == 1 && tr_count(BRG_TAG_DOWN) == 1, TU_WAIT_MS);
    tr_event_t x = tr_find(BRG_TAG_EXIT, 0, NULL);
    ck_assert(brg_ref_eq(x.child, linked.child));
    ck_assert_int_eq(x.reason.kind, BRG_EXIT_NOCONNECTION);
    tr_event_t d = tr_find(BRG_TAG_DOWN, 0, NULL);
    ck_assert(brg_ref_eq(d.child, watched.child));
    ck_assert_uint_eq(d.mon, watched.mon);
    ck_assert_int_eq(d.reason.kind, BRG_EXIT_NOCONNECTION);
    // On b: the linked child got EXIT noconnection from its parent; the
    // watched one was only watched, and runs on.
    TU_WAIT_DEAD(tr_sys[1], linked.child);
    ck_assert(brg_system_is_alive(tr_sys[1], watched.child));
    tu_sleep_ms(200);
    ck_assert_int_eq(tr_count(BRG_TAG_EXIT), 1);
    ck_assert_int_eq(tr_count(BRG_TAG_DOWN), 1);
}
END_TEST

//  ---------------------------------------------------------------------------
//  A client key asks node b's service to spawn: refused (BRG_EPERM), as
//  every request of a client to brg.node is (PROTOCOL.md section 22.4).

static void
tr_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void
tr_zsend(void *sock, msgpack_sbuffer *sb)
{
    ck_assert_int_eq(zmq_send(sock, sb->data, sb->size, 0), (int)sb->size);
    msgpack_sbuffer_clear(sb);
}

//  The next BATCH's first envelope within 5 s: its kind and its first arg.
static void
tr_zrecv_envelope(void *sock, int *kind, int64_t *arg0)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_gt(zmq_poll(&it, 1, 5000), 0);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, zmq_msg_data(&m), zmq_msg_size(&m), NULL),
                     MSGPACK_UNPACK_SUCCESS);
    msgpack_object o = u.data;
    ck_assert_int_eq(o.type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq(o.via.array.ptr[1].via.u64, 2); // BATCH
    msgpack_object env = o.via.array.ptr[3];
    *kind = (int)env.via.array.ptr[0].via.u64;
    *arg0 = env.via.array.size > 5 ? env.via.array.ptr[5].via.i64 : 0;
    msgpack_unpacked_destroy(&u);
    zmq_msg_close(&m);
}

START_TEST(test_rspawn_a_client_key_may_not_spawn)
{
    tr_pair(1);
    char ep[256], kb[BRG_KEY_TEXT], pub[41], sec[41];
    ck_assert_int_eq(brg_node_endpoint(tr_node[1], 0, ep, sizeof ep), BRG_OK);
    ck_assert_int_eq(brg_node_public_key(tr_node[1], kb, sizeof kb), BRG_OK);
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    ck_assert_int_eq(brg_node_allow_key(tr_node[1], "rspawn-client", pub, BRG_KEY_CLIENT), BRG_OK);
    brg_stats_t before = tu_stats(tr_sys[1]);
    void *zctx = zmq_ctx_new();
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, kb, 40), 0);
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    // HELLO as a client.
    uint8_t node[16];
    for (int i = 0; i < 16; i++)
        node[i] = (uint8_t)(rand() ^ (i * 41));
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_map(&pk, 5);
    tr_pack_str(&pk, "node");
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, node, 16);
    tr_pack_str(&pk, "sess");
    msgpack_pack_uint64(&pk, (uint64_t)rand() + 1);
    tr_pack_str(&pk, "role");
    tr_pack_str(&pk, "client");
    tr_pack_str(&pk, "name");
    tr_pack_str(&pk, "raw");
    tr_pack_str(&pk, "cluster");
    tr_pack_str(&pk, "brigade");
    tr_zsend(s, &sb);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    ck_assert_int_gt(zmq_poll(&it, 1, 5000), 0);
    zmq_msg_t welcome;
    zmq_msg_init(&welcome);
    ck_assert_int_ge(zmq_msg_recv(&welcome, s, 0), 0);
    zmq_msg_close(&welcome);
    // BATCH 1: [0, "brg.node", 1, 9, "spawn", "worker", nil, false, 0, 5]
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_array(&pk, 10);
    msgpack_pack_int(&pk, 0);
    tr_pack_str(&pk, BRG_NODE_SERVICE);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 9);
    tr_pack_str(&pk, "spawn");
    tr_pack_str(&pk, "worker");
    msgpack_pack_nil(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_int(&pk, 5);
    tr_zsend(s, &sb);
    int kind = -1;
    int64_t status = 0;
    tr_zrecv_envelope(s, &kind, &status);
    ck_assert_int_eq(kind, 2); // REPLY_ERROR
    ck_assert_int_eq(status, BRG_EPERM);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(s);
    zmq_ctx_term(zctx);
    ck_assert_uint_eq(tu_stats(tr_sys[1]).actors_spawned, before.actors_spawned);
    ck_assert_int_ne(atomic_load(&tr_init_arg), 5);
}
END_TEST

//  ---------------------------------------------------------------------------
//  A supervisor on node a with a child on node b (brg_child_start_remote).

//  The live actor registered as name on node i, or BRG_REF_NONE.
static brg_ref_t
tr_named(int i, const char *name)
{
    brg_ref_t ref;
    if (brg_whereis(tr_sys[i], name, &ref) != BRG_OK || !brg_system_is_alive(tr_sys[i], ref))
        return BRG_REF_NONE;
    return ref;
}

static brg_ref_t
tr_supervise(brg_remote_child_t *rc, brg_msg_t *args, brg_ref_t nb, int intensity)
{
    brg_remote_child_init(rc);
    rc->node = nb;
    rc->kind = "worker";
    rc->name = "rw";
    rc->args = args;
    brg_child_spec_t spec;
    brg_child_spec_init(&spec);
    spec.id = "remote";
    spec.start = brg_child_start_remote;
    spec.arg = rc;
    spec.name = "rw-proxy";
    brg_supervisor_opts_t so;
    brg_supervisor_opts_init(&so);
    so.intensity = intensity;
    so.period_ms = 10000;
    so.children = &spec;
    so.n_children = 1;
    brg_ref_t sup;
    ck_assert_int_eq(brg_supervisor_spawn_root(tr_sys[0], &so, &sup), BRG_OK);
    return sup;
}

START_TEST(test_rspawn_a_supervisor_restarts_its_remote_child_after_a_failure_a_kill_and_a_stop)
{
    brg_ref_t nb = tr_pair(_i);
    brg_remote_child_t rc;
    brg_msg_t *args = brg_msg_new_int("args", 3);
    brg_ref_t sup = tr_supervise(&rc, args, nb, 5);
    TU_WAIT_UNTIL(!brg_ref_is_none(tr_named(1, "rw")), TU_WAIT_MS);
    brg_ref_t c1 = tr_named(1, "rw");
    TU_WAIT_UNTIL(atomic_load(&tr_init_arg) == 3, TU_WAIT_MS);
    // The proxy's local name reaches the remote child (asks forwarded),
    // once the proxy has the spawn's answer (before, an ask is unhandled).
    brg_msg_t *r = NULL;
    brg_ref_t proxy;
    ck_assert_int_eq(brg_whereis(tr_sys[0], "rw-proxy", &proxy), BRG_OK);
    int arc = BRG_ENOACTOR;
    for (int k = 0; k < 500 && arc == BRG_ENOACTOR; k++) {
        brg_msg_t *q = brg_msg_new("ping");
        if ((arc = brg_system_ask(tr_sys[0], proxy, &q, 5000, &r)) == BRG_ENOACTOR)
            tu_sleep_ms(10);
    }
    ck_assert_int_eq(arc, BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 3);
    ck_assert(brg_ref_eq(brg_msg_sender(r), c1));
    brg_msg_destroy(&r);
    // It fails: a new one runs on b.
    ck_assert_int_eq(tu_send_int(tr_sys[0], c1, "fail", 0), BRG_OK);
    TU_WAIT_DEAD(tr_sys[1], c1);
    TU_WAIT_UNTIL(!brg_ref_is_none(tr_named(1, "rw")), TU_WAIT_MS);
    brg_ref_t c2 = tr_named(1, "rw");
    ck_assert(!brg_ref_eq(c1, c2));
    TU_WAIT_UNTIL(tr_logged("failed BRG_EFAILED"), TU_WAIT_MS);
    // It is killed on b: again.
    ck_assert_int_eq(brg_exit(tr_sys[1], c2, BRG_EXIT_KILLED), BRG_OK);
    TU_WAIT_DEAD(tr_sys[1], c2);
    TU_WAIT_UNTIL(!brg_ref_is_none(tr_named(1, "rw")), TU_WAIT_MS);
    brg_ref_t c3 = tr_named(1, "rw");
    ck_assert(!brg_ref_eq(c2, c3));
    TU_WAIT_UNTIL(tr_logged(": killed"), TU_WAIT_MS);
    // It stops normally: a permanent child is started again (its DOWN).
    ck_assert_int_eq(tu_send_int(tr_sys[0], c3, "stop", 0), BRG_OK);
    TU_WAIT_DEAD(tr_sys[1], c3);
    TU_WAIT_UNTIL(!brg_ref_is_none(tr_named(1, "rw")), TU_WAIT_MS);
    brg_ref_t c4 = tr_named(1, "rw");
    ck_assert(!brg_ref_eq(c3, c4));
    TU_WAIT_UNTIL(tr_logged(": normal"), TU_WAIT_MS);
    brg_supervisor_counts_t counts;
    ck_assert_int_eq(brg_supervisor_count(tr_sys[0], sup, 5000, &counts), BRG_OK);
    ck_assert_uint_eq(counts.restarts, 3);
    ck_assert_uint_eq(counts.running, 1);
    // Stopping the supervisor stops the remote child too.
    ck_assert_int_eq(brg_exit(tr_sys[0], sup, BRG_EXIT_SHUTDOWN), BRG_OK);
    TU_WAIT_DEAD(tr_sys[0], sup);
    TU_WAIT_DEAD(tr_sys[1], c4);
    brg_msg_destroy(&args);
}
END_TEST

//  The node goes away: the child exits with noconnection (and its remote
//  half, linked to the proxy, with noconnection on b); the restarts cannot
//  reach the node, each fails and counts, and the supervisor gives up.
START_TEST(test_rspawn_a_lost_node_makes_the_remote_child_exit_noconnection_and_restarts_count)
{
    brg_ref_t nb = tr_pair(_i);
    brg_remote_child_t rc;
    brg_ref_t sup = tr_supervise(&rc, NULL, nb, 2);
    TU_WAIT_UNTIL(!brg_ref_is_none(tr_named(1, "rw")), TU_WAIT_MS);
    brg_ref_t c1 = tr_named(1, "rw");
    // Let the proxy's MONITOR reach b, so the child is in both tables.
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tr_sys[0], nb, BRG_NODE_SERVICE, &q, 5000, &r),
                     BRG_OK);
    brg_msg_destroy(&r);
    ck_assert_int_eq(brg_node_disconnect(tr_node[0], nb), BRG_OK);
    TU_WAIT_DEAD(tr_sys[1], c1);
    TU_WAIT_DEAD(tr_sys[0], sup);
    ck_assert(tr_logged(": noconnection"));
    ck_assert(tr_logged("BRG_ENETWORK"));
    ck_assert(brg_ref_is_none(tr_named(1, "rw")));
}
END_TEST

static Suite *
rspawn_suite(void)
{
    Suite *s = suite_create("rspawn");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 30);
    tcase_add_checked_fixture(core, tr_setup, tr_teardown);
    tcase_add_loop_test(
        core, test_rspawn_a_linked_child_runs_there_with_its_args_and_its_failure_gives_exit, 0, 2);
    tcase_add_loop_test(
        core, test_rspawn_a_child_that_crashes_in_init_gives_down_and_exit_with_the_real_reason, 0,
        2);
    tcase_add_loop_test(
        core, test_rspawn_unknown_and_local_only_kinds_are_refused_and_nothing_is_spawned, 0, 2);
    tcase_add_loop_test(core, test_rspawn_a_lost_node_gives_noconnection_on_both_sides, 0, 2);
    tcase_add_loop_test(core, test_rspawn_a_linked_child_whose_reply_came_too_late_is_ended, 0, 2);
    tcase_add_test(core, test_rspawn_a_client_key_may_not_spawn);
    tcase_add_loop_test(
        core, test_rspawn_a_supervisor_restarts_its_remote_child_after_a_failure_a_kill_and_a_stop,
        0, 2);
    tcase_add_loop_test(
        core, test_rspawn_a_lost_node_makes_the_remote_child_exit_noconnection_and_restarts_count,
        0, 2);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    return tu_run(rspawn_suite());
}
