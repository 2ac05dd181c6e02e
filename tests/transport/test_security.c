//  test_security - nodes over tcp://127.0.0.1 with CURVE (docs/PROTOCOL.md
//  section 22), against real sockets: nodes of this process, and raw
//  ZeroMQ and TCP clients the tests drive byte by byte.
//
//  Each refusal the issue names has a test: an unknown key, a plaintext
//  client, a wrong server key, a mode mismatch, a revoked key, a client key
//  that poses as a node or reaches past its exports, a peer that never
//  finishes its handshake or sends a giant first frame; each is refused,
//  counted, and logged once. Key directories are temporary directories.
#include "test_util.h"

#include <arpa/inet.h>
#include <brigade/node.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define TS_TICK_MS 100
#define TS_MAX 4

static brg_system_t *ts_sys[TS_MAX];
static brg_node_t *ts_node[TS_MAX];
static char ts_dir[TS_MAX][128]; // key directory per node ("" = none made)
static char ts_tmp[64];          // holds every key directory of a test

//  ---------------------------------------------------------------------------
//  The log of every node, kept for the tests to search.

//  (tu_log_keep, tu_log_count: tests/test_util.h)

//  ---------------------------------------------------------------------------
//  Nodes.

static void
ts_setup(void)
{
    snprintf(ts_tmp, sizeof ts_tmp, "/tmp/brg-sec-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(ts_tmp));
    tu_log_clear();
}

static void
ts_teardown(void)
{
    for (int i = 0; i < TS_MAX; i++) {
        if (ts_sys[i] != NULL)
            ck_assert_int_eq(brg_system_destroy(&ts_sys[i]), BRG_OK);
        ts_node[i] = NULL;
        ts_dir[i][0] = '\0';
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ts_tmp);
    ck_assert_int_eq(system(cmd), 0);
}

static brg_system_t *
ts_system(void)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.log_fn = tu_log_keep;
    cfg.log_level = BRG_LOG_INFO;
    return brg_system_new(&cfg);
}

static void
ts_config(brg_node_config_t *nc, const char *name, const char *dir, const char *listen)
{
    brg_node_config_init(nc);
    nc->name = name;
    nc->key_dir = dir;
    nc->listen[0] = listen;
    nc->tick_ms = TS_TICK_MS;
    nc->timeout_ms = 2000;
    nc->handshake_ms = 1000;
    nc->reconnect_max_ms = 400;
}

//  Node i named `name` on tcp://127.0.0.1:0 with key directory number
//  `dir` (nodes given one number share a key pair). insecure: plain tcp.
static void
ts_make(int i, const char *name, int dir, bool insecure)
{
    snprintf(ts_dir[i], sizeof ts_dir[i], "%s/keys%d", ts_tmp, dir);
    ts_sys[i] = ts_system();
    ck_assert_ptr_nonnull(ts_sys[i]);
    brg_node_config_t nc;
    ts_config(&nc, name, ts_dir[i], "tcp://127.0.0.1:0");
    nc.insecure_loopback = insecure;
    ts_node[i] = brg_node_new(ts_sys[i], &nc);
    ck_assert_ptr_nonnull(ts_node[i]);
}

static void
ts_key(int i, char key[BRG_KEY_TEXT])
{
    ck_assert_int_eq(brg_node_public_key(ts_node[i], key, BRG_KEY_TEXT), BRG_OK);
    ck_assert_uint_eq(strlen(key), 40);
}

static void
ts_endpoint(int i, char *ep, size_t len)
{
    ck_assert_int_eq(brg_node_endpoint(ts_node[i], 0, ep, len), BRG_OK);
}

static brg_node_stats_t
ts_stats(int i)
{
    brg_node_stats_t st;
    brg_node_stats(ts_node[i], &st);
    return st;
}

static bool
ts_up(int i, int j)
{
    brg_ref_t peers[8];
    int n = brg_node_peers(ts_node[i], peers, 8);
    for (int k = 0; k < n && k < 8; k++)
        if (brg_ref_eq(peers[k], brg_node_self(ts_node[j])))
            return true;
    return false;
}

