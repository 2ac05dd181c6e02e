//  test_tool - tools are actors: the call/result protocol, argument
//  readers, brg_tool_check, brg_tool_spawn's behaviour (results, tool
//  errors, malformed calls, a tool on the blocking pool), and the agent
//  example's calculator and document search (examples/agent/tools.c,
//  compiled into this test).
#include "test_util.h"

#include "examples/agent/tools.h"

//  ---------------------------------------------------------------------------
//  The protocol

START_TEST(test_tool_call_and_result_round_trip)
{
    brg_msg_t *call = brg_tool_msg_call("calc", "{\"expression\":\"1+2\"}", "call_1");
    ck_assert_ptr_nonnull(call);
    brg_tool_call_t c;
    ck_assert_int_eq(brg_tool_read_call(call, &c), BRG_OK);
    ck_assert_int_eq((int)c.name_len, 4);
    ck_assert(memcmp(c.name, "calc", 4) == 0);
    ck_assert(memcmp(c.arguments, "{\"expression\":\"1+2\"}", c.arguments_len) == 0);
    ck_assert(memcmp(c.id, "call_1", c.id_len) == 0);
    char buf[16];
    ck_assert_int_eq(brg_tool_arg_str(&c, "expression", buf, sizeof(buf)), BRG_OK);
    ck_assert_str_eq(buf, "1+2");
    ck_assert_int_eq(brg_tool_arg_str(&c, "expression", buf, 3), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_tool_arg_str(&c, "other", buf, sizeof(buf)), BRG_ENOTFOUND);
    double d;
    ck_assert_int_eq(brg_tool_arg_double(&c, "expression", &d), BRG_ETYPE);
    brg_msg_destroy(&call);

    // NULL arguments mean {}; NULL id means "".
    call = brg_tool_msg_call("x", NULL, NULL);
    ck_assert_int_eq(brg_tool_read_call(call, &c), BRG_OK);
    ck_assert_int_eq((int)c.arguments_len, 2);
    ck_assert_int_eq((int)c.id_len, 0);
    ck_assert_int_eq(brg_tool_arg_double(&c, "n", &d), BRG_ENOTFOUND);
    brg_msg_destroy(&call);

    // Arguments that are not a JSON object: every member is missing.
    call = brg_tool_msg_call("x", "[1,2", NULL);
    ck_assert_int_eq(brg_tool_read_call(call, &c), BRG_OK);
    ck_assert_int_eq(brg_tool_arg_str(&c, "a", buf, sizeof(buf)), BRG_ENOTFOUND);
    brg_msg_destroy(&call);

    brg_msg_t *res = NULL;
    ck_assert_int_eq(brg_tool_msg_result(true, "division by zero", 0, &res), BRG_OK);
    brg_tool_result_t r;
    ck_assert_int_eq(brg_tool_read_result(res, &r), BRG_OK);
    ck_assert(r.is_error);
    ck_assert_int_eq((int)r.len, 16);
    ck_assert_int_eq(brg_tool_read_call(res, &c), BRG_ETYPE);
    brg_msg_destroy(&res);

    // Malformed: the right tag, the wrong fields.
    brg_msg_t *bad = brg_msg_new_int(BRG_TOOL_TAG_CALL, 7);
    ck_assert_int_eq(brg_tool_read_call(bad, &c), BRG_EBADMSG);
    brg_msg_destroy(&bad);
    bad = brg_msg_new_str(BRG_TOOL_TAG_RESULT, "no bool");
    ck_assert_int_eq(brg_tool_read_result(bad, &r), BRG_EBADMSG);
    brg_msg_destroy(&bad);
}
END_TEST

