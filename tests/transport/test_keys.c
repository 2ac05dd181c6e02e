//  test_keys - CURVE keys without sockets: Z85 against the spec's vector,
//  certificate files in CZMQ's zcert format, the key directory (made once,
//  reused, refused when others may read the secret, one pair when many
//  start at once) and the allow-list (transport/keys.h).
#include "test_util.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/keys.h"

static char tk_dir[64];

static void
tk_setup(void)
{
    snprintf(tk_dir, sizeof tk_dir, "/tmp/brg-keys-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tk_dir));
}

static void
tk_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tk_dir);
    ck_assert_int_eq(system(cmd), 0);
}

//  A deterministic "key pair" for the tests: what matters here is that the
//  files hold what was made, not the cryptography (zmq_io.c uses libzmq's).
static atomic_int tk_gens;
static int
tk_gen(uint8_t pub[BRG__KEY_BYTES], uint8_t sec[BRG__KEY_BYTES])
{
    int n = atomic_fetch_add(&tk_gens, 1) + 1;
    for (int i = 0; i < BRG__KEY_BYTES; i++) {
        pub[i] = (uint8_t)(n * 31 + i);
        sec[i] = (uint8_t)(n * 17 + 3 * i);
    }
    return 0;
}

static void
tk_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_keys_z85_matches_the_spec_vector_both_ways)
{
    // rfc.zeromq.org spec 32: these 8 bytes are "HelloWorld".
    const uint8_t bytes[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    char text[11];
    ck_assert_int_eq(brg__z85_encode(text, bytes, 8), BRG_OK);
    ck_assert_str_eq(text, "HelloWorld");
    uint8_t back[8];
    ck_assert_int_eq(brg__z85_decode(back, "HelloWorld", 10), BRG_OK);
    ck_assert_mem_eq(back, bytes, 8);
    ck_assert_int_eq(brg__z85_encode(text, bytes, 7), BRG_EINVAL);
    ck_assert_int_eq(brg__z85_decode(back, "HelloWorl", 9), BRG_EINVAL);
    ck_assert_int_eq(brg__z85_decode(back, "Hello\"orld", 10), BRG_EINVAL); // not Z85
    ck_assert_int_eq(brg__z85_decode(back, "%%%%%", 5), BRG_EINVAL);        // over 2^32
    // Every 32-byte key survives the trip (random bytes, fixed seed).
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 1000; round++) {
        uint8_t k[32], k2[32];
        for (int i = 0; i < 32; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            k[i] = (uint8_t)x;
        }
        char z[41];
        ck_assert_int_eq(brg__z85_encode(z, k, 32), BRG_OK);
        ck_assert_uint_eq(strlen(z), 40);
        ck_assert_int_eq(brg__key_from_text(k2, z), BRG_OK);
        ck_assert_mem_eq(k, k2, 32);
    }
}
END_TEST