//  An actor that answers every ask with a copy.
static int
ts_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *r = brg_msg_dup(msg);
    brg_reply(ctx, &r);
    return BRG_OK;
}

static brg_ref_t
ts_spawn_echo(int i, const char *name)
{
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = name;
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(ts_sys[i], ts_echo, &opts, &ref), BRG_OK);
    return ref;
}

//  Ask `name` on node j from outside node i; returns the ask's status.
static int
ts_ask_named(int i, int j, const char *name)
{
    brg_msg_t *m = brg_msg_new("hi");
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask_named_at(ts_sys[i], brg_node_self(ts_node[j]), name, &m, 5000, &reply);
    brg_msg_destroy(&reply);
    return rc;
}

//  ---------------------------------------------------------------------------
//  A raw ZeroMQ client: a DEALER that speaks the protocol by hand.

static void *ts_zctx;

typedef struct {
    void *sock;
    uint64_t seq;
} ts_raw_t;

//  curve: NULL (plain), else {client public, client secret, server public}
//  in Z85.
static ts_raw_t
ts_raw_open(const char *ep, const char *const curve[3])
{
    if (ts_zctx == NULL)
        ts_zctx = zmq_ctx_new();
    ts_raw_t r = {zmq_socket(ts_zctx, ZMQ_DEALER), 0};
    ck_assert_ptr_nonnull(r.sock);
    int zero = 0, send_ms = 3000;
    zmq_setsockopt(r.sock, ZMQ_LINGER, &zero, sizeof zero);
    // A refused handshake may drop the connection's pipe before a send:
    // a DEALER with no pipe blocks in zmq_send, so sends time out instead.
    zmq_setsockopt(r.sock, ZMQ_SNDTIMEO, &send_ms, sizeof send_ms);
    if (curve != NULL) {
        ck_assert_int_eq(zmq_setsockopt(r.sock, ZMQ_CURVE_PUBLICKEY, curve[0], 40), 0);
        ck_assert_int_eq(zmq_setsockopt(r.sock, ZMQ_CURVE_SECRETKEY, curve[1], 40), 0);
        ck_assert_int_eq(zmq_setsockopt(r.sock, ZMQ_CURVE_SERVERKEY, curve[2], 40), 0);
    }
    ck_assert_int_eq(zmq_connect(r.sock, ep), 0);
    return r;
}

static void
ts_raw_close(ts_raw_t *r)
{
    zmq_close(r->sock);
    r->sock = NULL;
}

static void
ts_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

//  HELLO as a client (role "client") or as a node with no endpoint. A
//  HELLO on a connection the node refuses may not leave at all: then only
//  `refused` tests call it, and its send is not checked.
static void
ts_raw_hello_sent(ts_raw_t *r, const char *role, bool check_sent)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_map(&pk, 6);
    uint8_t node[16];
    for (int i = 0; i < 16; i++)
        node[i] = (uint8_t)(rand() ^ (i * 37));
    ts_pack_str(&pk, "node");
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, node, 16);
    ts_pack_str(&pk, "sess");
    msgpack_pack_uint64(&pk, (uint64_t)rand() + 1);
    ts_pack_str(&pk, "role");
    ts_pack_str(&pk, role);
    ts_pack_str(&pk, "name");
    ts_pack_str(&pk, "raw");
    ts_pack_str(&pk, "cluster");
    ts_pack_str(&pk, "brigade");
    ts_pack_str(&pk, "ep");
    msgpack_pack_nil(&pk);
    int rc = zmq_send(r->sock, sb.data, sb.size, 0);
    if (check_sent)
        ck_assert_int_eq(rc, (int)sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void
ts_raw_hello(ts_raw_t *r, const char *role)
{
    ts_raw_hello_sent(r, role, true);
}

//  A BATCH of one envelope: [kind, to (name or id), from 1, corr, tag].
static void
ts_raw_envelope(ts_raw_t *r, int kind, const char *to_name, uint64_t to_id, uint64_t corr)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
    msgpack_pack_uint64(&pk, ++r->seq);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_int(&pk, kind);
    if (to_name != NULL)
        ts_pack_str(&pk, to_name);
    else
        msgpack_pack_uint64(&pk, to_id);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, corr);
    ts_pack_str(&pk, kind >= 3 ? "brg.exit" : "hi");
    ck_assert_int_eq(zmq_send(r->sock, sb.data, sb.size, 0), (int)sb.size);
    msgpack_sbuffer_destroy(&sb);
}

