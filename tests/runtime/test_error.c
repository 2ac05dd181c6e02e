//  test_error - error names and texts, and the library version.
#include <brigade.h>

#include <check.h>
#include <stdio.h>
#include <string.h>

//  Every code of the table, from the table itself, so a new code is tested
//  as soon as it is added.
static const struct {
    int code;
    const char *name;
    const char *text;
} s_table[] = {
#define S_ROW(name, code, text) {code, "BRG_" #name, text},
    BRG_ERRNO_MAP(S_ROW)
#undef S_ROW
};
#define S_CODES (sizeof s_table / sizeof s_table[0])

START_TEST(test_error_every_code_has_its_name_and_text)
{
    for (size_t i = 0; i < S_CODES; i++) {
        ck_assert_int_lt(s_table[i].code, 0);
        ck_assert_str_eq(brg_err_name(s_table[i].code), s_table[i].name);
        ck_assert_str_eq(brg_strerror(s_table[i].code), s_table[i].text);
        ck_assert_str_ne(brg_strerror(s_table[i].code), "unknown error");
        ck_assert_str_ne(brg_err_name(s_table[i].code), "BRG_EUNKNOWN");
    }
}
END_TEST

START_TEST(test_error_codes_names_and_texts_are_distinct)
{
    for (size_t i = 0; i < S_CODES; i++) {
        for (size_t j = i + 1; j < S_CODES; j++) {
            ck_assert_int_ne(s_table[i].code, s_table[j].code);
            ck_assert_str_ne(brg_err_name(s_table[i].code), brg_err_name(s_table[j].code));
            ck_assert_str_ne(brg_strerror(s_table[i].code), brg_strerror(s_table[j].code));
        }
    }
}
END_TEST

START_TEST(test_error_enum_values_match_the_table)
{
    ck_assert_int_eq(BRG_OK, 0);
    ck_assert_int_eq(BRG_EINVAL, -1);
    ck_assert_int_eq(BRG_ENOMEM, -2);
    ck_assert_int_eq(BRG_EMSGSIZE, -11);
    ck_assert_int_eq(BRG_ESYS, -16);
    ck_assert_int_eq(BRG_ENETWORK, -17);
    ck_assert_int_eq(BRG_EHTTP, -18);
    ck_assert_int_eq(BRG_EDEADLK, -19);
    ck_assert_int_eq(BRG_EPERM, -20);
    ck_assert_int_eq(BRG_ECANCELED, -21);
    ck_assert_str_eq(brg_err_name(BRG_ENOMEM), "BRG_ENOMEM");
    ck_assert_str_eq(brg_strerror(BRG_ENOMEM), "out of memory");
}
END_TEST

START_TEST(test_error_ok_has_its_own_name_and_text)
{
    ck_assert_str_eq(brg_err_name(BRG_OK), "BRG_OK");
    ck_assert_str_ne(brg_strerror(BRG_OK), "unknown error");
    ck_assert_uint_gt(strlen(brg_strerror(BRG_OK)), 0);
}
END_TEST

START_TEST(test_error_unknown_codes_give_unknown_error)
{
    static const int unknown[] = {1, 42, -22, -1000, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ck_assert_str_eq(brg_strerror(unknown[i]), "unknown error");
        ck_assert_str_eq(brg_err_name(unknown[i]), "BRG_EUNKNOWN");
    }
}
END_TEST

START_TEST(test_error_version_is_built_from_the_version_macros)
{
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", BRG_VERSION_MAJOR, BRG_VERSION_MINOR,
             BRG_VERSION_PATCH);
    ck_assert_str_eq(brg_version(), expected);
    ck_assert_str_eq(brg_version(), "0.1.0");
    ck_assert_int_eq(BRG_VERSION, 100);
}
END_TEST

static Suite *
error_suite(void)
{
    Suite *s = suite_create("error");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 10);
    tcase_add_test(core, test_error_every_code_has_its_name_and_text);
    tcase_add_test(core, test_error_codes_names_and_texts_are_distinct);
    tcase_add_test(core, test_error_enum_values_match_the_table);
    tcase_add_test(core, test_error_ok_has_its_own_name_and_text);
    tcase_add_test(core, test_error_unknown_codes_give_unknown_error);
    tcase_add_test(core, test_error_version_is_built_from_the_version_macros);
    suite_add_tcase(s, core);
    return s;
}

int
main(void)
{
    SRunner *runner = srunner_create(error_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failures = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failures != 0;
}
