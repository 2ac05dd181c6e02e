//  test_node - nodes over real sockets in one process: two or three systems,
//  each a node, joined over inproc:// and over tcp://127.0.0.1 (every test
//  runs once per transport: Check's loop index 0 = inproc, 1 = tcp).
//
//  Actors on the nodes: "echo" answers every ask with a copy of it, and
//  "hold" keeps asks unanswered; a recorder on node A writes what it gets
//  (EXIT, DOWN, node events, replies) into a log the test reads.
#include "test_util.h"

#include <brigade/node.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "runtime/park.h"
#include "runtime/system.h" // the scheduler's wake-up counter (a test hook)

#define TN_TICK_MS 100
#define TN_TIMEOUT_MS 1000

static brg_system_t *tn_sys[3];
static brg_node_t *tn_node[3];
static int tn_transport;  // 0 inproc, 1 tcp
static bool tn_io_thread; // the nodes keep their own I/O thread (cfg.io_on_worker false)
static uint32_t tn_timeout_ms = TN_TIMEOUT_MS;
static size_t tn_busy_bytes; // a's and b's peer_busy_bytes (0: the default)

//  ---------------------------------------------------------------------------
//  The event log of the recorder.

typedef struct {
    char tag[32];
    brg_ref_t from;
    brg_ref_t about; // DOWN/EXIT: who; node events: the node
    brg_exit_reason_t reason;
    int status;    // ask callbacks
    int64_t value; // user messages: their first integer
    char text[64]; // node events: the reason text
} tn_event_t;

#define TN_EVENTS 4096
static pthread_mutex_t tn_lock = PTHREAD_MUTEX_INITIALIZER;
static tn_event_t tn_events[TN_EVENTS];
static atomic_int tn_nevents;

static void
tn_record(const tn_event_t *e)
{
    pthread_mutex_lock(&tn_lock);
    int n = atomic_load(&tn_nevents);
    if (n < TN_EVENTS) {
        tn_events[n] = *e;
        atomic_store(&tn_nevents, n + 1);
    }
    pthread_mutex_unlock(&tn_lock);
}

static int
tn_count(const char *tag)
{
    int c = 0;
    pthread_mutex_lock(&tn_lock);
    for (int i = 0; i < atomic_load(&tn_nevents); i++)
        c += strcmp(tn_events[i].tag, tag) == 0;
    pthread_mutex_unlock(&tn_lock);
    return c;
}

static tn_event_t
tn_find(const char *tag)
{
    tn_event_t e;
    memset(&e, 0, sizeof e);
    pthread_mutex_lock(&tn_lock);
    for (int i = 0; i < atomic_load(&tn_nevents); i++) {
        if (strcmp(tn_events[i].tag, tag) == 0) {
            e = tn_events[i];
            break;
        }
    }
    pthread_mutex_unlock(&tn_lock);
    return e;
}

//  ---------------------------------------------------------------------------
//  Actors.

static int
tn_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "stop")) {
        brg_stop(ctx);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "fail"))
        return BRG_EFAILED;
    if (brg_msg_is(msg, "send_to")) {
        // Payload: a ref and an integer; send the integer to the ref.
        size_t pos = 0;
        brg_ref_t to;
        int64_t v;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &to), BRG_OK);
        ck_assert_int_eq(brg_msg_read_int(msg, &pos, &v), BRG_OK);
        return brg_send_int(ctx, to, "value", v) == BRG_OK ? BRG_OK : BRG_EFAILED;
    }
    brg_msg_t *r = brg_msg_dup(msg);
    brg_reply(ctx, &r);
    return BRG_OK;
}

//  Forwards every message to the actor named by its state (a ref).
static int
tn_forwarder(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t *to = brg_state(ctx);
    return brg_forward(ctx, *to) == BRG_OK ? BRG_OK : BRG_EFAILED;
}

//  Keeps every message (an ask stays unanswered until the actor stops),
//  counting them: a test that needs an ask held, not still queued, waits
//  for the count (a queued ask is answered BRG_ENOACTOR when its actor
//  stops; a held one only when the connection goes).
static atomic_int tn_held;
static int
tn_hold(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&tn_held, 1);
    return BRG_OK;
}

static int
tn_reply_cb(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    tn_event_t e;
    memset(&e, 0, sizeof e);
    snprintf(e.tag, sizeof e.tag, "%s", (const char *)arg);
    e.status = status;
    if (reply != NULL) {
        e.from = brg_msg_sender(reply);
        size_t pos = 0;
        brg_msg_read_int(reply, &pos, &e.value);
    }
    tn_record(&e);
    return BRG_OK;
}