START_TEST(test_tool_check_refuses_bad_names_schemas_and_addresses)
{
    brg_ref_t some = {1, 2, 3};
    brg_tool_t t = {"calc", "adds", "{\"type\":\"object\"}", some, BRG_REF_NONE, NULL};
    ck_assert_int_eq(brg_tool_check(&t), BRG_OK);
    t.name = "has space";
    ck_assert_int_eq(brg_tool_check(&t), BRG_EINVAL);
    t.name = "";
    ck_assert_int_eq(brg_tool_check(&t), BRG_EINVAL);
    t.name = "a123456789a123456789a123456789a123456789a123456789a123456789abcde"; // 65
    ck_assert_int_eq(brg_tool_check(&t), BRG_EINVAL);
    t.name = "doc_search-2";
    t.parameters = "[\"not an object\"]";
    ck_assert_int_eq(brg_tool_check(&t), BRG_EINVAL);
    t.parameters = "{broken";
    ck_assert_int_eq(brg_tool_check(&t), BRG_EINVAL);
    t.parameters = NULL;
    ck_assert_int_eq(brg_tool_check(&t), BRG_OK);
    t.ref = BRG_REF_NONE; // no address at all
    ck_assert_int_eq(brg_tool_check(&t), BRG_EINVAL);
    t.actor_name = "tool.search"; // a registered name
    ck_assert_int_eq(brg_tool_check(&t), BRG_OK);
    ck_assert_int_eq(brg_tool_check(NULL), BRG_EINVAL);
}
END_TEST

//  ---------------------------------------------------------------------------
//  brg_tool_spawn

static void
tt_echo(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out)
{
    int *calls = arg;
    (*calls)++; // the tool's own thread, one call at a time
    char text[64];
    if (brg_tool_arg_str(call, "text", text, sizeof(text)) != BRG_OK) {
        brg_tool_errorf(out, "missing 'text' (call %.*s)", (int)call->id_len, call->id);
        return;
    }
    brg_tool_printf(out, "%s", text);
    brg_tool_printf(out, " #%d", *calls);
}

static void
tt_silent(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out)
{
    (void)arg;
    (void)call;
    (void)out;
}

//  Ask a tool from outside: the result, or the ask's error.
static int
tt_call(brg_ref_t tool, const char *name, const char *args, brg_tool_result_t *r, brg_msg_t **reply)
{
    brg_msg_t *call = brg_tool_msg_call(name, args, "id7");
    ck_assert_ptr_nonnull(call);
    int rc = brg_system_ask(tu_sys, tool, &call, 5000, reply);
    if (rc == BRG_OK)
        ck_assert_int_eq(brg_tool_read_result(*reply, r), BRG_OK);
    return rc;
}

START_TEST(test_tool_spawn_answers_results_and_tool_errors)
{
    static int calls;
    brg_ref_t tool;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, "tool.echo", tt_echo, &calls, 0, &tool), BRG_OK);
    brg_ref_t named;
    ck_assert_int_eq(brg_whereis(tu_sys, "tool.echo", &named), BRG_OK);
    ck_assert(brg_ref_eq(named, tool));

    brg_tool_result_t r;
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(tt_call(tool, "echo", "{\"text\":\"hi\"}", &r, &reply), BRG_OK);
    ck_assert(!r.is_error);
    ck_assert_int_eq((int)r.len, 5);
    ck_assert(memcmp(r.text, "hi #1", 5) == 0);
    brg_msg_destroy(&reply);

    ck_assert_int_eq(tt_call(tool, "echo", "{}", &r, &reply), BRG_OK);
    ck_assert(r.is_error);
    ck_assert(memcmp(r.text, "missing 'text' (call id7)", r.len) == 0);
    brg_msg_destroy(&reply);

    // A malformed call is answered with an ask error, and the tool goes on.
    brg_msg_t *bad = brg_msg_new_int(BRG_TOOL_TAG_CALL, 1);
    ck_assert_int_eq(brg_system_ask(tu_sys, tool, &bad, 5000, &reply), BRG_EBADMSG);
    ck_assert_int_eq(tt_call(tool, "echo", "{\"text\":\"again\"}", &r, &reply), BRG_OK);
    ck_assert(memcmp(r.text, "again #3", r.len) == 0);
    brg_msg_destroy(&reply);

    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, NULL, NULL, 0, &tool), BRG_EINVAL);
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, "tool.echo", tt_echo, &calls, 0, &tool),
                     BRG_EEXIST);
}
END_TEST

START_TEST(test_tool_spawn_on_the_blocking_pool_and_with_no_output)
{
    brg_ref_t tool;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, tt_silent, NULL, BRG_SPAWN_BLOCKING, &tool),
                     BRG_OK);
    brg_tool_result_t r;
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(tt_call(tool, "silent", NULL, &r, &reply), BRG_OK);
    ck_assert(!r.is_error);
    ck_assert(memcmp(r.text, "(no output)", r.len) == 0);
    brg_msg_destroy(&reply);
}
END_TEST