//  The next frame from the node within ms: its type (0 HELLO ... 6 ERROR),
//  or -1 if none came. For a BATCH, *kind and *status of its first
//  envelope; for an ERROR, *status = its code.
static int
ts_raw_recv(ts_raw_t *r, int ms, int *kind, int64_t *status)
{
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0)
        return -1;
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, r->sock, 0), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, zmq_msg_data(&m), zmq_msg_size(&m), NULL),
                     MSGPACK_UNPACK_SUCCESS);
    msgpack_object o = u.data;
    ck_assert_int_eq(o.type, MSGPACK_OBJECT_ARRAY);
    int type = (int)o.via.array.ptr[1].via.u64;
    if (type == 2 && o.via.array.size >= 4) { // [1, 2, seq, env...]
        msgpack_object env = o.via.array.ptr[3];
        if (kind != NULL)
            *kind = (int)env.via.array.ptr[0].via.u64;
        if (status != NULL && env.via.array.size > 5)
            *status = env.via.array.ptr[5].via.i64;
    } else if (type == 6 && status != NULL) { // [1, 6, code, text]
        *status = (int64_t)o.via.array.ptr[2].via.u64;
    }
    msgpack_unpacked_destroy(&u);
    zmq_msg_close(&m);
    return type;
}

//  A client key pair allowed on node i (by API) as `role`.
static void
ts_client_keys(int i, brg_key_role_t role, char pub[41], char sec[41])
{
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    ck_assert_int_eq(brg_node_allow_key(ts_node[i], "test-client", pub, role), BRG_OK);
}

//  ---------------------------------------------------------------------------
//  Tests.

START_TEST(test_security_first_start_makes_the_key_pair_and_later_starts_reuse_it)
{
    ts_make(0, "a", 0, false);
    char key[BRG_KEY_TEXT], again[BRG_KEY_TEXT];
    ts_key(0, key);
    char path[160];
    struct stat st;
    ck_assert_int_eq(stat(ts_dir[0], &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/node.key_secret", ts_dir[0]);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    // The public certificate names the key; the secret one is never logged.
    snprintf(path, sizeof path, "%s/node.key", ts_dir[0]);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char text[1024];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, key));
    ck_assert_int_eq(tu_log_count(key, "CURVE"), 1); // the start line names it
    snprintf(path, sizeof path, "%s/node.key_secret", ts_dir[0]);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    char *sk = strstr(text, "secret-key = \"");
    ck_assert_ptr_nonnull(sk);
    sk[14 + 40] = '\0';
    ck_assert_int_eq(tu_log_count(sk + 14, NULL), 0);
    ck_assert_int_eq(brg_system_destroy(&ts_sys[0]), BRG_OK);
    ts_make(0, "a", 0, false);
    ts_key(0, again);
    ck_assert_str_eq(key, again);
    // Others may read the secret now: the node refuses to start, loudly.
    ck_assert_int_eq(brg_system_destroy(&ts_sys[0]), BRG_OK);
    ck_assert_int_eq(chmod(path, 0644), 0);
    ts_sys[0] = ts_system();
    brg_node_config_t nc;
    ts_config(&nc, "a", ts_dir[0], "tcp://127.0.0.1:0");
    ck_assert_ptr_null(brg_node_new(ts_sys[0], &nc));
    ck_assert_int_eq(tu_log_count("may be read by others", "node.key_secret"), 1);
}
END_TEST