//  The recorder: records what it receives, and runs commands from the test.
static int
tn_recorder(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    tn_event_t e;
    memset(&e, 0, sizeof e);
    snprintf(e.tag, sizeof e.tag, "%s", brg_msg_tag(msg));
    e.from = brg_msg_sender(msg);
    size_t pos = 0;
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        brg_msg_read_exit(msg, &e.about, &e.reason);
    } else if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        uint64_t mon;
        brg_msg_read_down(msg, &e.about, &mon, &e.reason);
    } else if (brg_msg_is(msg, BRG_TAG_NODEUP) || brg_msg_is(msg, BRG_TAG_NODEDOWN)) {
        brg_msg_read_ref(msg, &pos, &e.about);
        brg_msg_skip(msg, &pos);
        brg_msg_read_str_copy(msg, &pos, e.text, sizeof e.text);
    } else if (brg_msg_is(msg, "link") || brg_msg_is(msg, "monitor") || brg_msg_is(msg, "ask") ||
               brg_msg_is(msg, "monitor_node") || brg_msg_is(msg, "ask_named")) {
        brg_ref_t to;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &to), BRG_OK);
        int rc;
        if (brg_msg_is(msg, "link")) {
            brg_trap_exits(ctx, true);
            rc = brg_link(ctx, to);
        } else if (brg_msg_is(msg, "monitor")) {
            uint64_t mon;
            rc = brg_monitor(ctx, to, &mon);
        } else if (brg_msg_is(msg, "monitor_node")) {
            rc = brg_monitor_node(ctx, to);
        } else if (brg_msg_is(msg, "ask")) {
            brg_msg_t *q = brg_msg_new_int("q", 7);
            rc = brg_ask(ctx, to, &q, 5000, tn_reply_cb, "answer");
        } else {
            brg_msg_t *q = brg_msg_new_int("q", 8);
            rc = brg_ask_named_at(ctx, to, "echo", &q, 5000, tn_reply_cb, "answer");
        }
        ck_assert_int_eq(rc, BRG_OK);
        snprintf(e.tag, sizeof e.tag, "done");
    } else if (brg_msg_is(msg, "subscribe")) {
        ck_assert_int_eq(brg_node_subscribe(ctx, true), BRG_OK);
        snprintf(e.tag, sizeof e.tag, "done");
    } else {
        brg_msg_read_int(msg, &pos, &e.value);
    }
    tn_record(&e);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Nodes.

static void
tn_make(int i, const char *name, size_t peer_queue_bytes)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    tn_sys[i] = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tn_sys[i]);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    nc.name = name;
    char ep[128];
    if (tn_transport == 0)
        snprintf(ep, sizeof ep, "inproc://test-node-%d-%d", (int)getpid(), i);
    else
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:0");
    nc.listen[0] = ep;
    nc.tick_ms = TN_TICK_MS;
    nc.timeout_ms = tn_timeout_ms;
    nc.io_on_worker = !tn_io_thread;
    if (peer_queue_bytes)
        nc.peer_queue_bytes = peer_queue_bytes;
    if (tn_busy_bytes)
        nc.peer_busy_bytes = tn_busy_bytes;
    tn_node[i] = brg_node_new(tn_sys[i], &nc);
    ck_assert_ptr_nonnull(tn_node[i]);
}

//  Whether node i has an up session with the node `peer`.
static bool
tn_sees(int i, brg_ref_t peer)
{
    brg_ref_t peers[4];
    int n = brg_node_peers(tn_node[i], peers, 4);
    for (int k = 0; k < n && k < 4; k++)
        if (brg_ref_eq(peers[k], peer))
            return true;
    return false;
}

//  Connect node i to node j and wait until both see the session up.
static brg_ref_t
tn_join(int i, int j)
{
    char ep[256];
    ck_assert_int_eq(brg_node_endpoint(tn_node[j], 0, ep, sizeof ep), BRG_OK);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(tn_node[i], ep, 5000, &peer), BRG_OK);
    ck_assert(brg_ref_eq(peer, brg_node_self(tn_node[j])));
    TU_WAIT_UNTIL(tn_sees(j, brg_node_self(tn_node[i])), TU_WAIT_MS);
    return peer;
}

static brg_ref_t
tn_spawn(int i, brg_behaviour_fn fn, const char *name)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = name;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(tn_sys[i], fn, &opts, &ref), BRG_OK);
    return ref;
}

static void
tn_setup(void)
{
    atomic_store(&tn_nevents, 0);
    tn_io_thread = false;
    tn_busy_bytes = 0;
}

//  Loop variants of the tests that also run with each node's own I/O
//  thread: 0 inproc, 1 tcp (I/O on worker 0, the default), 2 inproc, 3 tcp
//  (the I/O thread).
static void
tn_variant(int i)
{
    tn_transport = i % 2;
    tn_io_thread = i >= 2;
}

static void
tn_teardown(void)
{
    for (int i = 0; i < 3; i++)
        if (tn_sys[i] != NULL)
            ck_assert_int_eq(brg_system_destroy(&tn_sys[i]), BRG_OK);
}

//  Send a command with a ref to the recorder and wait until it ran.
static void
tn_command(int i, brg_ref_t rec, const char *tag, brg_ref_t arg)
{
    int before = tn_count("done");
    brg_msg_t *m = brg_msg_new(tag);
    brg_msg_add_ref(m, arg);
    ck_assert_int_eq(brg_system_send(tn_sys[i], rec, &m), BRG_OK);
    TU_WAIT_UNTIL(tn_count("done") > before, TU_WAIT_MS);
}

//  ---------------------------------------------------------------------------
//  Tests.

START_TEST(test_node_ask_reaches_an_actor_on_another_node_and_its_reply_comes_back)
{
    tn_variant(_i);
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t echo = tn_spawn(1, tn_echo, "echo");
    brg_msg_t *q = brg_msg_new_int("hello", 42);
    brg_msg_t *r = NULL;
    ck_assert_int_eq(brg_system_ask(tn_sys[0], echo, &q, 5000, &r), BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "hello");
    ck_assert_int_eq(tu_msg_int(r), 42);
    ck_assert(brg_ref_eq(brg_msg_sender(r), echo));
    brg_msg_destroy(&r);
}
END_TEST