//  ---------------------------------------------------------------------------
//  The example's calculator

static double
tt_calc(const char *expr)
{
    double v = 0;
    char err[128];
    int rc = calc_eval(expr, &v, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: %s", expr, err);
    return v;
}

static void
tt_calc_error(const char *expr, const char *want)
{
    double v;
    char err[128];
    ck_assert_msg(calc_eval(expr, &v, err, sizeof(err)) == -1, "%s evaluated", expr);
    ck_assert_msg(strcmp(err, want) == 0, "%s: got '%s', want '%s'", expr, err, want);
}

START_TEST(test_calculator_precedence_parentheses_unary_minus_and_decimals)
{
    ck_assert(tt_calc("1 + 2 * 3") == 7);
    ck_assert(tt_calc("(1 + 2) * 3") == 9);
    ck_assert(tt_calc("10 - 4 - 3") == 3); // left to right
    ck_assert(tt_calc("2 * 3 / 4") == 1.5);
    ck_assert(tt_calc("-3 * -(2 + 1)") == 9);
    ck_assert(tt_calc("--4") == 4);
    ck_assert(tt_calc("+4") == 4);
    ck_assert(tt_calc(".5 + 1.25") == 1.75);
    ck_assert(tt_calc("  ((((7))))  ") == 7);
    ck_assert(fabs(tt_calc("1299.99 * 0.85") - 1104.9915) < 1e-9);
    char buf[64];
    calc_format(tt_calc("1 / 3"), buf, sizeof(buf));
    ck_assert_str_eq(buf, "0.333333333333");
    calc_format(tt_calc("-0 * 5"), buf, sizeof(buf));
    ck_assert_str_eq(buf, "0");
    calc_format(tt_calc("1104.9915 + 0"), buf, sizeof(buf));
    ck_assert_str_eq(buf, "1104.9915");
}
END_TEST

START_TEST(test_calculator_errors_say_what_and_where)
{
    tt_calc_error("1 / (2 - 2)", "division by zero");
    tt_calc_error("(1 + 2", "missing ')'");
    tt_calc_error("1 + 2)", "unexpected ')' at position 6");
    tt_calc_error("2 ^ 3", "unexpected '^' at position 3");
    tt_calc_error("", "empty expression");
    tt_calc_error("   ", "empty expression");
    tt_calc_error("1 +", "unexpected end of expression");
    tt_calc_error("1..2", "unexpected '.' at position 3");
    tt_calc_error("abc", "unexpected 'a' at position 1");
    tt_calc_error("1e400", "unexpected 'e' at position 2");
    char deep[200];
    memset(deep, '(', 100);
    deep[100] = '1';
    memset(deep + 101, ')', 98);
    deep[199] = '\0';
    tt_calc_error(deep, "expression nested too deeply");
    char big[400] = "";
    for (int i = 0; i < 12; i++)
        strcat(big, "99999999999999999999999999999*");
    strcat(big, "9");
    tt_calc_error(big, "result out of range");
}
END_TEST

START_TEST(test_calculator_tool_answers_errors_as_tool_errors)
{
    brg_ref_t calc;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, calc_tool, NULL, 0, &calc), BRG_OK);
    brg_tool_result_t r;
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(tt_call(calc, "calculator", "{\"expression\":\"(12.5 + 7) * 3\"}", &r, &reply),
                     BRG_OK);
    ck_assert(!r.is_error);
    ck_assert_msg(memcmp(r.text, "(12.5 + 7) * 3 = 58.5", r.len) == 0, "%.*s", (int)r.len, r.text);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tt_call(calc, "calculator", "{\"expression\":\"4/0\"}", &r, &reply), BRG_OK);
    ck_assert(r.is_error);
    ck_assert(memcmp(r.text, "error: division by zero in \"4/0\"", r.len) == 0);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tt_call(calc, "calculator", "{\"expr\":\"1\"}", &r, &reply), BRG_OK);
    ck_assert(r.is_error);
    brg_msg_destroy(&reply);
}
END_TEST