START_TEST(test_security_nodes_sharing_a_key_talk_over_curve_and_refuse_nothing)
{
    ts_make(0, "a", 0, false);
    ts_make(1, "b", 0, false);
    ts_spawn_echo(1, "echo");
    char ep[256];
    ts_endpoint(1, ep, sizeof ep);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(ts_node[0], ep, 5000, &peer), BRG_OK);
    TU_WAIT_UNTIL(ts_up(1, 0), TU_WAIT_MS);
    ck_assert_int_eq(ts_ask_named(0, 1, "echo"), BRG_OK);
    brg_node_stats_t st = ts_stats(1);
    ck_assert_uint_eq(st.refused_keys, 0);
    ck_assert_uint_eq(st.refused_handshakes, 0);
}
END_TEST

START_TEST(test_security_an_unknown_key_is_refused_counted_logged_once_then_allowed_and_revoked)
{
    ts_make(0, "a", 0, false);
    ts_make(1, "b", 1, false);
    ts_spawn_echo(1, "echo");
    char ka[BRG_KEY_TEXT], kb[BRG_KEY_TEXT], ep[256], dial[320];
    ts_key(0, ka);
    ts_key(1, kb);
    ck_assert_str_ne(ka, kb);
    ts_endpoint(1, ep, sizeof ep);
    // a knows b's key (by name); b does not know a's.
    ck_assert_int_eq(brg_node_allow_key(ts_node[0], "b", kb, BRG_KEY_NODE), BRG_OK);
    snprintf(dial, sizeof dial, "b@%s", ep);
    brg_ref_t peer;
    // refused: the handshake fails, and a knows at once
    ck_assert_int_eq(brg_node_connect(ts_node[0], dial, 5000, &peer), BRG_ENETWORK);
    TU_WAIT_UNTIL(ts_stats(1).refused_keys >= 3, TU_WAIT_MS); // a keeps redialing
    ck_assert(!ts_up(1, 0));
    ck_assert_int_eq(tu_log_count("is not allowed", ka), 1); // once, with the address
    ck_assert_int_eq(tu_log_count("127.0.0.1", ka), 1);
    // Allowed while b runs: a's next attempt gets in.
    ck_assert_int_eq(brg_node_allow_key(ts_node[1], "a", ka, BRG_KEY_NODE), BRG_OK);
    TU_WAIT_UNTIL(ts_up(0, 1) && ts_up(1, 0), TU_WAIT_MS);
    ck_assert_int_eq(ts_ask_named(0, 1, "echo"), BRG_OK);
    // Revoked: the session ends at once, and stays refused.
    ck_assert_int_eq(brg_node_revoke_key(ts_node[1], "a"), 1);
    TU_WAIT_UNTIL(!ts_up(0, 1) && !ts_up(1, 0), TU_WAIT_MS);
    uint64_t before = ts_stats(1).refused_keys;
    TU_WAIT_UNTIL(ts_stats(1).refused_keys > before, TU_WAIT_MS);
    ck_assert(!ts_up(1, 0));
    ck_assert_int_ge(tu_log_count("was revoked", ka), 1);
    ck_assert_int_eq(brg_node_revoke_key(ts_node[1], "a"), BRG_ENOTFOUND);
    // A dial by a name that is no node key is refused before it starts.
    ck_assert_int_eq(brg_node_connect(ts_node[0], "nobody@tcp://127.0.0.1:1", 0, NULL), BRG_EINVAL);
}
END_TEST

