//  test_ref - actor addresses: equality and the text form.
#include <brigade.h>

#include <check.h>
#include <string.h>

static const brg_ref_t s_sample = {0x0011223344556677u, 0x8899aabbccddeeffu, (7ull << 32) | 42};
#define S_SAMPLE_TEXT "00112233-4455-6677-8899-aabbccddeeff/42.7"

START_TEST(test_ref_none_is_only_the_all_zero_ref)
{
    ck_assert(brg_ref_is_none(BRG_REF_NONE));
    ck_assert(!brg_ref_is_none((brg_ref_t){0, 0, 1}));
    ck_assert(!brg_ref_is_none((brg_ref_t){0, 1, 0}));
    ck_assert(!brg_ref_is_none((brg_ref_t){1, 0, 0}));
    ck_assert(!brg_ref_is_none(s_sample));
}
END_TEST

START_TEST(test_ref_eq_compares_node_and_id)
{
    brg_ref_t same = s_sample;
    ck_assert(brg_ref_eq(s_sample, same));
    ck_assert(brg_ref_eq(BRG_REF_NONE, BRG_REF_NONE));
    same.node_hi ^= 1;
    ck_assert(!brg_ref_eq(s_sample, same));
    same = s_sample;
    same.node_lo ^= 1u << 31;
    ck_assert(!brg_ref_eq(s_sample, same));
    same = s_sample;
    same.id += 1ull << 32; // the next generation of the same slot
    ck_assert(!brg_ref_eq(s_sample, same));
}
END_TEST

START_TEST(test_ref_format_writes_uuid_slot_and_generation)
{
    char buf[BRG_REF_STRLEN];
    ck_assert_int_eq(brg_ref_format(s_sample, buf, sizeof buf), (int)strlen(S_SAMPLE_TEXT));
    ck_assert_str_eq(buf, S_SAMPLE_TEXT);

    ck_assert_int_eq(brg_ref_format(BRG_REF_NONE, buf, sizeof buf), 40);
    ck_assert_str_eq(buf, "00000000-0000-0000-0000-000000000000/0.0");

    brg_ref_t max = {UINT64_MAX, UINT64_MAX, UINT64_MAX};
    int len = brg_ref_format(max, buf, sizeof buf);
    ck_assert_str_eq(buf, "ffffffff-ffff-ffff-ffff-ffffffffffff/4294967295.4294967295");
    ck_assert_int_eq(len, 58);
    ck_assert_int_lt(len, BRG_REF_STRLEN);
}
END_TEST

START_TEST(test_ref_format_into_a_too_small_buffer_returns_einval_and_writes_nothing)
{
    char buf[BRG_REF_STRLEN];
    size_t need = strlen(S_SAMPLE_TEXT) + 1;
    for (size_t len = 0; len < need; len++) {
        memset(buf, '#', sizeof buf);
        ck_assert_int_eq(brg_ref_format(s_sample, buf, len), BRG_EINVAL);
        for (size_t i = 0; i < sizeof buf; i++)
            ck_assert_int_eq(buf[i], '#');
    }
    ck_assert_int_eq(brg_ref_format(s_sample, buf, need), (int)need - 1);
    ck_assert_str_eq(buf, S_SAMPLE_TEXT);
}
END_TEST

START_TEST(test_ref_parse_reads_what_format_writes)
{
    brg_ref_t ref;
    ck_assert_int_eq(brg_ref_parse(S_SAMPLE_TEXT, &ref), BRG_OK);
    ck_assert(brg_ref_eq(ref, s_sample));

    // Many refs, including the extremes of every field.
    uint64_t state = 0x2545f4914f6cdd1du;
    for (int i = 0; i < 10000; i++) {
        brg_ref_t in;
        uint64_t *fields[3] = {&in.node_hi, &in.node_lo, &in.id};
        for (int f = 0; f < 3; f++) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *fields[f] = i % 3 == 0 ? (state & 1 ? UINT64_MAX : 0) : state;
        }
        char buf[BRG_REF_STRLEN];
        int len = brg_ref_format(in, buf, sizeof buf);
        ck_assert_int_gt(len, 0);
        brg_ref_t out = BRG_REF_NONE;
        ck_assert_int_eq(brg_ref_parse(buf, &out), BRG_OK);
        ck_assert(brg_ref_eq(in, out));
    }
}
END_TEST

