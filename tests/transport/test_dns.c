//  test_dns - seeds and brg_node_connect by DNS name, with real resolution.
//
//  main moves the process into a private mount namespace (unshare(2) with
//  CLONE_NEWNS, then every mount made private) and bind-mounts a temporary
//  hosts file over /etc/hosts, and an empty resolv.conf over
//  /etc/resolv.conf (an unknown name then fails at once, without the
//  network). No re-exec is needed: the namespace is the process's own, and
//  Check's forked tests inherit it. Rewriting the file in place (same inode)
//  changes what getaddrinfo answers for the whole test process, nothing
//  outside it. Where the namespace cannot be made (no CAP_SYS_ADMIN: an
//  unprivileged container) the suite exits 77, which CTest reports as
//  skipped (SKIP_RETURN_CODE), never as passed.
//
//  Nodes listen on 127.0.0.2:P, 127.0.0.3:P and 127.0.0.4:P (Linux routes
//  all of 127.0.0.0/8 to lo) and over CURVE with the tests' shared key
//  directory, as deployed nodes would.
#include "test_util.h"

#include <brigade/node.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define TD_TICK_MS 100
#define TD_TIMEOUT_MS 2000
#define TD_NODES 4

static char td_hosts[64];  // the file bind-mounted over /etc/hosts
static char td_resolv[64]; // the empty resolv.conf
static brg_system_t *td_sys[TD_NODES];
static brg_node_t *td_node[TD_NODES];

//  ---------------------------------------------------------------------------
//  Log lines, kept to be counted.

#define TD_LINES 512
static pthread_mutex_t td_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char td_lines[TD_LINES][256];
static int td_nlines;

static void
td_log(void *arg, const brg_log_event_t *ev)
{
    (void)arg;
    pthread_mutex_lock(&td_log_lock);
    if (td_nlines < TD_LINES)
        snprintf(td_lines[td_nlines++], sizeof td_lines[0], "%s", ev->text);
    pthread_mutex_unlock(&td_log_lock);
    brg_log_stderr(NULL, ev);
}

//  Lines that contain a and b (b may be NULL).
static int
td_count_lines(const char *a, const char *b)
{
    int n = 0;
    pthread_mutex_lock(&td_log_lock);
    for (int i = 0; i < td_nlines; i++)
        n += strstr(td_lines[i], a) != NULL && (b == NULL || strstr(td_lines[i], b) != NULL);
    pthread_mutex_unlock(&td_log_lock);
    return n;
}

//  Whether the last line that contains a also contains b and not c.
static bool
td_last_line_has(const char *a, const char *b, const char *c)
{
    bool ok = false;
    pthread_mutex_lock(&td_log_lock);
    for (int i = td_nlines - 1; i >= 0; i--) {
        if (strstr(td_lines[i], a) != NULL) {
            ok = strstr(td_lines[i], b) != NULL && (c == NULL || strstr(td_lines[i], c) == NULL);
            break;
        }
    }
    pthread_mutex_unlock(&td_log_lock);
    return ok;
}

//  ---------------------------------------------------------------------------
//  The hosts file and the namespace.