START_TEST(test_security_keys_in_the_allowed_directory_are_read_and_reloaded)
{
    ts_make(1, "b", 1, false);
    ts_make(0, "a", 0, false);
    ts_spawn_echo(1, "echo");
    char ka[BRG_KEY_TEXT], kb[BRG_KEY_TEXT], ep[256], dial[320];
    ts_key(0, ka);
    ts_key(1, kb);
    ts_endpoint(1, ep, sizeof ep);
    // The server key itself: a trusts it as a node key from now on (b dials
    // back with it).
    snprintf(dial, sizeof dial, "%s@%s", kb, ep);
    // a's certificate into b's allowed/ (as an operator would copy it).
    char from[160], to[200], cmd[512];
    snprintf(from, sizeof from, "%s/node.key", ts_dir[0]);
    snprintf(to, sizeof to, "%s/allowed", ts_dir[1]);
    ck_assert_int_eq(mkdir(to, 0700), 0);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/a.key'", from, to);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(brg_node_reload_keys(ts_node[1]), 1);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(ts_node[0], dial, 5000, &peer), BRG_OK);
    ck_assert_int_eq(ts_ask_named(0, 1, "echo"), BRG_OK);
    // The file is gone: the next reload revokes the key.
    snprintf(cmd, sizeof cmd, "rm '%s/a.key'", to);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(brg_node_reload_keys(ts_node[1]), 0);
    TU_WAIT_UNTIL(!ts_up(1, 0), TU_WAIT_MS);
}
END_TEST

START_TEST(test_security_a_plaintext_client_on_a_curve_listener_is_refused_and_counted)
{
    ts_make(1, "b", 1, false);
    ts_spawn_echo(1, "echo");
    ck_assert_int_eq(brg_node_export(ts_node[1], "echo", true), BRG_OK);
    char ep[256];
    ts_endpoint(1, ep, sizeof ep);
    ts_raw_t r = ts_raw_open(ep, NULL);
    ts_raw_hello_sent(&r, "client", false);
    ck_assert_int_eq(ts_raw_recv(&r, 1000, NULL, NULL), -1); // no WELCOME, nothing
    TU_WAIT_UNTIL(ts_stats(1).refused_handshakes >= 1, TU_WAIT_MS);
    ck_assert_int_ge(tu_log_count("refused a connection on a CURVE listener", NULL), 1);
    ck_assert_uint_eq(ts_stats(1).sessions_started, 0);
    ts_raw_close(&r);
}
END_TEST

START_TEST(test_security_a_wrong_server_key_is_refused_and_counted)
{
    ts_make(1, "b", 1, false);
    char ep[256], pub[41], sec[41], other[41], osec[41];
    ts_endpoint(1, ep, sizeof ep);
    ts_client_keys(1, BRG_KEY_CLIENT, pub, sec);
    ck_assert_int_eq(zmq_curve_keypair(other, osec), 0);
    const char *keys[3] = {pub, sec, other}; // not b's key
    ts_raw_t r = ts_raw_open(ep, keys);
    ts_raw_hello_sent(&r, "client", false);
    ck_assert_int_eq(ts_raw_recv(&r, 1000, NULL, NULL), -1);
    TU_WAIT_UNTIL(ts_stats(1).refused_handshakes >= 1, TU_WAIT_MS);
    ck_assert_uint_eq(ts_stats(1).sessions_started, 0);
    ts_raw_close(&r);
    // The same client with b's key gets in.
    char kb[BRG_KEY_TEXT];
    ts_key(1, kb);
    keys[2] = kb;
    r = ts_raw_open(ep, keys);
    ts_raw_hello(&r, "client");
    ck_assert_int_eq(ts_raw_recv(&r, 5000, NULL, NULL), 1); // WELCOME
    ts_raw_close(&r);
}
END_TEST

