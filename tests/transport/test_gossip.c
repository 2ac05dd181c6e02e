//  test_gossip - the full mesh (PROTOCOL.md section 13, "Mesh"): nodes in
//  one process over ipc:// and over tcp://127.0.0.1 with CURVE (the test
//  key dir: every node holds the same key pair), each test once per
//  transport (Check's loop index 0 = ipc, 1 = tcp). Nobody dials but the
//  test's brg_node_connect to B; the rest must come from gossip.
#include "test_util.h"

#include <brigade/node.h>
#include <msgpack.h>
#include <unistd.h>
#include <zmq.h>

#define TG_NODES 4

static brg_system_t *tg_sys[TG_NODES];
static brg_node_t *tg_node[TG_NODES];
static int tg_transport; // 0 ipc, 1 tcp

static void
tg_make(int i, const char *name, bool mesh)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    tg_sys[i] = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(tg_sys[i]);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    ck_assert(nc.mesh); // the default
    nc.name = name;
    nc.mesh = mesh;
    char ep[128];
    if (tg_transport == 0)
        snprintf(ep, sizeof ep, "ipc:///tmp/brg-test-gossip-%d-%d", (int)getpid(), i);
    else
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:0");
    nc.listen[0] = ep;
    nc.tick_ms = 100;
    nc.timeout_ms = 3000;
    nc.handshake_ms = 1000;
    tg_node[i] = brg_node_new(tg_sys[i], &nc);
    ck_assert_ptr_nonnull(tg_node[i]);
}

static void
tg_teardown(void)
{
    for (int i = 0; i < TG_NODES; i++) {
        brg_system_destroy(&tg_sys[i]);
        tg_node[i] = NULL;
    }
}

static brg_ref_t
tg_self(int i)
{
    return brg_node_self(tg_node[i]);
}

static int
tg_npeers(int i)
{
    brg_ref_t peers[16];
    return brg_node_peers(tg_node[i], peers, 16);
}

static bool
tg_sees(int i, int j)
{
    brg_ref_t peers[16];
    int n = brg_node_peers(tg_node[i], peers, 16);
    for (int k = 0; k < n && k < 16; k++)
        if (brg_ref_eq(peers[k], tg_self(j)))
            return true;
    return false;
}

static bool
tg_linked(int i, int j)
{
    return tg_sees(i, j) && tg_sees(j, i);
}

//  Node i dials node j (the only explicit dials of these tests).
static void
tg_join(int i, int j)
{
    char ep[256];
    ck_assert_int_eq(brg_node_endpoint(tg_node[j], 0, ep, sizeof ep), BRG_OK);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(tg_node[i], ep, 5000, &peer), BRG_OK);
    ck_assert(brg_ref_eq(peer, tg_self(j)));
    TU_WAIT_UNTIL(tg_linked(i, j), TU_WAIT_MS);
}

static brg_node_stats_t
tg_stats(int i)
{
    brg_node_stats_t st;
    brg_node_stats(tg_node[i], &st);
    return st;
}

//  ---------------------------------------------------------------------------

START_TEST(test_mesh_forms)
{
    tg_transport = _i;
    tg_make(0, "a", true);
    tg_make(1, "b", true);
    tg_make(2, "c", true);
    tg_join(0, 1); // A dials B
    tg_join(2, 1); // C dials B
    // A and C learn each other from B: A from B's "brg.peers" (it was
    // connected first), C from B's WELCOME.
    TU_WAIT_UNTIL(tg_linked(0, 2), TU_WAIT_MS);
    ck_assert_uint_ge(tg_stats(0).gossip_learned + tg_stats(2).gossip_learned, 1);
    ck_assert_uint_eq(tg_stats(0).gossip_refused, 0);
    ck_assert_uint_eq(tg_stats(2).gossip_refused, 0);

    // D joins through B later: meshed with A and C too.
    tg_make(3, "d", true);
    tg_join(3, 1);
    TU_WAIT_UNTIL(tg_linked(3, 0) && tg_linked(3, 2), TU_WAIT_MS);
    // One session per pair, however many dials crossed: every node has
    // the three others and no more.
    for (int i = 0; i < TG_NODES; i++)
        TU_WAIT_UNTIL(tg_npeers(i) == 3, TU_WAIT_MS);
    // Messages cross the learned sessions.
    brg_ref_t svc;
    ck_assert_int_eq(brg_node_whereis(tg_node[0], tg_self(3), BRG_NODE_SERVICE, 5000, &svc),
                     BRG_OK);
    ck_assert_uint_eq(svc.node_hi, tg_self(3).node_hi);
    ck_assert_uint_eq(svc.node_lo, tg_self(3).node_lo);
}
END_TEST