START_TEST(test_ref_parse_rejects_malformed_text_and_leaves_the_ref_untouched)
{
    static const char *bad[] = {
        "",
        "x",
        "00112233-4455-6677-8899-aabbccddeeff",                            // no slot
        "00112233-4455-6677-8899-aabbccddeeff/",                           // empty slot
        "00112233-4455-6677-8899-aabbccddeeff/42",                         // no generation
        "00112233-4455-6677-8899-aabbccddeeff/42.",                        // empty generation
        "00112233-4455-6677-8899-aabbccddeeff/.7",                         // empty slot
        "00112233-4455-6677-8899-aabbccddeeff/42.7x",                      // trailing garbage
        "00112233-4455-6677-8899-aabbccddeeff/42.7 ",                      // trailing space
        "00112233-4455-6677-8899-aabbccddeeff/42.7.1",                     // a third number
        "00112233-4455-6677-8899-aabbccddeeff/42.7/",                      // trailing slash
        " 00112233-4455-6677-8899-aabbccddeeff/42.7",                      // leading space
        "00112233-4455-6677-8899-aabbccddeeff/ 42.7",                      // space before a number
        "00112233-4455-6677-8899-aabbccddeeff/+42.7",                      // sign
        "00112233-4455-6677-8899-aabbccddeeff/-42.7",                      // sign
        "00112233-4455-6677-8899-aabbccddeeff/042.7",                      // leading zero
        "00112233-4455-6677-8899-aabbccddeeff/42.07",                      // leading zero
        "00112233-4455-6677-8899-aabbccddeeff/4294967296.7",               // slot overflows 32 bits
        "00112233-4455-6677-8899-aabbccddeeff/42.4294967296",              // generation overflows
        "00112233-4455-6677-8899-aabbccddeeff/42.99999999999999999999999", // far too long
        "00112233-4455-6677-8899-AABBCCDDEEFF/42.7",                       // uppercase hex
        "00112233-4455-6677-8899-aabbccddeefg/42.7",                       // not hex
        "00112233-4455-6677-8899aabbccddeeff/42.7",                        // missing dash
        "0011223-34455-6677-8899-aabbccddeeff/42.7",   // dash in the wrong place
        "001122334455-6677-8899-aabbccddeeff-/42.7",   // dashes in the wrong places
        "00112233-4455-6677-8899-aabbccddeef/42.7",    // one digit short
        "00112233-4455-6677-8899-aabbccddeeff0/42.7",  // one digit long
        "00112233-4455-6677-8899-aabbccddeeff:42.7",   // wrong separator
        "00112233-4455-6677-8899-aabbccddeeff/42,7",   // wrong separator
        "00112233-4455-6677-8899-aabb",                // cut in the UUID
        "00112233-4455-6677-8899-aabbccddeef",         // cut in the last byte
        "{00112233-4455-6677-8899-aabbccddeeff}/42.7", // braces
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        brg_ref_t ref = {1, 2, 3};
        ck_assert_msg(brg_ref_parse(bad[i], &ref) == BRG_EINVAL, "accepted \"%s\"", bad[i]);
        ck_assert(brg_ref_eq(ref, ((brg_ref_t){1, 2, 3})));
    }
}
END_TEST

START_TEST(test_ref_parse_accepts_the_32_bit_limits)
{
    brg_ref_t ref;
    ck_assert_int_eq(
        brg_ref_parse("00000000-0000-0000-0000-000000000001/4294967295.4294967295", &ref), BRG_OK);
    ck_assert_uint_eq(ref.node_hi, 0);
    ck_assert_uint_eq(ref.node_lo, 1);
    ck_assert_uint_eq(ref.id, UINT64_MAX);
    ck_assert_int_eq(brg_ref_parse("80000000-0000-0000-0000-000000000000/0.1", &ref), BRG_OK);
    ck_assert_uint_eq(ref.node_hi, 0x8000000000000000u);
    ck_assert_uint_eq(ref.id, 1ull << 32);
}
END_TEST

static Suite *
ref_suite(void)
{
    Suite *s = suite_create("ref");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 10);
    tcase_add_test(core, test_ref_none_is_only_the_all_zero_ref);
    tcase_add_test(core, test_ref_eq_compares_node_and_id);
    tcase_add_test(core, test_ref_format_writes_uuid_slot_and_generation);
    tcase_add_test(core, test_ref_format_into_a_too_small_buffer_returns_einval_and_writes_nothing);
    tcase_add_test(core, test_ref_parse_reads_what_format_writes);
    tcase_add_test(core, test_ref_parse_rejects_malformed_text_and_leaves_the_ref_untouched);
    tcase_add_test(core, test_ref_parse_accepts_the_32_bit_limits);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    SRunner *runner = srunner_create(ref_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failures = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failures != 0;
}