START_TEST(test_security_a_mode_mismatch_between_nodes_is_refused_both_ways)
{
    ts_make(0, "secure", 0, false);
    ts_make(1, "plain", 0, true); // same key dir, but plain tcp on loopback
    ck_assert_int_eq(brg_node_public_key(ts_node[1], (char[BRG_KEY_TEXT]){0}, BRG_KEY_TEXT),
                     BRG_ENOTFOUND);
    char eps[256], epp[256];
    ts_endpoint(0, eps, sizeof eps);
    ts_endpoint(1, epp, sizeof epp);
    brg_ref_t peer;
    // plain dials secure: the secure listener refuses the handshake.
    ck_assert_int_eq(brg_node_connect(ts_node[1], eps, 5000, &peer), BRG_ENETWORK);
    TU_WAIT_UNTIL(ts_stats(0).refused_handshakes >= 1, TU_WAIT_MS);
    // secure dials plain: its own side fails the handshake (counted).
    ck_assert_int_eq(brg_node_connect(ts_node[0], epp, 5000, &peer), BRG_ENETWORK);
    TU_WAIT_UNTIL(ts_stats(0).handshakes_failed >= 1, TU_WAIT_MS);
    ck_assert(!ts_up(0, 1) && !ts_up(1, 0));
}
END_TEST

START_TEST(test_security_plain_tcp_is_only_for_loopback_addresses)
{
    ts_sys[0] = ts_system();
    brg_node_config_t nc;
    snprintf(ts_dir[0], sizeof ts_dir[0], "%s/keys0", ts_tmp);
    ts_config(&nc, "wide", ts_dir[0], "tcp://0.0.0.0:0");
    nc.insecure_loopback = true;
    ck_assert_ptr_null(brg_node_new(ts_sys[0], &nc));
    ck_assert_int_eq(tu_log_count("refusing plain tcp", "0.0.0.0"), 1);
    ts_config(&nc, "wide", ts_dir[0], "tcp://127.0.0.1:0");
    nc.insecure_loopback = true;
    nc.connect[0] = "tcp://10.1.2.3:7400";
    ck_assert_ptr_null(brg_node_new(ts_sys[0], &nc));
    ck_assert_int_eq(tu_log_count("refusing plain tcp", "10.1.2.3"), 1);
    nc.connect[0] = NULL;
    ts_node[0] = brg_node_new(ts_sys[0], &nc);
    ck_assert_ptr_nonnull(ts_node[0]);
    ck_assert_int_eq(brg_node_connect(ts_node[0], "tcp://192.168.7.7:7400", 0, NULL), BRG_EINVAL);
    // A plain client is welcome on a plain loopback listener.
    char ep[256];
    ts_endpoint(0, ep, sizeof ep);
    ts_raw_t r = ts_raw_open(ep, NULL);
    ts_raw_hello(&r, "client");
    ck_assert_int_eq(ts_raw_recv(&r, 5000, NULL, NULL), 1);
    ts_raw_close(&r);
}
END_TEST

START_TEST(test_security_a_client_key_reaches_only_exported_names_and_never_the_node_service)
{
    ts_make(1, "b", 1, false);
    brg_ref_t echo = ts_spawn_echo(1, "echo");
    ts_spawn_echo(1, "private");
    char ep[256], pub[41], sec[41], kb[BRG_KEY_TEXT];
    ts_endpoint(1, ep, sizeof ep);
    ts_key(1, kb);
    ts_client_keys(1, BRG_KEY_CLIENT, pub, sec);
    ck_assert_int_eq(brg_node_export(ts_node[1], "echo", true), BRG_OK);
    ck_assert_int_eq(brg_node_export(ts_node[1], BRG_NODE_SERVICE, true), BRG_EPERM);
    const char *keys[3] = {pub, sec, kb};
    ts_raw_t r = ts_raw_open(ep, keys);
    ts_raw_hello(&r, "client");
    ck_assert_int_eq(ts_raw_recv(&r, 5000, NULL, NULL), 1);
    int kind = -1;
    int64_t status = 0;
    // exported: answered
    ts_raw_envelope(&r, 0, "echo", 0, 1);
    ck_assert_int_eq(ts_raw_recv(&r, 5000, &kind, &status), 2);
    ck_assert_int_eq(kind, 1); // REPLY
    // not exported, the node service, an actor by id: BRG_EPERM
    const char *names[] = {"private", BRG_NODE_SERVICE, NULL};
    for (int i = 0; i < 3; i++) {
        kind = -1;
        ts_raw_envelope(&r, 0, names[i], echo.id, (uint64_t)(10 + i));
        ck_assert_int_eq(ts_raw_recv(&r, 5000, &kind, &status), 2);
        ck_assert_int_eq(kind, 2); // REPLY_ERROR
        ck_assert_int_eq(status, BRG_EPERM);
    }
    // a plain send to a name not exported: dropped and counted, no answer
    ts_raw_envelope(&r, 0, "private", 0, 0);
    TU_WAIT_UNTIL(ts_stats(1).refused_unauthorized >= 4, TU_WAIT_MS);
    ck_assert_int_eq(tu_log_count("may not reach private", NULL), 1); // the first only
    // a REPLY to an ask the client was never sent (a guessed corr): dropped
    ts_raw_envelope(&r, 1, NULL, echo.id, 1);
    TU_WAIT_UNTIL(ts_stats(1).refused_unauthorized >= 5, TU_WAIT_MS);
    // unexported again: refused from now on
    ck_assert_int_eq(brg_node_export(ts_node[1], "echo", false), BRG_OK);
    ts_raw_envelope(&r, 0, "echo", 0, 20);
    ck_assert_int_eq(ts_raw_recv(&r, 5000, &kind, &status), 2);
    ck_assert_int_eq(status, BRG_EPERM);
    // a control kind (LINK) from a client: ERROR 4, the session ends
    ts_raw_envelope(&r, 3, NULL, echo.id, 0);
    ck_assert_int_eq(ts_raw_recv(&r, 5000, NULL, &status), 6);
    ck_assert_int_eq(status, 4);
    ts_raw_close(&r);
}
END_TEST