//  ---------------------------------------------------------------------------
//  The example's document search, over examples/assistant/docs

START_TEST(test_search_ranks_the_document_that_holds_the_words_first)
{
    char err[256];
    docs_t *docs = docs_load(BRG_AGENT_DOCS, err, sizeof(err));
    ck_assert_msg(docs != NULL, "%s", err);
    char out[4096];
    int n = docs_search(docs, "How do I reset my password?", 3, out, sizeof(out));
    ck_assert_int_ge(n, 1);
    ck_assert_msg(strncmp(out, "1. Support: Frequently Asked Questions (support-faq.txt", 55) == 0,
                  "%s", out);
    ck_assert_msg(strstr(out, "How do I reset my password?") != NULL, "%s", out); // the snippet

    n = docs_search(docs, "mailbox actor messages", 1, out, sizeof(out));
    ck_assert_int_ge(n, 1);
    ck_assert_msg(strncmp(out, "1. Actors, Explained (actors-explained.txt", 42) == 0, "%s", out);
    ck_assert_ptr_null(strchr(out, '\n')); // max 1 result written

    ck_assert_int_eq(docs_search(docs, "zebra quantum", 3, out, sizeof(out)), 0);
    ck_assert_int_eq(docs_search(docs, "the a of", 3, out, sizeof(out)), -1);
    docs_free(docs);

    ck_assert_ptr_null(docs_load("/nonexistent-dir", err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "cannot open /nonexistent-dir"));
}
END_TEST

START_TEST(test_search_tool_answers_no_match_and_bad_arguments_as_tool_errors)
{
    char err[256];
    docs_t *docs = docs_load(BRG_AGENT_DOCS, err, sizeof(err));
    ck_assert_ptr_nonnull(docs);
    brg_ref_t search;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, search_tool, docs, 0, &search), BRG_OK);
    brg_tool_result_t r;
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(
        tt_call(search, "search", "{\"query\":\"importer bug\",\"max_results\":2}", &r, &reply),
        BRG_OK);
    ck_assert(!r.is_error);
    ck_assert_msg(r.len > 30 && memcmp(r.text, "1 of 5 documents match", 22) == 0, "%.*s",
                  (int)r.len, r.text);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tt_call(search, "search", "{\"query\":\"zebra\"}", &r, &reply), BRG_OK);
    ck_assert(r.is_error);
    ck_assert(memcmp(r.text, "no document matches \"zebra\"", r.len) == 0);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tt_call(search, "search", "{\"query\":\"x\",\"max_results\":9}", &r, &reply),
                     BRG_OK);
    ck_assert(r.is_error);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tt_call(search, "search", "{\"query\":7}", &r, &reply), BRG_OK);
    ck_assert(r.is_error);
    brg_msg_destroy(&reply);
    brg_system_destroy(&tu_sys); // the tool stops before its documents go
    docs_free(docs);
}
END_TEST

Suite *
tool_suite(void)
{
    Suite *s = suite_create("tool");
    TCase *proto = tcase_create("protocol");
    tcase_add_test(proto, test_tool_call_and_result_round_trip);
    tcase_add_test(proto, test_tool_check_refuses_bad_names_schemas_and_addresses);
    tcase_add_test(proto, test_calculator_precedence_parentheses_unary_minus_and_decimals);
    tcase_add_test(proto, test_calculator_errors_say_what_and_where);
    tcase_add_test(proto, test_search_ranks_the_document_that_holds_the_words_first);
    suite_add_tcase(s, proto);

    TCase *actors = tcase_create("actors");
    tcase_add_checked_fixture(actors, tu_setup, tu_teardown);
    tcase_set_timeout(actors, 30);
    tcase_add_test(actors, test_tool_spawn_answers_results_and_tool_errors);
    tcase_add_test(actors, test_tool_spawn_on_the_blocking_pool_and_with_no_output);
    tcase_add_test(actors, test_calculator_tool_answers_errors_as_tool_errors);
    tcase_add_test(actors, test_search_tool_answers_no_match_and_bad_arguments_as_tool_errors);
    suite_add_tcase(s, actors);
    return s;
}

int
main(void)
{
    return tu_run(tool_suite());
}