START_TEST(test_keys_reads_a_czmq_certificate_and_refuses_bad_ones)
{
    // As CZMQ's zcert_save_public writes it (comments, metadata, curve).
    const char *czmq = "#   ****  Generated on 2026-01-01 10:00:00 by CZMQ  ****\n"
                       "#   ZeroMQ CURVE Public Certificate\n"
                       "#   Exchange securely, or use a secure mechanism to verify the contents\n"
                       "\n"
                       "metadata\n"
                       "    name = \"worker-7\"\n"
                       "curve\n"
                       "    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n";
    brg__cert_t c;
    const char *why = NULL;
    ck_assert_int_eq(brg__cert_parse(czmq, strlen(czmq), &c, &why), BRG_OK);
    ck_assert_str_eq(c.name, "worker-7");
    ck_assert_int_eq(c.role, BRG_KEY_CLIENT); // no role: least privilege
    ck_assert(!c.has_sec);
    uint8_t want[32];
    ck_assert_int_eq(brg__key_from_text(want, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"), BRG_OK);
    ck_assert_mem_eq(c.pub, want, 32);

    const char *node = "metadata\n\trole = node\r\ncurve\n    public-key = "
                       "'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7'  # a comment\n";
    ck_assert_int_eq(brg__cert_parse(node, strlen(node), &c, &why), BRG_OK);
    ck_assert_int_eq(c.role, BRG_KEY_NODE);
    // An operator's key (brgctl): role admin.
    const char *admin = "metadata\n    role = \"admin\"\ncurve\n    public-key = "
                        "\"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n";
    ck_assert_int_eq(brg__cert_parse(admin, strlen(admin), &c, &why), BRG_OK);
    ck_assert_int_eq(c.role, BRG_KEY_ADMIN);

    const char *bad[] = {
        "metadata\n    name = \"x\"\n",                                            // no key
        "curve\n    public-key = \"short\"\n",                                     // not 40
        "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\"\"\n", // quote in it
        "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n",    // unterminated
        "metadata\n    role = \"root\"\ncurve\n    public-key = "
        "\"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n", // unknown role
        "metadata\n    name = "
        "\"0123456789012345678901234567890123456789012345678901234567890123\"\n"
        "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n", // name of 64
        "curve\n    secret-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\"\n",  // bad secret
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        ck_assert_msg(brg__cert_parse(bad[i], strlen(bad[i]), &c, &why) == BRG_EINVAL,
                      "bad certificate %zu was accepted", i);
        ck_assert_ptr_nonnull(why);
    }
    // A key in the public-key place of the "curve" section only.
    const char *wrong_section = "metadata\n    public-key = "
                                "\"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n";
    ck_assert_int_eq(brg__cert_parse(wrong_section, strlen(wrong_section), &c, &why), BRG_EINVAL);
}
END_TEST

START_TEST(test_keys_saved_certificates_read_back_and_the_secret_is_0600)
{
    brg__cert_t c, back;
    memset(&c, 0, sizeof c);
    tk_gen(c.pub, c.sec);
    c.has_sec = true;
    c.role = BRG_KEY_NODE;
    snprintf(c.name, sizeof c.name, "node-a");
    char path[128], spath[140];
    snprintf(path, sizeof path, "%s/a.key", tk_dir);
    snprintf(spath, sizeof spath, "%s_secret", path);
    umask(0); // the files' modes must not depend on it
    ck_assert_int_eq(brg__cert_save(path, &c), BRG_OK);
    umask(022);
    struct stat st;
    ck_assert_int_eq(stat(spath, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0644);
    ck_assert_int_eq(brg__cert_load(path, &back, NULL), BRG_OK);
    ck_assert_mem_eq(back.pub, c.pub, 32);
    ck_assert(!back.has_sec);
    ck_assert_str_eq(back.name, "node-a");
    ck_assert_int_eq(back.role, BRG_KEY_NODE);
    c.role = BRG_KEY_ADMIN; // each role writes and reads back
    ck_assert_int_eq(brg__cert_save(path, &c), BRG_OK);
    ck_assert_int_eq(brg__cert_load(path, &back, NULL), BRG_OK);
    ck_assert_int_eq(back.role, BRG_KEY_ADMIN);
    c.role = BRG_KEY_NODE;
    ck_assert_int_eq(brg__cert_save(path, &c), BRG_OK);
    ck_assert_int_eq(brg__cert_load(spath, &back, NULL), BRG_OK);
    ck_assert(back.has_sec);
    ck_assert_mem_eq(back.sec, c.sec, 32);
    ck_assert_mem_eq(back.pub, c.pub, 32);
    snprintf(path, sizeof path, "%s/none.key", tk_dir);
    ck_assert_int_eq(brg__cert_load(path, &back, NULL), BRG_ENOTFOUND);
}
END_TEST

START_TEST(test_keys_key_directory_is_made_once_and_reused)
{
    char dir[128], why[512];
    snprintf(dir, sizeof dir, "%s/deep/er", tk_dir); // parents are made too
    brg__cert_t a, b;
    int gens = atomic_load(&tk_gens);
    ck_assert_int_eq(brg__keydir_open(dir, "n1", tk_gen, &a, why, sizeof why), BRG_OK);
    ck_assert_int_eq(atomic_load(&tk_gens), gens + 1);
    ck_assert(a.has_sec);
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    ck_assert_int_eq(brg__keydir_open(dir, "n2", tk_gen, &b, why, sizeof why), BRG_OK);
    ck_assert_int_eq(atomic_load(&tk_gens), gens + 1); // reused, not made again
    ck_assert_mem_eq(a.pub, b.pub, 32);
    ck_assert_mem_eq(a.sec, b.sec, 32);
    // The public certificate holds the same key.
    char path[160];
    snprintf(path, sizeof path, "%s/node.key", dir);
    ck_assert_int_eq(brg__cert_load(path, &b, NULL), BRG_OK);
    ck_assert_mem_eq(a.pub, b.pub, 32);
    ck_assert_str_eq(b.name, "n1");
    // A secret others may read is refused, with the file and the fix named.
    snprintf(path, sizeof path, "%s/node.key_secret", dir);
    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_int_eq(brg__keydir_open(dir, "n1", tk_gen, &b, why, sizeof why), BRG_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "node.key_secret"));
    ck_assert_ptr_nonnull(strstr(why, "chmod 600"));
    // A path that is a file, not a directory.
    ck_assert_int_eq(brg__keydir_open(path, "n1", tk_gen, &b, why, sizeof why), BRG_EINVAL);
}
END_TEST

typedef struct {
    const char *dir;
    brg__cert_t cert;
    int rc;
} tk_opener_t;

static void *
tk_open_thread(void *arg)
{
    tk_opener_t *o = arg;
    char why[512];
    o->rc = brg__keydir_open(o->dir, "race", tk_gen, &o->cert, why, sizeof why);
    return NULL;
}

START_TEST(test_keys_nodes_starting_together_agree_on_one_pair)
{
    // Repeatedly: 8 threads open one new directory at once; all must end
    // with the pair that is on disk (the link(2) in keydir_open decides).
    for (int round = 0; round < 20; round++) {
        char dir[128];
        snprintf(dir, sizeof dir, "%s/race-%d", tk_dir, round);
        tk_opener_t o[8];
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
            o[i].dir = dir;
            ck_assert_int_eq(pthread_create(&t[i], NULL, tk_open_thread, &o[i]), 0);
        }
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        char path[160];
        snprintf(path, sizeof path, "%s/node.key_secret", dir);
        brg__cert_t disk;
        ck_assert_int_eq(brg__cert_load(path, &disk, NULL), BRG_OK);
        for (int i = 0; i < 8; i++) {
            ck_assert_int_eq(o[i].rc, BRG_OK);
            ck_assert_mem_eq(o[i].cert.pub, disk.pub, 32);
            ck_assert_mem_eq(o[i].cert.sec, disk.sec, 32);
        }
    }
}
END_TEST

START_TEST(test_keys_allow_list_by_api_and_by_directory)
{
    brg__keys_t *k = brg__keys_new();
    ck_assert_ptr_nonnull(k);
    uint8_t a[32], b[32], c[32], s[32];
    tk_gen(a, s);
    tk_gen(b, s);
    tk_gen(c, s);
    ck_assert_int_eq(brg__keys_allow(k, a, "api-a", BRG_KEY_CLIENT, false), BRG_OK);
    // The directory: b as a node, c as a client; a secret file, a dot file
    // and a file that is not a certificate are not let in.
    char dir[128], path[200];
    snprintf(dir, sizeof dir, "%s/allowed", tk_dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    brg__cert_t cb = {.has_sec = false, .role = BRG_KEY_NODE};
    memcpy(cb.pub, b, 32);
    snprintf(cb.name, sizeof cb.name, "node-b");
    snprintf(path, sizeof path, "%s/b.key", dir);
    ck_assert_int_eq(brg__cert_save(path, &cb), BRG_OK);
    brg__cert_t cc = {.has_sec = true, .role = BRG_KEY_CLIENT};
    memcpy(cc.pub, c, 32);
    snprintf(cc.name, sizeof cc.name, "cli");
    snprintf(path, sizeof path, "%s/c.key", dir);
    ck_assert_int_eq(brg__cert_save(path, &cc), BRG_OK); // c.key and c.key_secret
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    tk_write(path, "not a certificate\n");
    snprintf(path, sizeof path, "%s/.hidden", dir);
    tk_write(path, "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n");
    ck_assert_int_eq(brg__keys_load_dir(k, dir, NULL, NULL), 2);
    ck_assert_uint_eq(brg__keys_count(k), 3);
    brg__key_entry_t e;
    ck_assert_int_eq(brg__keys_lookup(k, b, &e), BRG_OK);
    ck_assert_str_eq(e.name, "node-b");
    ck_assert_int_eq(e.role, BRG_KEY_NODE);
    ck_assert(e.from_dir);
    ck_assert_int_eq(brg__keys_lookup(k, c, &e), BRG_OK);
    ck_assert_int_eq(e.role, BRG_KEY_CLIENT);
    ck_assert_int_eq(brg__keys_by_name(k, "node-b", BRG_KEY_NODE, &e), BRG_OK);
    ck_assert_int_eq(brg__keys_by_name(k, "node-b", BRG_KEY_CLIENT, &e), BRG_ENOTFOUND);
    // A file removed is a key revoked at the next load; API keys stay.
    uint64_t gen = brg__keys_generation(k);
    snprintf(path, sizeof path, "%s/b.key", dir);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(brg__keys_load_dir(k, dir, NULL, NULL), 1);
    ck_assert_uint_gt(brg__keys_generation(k), gen);
    ck_assert_int_eq(brg__keys_lookup(k, b, NULL), BRG_ENOTFOUND);
    ck_assert_int_eq(brg__keys_lookup(k, a, NULL), BRG_OK);
    // Revoke by name and by key.
    char z[41];
    brg__z85_encode(z, c, 32);
    ck_assert_int_eq(brg__keys_revoke(k, z), 1);
    ck_assert_int_eq(brg__keys_revoke(k, "api-a"), 1);
    ck_assert_int_eq(brg__keys_revoke(k, "api-a"), BRG_ENOTFOUND);
    ck_assert_uint_eq(brg__keys_count(k), 0);
    ck_assert_int_eq(brg__keys_load_dir(k, "/nonexistent/brg", NULL, NULL), BRG_ENOTFOUND);
    brg__keys_free(&k);
    ck_assert_ptr_null(k);
}
END_TEST

static Suite *
keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 60);
    tcase_add_checked_fixture(core, tk_setup, tk_teardown);
    tcase_add_test(core, test_keys_z85_matches_the_spec_vector_both_ways);
    tcase_add_test(core, test_keys_reads_a_czmq_certificate_and_refuses_bad_ones);
    tcase_add_test(core, test_keys_saved_certificates_read_back_and_the_secret_is_0600);
    tcase_add_test(core, test_keys_key_directory_is_made_once_and_reused);
    tcase_add_test(core, test_keys_nodes_starting_together_agree_on_one_pair);
    tcase_add_test(core, test_keys_allow_list_by_api_and_by_directory);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    return tu_run(keys_suite());
}