START_TEST(test_security_a_client_key_cannot_pose_as_a_node)
{
    ts_make(1, "b", 1, false);
    char ep[256], pub[41], sec[41], kb[BRG_KEY_TEXT];
    ts_endpoint(1, ep, sizeof ep);
    ts_key(1, kb);
    ts_client_keys(1, BRG_KEY_CLIENT, pub, sec);
    const char *keys[3] = {pub, sec, kb};
    ts_raw_t r = ts_raw_open(ep, keys);
    ts_raw_hello(&r, "node");
    int64_t code = 0;
    ck_assert_int_eq(ts_raw_recv(&r, 5000, NULL, &code), 6); // ERROR
    ck_assert_int_eq(code, 4);
    ts_raw_close(&r);
    // The same key as a node key may.
    ck_assert_int_eq(brg_node_allow_key(ts_node[1], "test-client", pub, BRG_KEY_NODE), BRG_OK);
    r = ts_raw_open(ep, keys);
    ts_raw_hello(&r, "node");
    ck_assert_int_eq(ts_raw_recv(&r, 5000, NULL, NULL), 1); // WELCOME
    ts_raw_close(&r);
}
END_TEST

//  A TCP socket to a node's endpoint "tcp://127.0.0.1:PORT".
static int
ts_tcp_connect(const char *ep)
{
    const char *colon = strrchr(ep, ':');
    ck_assert_ptr_nonnull(colon);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

//  Milliseconds until the peer closes fd (reads and drops what it sends),
//  or -1 if it is still open after ms.
static int
ts_ms_until_closed(int fd, int ms)
{
    uint64_t t0 = tu_now_ms();
    for (;;) {
        int left = ms - (int)(tu_now_ms() - t0);
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            continue;
        char buf[512];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return (int)(tu_now_ms() - t0);
    }
}

START_TEST(test_security_a_silent_or_giant_handshake_is_dropped_in_bounded_time)
{
    ts_make(1, "b", 1, false); // handshake_ms 1000
    char ep[256];
    ts_endpoint(1, ep, sizeof ep);
    // Connects and says nothing: closed after handshake_ms.
    int fd = ts_tcp_connect(ep);
    int ms = ts_ms_until_closed(fd, 10000);
    close(fd);
    ck_assert_int_ge(ms, 0);
    ck_assert_int_ge(ms, 500);
    // A ZMTP 3.0 greeting for CURVE, then a frame header announcing 2^60
    // bytes: closed at once, nothing that large is ever buffered.
    fd = ts_tcp_connect(ep);
    uint8_t greet[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0, 'C', 'U', 'R', 'V', 'E'};
    ck_assert_int_eq(send(fd, greet, sizeof greet, MSG_NOSIGNAL), (ssize_t)sizeof greet);
    uint8_t huge[9] = {0x06, 0x10, 0, 0, 0, 0, 0, 0, 0}; // long command frame, 2^60
    ck_assert_int_eq(send(fd, huge, sizeof huge, MSG_NOSIGNAL), (ssize_t)sizeof huge);
    ms = ts_ms_until_closed(fd, 10000);
    close(fd);
    ck_assert_int_ge(ms, 0);
    ck_assert_int_lt(ms, 900); // before the handshake timer would have
    // The node still serves a well-behaved peer.
    ts_make(0, "a", 1, false);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(ts_node[0], ep, 5000, &peer), BRG_OK);
}
END_TEST