//  An inbox is a real address: an actor on another node asks it, sends to
//  it, is monitored by it (brigade/inbox.h).
START_TEST(test_node_an_inbox_asks_receives_from_and_monitors_another_nodes_actor)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t echo = tn_spawn(1, tn_echo, "echo");
    brg_inbox_t *in = NULL;
    ck_assert_int_eq(brg_inbox_new(tn_sys[0], &in), BRG_OK);
    brg_msg_t *q = brg_msg_new_int("hello", 42);
    brg_msg_t *r = NULL;
    ck_assert_int_eq(brg_inbox_ask(in, echo, &q, 5000, &r), BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 42);
    ck_assert(brg_ref_eq(brg_msg_sender(r), echo));
    brg_msg_destroy(&r);
    // b's actor sends to the inbox's ref, carried in a payload.
    brg_msg_t *m = brg_msg_new("send_to");
    brg_msg_add_ref(m, brg_inbox_ref(in));
    brg_msg_add_int(m, 7);
    ck_assert_int_eq(brg_inbox_send(in, echo, &m), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, "value", 5000, &m), BRG_OK);
    ck_assert_int_eq(tu_msg_int(m), 7);
    ck_assert(brg_ref_eq(brg_msg_sender(m), echo));
    brg_msg_destroy(&m);
    uint64_t mon;
    ck_assert_int_eq(brg_inbox_monitor(in, echo, &mon), BRG_OK);
    m = brg_msg_new("stop");
    ck_assert_int_eq(brg_inbox_send(in, echo, &m), BRG_OK);
    ck_assert_int_eq(brg_inbox_receive(in, BRG_TAG_DOWN, 5000, &m), BRG_OK);
    brg_ref_t from;
    uint64_t got;
    brg_exit_reason_t reason;
    ck_assert_int_eq(brg_msg_read_down(m, &from, &got, &reason), BRG_OK);
    ck_assert(brg_ref_eq(from, echo));
    ck_assert_uint_eq(got, mon);
    ck_assert_int_eq(reason.kind, BRG_EXIT_NORMAL);
    brg_msg_destroy(&m);
    brg_inbox_destroy(&in);
}
END_TEST

//  A node's service actor is the runtime's own: brg_system_await_actors
//  waits for the user's actors only (it hung forever on a node before),
//  while the service keeps answering and brg_system_destroy stops it.
START_TEST(test_node_await_actors_waits_for_user_actors_not_the_node_service)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    ck_assert_int_eq(brg_system_await_actors(tn_sys[1], 0), BRG_OK);
    brg_ref_t echo = tn_spawn(1, tn_echo, "echo");
    ck_assert_int_eq(brg_system_await_actors(tn_sys[1], 50), BRG_ETIMEDOUT);
    brg_stats_t st;
    brg_system_stats(tn_sys[1], &st);
    ck_assert_uint_eq(st.actors_alive, 2); // echo and the service
    ck_assert_int_eq(brg_actor_stop(tn_sys[1], echo), BRG_OK);
    ck_assert_int_eq(brg_system_await_actors(tn_sys[1], 5000), BRG_OK);
    // The service still answers: a ping from a reaches b's service by name.
    brg_msg_t *q = brg_msg_new("ping");
    brg_msg_t *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tn_sys[0], brg_node_self(tn_node[1]), BRG_NODE_SERVICE,
                                             &q, 5000, &r),
                     BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "pong");
    brg_msg_destroy(&r);
    brg_system_stats(tn_sys[1], &st);
    ck_assert_uint_eq(st.actors_alive, 1);
}
END_TEST

START_TEST(test_node_an_ask_to_a_silent_remote_actor_times_out_at_its_deadline)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t hold = tn_spawn(1, tn_hold, NULL);
    brg_msg_t *q = brg_msg_new("q");
    brg_msg_t *r = NULL;
    uint64_t t0 = tu_now_ms();
    ck_assert_int_eq(brg_system_ask(tn_sys[0], hold, &q, 200, &r), BRG_ETIMEDOUT);
    ck_assert_uint_ge(tu_now_ms() - t0, 190);
}
END_TEST

START_TEST(test_node_an_actor_asks_a_remote_actor_and_gets_its_reply_in_its_callback)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    brg_ref_t nb = tn_join(0, 1);
    brg_ref_t echo = tn_spawn(1, tn_echo, "echo");
    brg_ref_t rec = tn_spawn(0, tn_recorder, NULL);
    tn_command(0, rec, "ask", echo);
    TU_WAIT_UNTIL(tn_count("answer") == 1, TU_WAIT_MS);
    tn_event_t e = tn_find("answer");
    ck_assert_int_eq(e.status, BRG_OK);
    ck_assert_int_eq(e.value, 7);
    // The same by name on node b.
    tn_command(0, rec, "ask_named", nb);
    TU_WAIT_UNTIL(tn_count("answer") == 2, TU_WAIT_MS);
}
END_TEST

