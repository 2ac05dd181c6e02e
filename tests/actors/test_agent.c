//  test_agent - conversations: the history and its trimming rule, and the
//  tool-call loop against the offline backend's scripted chat (parallel
//  tool calls, a tool that times out, one that fails, a dead tool, an
//  unknown tool, the step limit, streaming, usage totals, failed turns that
//  leave no trace, a tool on another node).
#include "test_util.h"

#include "actors/agent_history.h"

//  ---------------------------------------------------------------------------
//  The history (actors/agent_history.h)

static void
ta_add(brg__history_t *h, brg_conv_role_t role, const char *text)
{
    ck_assert_int_eq(brg__history_add(h, role, text, strlen(text),
                                      role == BRG_CONV_TOOL ? "c1" : NULL,
                                      role == BRG_CONV_TOOL ? "calc" : NULL, false, NULL),
                     BRG_OK);
}

//  The roles of the history as a string: "sua" = system, user, assistant.
static const char *
ta_roles(const brg__history_t *h)
{
    static char buf[256];
    size_t i;
    for (i = 0; i < h->n && i < sizeof(buf) - 1; i++)
        buf[i] = "suat"[h->v[i].role];
    buf[i] = '\0';
    return buf;
}

START_TEST(test_history_estimate_counts_messages_text_and_tool_calls)
{
    brg__history_t h = {0};
    ta_add(&h, BRG_CONV_USER, "12345678"); // 4 + 2
    ck_assert_uint_eq(h.tokens, 6);
    ta_add(&h, BRG_CONV_USER, "123456789"); // 4 + 3 (rounded up)
    ck_assert_uint_eq(h.tokens, 13);
    brg__hmsg_t *m;
    ck_assert_int_eq(brg__history_add(&h, BRG_CONV_ASSISTANT, NULL, 0, NULL, NULL, false, &m),
                     BRG_OK);
    ck_assert_uint_eq(m->tokens, 4);
    ck_assert_str_eq(m->content, "");
    // A call: name "calc" (1) + arguments 16 bytes (4) + id "c1" (1).
    ck_assert_int_eq(brg__history_add_call(&h, m, "c1", 2, "calc", 4, "{\"expression\":1}", 16),
                     BRG_OK);
    ck_assert_uint_eq(m->tokens, 10);
    ck_assert_uint_eq(h.tokens, 23);
    brg__history_truncate(&h, 1);
    ck_assert_uint_eq(h.n, 1);
    ck_assert_uint_eq(h.tokens, 6);
    brg__history_free(&h);
}
END_TEST

START_TEST(test_history_trim_by_count_drops_the_oldest_whole_turns_and_keeps_the_system_message)
{
    brg__history_t h = {0};
    h.max_messages = 6;
    ta_add(&h, BRG_CONV_SYSTEM, "be brief");
    ta_add(&h, BRG_CONV_USER, "one");
    ta_add(&h, BRG_CONV_ASSISTANT, "1");
    ta_add(&h, BRG_CONV_USER, "two");
    ta_add(&h, BRG_CONV_ASSISTANT, "calling");
    ta_add(&h, BRG_CONV_TOOL, "2");
    ta_add(&h, BRG_CONV_ASSISTANT, "2");
    ta_add(&h, BRG_CONV_USER, "three");
    ck_assert_str_eq(ta_roles(&h), "suauatau");
    // 8 > 6: turn "one" goes (2 messages): 6 left, within the limit.
    ck_assert_uint_eq(brg__history_trim(&h), 2);
    ck_assert_str_eq(ta_roles(&h), "suatau");
    ck_assert_str_eq(h.v[0].content, "be brief");
    ck_assert_str_eq(h.v[1].content, "two");
    h.max_messages = 3;
    // Turn "two" goes whole (4 messages): its tool result is never kept
    // without the call that asked for it.
    ck_assert_uint_eq(brg__history_trim(&h), 4);
    ck_assert_str_eq(ta_roles(&h), "su");
    ck_assert_uint_eq(h.dropped, 6);
    h.max_messages = 1;
    // Only the turn being answered is left: it stays, over the limit.
    ck_assert_uint_eq(brg__history_trim(&h), 0);
    ck_assert_str_eq(ta_roles(&h), "su");
    brg__history_free(&h);
}
END_TEST

START_TEST(test_history_trim_by_tokens_and_without_a_system_message)
{
    brg__history_t h = {0};
    h.max_tokens = 40;
    char text[81];
    memset(text, 'x', 80);
    text[80] = '\0'; // 4 + 20 = 24 tokens each
    ta_add(&h, BRG_CONV_USER, text);
    ta_add(&h, BRG_CONV_ASSISTANT, "ok"); // 5
    ta_add(&h, BRG_CONV_USER, "short");   // 6
    ck_assert_uint_eq(h.tokens, 35);
    ck_assert_uint_eq(brg__history_trim(&h), 0);
    ta_add(&h, BRG_CONV_ASSISTANT, text); // 59 > 40: turn 1 goes
    ck_assert_uint_eq(brg__history_trim(&h), 2);
    ck_assert_str_eq(ta_roles(&h), "ua");
    ck_assert_uint_eq(h.tokens, 30);
    ck_assert_str_eq(h.v[0].content, "short");
    brg__history_free(&h);
}
END_TEST

Suite *
agent_suite(void)
{
    Suite *s = suite_create("agent");
    TCase *hist = tcase_create("history");
    tcase_add_test(hist, test_history_estimate_counts_messages_text_and_tool_calls);
    tcase_add_test(
        hist, test_history_trim_by_count_drops_the_oldest_whole_turns_and_keeps_the_system_message);
    tcase_add_test(hist, test_history_trim_by_tokens_and_without_a_system_message);
    suite_add_tcase(s, hist);
    return s;
}

int
main(void)
{
    return tu_run(agent_suite());
}