//  Write the hosts file in place: a bind mount of a file is of its inode.
static void
td_write_hosts(const char *text)
{
    int fd = open(td_hosts, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(fd, 0);
    size_t len = strlen(text);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static int
td_skip(const char *what)
{
    fprintf(stderr,
            "transport.dns: SKIPPED: cannot %s: %s (a private mount namespace needs "
            "CAP_SYS_ADMIN; this suite bind-mounts a hosts file over /etc/hosts)\n",
            what, strerror(errno));
    return 77;
}

static int
td_make_file(char *path, size_t len, const char *pattern, const char *text)
{
    snprintf(path, len, "%s", pattern);
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    fchmod(fd, 0644);
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

//  Returns 0, or 77 (skip) with the reason on stderr.
static int
td_enter_namespace(void)
{
    if (td_make_file(td_hosts, sizeof td_hosts, "/tmp/brg-dns-hosts-XXXXXX",
                     "127.0.0.1 localhost\n") != 0 ||
        td_make_file(td_resolv, sizeof td_resolv, "/tmp/brg-dns-resolv-XXXXXX", "") != 0) {
        fprintf(stderr, "transport.dns: cannot write a temporary file: %s\n", strerror(errno));
        return 1;
    }
    if (unshare(CLONE_NEWNS) != 0)
        return td_skip("unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return td_skip("make the mounts private");
    if (mount(td_hosts, "/etc/hosts", NULL, MS_BIND, NULL) != 0)
        return td_skip("bind-mount a hosts file over /etc/hosts");
    if (access("/etc/resolv.conf", F_OK) == 0 &&
        mount(td_resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0)
        return td_skip("bind-mount an empty /etc/resolv.conf");
    return 0;
}

//  ---------------------------------------------------------------------------
//  Nodes.

//  Node i listening on listen (and listen2), dialing seed; its log goes
//  through td_log.
static void
td_make(int i, const char *name, const char *listen, const char *listen2, const char *seed,
        uint32_t reconnect_max_ms)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.log_fn = td_log;
    td_sys[i] = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(td_sys[i]);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    nc.name = name;
    nc.listen[0] = listen;
    nc.listen[1] = listen2;
    nc.connect[0] = seed;
    nc.tick_ms = TD_TICK_MS;
    nc.timeout_ms = TD_TIMEOUT_MS;
    nc.handshake_ms = 1000;
    // These tests count the sessions of the dials they make; the nodes
    // that a's dials reach would otherwise mesh with each other
    // (transport.gossip tests the mesh).
    nc.mesh = false;
    if (reconnect_max_ms)
        nc.reconnect_max_ms = reconnect_max_ms;
    td_node[i] = brg_node_new(td_sys[i], &nc);
    ck_assert_ptr_nonnull(td_node[i]);
}

static int
td_port(int i)
{
    char ep[256];
    ck_assert_int_eq(brg_node_endpoint(td_node[i], 0, ep, sizeof ep), BRG_OK);
    int port = 0;
    ck_assert_int_eq(sscanf(strrchr(ep, ':'), ":%d", &port), 1);
    return port;
}

static bool
td_sees(int i, int j)
{
    brg_ref_t peers[8];
    int n = brg_node_peers(td_node[i], peers, 8);
    for (int k = 0; k < n && k < 8; k++)
        if (brg_ref_eq(peers[k], brg_node_self(td_node[j])))
            return true;
    return false;
}

static brg_node_stats_t
td_stats(int i)
{
    brg_node_stats_t st;
    brg_node_stats(td_node[i], &st);
    return st;
}

static void
td_setup(void)
{
    pthread_mutex_lock(&td_log_lock);
    td_nlines = 0;
    pthread_mutex_unlock(&td_log_lock);
}

static void
td_teardown(void)
{
    for (int i = 0; i < TD_NODES; i++)
        if (td_sys[i] != NULL)
            ck_assert_int_eq(brg_system_destroy(&td_sys[i]), BRG_OK);
}

//  ---------------------------------------------------------------------------
//  Tests.

//  The namespace works: the name resolves to both addresses, through the
//  same getaddrinfo the node uses.
START_TEST(test_dns_the_hosts_file_is_ours)
{
    td_write_hosts("127.0.0.2 brg-seeds\n127.0.0.3 brg-seeds\n");
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    ck_assert_int_eq(getaddrinfo("brg-seeds", "7400", &hints, &res), 0);
    int n = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
        n++;
    freeaddrinfo(res);
    ck_assert_int_eq(n, 2);
}
END_TEST

//  A seed name reaches every address it resolves to; an address added to
//  the name later is found by re-resolution; one that vanished is not
//  redialed.
START_TEST(test_dns_a_seed_name_reaches_every_address_and_new_ones)
{
    td_write_hosts("127.0.0.2 brg-seeds\n127.0.0.3 brg-seeds\n");
    td_make(0, "a", "tcp://127.0.0.2:0", NULL, NULL, 0);
    int port = td_port(0);
    char ep[64], seed[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.3:%d", port);
    td_make(1, "b", ep, NULL, NULL, 0);
    snprintf(seed, sizeof seed, "tcp://brg-seeds:%d", port);
    // Re-resolution every 500 ms (reconnect_max_ms).
    td_make(2, "c", "tcp://127.0.0.1:0", NULL, seed, 500);
    TU_WAIT_UNTIL(td_sees(2, 0) && td_sees(2, 1), TU_WAIT_MS);
    TU_WAIT_UNTIL(td_sees(0, 2) && td_sees(1, 2), TU_WAIT_MS);
    ck_assert_int_eq(td_count_lines("brg-seeds", "resolves to"), 1);

    // A third address, with a node behind it.
    td_write_hosts("127.0.0.2 brg-seeds\n127.0.0.3 brg-seeds\n127.0.0.4 brg-seeds\n");
    snprintf(ep, sizeof ep, "tcp://127.0.0.4:%d", port);
    td_make(3, "d", ep, NULL, NULL, 0);
    TU_WAIT_UNTIL(td_sees(2, 3), TU_WAIT_MS);
    ck_assert(td_sees(2, 0) && td_sees(2, 1));
    ck_assert(td_last_line_has("resolves to", "127.0.0.4", NULL));

    // 127.0.0.2 leaves the name, then its node stops: its dial is not
    // redialed (the attempt counter stands still), the others stay up.
    td_write_hosts("127.0.0.3 brg-seeds\n127.0.0.4 brg-seeds\n");
    TU_WAIT_UNTIL(td_last_line_has("resolves to", "127.0.0.3", "127.0.0.2"), TU_WAIT_MS);
    ck_assert_int_eq(brg_system_destroy(&td_sys[0]), BRG_OK);
    td_node[0] = NULL;
    brg_ref_t peers[8];
    TU_WAIT_UNTIL(brg_node_peers(td_node[2], peers, 8) == 2, TU_WAIT_MS);
    tu_sleep_ms(300);
    uint64_t before = td_stats(2).reconnect_attempts;
    tu_sleep_ms(1500);
    ck_assert_uint_eq(td_stats(2).reconnect_attempts, before);
    ck_assert(td_sees(2, 1) && td_sees(2, 3));
    // Steady resolutions that change nothing log nothing.
    ck_assert_int_le(td_count_lines("brg-seeds", "resolves to"), 3);
}
END_TEST

//  brg_node_connect with a wait on a name returns when one of its addresses
//  is up, with that node's ref.
START_TEST(test_dns_connect_to_a_name_waits_for_the_first_address)
{
    td_write_hosts("127.0.0.2 brg-seeds\n");
    td_make(0, "a", "tcp://127.0.0.2:0", NULL, NULL, 0);
    char seed[64];
    snprintf(seed, sizeof seed, "tcp://brg-seeds:%d", td_port(0));
    td_make(1, "c", "tcp://127.0.0.1:0", NULL, NULL, 0);
    brg_ref_t peer = BRG_REF_NONE;
    ck_assert_int_eq(brg_node_connect(td_node[1], seed, 5000, &peer), BRG_OK);
    ck_assert(brg_ref_eq(peer, brg_node_self(td_node[0])));
    // Again, while it is up: at once.
    peer = BRG_REF_NONE;
    ck_assert_int_eq(brg_node_connect(td_node[1], seed, 5000, &peer), BRG_OK);
    ck_assert(brg_ref_eq(peer, brg_node_self(td_node[0])));
}
END_TEST

//  A name that does not resolve: logged once (not at every retry), the
//  node keeps working, connect with a wait fails BRG_ENETWORK; once the
//  name resolves, its node comes up.
START_TEST(test_dns_a_name_that_does_not_resolve_is_logged_once)
{
    td_write_hosts("127.0.0.1 localhost\n");
    td_make(0, "a", "tcp://127.0.0.2:0", NULL, NULL, 0);
    char seed[64];
    snprintf(seed, sizeof seed, "tcp://brg-nowhere:%d", td_port(0));
    td_make(1, "c", "tcp://127.0.0.1:0", NULL, seed, 300);
    TU_WAIT_UNTIL(td_count_lines("cannot resolve", "brg-nowhere") == 1, TU_WAIT_MS);
    brg_ref_t peer;
    ck_assert_int_eq(brg_node_connect(td_node[1], seed, 5000, &peer), BRG_ENETWORK);
    tu_sleep_ms(2000); // retried with the backoff (up to 300 ms) meanwhile
    ck_assert_int_eq(td_count_lines("cannot resolve", "brg-nowhere"), 1);
    ck_assert_int_eq(brg_node_peers(td_node[1], NULL, 0), 0);
    // It resolves now: the retries find it.
    td_write_hosts("127.0.0.2 brg-nowhere\n");
    TU_WAIT_UNTIL(td_sees(1, 0), TU_WAIT_MS);
    ck_assert_int_eq(td_count_lines("brg-nowhere", "resolves to"), 1);
}
END_TEST

//  Two dials that reach one node do not fight: a node dialed as
//  tcp://127.0.0.1:P and tcp://localhost:P, and a name whose two addresses
//  are one node's. The session that came up first stays; after it ends,
//  one dial brings the node back and the other stands by again.
START_TEST(test_dns_duplicate_dials_of_one_node_do_not_fight)
{
    td_write_hosts("127.0.0.1 localhost\n127.0.0.2 brg-dup\n127.0.0.3 brg-dup\n");
    td_make(0, "b", "tcp://127.0.0.2:0", NULL, NULL, 0);
    int port = td_port(0);
    char ep[64], ep2[64];
    snprintf(ep2, sizeof ep2, "tcp://127.0.0.3:%d", port);
    // b on a second address with the same port (the name's second address).
    ck_assert_int_eq(brg_system_destroy(&td_sys[0]), BRG_OK);
    snprintf(ep, sizeof ep, "tcp://127.0.0.2:%d", port);
    td_make(0, "b", ep, ep2, NULL, 0);
    // Also on 127.0.0.1 for the localhost pair.
    td_make(1, "a", "tcp://127.0.0.1:0", NULL, NULL, 0);
    td_make(2, "b2", "tcp://127.0.0.1:0", NULL, NULL, 0);
    char lo_ip[64], lo_name[64], dup[64];
    int port2 = td_port(2);
    snprintf(lo_ip, sizeof lo_ip, "tcp://127.0.0.1:%d", port2);
    snprintf(lo_name, sizeof lo_name, "tcp://localhost:%d", port2);
    snprintf(dup, sizeof dup, "tcp://brg-dup:%d", port);

    brg_ref_t peer;
    // By IP, then by name: the second returns the node the first reached.
    ck_assert_int_eq(brg_node_connect(td_node[1], lo_ip, 5000, &peer), BRG_OK);
    ck_assert(brg_ref_eq(peer, brg_node_self(td_node[2])));
    ck_assert_int_eq(brg_node_connect(td_node[1], lo_name, 5000, &peer), BRG_OK);
    ck_assert(brg_ref_eq(peer, brg_node_self(td_node[2])));
    // A name whose two addresses are one node: one session.
    ck_assert_int_eq(brg_node_connect(td_node[1], dup, 5000, &peer), BRG_OK);
    ck_assert(brg_ref_eq(peer, brg_node_self(td_node[0])));
    TU_WAIT_UNTIL(td_count_lines("brg-dup", "resolves to") == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(td_count_lines("localhost", "resolves to") == 1, TU_WAIT_MS);

    // No flapping: nothing ends, on either side, for a while.
    tu_sleep_ms(1500);
    ck_assert_uint_eq(td_stats(1).sessions_ended, 0);
    ck_assert_uint_eq(td_stats(1).sessions_started, 2);
    ck_assert_uint_eq(td_stats(0).sessions_ended, 0);
    ck_assert_uint_eq(td_stats(2).sessions_ended, 0);
    ck_assert_uint_eq(td_stats(0).sessions_started, 1);
    ck_assert_uint_eq(td_stats(2).sessions_started, 1);
    ck_assert_int_eq(brg_node_peers(td_node[1], NULL, 0), 2);

    // b2 ends the session: one of the two dials brings it back, the other
    // stands by; then it stays up.
    ck_assert_int_eq(brg_node_disconnect(td_node[2], brg_node_self(td_node[1])), BRG_OK);
    TU_WAIT_UNTIL(td_stats(1).sessions_ended == 1, TU_WAIT_MS);
    TU_WAIT_UNTIL(td_sees(1, 2) && td_sees(2, 1), TU_WAIT_MS);
    tu_sleep_ms(1500);
    ck_assert_uint_eq(td_stats(1).sessions_ended, 1);
    ck_assert_uint_eq(td_stats(1).sessions_started, 3);
    ck_assert_uint_eq(td_stats(2).sessions_ended, 1);
    ck_assert(td_sees(1, 2) && td_sees(1, 0));
}
END_TEST

static Suite *
dns_suite(void)
{
    Suite *s = suite_create("dns");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, td_setup, td_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dns_the_hosts_file_is_ours);
    tcase_add_test(tc, test_dns_a_seed_name_reaches_every_address_and_new_ones);
    tcase_add_test(tc, test_dns_connect_to_a_name_waits_for_the_first_address);
    tcase_add_test(tc, test_dns_a_name_that_does_not_resolve_is_logged_once);
    tcase_add_test(tc, test_dns_duplicate_dials_of_one_node_do_not_fight);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    int rc = td_enter_namespace();
    if (rc == 0)
        rc = tu_run(dns_suite());
    // The bind mounts die with this namespace; the files go now.
    unlink(td_hosts);
    unlink(td_resolv);
    return rc;
}