START_TEST(test_node_named_sends_and_asks_resolve_on_the_target_node)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    brg_ref_t nb = tn_join(0, 1);
    brg_ref_t echo = tn_spawn(1, tn_echo, "echo");
    brg_msg_t *q = brg_msg_new_int("x", 5);
    brg_msg_t *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tn_sys[0], nb, "echo", &q, 5000, &r), BRG_OK);
    ck_assert_int_eq(tu_msg_int(r), 5);
    ck_assert(brg_ref_eq(brg_msg_sender(r), echo));
    brg_msg_destroy(&r);
    // An unknown name: the target node answers BRG_ENOACTOR.
    q = brg_msg_new("x");
    ck_assert_int_eq(brg_system_ask_named_at(tn_sys[0], nb, "nobody", &q, 5000, &r), BRG_ENOACTOR);
    // whereis through the node service.
    brg_ref_t found;
    ck_assert_int_eq(brg_node_whereis(tn_node[0], nb, "echo", 5000, &found), BRG_OK);
    ck_assert(brg_ref_eq(found, echo));
    ck_assert_int_eq(brg_node_whereis(tn_node[0], nb, "nobody", 5000, &found), BRG_ENOTFOUND);
    // ping and info.
    q = brg_msg_new("ping");
    ck_assert_int_eq(brg_system_ask_named_at(tn_sys[0], nb, BRG_NODE_SERVICE, &q, 5000, &r),
                     BRG_OK);
    ck_assert_str_eq(brg_msg_tag(r), "pong");
    brg_msg_destroy(&r);
    q = brg_msg_new("info");
    ck_assert_int_eq(brg_system_ask_named_at(tn_sys[0], nb, BRG_NODE_SERVICE, &q, 5000, &r),
                     BRG_OK);
    size_t pos = 0;
    uint32_t n;
    char key[32], name[64];
    ck_assert_int_eq(brg_msg_read_map(r, &pos, &n), BRG_OK);
    ck_assert_int_eq(brg_msg_read_str_copy(r, &pos, key, sizeof key), BRG_OK);
    ck_assert_str_eq(key, "name");
    ck_assert_int_eq(brg_msg_read_str_copy(r, &pos, name, sizeof name), BRG_OK);
    ck_assert_str_eq(name, "b");
    // The rest: node, endpoints, peers, then every counter PROTOCOL.md
    // section 18 names (the operator's "stats" shares the list).
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(brg_msg_skip(r, &pos), BRG_OK);
        ck_assert_int_eq(brg_msg_skip(r, &pos), BRG_OK);
    }
    ck_assert_int_eq(brg_msg_read_str_copy(r, &pos, key, sizeof key), BRG_OK);
    ck_assert_str_eq(key, "counters");
    ck_assert_int_eq(brg_msg_read_map(r, &pos, &n), BRG_OK);
    static const char *const names[] = {
        "peers_up",
        "sessions_started",
        "sessions_ended",
        "frames_in",
        "frames_out",
        "msgs_in",
        "msgs_out",
        "bytes_in",
        "bytes_out",
        "dropped_busy",
        "busy_waits",
        "dropped_unreachable",
        "dead_on_session_end",
        "lost_in_flight",
        "rejected_frames",
        "handshakes_failed",
        "reconnect_attempts",
        "refused_keys",
        "refused_handshakes",
        "refused_unauthorized",
        "gossip_learned",
        "gossip_refused",
    };
    ck_assert_uint_eq(n, sizeof names / sizeof names[0]);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_int_eq(brg_msg_read_str_copy(r, &pos, key, sizeof key), BRG_OK);
        ck_assert_str_eq(key, names[i]);
        ck_assert_int_eq(brg_msg_skip(r, &pos), BRG_OK);
    }
    brg_msg_destroy(&r);
}
END_TEST

START_TEST(test_node_refs_in_payloads_survive_the_trip_and_can_be_sent_to)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t echo = tn_spawn(1, tn_echo, NULL);
    brg_ref_t rec = tn_spawn(0, tn_recorder, NULL);
    // The echo on b gets the recorder's ref (a node-a ref) in a payload and
    // sends to it.
    brg_msg_t *m = brg_msg_new("send_to");
    brg_msg_add_ref(m, rec);
    brg_msg_add_int(m, 99);
    ck_assert_int_eq(brg_system_send(tn_sys[0], echo, &m), BRG_OK);
    TU_WAIT_UNTIL(tn_count("value") == 1, TU_WAIT_MS);
    tn_event_t e = tn_find("value");
    ck_assert_int_eq(e.value, 99);
    ck_assert(brg_ref_eq(e.from, echo));
}
END_TEST

START_TEST(test_node_a_forwarded_ask_is_answered_straight_to_the_asker_on_a_third_node)
{
    tn_variant(_i);
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_make(2, "c", 0);
    tn_join(0, 1);
    tn_join(1, 2);
    tn_join(2, 0);
    brg_ref_t echo = tn_spawn(2, tn_echo, NULL);
    brg_ref_t *to = malloc(sizeof *to);
    *to = echo;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = to;
    opts.state_destroy = free;
    brg_ref_t fwd;
    ck_assert_int_eq(brg_system_spawn(tn_sys[1], tn_forwarder, &opts, &fwd), BRG_OK);
    brg_ref_t rec = tn_spawn(0, tn_recorder, NULL);
    tn_command(0, rec, "ask", fwd);
    TU_WAIT_UNTIL(tn_count("answer") == 1, TU_WAIT_MS);
    tn_event_t e = tn_find("answer");
    ck_assert_int_eq(e.status, BRG_OK);
    ck_assert_int_eq(e.value, 7);
    ck_assert(brg_ref_eq(e.from, echo)); // c answered a directly
}
END_TEST

START_TEST(test_node_links_and_monitors_across_nodes_get_the_real_exit_reason)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t t1 = tn_spawn(1, tn_echo, NULL);
    brg_ref_t t2 = tn_spawn(1, tn_echo, NULL);
    brg_ref_t rec = tn_spawn(0, tn_recorder, NULL);
    tn_command(0, rec, "link", t1);
    tn_command(0, rec, "monitor", t2);
    // t1 has taken the LINK before the kill below: an ask from the same
    // recorder comes after it in t1's mailbox, so its answer proves it. (An
    // exit signal from outside any actor is not ordered with the
    // recorder's LINK, and goes ahead of the user lane: without this wait
    // t1 may die first and the recorder get EXIT noproc.)
    tn_command(0, rec, "ask", t1);
    TU_WAIT_UNTIL(tn_count("answer") == 1, TU_WAIT_MS);
    // brg_actor_stop of a remote actor: DOWN shutdown... normal stop.
    ck_assert_int_eq(brg_actor_stop(tn_sys[0], t2), BRG_OK);
    TU_WAIT_UNTIL(tn_count(BRG_TAG_DOWN) == 1, TU_WAIT_MS);
    tn_event_t e = tn_find(BRG_TAG_DOWN);
    ck_assert(brg_ref_eq(e.about, t2));
    // brg_exit of a remote actor: the linked, trapping recorder gets EXIT.
    ck_assert_int_eq(brg_exit(tn_sys[0], t1, BRG_EXIT_KILLED), BRG_OK);
    TU_WAIT_UNTIL(tn_count(BRG_TAG_EXIT) == 1, TU_WAIT_MS);
    e = tn_find(BRG_TAG_EXIT);
    ck_assert(brg_ref_eq(e.about, t1));
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_KILLED);
    TU_WAIT_DEAD(tn_sys[1], t1);
    TU_WAIT_DEAD(tn_sys[1], t2);
}
END_TEST