START_TEST(test_mesh_off)
{
    tg_transport = _i;
    tg_make(0, "a", false);
    tg_make(1, "b", false);
    tg_make(2, "c", false);
    tg_join(0, 1);
    tg_join(2, 1);
    // A learned-node dial would start within tick_ms (100) or tick_ms +
    // handshake_ms (1100) of the gossip; give it well over that.
    tu_sleep_ms(2500);
    ck_assert(!tg_sees(0, 2));
    ck_assert(!tg_sees(2, 0));
    ck_assert_int_eq(tg_npeers(1), 2);
    for (int i = 0; i < 3; i++) {
        brg_node_stats_t st = tg_stats(i);
        ck_assert_uint_eq(st.gossip_learned, 0);
        ck_assert_uint_eq(st.gossip_refused, 0);
    }
}
END_TEST

//  B meshes, A and C do not: B tells them, they do not dial.
START_TEST(test_mesh_off_receiver)
{
    tg_transport = _i;
    tg_make(0, "a", false);
    tg_make(1, "b", true);
    tg_make(2, "c", false);
    tg_join(0, 1);
    tg_join(2, 1);
    tu_sleep_ms(2500);
    ck_assert(!tg_sees(0, 2));
    ck_assert(!tg_sees(2, 0));
    ck_assert_uint_eq(tg_stats(0).gossip_learned, 0);
    ck_assert_uint_eq(tg_stats(2).gossip_learned, 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Bad entries: sent to A's node service as a peer's I/O thread would.

typedef struct {
    uint8_t node[16];
    const char *ep;
    const char *name;
} tg_entry_t;

static void
tg_uuid(brg_ref_t ref, uint8_t out[16])
{
    for (int k = 0; k < 8; k++) {
        out[k] = (uint8_t)(ref.node_hi >> (56 - 8 * k));
        out[8 + k] = (uint8_t)(ref.node_lo >> (56 - 8 * k));
    }
}

static void
tg_tell(int i, const tg_entry_t *e, int n)
{
    brg_msg_t *m = brg_msg_new("brg.peers");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(brg_msg_add_array(m, (uint32_t)n), BRG_OK);
    for (int k = 0; k < n; k++) {
        ck_assert_int_eq(brg_msg_add_array(m, 3), BRG_OK);
        ck_assert_int_eq(brg_msg_add_bin(m, e[k].node, 16), BRG_OK);
        ck_assert_int_eq(brg_msg_add_str(m, e[k].ep), BRG_OK);
        ck_assert_int_eq(brg_msg_add_str(m, e[k].name), BRG_OK);
    }
    brg_ref_t svc;
    ck_assert_int_eq(brg_whereis(tg_sys[i], BRG_NODE_SERVICE, &svc), BRG_OK);
    ck_assert_int_eq(brg_system_send(tg_sys[i], svc, &m), BRG_OK);
}

//  A client session on node i's endpoint with a raw DEALER; its UUID in node.
static void *
tg_client(void *zctx, int i, uint8_t node[16])
{
    char ep[256];
    ck_assert_int_eq(brg_node_endpoint(tg_node[i], 0, ep, sizeof ep), BRG_OK);
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    ck_assert_ptr_nonnull(s);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (tg_transport == 1) {
        char pub[BRG_KEY_TEXT], sec[BRG_KEY_TEXT], srv[BRG_KEY_TEXT];
        ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
        ck_assert_int_eq(brg_node_public_key(tg_node[i], srv, sizeof srv), BRG_OK);
        ck_assert_int_eq(brg_node_allow_key(tg_node[i], "gossip-client", pub, BRG_KEY_CLIENT),
                         BRG_OK);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, srv, 40), 0);
    }
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    for (int k = 0; k < 16; k++)
        node[k] = (uint8_t)(0xc0 + k);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_map(&pk, 5);
    const char *kv[][2] = {{"role", "client"}, {"name", "raw"}, {"cluster", "brigade"}};
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "node", 4);
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, node, 16);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "sess", 4);
    msgpack_pack_uint64(&pk, 12345);
    for (int k = 0; k < 3; k++) {
        msgpack_pack_str(&pk, strlen(kv[k][0]));
        msgpack_pack_str_body(&pk, kv[k][0], strlen(kv[k][0]));
        msgpack_pack_str(&pk, strlen(kv[k][1]));
        msgpack_pack_str_body(&pk, kv[k][1], strlen(kv[k][1]));
    }
    ck_assert_int_eq(zmq_send(s, sb.data, sb.size, 0), (int)sb.size);
    msgpack_sbuffer_destroy(&sb);
    return s;
}