START_TEST(test_security_keygen_writes_a_certificate_pair_other_tools_read)
{
    char path[128], key[BRG_KEY_TEXT];
    snprintf(path, sizeof path, "%s/cli.key", ts_tmp);
    ck_assert_int_eq(brg_keygen(path, "cli", BRG_KEY_CLIENT, key, sizeof key), BRG_OK);
    ck_assert_uint_eq(strlen(key), 40);
    char spath[160];
    snprintf(spath, sizeof spath, "%s_secret", path);
    struct stat st;
    ck_assert_int_eq(stat(spath, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    // The public key in the file is the one printed; the secret one matches
    // it (libzmq derives the public key from the secret).
    FILE *f = fopen(spath, "r");
    ck_assert_ptr_nonnull(f);
    char text[1024];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, key));
    ck_assert_ptr_nonnull(strstr(text, "role = \"client\""));
    char *sk = strstr(text, "secret-key = \"");
    ck_assert_ptr_nonnull(sk);
    char secret[41], derived[41];
    memcpy(secret, sk + 14, 40);
    secret[40] = '\0';
    ck_assert_int_eq(zmq_curve_public(derived, secret), 0);
    ck_assert_str_eq(derived, key);
    ck_assert_int_eq(brg_keygen(path, "cli", (brg_key_role_t)7, NULL, 0), BRG_EINVAL);
}
END_TEST

static Suite *
security_suite(void)
{
    Suite *s = suite_create("security");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 120);
    tcase_add_checked_fixture(core, ts_setup, ts_teardown);
    tcase_add_test(core, test_security_first_start_makes_the_key_pair_and_later_starts_reuse_it);
    tcase_add_test(core, test_security_nodes_sharing_a_key_talk_over_curve_and_refuse_nothing);
    tcase_add_test(
        core, test_security_an_unknown_key_is_refused_counted_logged_once_then_allowed_and_revoked);
    tcase_add_test(core, test_security_keys_in_the_allowed_directory_are_read_and_reloaded);
    tcase_add_test(core,
                   test_security_a_plaintext_client_on_a_curve_listener_is_refused_and_counted);
    tcase_add_test(core, test_security_a_wrong_server_key_is_refused_and_counted);
    tcase_add_test(core, test_security_a_mode_mismatch_between_nodes_is_refused_both_ways);
    tcase_add_test(core, test_security_plain_tcp_is_only_for_loopback_addresses);
    tcase_add_test(
        core, test_security_a_client_key_reaches_only_exported_names_and_never_the_node_service);
    tcase_add_test(core, test_security_a_client_key_cannot_pose_as_a_node);
    tcase_add_test(core, test_security_a_silent_or_giant_handshake_is_dropped_in_bounded_time);
    tcase_add_test(core, test_security_keygen_writes_a_certificate_pair_other_tools_read);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    int rc = tu_run(security_suite());
    if (ts_zctx != NULL)
        zmq_ctx_term(ts_zctx);
    return rc;
}