START_TEST(test_node_a_lost_connection_gives_noconnection_to_links_monitors_and_asks)
{
    tn_variant(_i);
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    brg_ref_t nb = tn_join(0, 1);
    brg_ref_t t1 = tn_spawn(1, tn_hold, NULL);
    brg_ref_t rec = tn_spawn(0, tn_recorder, NULL);
    tn_command(0, rec, "link", t1);
    tn_command(0, rec, "monitor", t1);
    tn_command(0, rec, "monitor_node", nb);
    tn_command(0, rec, "ask", t1); // held: never answered by t1
    // Let the signals reach b (a round trip through b's echo-less service).
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tn_sys[0], nb, BRG_NODE_SERVICE, &q, 5000, &r),
                     BRG_OK);
    brg_msg_destroy(&r);
    ck_assert_int_eq(brg_node_disconnect(tn_node[0], nb), BRG_OK);
    TU_WAIT_UNTIL(tn_count(BRG_TAG_EXIT) == 1 && tn_count(BRG_TAG_DOWN) == 1 &&
                      tn_count("answer") == 1 && tn_count(BRG_TAG_NODEDOWN) == 1,
                  TU_WAIT_MS);
    tn_event_t e = tn_find(BRG_TAG_EXIT);
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_NOCONNECTION);
    ck_assert(brg_ref_eq(e.about, t1));
    e = tn_find(BRG_TAG_DOWN);
    ck_assert_int_eq(e.reason.kind, BRG_EXIT_NOCONNECTION);
    e = tn_find("answer");
    ck_assert_int_eq(e.status, BRG_ENETWORK);
    e = tn_find(BRG_TAG_NODEDOWN);
    ck_assert(brg_ref_eq(e.about, nb));
    // A send to the lost node fails at once, counted.
    brg_node_stats_t st;
    brg_node_stats(tn_node[0], &st);
    uint64_t unreachable = st.dropped_unreachable;
    ck_assert_int_eq(tu_send_int(tn_sys[0], t1, "x", 1), BRG_ENETWORK);
    brg_node_stats(tn_node[0], &st);
    ck_assert_uint_eq(st.dropped_unreachable, unreachable + 1);
    // Exactly one of each, also later.
    tu_sleep_ms(200);
    ck_assert_int_eq(tn_count(BRG_TAG_EXIT), 1);
    ck_assert_int_eq(tn_count(BRG_TAG_DOWN), 1);
    ck_assert_int_eq(tn_count(BRG_TAG_NODEDOWN), 1);
}
END_TEST

START_TEST(test_node_a_destroyed_node_fails_pending_asks_with_enetwork)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t t1 = tn_spawn(1, tn_hold, NULL);
    brg_ref_t rec = tn_spawn(0, tn_recorder, NULL);
    tn_command(0, rec, "monitor", t1);
    int held = atomic_load(&tn_held);
    tn_command(0, rec, "ask", t1);
    TU_WAIT_UNTIL(atomic_load(&tn_held) > held, TU_WAIT_MS); // held, not queued
    brg_ref_t nb = brg_node_self(tn_node[1]);
    brg_msg_t *q = brg_msg_new("ping"), *r = NULL;
    ck_assert_int_eq(brg_system_ask_named_at(tn_sys[0], nb, BRG_NODE_SERVICE, &q, 5000, &r),
                     BRG_OK);
    brg_msg_destroy(&r);
    ck_assert_int_eq(brg_system_destroy(&tn_sys[1]), BRG_OK);
    TU_WAIT_UNTIL(tn_count(BRG_TAG_DOWN) == 1 && tn_count("answer") == 1, TU_WAIT_MS);
    tn_event_t e = tn_find("answer");
    ck_assert_int_eq(e.status, BRG_ENETWORK);
    TU_WAIT_UNTIL(brg_node_peers(tn_node[0], NULL, 0) == 0, TU_WAIT_MS);
}
END_TEST

START_TEST(test_node_subscribers_see_node_up_and_down)
{
    tn_transport = _i;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    brg_ref_t rec = tn_spawn(0, tn_recorder, NULL);
    tn_command(0, rec, "subscribe", BRG_REF_NONE);
    brg_ref_t nb = tn_join(0, 1);
    TU_WAIT_UNTIL(tn_count(BRG_TAG_NODEUP) == 1, TU_WAIT_MS);
    tn_event_t e = tn_find(BRG_TAG_NODEUP);
    ck_assert(brg_ref_eq(e.about, nb));
    brg_ref_t found;
    ck_assert_int_eq(brg_node_find(tn_node[0], "b", &found), BRG_OK);
    ck_assert(brg_ref_eq(found, nb));
    brg_ref_t peers[4];
    ck_assert_int_eq(brg_node_peers(tn_node[0], peers, 4), 1);
    ck_assert(brg_ref_eq(peers[0], nb));
    brg_node_stats_t st;
    brg_node_stats(tn_node[0], &st);
    ck_assert_uint_eq(st.peers_up, 1);
    ck_assert_int_eq(brg_system_destroy(&tn_sys[1]), BRG_OK);
    TU_WAIT_UNTIL(tn_count(BRG_TAG_NODEDOWN) == 1, TU_WAIT_MS);
    e = tn_find(BRG_TAG_NODEDOWN);
    ck_assert(brg_ref_eq(e.about, nb));
    ck_assert_str_eq(e.text, "bye");
    ck_assert_int_eq(brg_node_find(tn_node[0], "b", &found), BRG_ENOTFOUND);
    brg_node_stats(tn_node[0], &st);
    ck_assert_uint_eq(st.peers_up, 0);
    // A monitor of a node that is not up fires at once.
    tn_command(0, rec, "monitor_node", nb);
    TU_WAIT_UNTIL(tn_count(BRG_TAG_NODEDOWN) == 2, TU_WAIT_MS);
}
END_TEST