START_TEST(test_bad_entries)
{
    tg_transport = _i;
    tg_make(0, "a", true);
    tg_make(1, "b", true);
    tg_join(0, 1);
    void *zctx = zmq_ctx_new();
    uint8_t client[16];
    void *cs = tg_client(zctx, 0, client);
    TU_WAIT_UNTIL(tg_npeers(0) == 2, TU_WAIT_MS); // B and the client

    char own_ep[256];
    ck_assert_int_eq(brg_node_endpoint(tg_node[0], 0, own_ep, sizeof own_ep), BRG_OK);
    tg_entry_t e[9];
    memset(e, 0, sizeof e);
    tg_uuid(tg_self(0), e[0].node); // this node
    e[0].ep = "ipc:///tmp/brg-test-gossip-nowhere";
    e[0].name = "self";
    memcpy(e[1].node, client, 16); // a client
    e[1].ep = "ipc:///tmp/brg-test-gossip-client";
    e[1].name = "client";
    e[2].ep = "ipc:///tmp/brg-test-gossip-nil"; // nil node
    e[2].name = "nil";
    for (int k = 3; k < 9; k++)
        for (int b = 0; b < 16; b++)
            e[k].node[b] = (uint8_t)(0x10 * k + b + 1);
    e[3].ep = "garbage";
    e[3].name = "g1";
    e[4].ep = "tcp://*:7400";
    e[4].name = "g2";
    e[5].ep = "rGu2H0sOx+Tmc2*eO4ppcI)PYv%/yqz2hbYZgt?I@tcp://127.0.0.1:1";
    e[5].name = "g3";
    e[6].ep = own_ep; // this node's endpoint under another UUID
    e[6].name = "g4";
    e[7].ep = "tcp://127.0.0.1:99999";
    e[7].name = "g5";
    e[8].ep = "ipc://";
    e[8].name = "g6";
    tg_tell(0, e, 9);
    TU_WAIT_UNTIL(tg_stats(0).gossip_refused == 9, TU_WAIT_MS);

    // A malformed message is refused whole (one count), not a crash.
    brg_msg_t *m = brg_msg_new("brg.peers");
    ck_assert_int_eq(brg_msg_add_str(m, "not an array"), BRG_OK);
    brg_ref_t svc;
    ck_assert_int_eq(brg_whereis(tg_sys[0], BRG_NODE_SERVICE, &svc), BRG_OK);
    ck_assert_int_eq(brg_system_send(tg_sys[0], svc, &m), BRG_OK);
    TU_WAIT_UNTIL(tg_stats(0).gossip_refused == 10, TU_WAIT_MS);

    // An entry for B, which A has already, is neither learned nor refused;
    // nothing was learned, nothing new is up.
    tg_entry_t known;
    tg_uuid(tg_self(1), known.node);
    char b_ep[256];
    ck_assert_int_eq(brg_node_endpoint(tg_node[1], 0, b_ep, sizeof b_ep), BRG_OK);
    known.ep = b_ep;
    known.name = "b";
    tg_tell(0, &known, 1);
    // A good entry after it: when that one is learned, the known one was
    // handled (one queue, in order).
    tg_make(2, "c", false);
    tg_entry_t good;
    tg_uuid(tg_self(2), good.node);
    char c_ep[256];
    ck_assert_int_eq(brg_node_endpoint(tg_node[2], 0, c_ep, sizeof c_ep), BRG_OK);
    good.ep = c_ep;
    good.name = "c";
    tg_tell(0, &good, 1);
    TU_WAIT_UNTIL(tg_linked(0, 2), TU_WAIT_MS);
    brg_node_stats_t st = tg_stats(0);
    ck_assert_uint_eq(st.gossip_learned, 1);
    ck_assert_uint_eq(st.gossip_refused, 10);
    ck_assert_int_eq(tg_npeers(0), 3); // B, the client, C
    zmq_close(cs);
    zmq_ctx_term(zctx);
}
END_TEST

//  A learned node that is gone: the dial gives up after 3 attempts.
START_TEST(test_dead_entry_dropped)
{
    tg_transport = _i;
    tg_make(0, "a", true);
    tg_entry_t e;
    for (int b = 0; b < 16; b++)
        e.node[b] = (uint8_t)(0x70 + b);
    e.ep = tg_transport == 0 ? "ipc:///tmp/brg-test-gossip-nobody" : "tcp://127.0.0.1:9";
    e.name = "gone";
    tg_tell(0, &e, 1);
    TU_WAIT_UNTIL(tg_stats(0).gossip_learned == 1, TU_WAIT_MS);
    // Each attempt ends (closed or handshake timeout, 1 s) and is retried
    // with backoff; the third failure drops it: no more attempts after.
    TU_WAIT_UNTIL(tg_stats(0).sessions_ended >= 3, 3 * TU_WAIT_MS);
    // A fourth attempt would start within the backoff (at most 800 ms).
    tu_sleep_ms(2000);
    brg_node_stats_t st = tg_stats(0);
    ck_assert_uint_eq(st.sessions_started, 3);
    ck_assert_uint_eq(st.sessions_ended, 3);
    ck_assert_int_eq(tg_npeers(0), 0);
}
END_TEST

Suite *
gossip_suite(void)
{
    Suite *s = suite_create("gossip");
    TCase *tc = tcase_create("mesh");
    tcase_add_checked_fixture(tc, NULL, tg_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_mesh_forms, 0, 2);
    tcase_add_loop_test(tc, test_mesh_off, 0, 2);
    tcase_add_loop_test(tc, test_mesh_off_receiver, 0, 2);
    tcase_add_loop_test(tc, test_bad_entries, 0, 2);
    tcase_add_loop_test(tc, test_dead_entry_dropped, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(gossip_suite());
}