//  I/O on worker 0 (transport/zmq_io.c, "I/O on a worker"): a request read
//  from the network runs on the worker that read it, and its reply leaves
//  from there: the server's workers are never woken for it. With the node's
//  own I/O thread every request is handed to a sleeping worker: one
//  wake-up each. Counted by the scheduler's wake-up counter, not timed.
START_TEST(test_node_a_request_is_served_on_the_worker_that_read_it)
{
    enum { ASKS = 100 };
    tn_variant(_i == 0 ? 1 : 3); // tcp, I/O on worker 0 (0) or on the I/O thread (1)
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t echo = tn_spawn(1, tn_echo, "echo");
    brg__sched_t *sc = tn_sys[1]->sched;
    uint64_t woken = 0;
    for (int k = 0; k < ASKS; k++) {
        // Every worker of the server asleep first, as between the
        // requests of a quiet service.
        TU_WAIT_UNTIL(BRG__IDLE_SLEEPING(atomic_load(&sc->idle_state)) == sc->n, TU_WAIT_MS);
        uint64_t before = atomic_load(&sc->unparks);
        brg_msg_t *q = brg_msg_new_int("hello", k);
        brg_msg_t *r = NULL;
        ck_assert_int_eq(brg_system_ask(tn_sys[0], echo, &q, 5000, &r), BRG_OK);
        ck_assert_int_eq(tu_msg_int(r), k);
        brg_msg_destroy(&r);
        woken += atomic_load(&sc->unparks) - before;
    }
    if (_i == 0)
        ck_assert_uint_le(woken, ASKS / 10); // a timer or a reclamation now and then
    else
        ck_assert_uint_ge(woken, ASKS - ASKS / 10);
}
END_TEST

//  A behaviour that holds its worker until the test lets it go, and says
//  whether that worker is worker 0 (the one that serves the sockets).
static atomic_int tn_hog_gate, tn_hog_running, tn_hog_on_worker_0;

static int
tn_hog(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    atomic_store(&tn_hog_on_worker_0, strcmp(name, "brg-worker-0") == 0);
    atomic_store(&tn_hog_running, 1);
    tu_gate_wait(&tn_hog_gate);
    return BRG_OK;
}

//  I/O on a worker: while worker 0 runs a long behaviour call, the node's
//  I/O thread serves the sockets (zmq_io.c, the backup, every 10 ms): a
//  request to another actor of that node is answered. Without the backup
//  it would wait for the call to end (here: for ever, the gate opens after).
START_TEST(test_node_a_long_call_on_worker_0_does_not_stop_the_nodes_io)
{
    tn_variant(1); // tcp, I/O on worker 0
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t echo = tn_spawn(1, tn_echo, "echo");
    brg_ref_t hog = tn_spawn(1, tn_hog, "hog");
    atomic_store(&tn_hog_gate, 0);
    atomic_store(&tn_hog_running, 0);
    // From the other node, so worker 0 of b reads it and runs it itself.
    tu_send_tag(tn_sys[0], hog, "hold");
    TU_WAIT_UNTIL(atomic_load(&tn_hog_running), TU_WAIT_MS);
    ck_assert(atomic_load(&tn_hog_on_worker_0));
    for (int k = 0; k < 5; k++) {
        brg_msg_t *q = brg_msg_new_int("hello", k);
        brg_msg_t *r = NULL;
        ck_assert_int_eq(brg_system_ask(tn_sys[0], echo, &q, 5000, &r), BRG_OK);
        ck_assert_int_eq(tu_msg_int(r), k);
        brg_msg_destroy(&r);
    }
    ck_assert(!atomic_load(&tn_hog_gate)); // still held all along
    atomic_store(&tn_hog_gate, 1);
}
END_TEST

static atomic_int tn_received;

static int
tn_sink(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    atomic_fetch_add(&tn_received, 1);
    return BRG_OK;
}

START_TEST(test_node_sends_past_the_peer_budget_fail_with_ebusy_and_are_counted)
{
    tn_variant(_i);
    tn_make(0, "a", 4096);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_ref_t sink = tn_spawn(1, tn_sink, NULL);
    uint64_t dead_before = tu_dead_count(BRG_DEAD_REMOTE_BUSY);
    int ok = 0, busy = 0;
    char blob[1000];
    memset(blob, 'x', sizeof blob);
    for (int i = 0; i < 2000; i++) {
        brg_msg_t *m = brg_msg_new("blob");
        brg_msg_add_bin(m, blob, sizeof blob);
        int rc = brg_system_send(tn_sys[0], sink, &m);
        ck_assert(rc == BRG_OK || rc == BRG_EBUSY);
        rc == BRG_OK ? ok++ : busy++;
    }
    ck_assert_int_gt(busy, 0);
    ck_assert_int_gt(ok, 0);
    TU_WAIT_UNTIL(atomic_load(&tn_received) == ok, TU_WAIT_MS);
    brg_node_stats_t sa, sb;
    brg_node_stats(tn_node[0], &sa);
    ck_assert_uint_eq(sa.dropped_busy, (uint64_t)busy);
    ck_assert_uint_eq(tu_dead_count(BRG_DEAD_REMOTE_BUSY) - dead_before, (uint64_t)busy);
    // Counters add up: every accepted message left a and reached b.
    brg_node_stats(tn_node[1], &sb);
    ck_assert_uint_ge(sa.msgs_out, (uint64_t)ok);
    ck_assert_uint_eq(sa.msgs_out, sb.msgs_in);
    ck_assert_uint_eq(sa.frames_out, sb.frames_in);
    ck_assert_uint_eq(sa.lost_in_flight, 0);
    ck_assert_uint_eq(sa.dead_on_session_end, 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: a million messages from many senders on node a to receivers on
//  node b, over tcp: none lost, none duplicated, per-pair order kept.

#define TN_SENDERS 8
#define TN_RECEIVERS 4
#define TN_PER_PAIR 31250 // 8 * 4 * 31250 = 1,000,000
#define TN_CHUNK 500

static brg_ref_t tn_receivers[TN_RECEIVERS];
static atomic_llong tn_got, tn_order_errors, tn_busy;

typedef struct {
    int index;                  // which sender
    int64_t next[TN_RECEIVERS]; // next sequence number to send to each receiver
} tn_sender_t;

typedef struct {
    int64_t next[TN_SENDERS]; // next sequence number expected from each sender
} tn_receiver_t;

static int
tn_stress_receiver(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    tn_receiver_t *self = brg_state(ctx);
    size_t pos = 0;
    int64_t from, seq;
    if (brg_msg_read_int(msg, &pos, &from) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &seq) != BRG_OK || from < 0 || from >= TN_SENDERS) {
        atomic_fetch_add(&tn_order_errors, 1);
        return BRG_OK;
    }
    if (seq != self->next[from])
        atomic_fetch_add(&tn_order_errors, 1);
    self->next[from] = seq + 1;
    atomic_fetch_add(&tn_got, 1);
    return BRG_OK;
}

//  Sends up to TN_CHUNK messages per call, round-robin over the receivers,
//  then asks itself for more. A send refused for the budget (BRG_EBUSY) is
//  sent again later with the same sequence number.
static int
tn_stress_sender(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    tn_sender_t *self = brg_state(ctx);
    bool more = false;
    for (int k = 0; k < TN_CHUNK; k++) {
        int r = k % TN_RECEIVERS;
        if (self->next[r] == TN_PER_PAIR)
            continue;
        more = true;
        brg_msg_t *m = brg_msg_new("seq");
        brg_msg_add_int(m, self->index);
        brg_msg_add_int(m, self->next[r]);
        int rc = brg_send(ctx, tn_receivers[r], &m);
        if (rc == BRG_EBUSY) {
            atomic_fetch_add(&tn_busy, 1);
            break;
        }
        ck_assert_int_eq(rc, BRG_OK);
        self->next[r]++;
    }
    for (int r = 0; r < TN_RECEIVERS; r++)
        more |= self->next[r] < TN_PER_PAIR;
    if (more)
        return brg_send_tag(ctx, brg_self(ctx), "more");
    brg_stop(ctx);
    return BRG_OK;
}

START_TEST(test_node_stress_a_million_messages_from_many_senders_arrive_once_and_in_order)
{
    tn_transport = 1;
    // The default node-down timeout: on two cores under a sanitizer the
    // flood can keep a node's threads off the CPU for longer than a second.
    tn_timeout_ms = 10000;
    tn_make(0, "a", 0);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    for (int r = 0; r < TN_RECEIVERS; r++) {
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.state_size = sizeof(tn_receiver_t);
        ck_assert_int_eq(brg_system_spawn(tn_sys[1], tn_stress_receiver, &opts, &tn_receivers[r]),
                         BRG_OK);
    }
    for (int i = 0; i < TN_SENDERS; i++) {
        tn_sender_t *st = calloc(1, sizeof *st);
        st->index = i;
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.state = st;
        opts.state_destroy = free;
        brg_ref_t ref;
        ck_assert_int_eq(brg_system_spawn(tn_sys[0], tn_stress_sender, &opts, &ref), BRG_OK);
        ck_assert_int_eq(tu_send_tag(tn_sys[0], ref, "more"), BRG_OK);
    }
    const long long total = (long long)TN_SENDERS * TN_RECEIVERS * TN_PER_PAIR;
    TU_WAIT_UNTIL(atomic_load(&tn_got) == total, 240000);
    tu_sleep_ms(100);
    ck_assert_int_eq(atomic_load(&tn_got), total); // none duplicated
    ck_assert_int_eq(atomic_load(&tn_order_errors), 0);
    brg_node_stats_t sa, sb;
    brg_node_stats(tn_node[0], &sa);
    brg_node_stats(tn_node[1], &sb);
    // Counters add up: what a sent, b received; refused sends were counted.
    ck_assert_uint_eq(sa.msgs_out, sb.msgs_in);
    ck_assert_uint_ge(sa.msgs_out, (uint64_t)total);
    ck_assert_uint_eq(sa.dropped_busy, (uint64_t)atomic_load(&tn_busy));
    ck_assert_uint_eq(sa.lost_in_flight, 0);
    ck_assert_uint_eq(sa.dead_on_session_end, 0);
}
END_TEST

//  Busy peers: actors that stream past the busy mark are suspended until
//  the peer drains, never refused; everything arrives, in order per sender.
//  The budget (256 KiB) is over the bound the suspension keeps (busy mark +
//  one call's sends per streamer: 16 KiB + 4 * 200 * ~180 bytes), and far
//  under what they send (14 MB): without the suspension they meet BRG_EBUSY.
#define TN_STREAMERS 4
#define TN_STREAM_N 20000
#define TN_STREAM_CHUNK 200
_Static_assert(TN_STREAMERS <= TN_SENDERS, "the stress receiver's order table");

static brg_ref_t tn_stream_sink;

typedef struct {
    int64_t index, next;
} tn_streamer_t;

static int
tn_streamer(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    tn_streamer_t *self = brg_state(ctx);
    size_t at = 0;
    int64_t index;
    if (brg_msg_read_int(msg, &at, &index) == BRG_OK)
        self->index = index; // the first message: which streamer this is
    static const char pad[100];
    for (int k = 0; k < TN_STREAM_CHUNK && self->next < TN_STREAM_N; k++) {
        brg_msg_t *m = brg_msg_new("seq");
        brg_msg_add_int(m, self->index);
        brg_msg_add_int(m, self->next);
        brg_msg_add_bin(m, pad, sizeof pad);
        int rc = brg_send(ctx, tn_stream_sink, &m);
        if (rc != BRG_OK) {
            atomic_fetch_add(&tn_order_errors, 1);
            brg_stop(ctx);
            return BRG_OK;
        }
        self->next++;
    }
    if (self->next < TN_STREAM_N)
        return brg_send_tag(ctx, brg_self(ctx), "more");
    brg_stop(ctx);
    return BRG_OK;
}

START_TEST(test_node_actors_streaming_past_the_busy_mark_are_suspended_never_refused)
{
    tn_variant(_i);
    tn_busy_bytes = 16 * 1024;
    tn_make(0, "a", 256 * 1024);
    tn_make(1, "b", 0);
    tn_join(0, 1);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(tn_receiver_t); // the stress test's: per-sender order
    ck_assert_int_eq(brg_system_spawn(tn_sys[1], tn_stress_receiver, &opts, &tn_stream_sink),
                     BRG_OK);
    for (int i = 0; i < TN_STREAMERS; i++) {
        brg_spawn_opts_init(&opts);
        opts.state_size = sizeof(tn_streamer_t);
        brg_ref_t ref;
        ck_assert_int_eq(brg_system_spawn(tn_sys[0], tn_streamer, &opts, &ref), BRG_OK);
        // The first message says which streamer it is; then each asks
        // itself for more.
        ck_assert_int_eq(tu_send_int(tn_sys[0], ref, "more", i), BRG_OK);
    }
    TU_WAIT_UNTIL(atomic_load(&tn_got) == (long long)TN_STREAMERS * TN_STREAM_N ||
                      atomic_load(&tn_order_errors) > 0,
                  20000);
    ck_assert_int_eq(atomic_load(&tn_order_errors), 0);
    brg_node_stats_t sa;
    brg_node_stats(tn_node[0], &sa);
    ck_assert_uint_eq(sa.dropped_busy, 0);
    ck_assert_uint_gt(sa.busy_waits, 0); // they were held back, not refused
    ck_assert_uint_eq(sa.lost_in_flight, 0);
}
END_TEST

static Suite *
node_suite(void)
{
    Suite *s = suite_create("node");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 30);
    tcase_add_checked_fixture(core, tn_setup, tn_teardown);
    tcase_add_loop_test(
        core, test_node_ask_reaches_an_actor_on_another_node_and_its_reply_comes_back, 0, 4);
    tcase_add_loop_test(core, test_node_await_actors_waits_for_user_actors_not_the_node_service, 0,
                        2);
    tcase_add_loop_test(
        core, test_node_an_inbox_asks_receives_from_and_monitors_another_nodes_actor, 0, 2);
    tcase_add_loop_test(core, test_node_an_ask_to_a_silent_remote_actor_times_out_at_its_deadline,
                        0, 2);
    tcase_add_loop_test(
        core, test_node_an_actor_asks_a_remote_actor_and_gets_its_reply_in_its_callback, 0, 2);
    tcase_add_loop_test(core, test_node_named_sends_and_asks_resolve_on_the_target_node, 0, 2);
    tcase_add_loop_test(core, test_node_refs_in_payloads_survive_the_trip_and_can_be_sent_to, 0, 2);
    tcase_add_loop_test(
        core, test_node_a_forwarded_ask_is_answered_straight_to_the_asker_on_a_third_node, 0, 4);
    tcase_add_loop_test(core, test_node_links_and_monitors_across_nodes_get_the_real_exit_reason, 0,
                        2);
    tcase_add_loop_test(
        core, test_node_a_lost_connection_gives_noconnection_to_links_monitors_and_asks, 0, 4);
    tcase_add_loop_test(core, test_node_a_destroyed_node_fails_pending_asks_with_enetwork, 0, 2);
    tcase_add_loop_test(core, test_node_subscribers_see_node_up_and_down, 0, 2);
    tcase_add_loop_test(core, test_node_a_request_is_served_on_the_worker_that_read_it, 0, 2);
    tcase_add_test(core, test_node_a_long_call_on_worker_0_does_not_stop_the_nodes_io);
    tcase_add_loop_test(core, test_node_sends_past_the_peer_budget_fail_with_ebusy_and_are_counted,
                        0, 4);
    tcase_add_loop_test(
        core, test_node_actors_streaming_past_the_busy_mark_are_suspended_never_refused, 0, 4);
    suite_add_tcase(s, core);
    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_set_timeout(stress, 300);
    tcase_add_checked_fixture(stress, tn_setup, tn_teardown);
    tcase_add_test(stress,
                   test_node_stress_a_million_messages_from_many_senders_arrive_once_and_in_order);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(node_suite());
}
