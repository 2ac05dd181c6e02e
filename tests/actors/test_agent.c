//  test_agent - conversations: the history and its trimming rule, and the
//  tool-call loop against the offline backend's scripted chat (parallel
//  tool calls, a tool that times out, one that fails, a dead tool, an
//  unknown tool, the step limit, streaming, usage totals, failed turns that
//  leave no trace, a tool on another node).
#include "test_util.h"

#include "model_test_server.h"

#include "actors/agent_history.h"

#include <unistd.h>

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

//  ---------------------------------------------------------------------------
//  The conversation, against the offline backend's chat script

//  Tools of the tests, spawned on the blocking pool where they wait.
static atomic_int ta_started; // calls of ta_meet begun
static atomic_int ta_echoes;  // calls of ta_echo

//  Answers only once both of its calls have begun: two calls of one step
//  that were not sent in parallel would wait for each other until the
//  deadline.
static void
ta_meet(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out)
{
    (void)arg;
    atomic_fetch_add(&ta_started, 1);
    uint64_t until = tu_now_ms() + 5000;
    while (atomic_load(&ta_started) < 2 && tu_now_ms() < until)
        tu_sleep_ms(1);
    char who[32] = "?";
    brg_tool_arg_str(call, "who", who, sizeof(who));
    if (atomic_load(&ta_started) < 2)
        brg_tool_errorf(out, "%s met nobody", who);
    else
        brg_tool_printf(out, "%s met", who);
}

static void
ta_echo(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out)
{
    (void)arg;
    atomic_fetch_add(&ta_echoes, 1);
    brg_tool_printf(out, "echo %.*s", (int)call->arguments_len, call->arguments);
}

static int
ta_silent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK; // never answers
}

static int
ta_failing(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_reply_error(ctx, BRG_EFAILED);
    return BRG_OK;
}

static int
ta_crashing(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_EFAILED; // fails without answering
}

static brg_tool_t
ta_tool(const char *name, brg_ref_t ref)
{
    brg_tool_t t = {name, "a test tool", "{\"type\":\"object\"}", ref, BRG_REF_NONE, NULL};
    return t;
}

static brg_ref_t
ta_model(const brg_model_rule_t *rules, size_t n, size_t chunk)
{
    brg_model_offline_opts_t mo;
    brg_model_offline_opts_init(&mo);
    mo.rules = rules;
    mo.n_rules = n;
    if (chunk)
        mo.stream_chunk = chunk;
    brg_ref_t model;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &mo, &model), BRG_OK);
    return model;
}

static brg_ref_t
ta_conv(brg_conv_opts_t *o)
{
    brg_ref_t conv;
    ck_assert_int_eq(brg_conv_spawn_root(tu_sys, o, &conv), BRG_OK);
    return conv;
}

//  Say text; the answer (or error detail) must be `want` with status `status`.
static brg_conv_answer_t
ta_say(brg_ref_t conv, const char *text, int status, const char *want)
{
    char *got = NULL;
    brg_conv_answer_t turn;
    memset(&turn, 0, sizeof(turn));
    int rc = brg_conv_say(tu_sys, conv, text, 10000, NULL, NULL, &got, &turn);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(rc == status, "%s: status %s, want %s (%s)", text, brg_err_name(rc),
                  brg_err_name(status), got);
    if (want)
        ck_assert_msg(strcmp(got, want) == 0, "%s: got '%s', want '%s'", text, got, want);
    free(got);
    return turn;
}

static brg_conv_stats_t
ta_stats(brg_ref_t conv)
{
    brg_conv_stats_t st;
    ck_assert_int_eq(brg_conv_stats(tu_sys, conv, 5000, &st), BRG_OK);
    return st;
}

//  The history as one line per message: "role: content" with tool calls
//  as " [name(arguments)]" and tool messages as "tool name: content".
static char *
ta_history(brg_ref_t conv)
{
    brg_msg_t *ask = brg_msg_new(BRG_CONV_TAG_HISTORY), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, conv, &ask, 5000, &reply), BRG_OK);
    size_t pos, n;
    ck_assert_int_eq(brg_conv_history_count(reply, &pos, &n), BRG_OK);
    static char buf[8192];
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        brg_conv_entry_t e;
        ck_assert_int_eq(brg_conv_history_next(reply, &pos, &e), BRG_OK);
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s%s%.*s: %.*s", i ? "\n" : "",
                                 brg_conv_role_name(e.role), e.name_len ? " " : "", (int)e.name_len,
                                 e.name, (int)e.len, e.content);
        for (size_t k = 0; k < e.n_calls; k++)
            used += (size_t)snprintf(buf + used, sizeof(buf) - used, " [%.*s(%.*s)]",
                                     (int)e.calls[k].name_len, e.calls[k].name,
                                     (int)e.calls[k].arguments_len, e.calls[k].arguments);
    }
    brg_msg_destroy(&reply);
    return buf;
}

START_TEST(test_conv_answers_and_keeps_the_history_of_every_turn)
{
    brg_model_rule_t rules[] = {{.contains = "hello", .text = "Hi! How can I help?"}};
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 1, 0);
    o.system = "You are terse.";
    brg_ref_t conv = ta_conv(&o);
    brg_conv_answer_t t = ta_say(conv, "hello", BRG_OK, "Hi! How can I help?");
    ck_assert_int_eq(t.steps, 1);
    ck_assert_int_eq(t.tool_calls, 0);
    ck_assert_int_gt(t.prompt_tokens, 0);
    ck_assert_int_gt(t.completion_tokens, 0);
    ta_say(conv, "what now?", BRG_OK, "You said: what now?");
    ck_assert_str_eq(ta_history(conv), "system: You are terse.\n"
                                       "user: hello\n"
                                       "assistant: Hi! How can I help?\n"
                                       "user: what now?\n"
                                       "assistant: You said: what now?");
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.turns, 2);
    ck_assert_uint_eq(st.steps, 2);
    ck_assert_uint_eq(st.messages, 5);
    ck_assert_uint_gt(st.history_tokens, 5 * 4);
}
END_TEST

START_TEST(test_conv_sends_the_calls_of_one_step_to_their_tools_in_parallel)
{
    // Two tool actors that each answer only once both have been called: if
    // the conversation waited for one before calling the other, the first
    // would wait past the tools' deadline.
    brg_model_tool_call_t calls[] = {
        {"call_a", 0, "meet_a", 0, "{\"who\":\"a\"}", 0},
        {"call_b", 0, "meet_b", 0, "{\"who\":\"b\"}", 0},
    };
    brg_model_rule_t rules[] = {
        {.contains = "meet", .turn = 1, .tool_calls = calls, .n_tool_calls = 2},
        {.after_tool = true, .text = "Done: {tool}"},
    };
    brg_ref_t a, b;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, ta_meet, NULL, BRG_SPAWN_BLOCKING, &a),
                     BRG_OK);
    ck_assert_int_eq(
        brg_tool_spawn_root(tu_sys, "tool.meet_b", ta_meet, NULL, BRG_SPAWN_BLOCKING, &b), BRG_OK);
    brg_tool_t tools[] = {ta_tool("meet_a", a), ta_tool("meet_b", BRG_REF_NONE)};
    tools[1].actor_name = "tool.meet_b"; // by registered name, looked up per call
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 2, 0);
    o.tool_timeout_ms = 3000;
    o.tools = tools;
    o.n_tools = 2;
    brg_ref_t conv = ta_conv(&o);
    brg_conv_answer_t t = ta_say(conv, "let them meet", BRG_OK, "Done: b met");
    ck_assert_int_eq(t.steps, 2);
    ck_assert_int_eq(t.tool_calls, 2);
    ck_assert_str_eq(ta_history(conv),
                     "user: let them meet\n"
                     "assistant:  [meet_a({\"who\":\"a\"})] [meet_b({\"who\":\"b\"})]\n"
                     "tool meet_a: a met\n"
                     "tool meet_b: b met\n"
                     "assistant: Done: b met");
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.tool_calls, 2);
    ck_assert_uint_eq(st.tool_errors, 0);
}
END_TEST

START_TEST(test_conv_reports_timeouts_failures_dead_and_unknown_tools_to_the_model)
{
    brg_model_tool_call_t calls[] = {
        {"c1", 0, "silent", 0, "{}", 0},      {"c2", 0, "failing", 0, "{}", 0},
        {"c3", 0, "dead", 0, "{}", 0},        {"c4", 0, "nosuch", 0, "{}", 0},
        {"c5", 0, "echo", 0, "{\"x\":1}", 0}, {"c6", 0, "crashing", 0, "{}", 0},
    };
    brg_model_rule_t rules[] = {
        {.turn = 1, .tool_calls = calls, .n_tool_calls = 6},
        {.after_tool = true, .text = "Coped."},
    };
    brg_ref_t silent = tu_spawn(tu_sys, ta_silent);
    brg_ref_t failing = tu_spawn(tu_sys, ta_failing);
    brg_ref_t dead = tu_spawn(tu_sys, ta_silent);
    ck_assert_int_eq(brg_actor_stop(tu_sys, dead), BRG_OK);
    TU_WAIT_DEAD(tu_sys, dead);
    brg_ref_t echo;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, ta_echo, NULL, 0, &echo), BRG_OK);
    brg_tool_t tools[] = {ta_tool("silent", silent), ta_tool("failing", failing),
                          ta_tool("dead", dead), ta_tool("echo", echo),
                          ta_tool("crashing", tu_spawn(tu_sys, ta_crashing))};
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 2, 0);
    o.tool_timeout_ms = 300;
    o.tools = tools;
    o.n_tools = 5;
    brg_ref_t conv = ta_conv(&o);
    uint64_t start = tu_now_ms();
    ta_say(conv, "try everything", BRG_OK, "Coped.");
    (void)start;
    const char *h = ta_history(conv);
    ck_assert_msg(strstr(h, "tool silent: error: tool 'silent' timed out after 300 ms\n"), "%s", h);
    ck_assert_msg(strstr(h, "tool failing: error: tool 'failing' failed: actor failed\n"), "%s", h);
    ck_assert_msg(strstr(h, "tool dead: error: tool 'dead' is not available"), "%s", h);
    ck_assert_msg(strstr(h, "tool nosuch: error: unknown tool 'nosuch'\n"), "%s", h);
    ck_assert_msg(strstr(h, "tool echo: echo {\"x\":1}\n"), "%s", h);
    // A tool actor that fails while it handles the call: gone, at once.
    ck_assert_msg(
        strstr(h, "tool crashing: error: tool 'crashing' stopped before it answered (failed"), "%s",
        h);
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.tool_calls, 6);
    ck_assert_uint_eq(st.tool_errors, 5);
    ck_assert_uint_eq(st.turns, 1);
}
END_TEST

START_TEST(test_conv_step_limit_fails_the_turn_and_leaves_no_trace)
{
    brg_model_tool_call_t calls[] = {{"c", 0, "echo", 0, "{}", 0}};
    brg_model_rule_t rules[] = {
        {.contains = "loop", .tool_calls = calls, .n_tool_calls = 1}, // for ever
    };
    brg_ref_t echo;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, ta_echo, NULL, 0, &echo), BRG_OK);
    brg_tool_t tools[] = {ta_tool("echo", echo)};
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 1, 0);
    o.system = "sys";
    o.max_steps = 3;
    o.tools = tools;
    o.n_tools = 1;
    brg_ref_t conv = ta_conv(&o);
    ta_say(conv, "hi", BRG_OK, "You said: hi");
    brg_conv_answer_t t = ta_say(conv, "loop please", BRG_ERANGE,
                                 "step limit reached (3 model calls without a final answer)");
    ck_assert_int_eq(t.steps, 3);
    ck_assert_int_eq(t.tool_calls, 2);
    ck_assert_int_eq(atomic_load(&ta_echoes), 2);
    // The failed turn is gone: the history is as it was before it.
    ck_assert_str_eq(ta_history(conv), "system: sys\nuser: hi\nassistant: You said: hi");
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.turns, 1);
    ck_assert_uint_eq(st.failed_turns, 1);
    ck_assert_uint_eq(st.steps, 4);
    ck_assert_uint_eq(st.messages, 3);
    // And the conversation goes on.
    ta_say(conv, "again", BRG_OK, "You said: again");
}
END_TEST

START_TEST(test_conv_fails_a_turn_whose_model_asks_for_too_many_calls_at_once)
{
    brg_model_tool_call_t calls[BRG_CONV_CALLS_MAX + 1];
    char ids[BRG_CONV_CALLS_MAX + 1][8];
    for (int i = 0; i <= BRG_CONV_CALLS_MAX; i++) {
        snprintf(ids[i], sizeof ids[i], "c%d", i);
        brg_model_tool_call_t c = {ids[i], 0, "echo", 0, "{}", 0};
        calls[i] = c;
    }
    brg_model_rule_t rules[] = {{.tool_calls = calls, .n_tool_calls = BRG_CONV_CALLS_MAX + 1}};
    brg_ref_t echo;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, ta_echo, NULL, 0, &echo), BRG_OK);
    brg_tool_t tools[] = {ta_tool("echo", echo)};
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 1, 0);
    o.tools = tools;
    o.n_tools = 1;
    brg_ref_t conv = ta_conv(&o);
    ta_say(conv, "many", BRG_ERANGE, "the model asked for 17 tool calls at once (at most 16)");
    ck_assert_int_eq(atomic_load(&ta_echoes), 0); // none was sent
    ck_assert_str_eq(ta_history(conv), "");
}
END_TEST

//  Events seen by brg_conv_say's callback, on this thread.
static char ta_events[4096];
static char ta_streamed[1024];

static int ta_last_text_step; // the step of the last event if it was text, else 0

static void
ta_on_event(void *arg, const brg_conv_event_t *ev)
{
    (*(int *)arg)++;
    size_t n = strlen(ta_events);
    if (ev->kind == BRG_CONV_EV_TEXT) {
        strncat(ta_streamed, ev->text, ev->len);
        if (ta_last_text_step != ev->step) // one marker per run of text fragments
            snprintf(ta_events + n, sizeof(ta_events) - n, "text[%d] ", ev->step);
        ta_last_text_step = ev->step;
        return;
    }
    ta_last_text_step = 0;
    snprintf(ta_events + n, sizeof(ta_events) - n, "%s[%d] %.*s(%.*s)%s%.*s ",
             ev->kind == BRG_CONV_EV_TOOL_CALL ? "call" : "result", ev->step, (int)ev->name_len,
             ev->name, (int)ev->id_len, ev->id, ev->kind == BRG_CONV_EV_TOOL_RESULT ? "=" : "",
             ev->kind == BRG_CONV_EV_TOOL_RESULT ? (int)ev->len : 0, ev->text);
}

START_TEST(test_conv_streams_the_model_deltas_and_tool_events_of_every_step)
{
    brg_model_tool_call_t calls[] = {{"c9", 0, "echo", 0, "{\"n\":42}", 0}};
    brg_model_rule_t rules[] = {
        {.turn = 1, .text = "Let me check.", .tool_calls = calls, .n_tool_calls = 1},
        {.after_tool = true, .text = "The tool said: {tool}. That is all."},
    };
    brg_ref_t echo;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, ta_echo, NULL, 0, &echo), BRG_OK);
    brg_tool_t tools[] = {ta_tool("echo", echo)};
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 2, 4); // 4-byte fragments
    o.tools = tools;
    o.n_tools = 1;
    brg_ref_t conv = ta_conv(&o);
    int events = 0;
    char *text = NULL;
    brg_conv_answer_t t;
    ck_assert_int_eq(brg_conv_say(tu_sys, conv, "go", 10000, ta_on_event, &events, &text, &t),
                     BRG_OK);
    ck_assert_str_eq(text, "The tool said: echo {\"n\":42}. That is all.");
    // Every text fragment of both steps came, in order, before the answer.
    ck_assert_str_eq(ta_streamed, "Let me check.The tool said: echo {\"n\":42}. That is all.");
    ck_assert_msg(strcmp(ta_events, "text[1] call[1] echo(c9) result[1] echo(c9)=echo {\"n\":42} "
                                    "text[2] ") == 0,
                  "%s", ta_events);
    ck_assert_int_gt(events, 10); // fragments of 4 bytes, not one piece
    ck_assert_int_eq(t.steps, 2);
    free(text);
    // The assistant message of step 1 keeps its text and its call.
    ck_assert_str_eq(ta_history(conv), "user: go\n"
                                       "assistant: Let me check. [echo({\"n\":42})]\n"
                                       "tool echo: echo {\"n\":42}\n"
                                       "assistant: The tool said: echo {\"n\":42}. That is all.");
}
END_TEST

//  Cancels the turn at its first text fragment (from brg_conv_say's thread).
static void
ta_cancel_on_first_text(void *arg, const brg_conv_event_t *ev)
{
    brg_ref_t *conv = arg;
    if (ev->kind != BRG_CONV_EV_TEXT || ta_streamed[0])
        return;
    strncat(ta_streamed, ev->text, ev->len);
    brg_msg_t *cancel = brg_msg_new(BRG_CONV_TAG_CANCEL);
    ck_assert_int_eq(brg_system_send(tu_sys, *conv, &cancel), BRG_OK);
}

START_TEST(test_conv_cancel_stops_the_model_stream_and_fails_the_turn_without_a_trace)
{
    brg_model_rule_t rules[] = {
        {.contains = "long",
         .text = "This answer is streamed slowly, one small piece at a time, "
                 "so there is time to cancel it long before its end."},
    };
    brg_model_offline_opts_t mo;
    brg_model_offline_opts_init(&mo);
    mo.rules = rules;
    mo.n_rules = 1;
    mo.stream_chunk = 4;
    mo.stream_interval_ms = 50; // about 30 fragments: 1.5 s
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &mo, &o.model), BRG_OK);
    brg_ref_t conv = ta_conv(&o);
    ta_say(conv, "short", BRG_OK, "You said: short");
    char *got = NULL;
    int rc =
        brg_conv_say(tu_sys, conv, "a long one", 10000, ta_cancel_on_first_text, &conv, &got, NULL);
    ck_assert_msg(rc == BRG_ECANCELED, "%s: %s", brg_err_name(rc), got);
    ck_assert_str_eq(got, "the turn was cancelled");
    free(got);
    ck_assert_str_eq(ta_streamed, "This");
    // The backend stopped the stream; the turn left no trace.
    brg_model_stats_t ms;
    do {
        ck_assert_int_eq(brg_model_stats(tu_sys, o.model, 5000, &ms), BRG_OK);
        tu_sleep_ms(1);
    } while (ms.cancelled == 0 && ms.in_flight > 0);
    ck_assert_uint_eq(ms.cancelled, 1);
    ck_assert_str_eq(ta_history(conv), "user: short\nassistant: You said: short");
    // Asked, a cancel says whether a turn was running; the next turn works.
    brg_msg_t *cancel = brg_msg_new(BRG_CONV_TAG_CANCEL), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, conv, &cancel, 5000, &reply), BRG_OK);
    size_t pos = 0;
    bool running = true;
    ck_assert_int_eq(brg_msg_read_bool(reply, &pos, &running), BRG_OK);
    ck_assert(!running);
    brg_msg_destroy(&reply);
    ta_say(conv, "again", BRG_OK, "You said: again");
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.failed_turns, 1);
    ck_assert_uint_eq(st.turns, 2);
}
END_TEST

START_TEST(test_conv_a_streamed_model_call_past_its_deadline_is_cancelled_at_the_backend)
{
    char text[257];
    memset(text, 'z', 256);
    text[256] = '\0';
    brg_model_rule_t rules[] = {{.text = text}};
    brg_model_offline_opts_t mo;
    brg_model_offline_opts_init(&mo);
    mo.rules = rules;
    mo.n_rules = 1;
    mo.stream_chunk = 4;
    mo.stream_interval_ms = 50; // 64 fragments: 3.2 s, past the 1.1 s the ask waits
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &mo, &o.model), BRG_OK);
    o.model_timeout_ms = 100; // the ask waits this plus a grace of 1 s
    brg_ref_t conv = ta_conv(&o);
    int events = 0;
    char *got = NULL;
    int rc = brg_conv_say(tu_sys, conv, "slow", 10000, ta_on_event, &events, &got, NULL);
    ck_assert_msg(rc == BRG_ETIMEDOUT, "%s: %s", brg_err_name(rc), got);
    ck_assert_str_eq(got, "the model call failed: deadline expired");
    free(got);
    ck_assert_int_gt(events, 0);
    brg_model_stats_t ms;
    do {
        ck_assert_int_eq(brg_model_stats(tu_sys, o.model, 5000, &ms), BRG_OK);
        tu_sleep_ms(1);
    } while (ms.cancelled == 0 && ms.in_flight > 0);
    ck_assert_uint_eq(ms.cancelled, 1);
}
END_TEST

START_TEST(test_conv_usage_totals_are_the_sum_of_the_turns)
{
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(NULL, 0, 0);
    brg_ref_t conv = ta_conv(&o);
    int64_t prompt = 0, completion = 0;
    const char *says[] = {"one", "two two", "three three three"};
    for (int i = 0; i < 3; i++) {
        brg_conv_answer_t t = ta_say(conv, says[i], BRG_OK, NULL);
        ck_assert_int_gt(t.prompt_tokens, 0);
        prompt += t.prompt_tokens;
        completion += t.completion_tokens;
    }
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.prompt_tokens, (uint64_t)prompt);
    ck_assert_uint_eq(st.completion_tokens, (uint64_t)completion);
    ck_assert_uint_gt(st.completion_tokens, 0);
    // The model's own counters agree: every token it counted is ours.
    brg_model_stats_t ms;
    ck_assert_int_eq(brg_model_stats(tu_sys, o.model, 5000, &ms), BRG_OK);
    ck_assert_uint_eq(ms.prompt_tokens, st.prompt_tokens);
    ck_assert_uint_eq(ms.completion_tokens, st.completion_tokens);
}
END_TEST

START_TEST(test_conv_trims_the_history_it_sends_by_whole_turns)
{
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(NULL, 0, 0);
    o.system = "sys";
    o.max_messages = 4;
    brg_ref_t conv = ta_conv(&o);
    ta_say(conv, "a", BRG_OK, "You said: a");
    ta_say(conv, "b", BRG_OK, "You said: b"); // 4 messages before it: turn a goes
    ck_assert_str_eq(ta_history(conv), "system: sys\nuser: b\nassistant: You said: b");
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.dropped, 2);
    ck_assert_uint_eq(st.messages, 3);
}
END_TEST

START_TEST(test_conv_model_errors_carry_their_detail_and_leave_no_trace)
{
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model_name = "model.missing"; // looked up at every step
    brg_ref_t conv = ta_conv(&o);
    ta_say(conv, "hello", BRG_ENOACTOR, "no model backend is registered as 'model.missing'");
    ck_assert_str_eq(ta_history(conv), "");
    // Once it is registered, the same conversation works.
    brg_model_offline_opts_t mo;
    brg_model_offline_opts_init(&mo);
    mo.name = "model.missing";
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &mo, NULL), BRG_OK);
    ta_say(conv, "hello", BRG_OK, "You said: hello");

    // An OpenAI-compatible backend with nothing listening: the network error
    // comes back with its detail.
    brg_model_openai_opts_t oo;
    brg_model_openai_opts_init(&oo);
    oo.url = "http://127.0.0.1:1/v1";
    oo.max_attempts = 1;
    oo.log_errors = false;
    brg_conv_opts_init(&o);
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &oo, &o.model), BRG_OK);
    o.model_timeout_ms = 5000;
    conv = ta_conv(&o);
    char *got = NULL;
    int rc = brg_conv_say(tu_sys, conv, "hello", 20000, NULL, NULL, &got, NULL);
    ck_assert_msg(rc == BRG_ENETWORK, "%s: %s", brg_err_name(rc), got);
    ck_assert_msg(strncmp(got, "the model call failed: network failure", 38) == 0, "%s", got);
    free(got);
    ck_assert_str_eq(ta_history(conv), "");
}
END_TEST

START_TEST(test_conv_refuses_bad_options_and_bad_turns)
{
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    brg_ref_t conv;
    ck_assert_int_eq(brg_conv_spawn_root(tu_sys, &o, &conv), BRG_EINVAL); // no model
    o.model = ta_model(NULL, 0, 0);
    o.max_steps = 0;
    ck_assert_int_eq(brg_conv_spawn_root(tu_sys, &o, &conv), BRG_EINVAL);
    o.max_steps = 8;
    brg_tool_t tools[] = {ta_tool("same", o.model), ta_tool("same", o.model)};
    o.tools = tools;
    o.n_tools = 2;
    ck_assert_int_eq(brg_conv_spawn_root(tu_sys, &o, &conv), BRG_EINVAL); // two of one name
    tools[1].name = "bad name";
    ck_assert_int_eq(brg_conv_spawn_root(tu_sys, &o, &conv), BRG_EINVAL);
    o.n_tools = 0;
    conv = ta_conv(&o);
    ta_say(conv, "\xff\xfe not UTF-8", BRG_EINVAL, "the text is not valid UTF-8");
    brg_msg_t *bad = brg_msg_new_int(BRG_CONV_TAG_SAY, 5), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, conv, &bad, 5000, &reply), BRG_EBADMSG);
    ta_say(conv, "fine", BRG_OK, "You said: fine");

    // brg_conv_say needs threads to run the conversation while it waits.
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.deterministic = true;
    brg_system_t *det = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(det);
    char *got = NULL;
    ck_assert_int_eq(brg_conv_say(det, conv, "hi", 1000, NULL, NULL, &got, NULL), BRG_EINVAL);
    ck_assert_ptr_null(got);
    brg_system_destroy(&det);
}
END_TEST

//  An actor that asks the conversation three turns at once and records the
//  answers in the order they come.
static char ta_order[256];
static atomic_int ta_answered;

static int
ta_on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    brg_conv_answer_t a;
    ck_assert_int_eq(status, BRG_OK);
    ck_assert_int_eq(brg_conv_read_answer(reply, &a), BRG_OK);
    strncat(ta_order, a.text, a.len);
    strcat(ta_order, ";");
    atomic_fetch_add(&ta_answered, 1);
    return BRG_OK;
}

static int
ta_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t conv;
    size_t pos = 0;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &conv), BRG_OK);
    const char *says[] = {"1", "2", "3"};
    for (int i = 0; i < 3; i++) {
        brg_msg_t *say = brg_conv_msg_say(says[i], false);
        ck_assert_int_eq(brg_ask(ctx, conv, &say, 10000, ta_on_answer, NULL), BRG_OK);
    }
    return BRG_OK;
}

static int
ta_on_failed_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    brg_conv_answer_t a;
    ck_assert_int_eq(status, BRG_OK);
    ck_assert_int_eq(brg_conv_read_answer(reply, &a), BRG_OK);
    ck_assert_int_eq(a.status, atomic_load(&ta_answered) == 0 ? BRG_EFAILED : BRG_ENOACTOR);
    atomic_fetch_add(&ta_answered, 1);
    return BRG_OK;
}

//  A model that keeps the first request until told "release", then fails
//  it and stops.
static int
ta_hold_model(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t **kept = brg_state(ctx);
    if (brg_msg_is(msg, "release")) {
        brg_reply_error_to(ctx, *kept, BRG_EFAILED);
        brg_stop(ctx);
        return BRG_OK;
    }
    if (!*kept)
        *kept = brg_msg_dup(msg);
    return BRG_OK;
}

static void
ta_hold_free(void *state)
{
    brg_msg_t **kept = state;
    brg_msg_destroy(kept);
}

//  Asks 200 turns at once.
static int
ta_flood(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t conv;
    size_t pos = 0;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &conv), BRG_OK);
    for (int i = 0; i < 200; i++) {
        brg_msg_t *say = brg_conv_msg_say("x", false);
        ck_assert_int_eq(brg_ask(ctx, conv, &say, 10000, ta_on_failed_answer, NULL), BRG_OK);
    }
    return BRG_OK;
}

START_TEST(test_conv_waiting_turns_that_fail_at_once_are_each_answered)
{
    // The first turn waits on the model while 199 queue behind it; then
    // the model fails it and dies, and the 199 fail at once, one after the
    // other (each brg_ask to the dead model is refused on the spot).
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state_size = sizeof(brg_msg_t *);
    so.state_destroy = ta_hold_free;
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    ck_assert_int_eq(brg_system_spawn(tu_sys, ta_hold_model, &so, &o.model), BRG_OK);
    o.max_queue = 1000;
    brg_ref_t conv = ta_conv(&o);
    brg_ref_t asker = tu_spawn(tu_sys, ta_flood);
    brg_msg_t *go = brg_msg_new("go");
    brg_msg_add_ref(go, conv);
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &go), BRG_OK);
    TU_WAIT_UNTIL(ta_stats(conv).waiting == 199, TU_WAIT_MS);
    ck_assert_int_eq(tu_send_tag(tu_sys, o.model, "release"), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&ta_answered) == 200, TU_WAIT_MS);
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.failed_turns, 200);
    ck_assert_uint_eq(st.waiting, 0);
    ck_assert_uint_eq(st.messages, 0);
}
END_TEST

START_TEST(test_conv_answers_turns_that_arrive_together_one_after_the_other)
{
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(NULL, 0, 0);
    brg_ref_t conv = ta_conv(&o);
    brg_ref_t asker = tu_spawn(tu_sys, ta_asker);
    brg_msg_t *go = brg_msg_new("go");
    brg_msg_add_ref(go, conv);
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &go), BRG_OK);
    TU_WAIT_UNTIL(atomic_load(&ta_answered) == 3, TU_WAIT_MS);
    ck_assert_str_eq(ta_order, "You said: 1;You said: 2;You said: 3;");
    ck_assert_str_eq(ta_history(conv), "user: 1\nassistant: You said: 1\n"
                                       "user: 2\nassistant: You said: 2\n"
                                       "user: 3\nassistant: You said: 3");
}
END_TEST

static brg_limiter_stats_t
ta_limiter_stats(brg_ref_t limiter)
{
    brg_limiter_stats_t st;
    ck_assert_int_eq(brg_limiter_stats(tu_sys, limiter, 5000, &st), BRG_OK);
    return st;
}

START_TEST(test_conv_behind_a_limiter_answers_and_streams_its_turns)
{
    brg_limiter_opts_t lo;
    brg_limiter_opts_init(&lo);
    lo.target = ta_model(NULL, 0, 4); // 4-byte fragments
    lo.max_in_flight = 1;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &lo, &limiter), BRG_OK);
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = limiter;
    brg_ref_t conv = ta_conv(&o);
    ta_say(conv, "through", BRG_OK, "You said: through");
    // Streamed: the conversation asks with stream_to = itself, so the
    // backend's fragments come straight to it, the end through the limiter.
    int events = 0;
    char *got = NULL;
    ck_assert_int_eq(
        brg_conv_say(tu_sys, conv, "stream it please", 10000, ta_on_event, &events, &got, NULL),
        BRG_OK);
    ck_assert_str_eq(got, "You said: stream it please");
    free(got);
    ck_assert_str_eq(ta_streamed, "You said: stream it please");
    ck_assert_int_ge(events, 7); // 26 bytes in fragments of 4
    ck_assert_str_eq(ta_history(conv), "user: through\nassistant: You said: through\n"
                                       "user: stream it please\n"
                                       "assistant: You said: stream it please");
    brg_limiter_stats_t ls = ta_limiter_stats(limiter);
    ck_assert_uint_eq(ls.started, 2);
    ck_assert_uint_eq(ls.answered, 2);
    ck_assert_uint_eq(ls.failed, 0);
    brg_model_stats_t ms;
    ck_assert_int_eq(brg_model_stats(tu_sys, lo.target, 5000, &ms), BRG_OK);
    ck_assert_uint_eq(ms.streams, 1);
}
END_TEST

START_TEST(test_conv_cancel_through_a_limiter_stops_the_backend_stream)
{
    brg_model_rule_t rules[] = {
        {.contains = "long",
         .text = "This answer is streamed slowly, one small piece at a time, "
                 "so there is time to cancel it long before its end."},
    };
    brg_model_offline_opts_t mo;
    brg_model_offline_opts_init(&mo);
    mo.rules = rules;
    mo.n_rules = 1;
    mo.stream_chunk = 4;
    mo.stream_interval_ms = 50; // about 30 fragments: 1.5 s
    brg_ref_t model;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &mo, &model), BRG_OK);
    brg_limiter_opts_t lo;
    brg_limiter_opts_init(&lo);
    lo.target = model;
    lo.max_in_flight = 1;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &lo, &limiter), BRG_OK);
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = limiter;
    brg_ref_t conv = ta_conv(&o);
    // Cancelled at its first fragment: the conversation sends the stream
    // cancel to the limiter, which passes it on to the backend.
    char *got = NULL;
    int rc =
        brg_conv_say(tu_sys, conv, "a long one", 10000, ta_cancel_on_first_text, &conv, &got, NULL);
    ck_assert_msg(rc == BRG_ECANCELED, "%s: %s", brg_err_name(rc), got);
    ck_assert_str_eq(got, "the turn was cancelled");
    free(got);
    ck_assert_str_eq(ta_streamed, "This");
    // The backend stopped the stream (not run to its end) and answered the
    // limiter with the "cancelled" end, which frees the limiter's one slot.
    // (The cancel goes through the limiter, so it may reach the backend
    // after the turn's answer came back: wait for it.)
    brg_model_stats_t ms;
    for (int t = 0; t < 1000 * (int)tu_multiplier(); t++) {
        ck_assert_int_eq(brg_model_stats(tu_sys, model, 5000, &ms), BRG_OK);
        if (ms.cancelled > 0)
            break;
        tu_sleep_ms(1);
    }
    ck_assert_uint_eq(ms.cancelled, 1);
    brg_limiter_stats_t ls;
    do {
        ls = ta_limiter_stats(limiter);
        tu_sleep_ms(1);
    } while (ls.in_flight > 0);
    // The cancel was passed on, not limited as a request of its own.
    ck_assert_uint_eq(ls.started, 1);
    ck_assert_uint_eq(ls.answered, 1);
    ck_assert_str_eq(ta_history(conv), "");
    // The next turn goes through the same slot.
    ta_say(conv, "again", BRG_OK, "You said: again");
    ck_assert_uint_eq(ta_limiter_stats(limiter).started, 2);
}
END_TEST

//  A turn said from a thread of its own.
typedef struct {
    pthread_t thread;
    brg_ref_t conv;
    const char *text;
    int rc;
    char *got;
} ta_turn_t;

static void *
ta_turn_main(void *arg)
{
    ta_turn_t *t = arg;
    t->rc = brg_conv_say(tu_sys, t->conv, t->text, 30000, NULL, NULL, &t->got, NULL);
    return NULL;
}

//  A streamed turn said from a thread of its own, counting its events.
typedef struct {
    pthread_t thread;
    brg_ref_t conv;
    const char *text;
    atomic_int events;
    int rc;
    char *got;
} ta_streamed_turn_t;

static void
ta_count_event(void *arg, const brg_conv_event_t *ev)
{
    (void)ev;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void *
ta_streamed_turn_main(void *arg)
{
    ta_streamed_turn_t *t = arg;
    t->rc =
        brg_conv_say(tu_sys, t->conv, t->text, 30000, ta_count_event, &t->events, &t->got, NULL);
    return NULL;
}

START_TEST(test_conv_cancel_of_a_turn_queued_in_the_limiter_drops_its_request)
{
    brg_model_rule_t rules[] = {
        {.contains = "long",
         .text = "This answer is streamed slowly, one small piece at a time, "
                 "so there is time to cancel it long before its end."},
    };
    brg_model_offline_opts_t mo;
    brg_model_offline_opts_init(&mo);
    mo.rules = rules;
    mo.n_rules = 1;
    mo.stream_chunk = 4;
    mo.stream_interval_ms = 50; // about 30 fragments: 1.5 s
    brg_ref_t model;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &mo, &model), BRG_OK);
    brg_limiter_opts_t lo;
    brg_limiter_opts_init(&lo);
    lo.target = model;
    lo.max_in_flight = 1;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &lo, &limiter), BRG_OK);
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = limiter;
    ta_streamed_turn_t a = {.conv = ta_conv(&o), .text = "a long one"};
    ta_streamed_turn_t b = {.conv = ta_conv(&o), .text = "waits its turn"};
    // a's stream holds the limiter's one slot; b's request waits in its queue.
    ck_assert_int_eq(pthread_create(&a.thread, NULL, ta_streamed_turn_main, &a), 0);
    TU_WAIT_UNTIL(ta_limiter_stats(limiter).in_flight == 1, TU_WAIT_MS);
    ck_assert_int_eq(pthread_create(&b.thread, NULL, ta_streamed_turn_main, &b), 0);
    TU_WAIT_UNTIL(ta_limiter_stats(limiter).queued == 1, TU_WAIT_MS);
    // Cancelling b cancels its model ask at the limiter: the request is
    // dropped from the queue, never started.
    brg_msg_t *cancel = brg_msg_new(BRG_CONV_TAG_CANCEL);
    ck_assert_int_eq(brg_system_send(tu_sys, b.conv, &cancel), BRG_OK);
    ck_assert_int_eq(pthread_join(b.thread, NULL), 0);
    ck_assert_msg(b.rc == BRG_ECANCELED, "%s: %s", brg_err_name(b.rc), b.got);
    free(b.got);
    TU_WAIT_UNTIL(ta_limiter_stats(limiter).queued == 0, TU_WAIT_MS);
    brg_limiter_stats_t ls = ta_limiter_stats(limiter);
    ck_assert_uint_eq(ls.cancelled, 1);
    ck_assert_uint_eq(ls.started, 1);
    // Then a: its stream stops at the backend, its slot frees up, and b's
    // request does not start in it.
    cancel = brg_msg_new(BRG_CONV_TAG_CANCEL);
    ck_assert_int_eq(brg_system_send(tu_sys, a.conv, &cancel), BRG_OK);
    ck_assert_int_eq(pthread_join(a.thread, NULL), 0);
    ck_assert_msg(a.rc == BRG_ECANCELED, "%s: %s", brg_err_name(a.rc), a.got);
    free(a.got);
    TU_WAIT_UNTIL(ta_limiter_stats(limiter).in_flight == 0, TU_WAIT_MS);
    ls = ta_limiter_stats(limiter);
    ck_assert_uint_eq(ls.started, 1);
    ck_assert_uint_eq(ls.answered, 1);
    ck_assert_int_eq(atomic_load(&b.events), 0);
    brg_model_stats_t ms;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 5000, &ms), BRG_OK);
    ck_assert_uint_eq(ms.requests, 1);
}
END_TEST

START_TEST(test_conv_refuses_a_turn_past_its_queue_and_answers_all_closed_when_stopped)
{
    brg_model_tool_call_t calls[] = {{"c1", 0, "silent", 0, "{}", 0}};
    brg_model_rule_t rules[] = {{.tool_calls = calls, .n_tool_calls = 1}};
    brg_tool_t tools[] = {ta_tool("silent", tu_spawn(tu_sys, ta_silent))};
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 1, 0);
    o.tools = tools;
    o.n_tools = 1;
    o.tool_timeout_ms = 60000; // longer than anyone waits
    o.max_queue = 1;
    brg_ref_t conv = ta_conv(&o);
    ta_turn_t turns[2] = {{.conv = conv, .text = "first"}, {.conv = conv, .text = "second"}};
    ck_assert_int_eq(pthread_create(&turns[0].thread, NULL, ta_turn_main, &turns[0]), 0);
    TU_WAIT_UNTIL(ta_stats(conv).tool_calls == 1, TU_WAIT_MS); // the first waits on its tool
    ck_assert_int_eq(pthread_create(&turns[1].thread, NULL, ta_turn_main, &turns[1]), 0);
    TU_WAIT_UNTIL(ta_stats(conv).waiting == 1, TU_WAIT_MS); // the second waits behind it
    // A third finds the queue (max_queue 1) full.
    char *got = NULL;
    ck_assert_int_eq(brg_conv_say(tu_sys, conv, "third", 5000, NULL, NULL, &got, NULL), BRG_EBUSY);
    free(got);
    ck_assert_int_eq(brg_actor_stop(tu_sys, conv), BRG_OK);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_join(turns[i].thread, NULL), 0);
        ck_assert_msg(turns[i].rc == BRG_ECLOSED, "%s: %s (%s)", turns[i].text,
                      brg_err_name(turns[i].rc), turns[i].got);
        free(turns[i].got);
    }
}
END_TEST

//  ---------------------------------------------------------------------------
//  Over HTTP: the openai backend against tests/model_test_server.h, which
//  checks every request body against the chat-completions wire format,
//  calls the first tool offered with {"q": <the user's text>} and, after a
//  tool result, answers "Tool said: <it>".

static tu_model_server_t ta_ms = TU_MODEL_SERVER_INIT;
static tu_http_server_t *ta_server;

static void
ta_http_setup(void)
{
    tu_setup();
    ta_server = tu_http_server_start(tu_model_handler, &ta_ms);
    ck_assert_ptr_nonnull(ta_server);
}

static void
ta_http_teardown(void)
{
    tu_teardown();
    tu_http_server_stop(&ta_server);
}

//  Tracing (brigade/trace.h): with a trace hook on, one turn of the tool
//  loop over HTTP yields a model span per model call and a tool span per
//  tool call, with the OpenTelemetry GenAI attribute names.
static pthread_mutex_t ta_trace_lock = PTHREAD_MUTEX_INITIALIZER;
static char ta_trace[65536];
static size_t ta_trace_len;

static void
ta_trace_hook(void *arg, const char *json, size_t len)
{
    (void)arg;
    pthread_mutex_lock(&ta_trace_lock);
    if (ta_trace_len + len + 1 < sizeof ta_trace) {
        memcpy(ta_trace + ta_trace_len, json, len);
        ta_trace_len += len;
        ta_trace[ta_trace_len++] = '\n';
        ta_trace[ta_trace_len] = '\0';
    }
    pthread_mutex_unlock(&ta_trace_lock);
}

START_TEST(test_conv_model_and_tool_calls_are_traced_with_the_genai_names)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.trace_hook = ta_trace_hook;
    ta_trace_len = 0;
    ta_trace[0] = '\0';
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    char url[128];
    tu_http_server_url(ta_server, url, sizeof url, "/v1");
    brg_model_openai_opts_t mo;
    brg_model_openai_opts_init(&mo);
    mo.url = url;
    mo.model = "test-model-1";
    mo.max_attempts = 1;
    mo.log_errors = false;
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    ck_assert_int_eq(brg_model_openai_spawn_root(sys, &mo, &o.model), BRG_OK);
    brg_ref_t echo;
    ck_assert_int_eq(brg_tool_spawn_root(sys, NULL, ta_echo, NULL, 0, &echo), BRG_OK);
    brg_tool_t tools[] = {ta_tool("lookup", echo)};
    o.tools = tools;
    o.n_tools = 1;
    brg_ref_t conv;
    ck_assert_int_eq(brg_conv_spawn_root(sys, &o, &conv), BRG_OK);
    char *got = NULL;
    brg_conv_answer_t t;
    brg_span_t *root = brg_system_trace_start(sys, "user request", BRG_SPAN_SERVER);
    ck_assert_ptr_nonnull(root);
    int rc = brg_conv_say(sys, conv, "find it", 10000, NULL, NULL, &got, &t);
    brg_span_end(NULL, &root);
    ck_assert_msg(rc == BRG_OK, "%s: %s", brg_err_name(rc), got);
    free(got);
    brg_system_destroy(&sys); // flushes the exporter
    pthread_mutex_lock(&ta_trace_lock);
    const char *tr = ta_trace;
    // Two model calls (the tool call, then the answer), one tool call.
    int chats = 0;
    for (const char *p = tr; (p = strstr(p, "\"name\":\"chat test-model-1\"")); p++)
        chats++;
    ck_assert_msg(chats == 2, "%d model spans in: %s", chats, tr);
    ck_assert_msg(strstr(tr, "\"name\":\"execute_tool lookup\""), "%s", tr);
    static const char *const keys[] = {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.tool.name",
        "gen_ai.tool.call.id",
        "gen_ai.request.max_tokens",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(strstr(tr, keys[i]), "no %s in: %s", keys[i], tr);
    ck_assert_msg(strstr(tr, "\"stringValue\":\"execute_tool\"") &&
                      strstr(tr, "\"stringValue\":\"tool_calls\""),
                  "%s", tr);
    pthread_mutex_unlock(&ta_trace_lock);
}
END_TEST

START_TEST(test_conv_over_http_streams_the_tool_loop_and_sends_history_tools_and_settings)
{
    char url[128], body[16384];
    tu_http_server_url(ta_server, url, sizeof url, "/v1");
    brg_model_openai_opts_t mo;
    brg_model_openai_opts_init(&mo);
    mo.url = url;
    mo.model = "test-model-1";
    mo.max_attempts = 1;
    mo.log_errors = false;
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &mo, &o.model), BRG_OK);
    brg_ref_t echo;
    ck_assert_int_eq(brg_tool_spawn_root(tu_sys, NULL, ta_echo, NULL, 0, &echo), BRG_OK);
    brg_tool_t tools[] = {ta_tool("lookup", echo)};
    o.tools = tools;
    o.n_tools = 1;
    o.system = "Be brief.";
    o.max_tokens = 77;
    o.temperature = 0.5;
    brg_ref_t conv = ta_conv(&o);

    int events = 0;
    char *got = NULL;
    brg_conv_answer_t t;
    int rc = brg_conv_say(tu_sys, conv, "find it", 10000, ta_on_event, &events, &got, &t);
    ck_assert_msg(rc == BRG_OK, "%s: %s (server: %s)", brg_err_name(rc), got, ta_ms.last_error);
    ck_assert_str_eq(got, "Tool said: echo {\"q\":\"find it\"}");
    free(got);
    ck_assert_str_eq(ta_streamed, "Tool said: echo {\"q\":\"find it\"}"); // 4-byte SSE pieces
    ck_assert_msg(strstr(ta_events, "call[1] lookup(call_") && strstr(ta_events, "text[2] "), "%s",
                  ta_events);
    ck_assert_int_eq(t.steps, 2);
    ck_assert_int_eq(t.completion_tokens, 16); // the server counts 8 per answer
    ck_assert_int_gt(t.prompt_tokens, 0);
    // The second request carried the whole turn: system, user, the assistant's
    // call, the tool's result; the tool definition and the settings.
    ck_assert_int_eq(tu_http_server_last(ta_server, NULL, body, sizeof body), 2);
    ck_assert_msg(strstr(body, "\"content\":\"Be brief.\"") && strstr(body, "\"tool_calls\":[") &&
                      strstr(body, "\"role\":\"tool\"") &&
                      strstr(body, "\"tool_call_id\":\"call_") &&
                      strstr(body, "\"name\":\"lookup\"") && strstr(body, "\"max_tokens\":77") &&
                      strstr(body, "\"temperature\":0.5") && strstr(body, "\"stream\":true"),
                  "%s", body);

    // Not streamed, the same loop; the history keeps both turns.
    ta_say(conv, "and again", BRG_OK, "Tool said: echo {\"q\":\"and again\"}");
    ck_assert_int_eq(atomic_load(&ta_ms.requests), 4);
    tu_http_server_last(ta_server, NULL, body, sizeof body);
    ck_assert_msg(!strstr(body, "\"stream\":true") && strstr(body, "find it"), "%s", body);
    brg_conv_stats_t st = ta_stats(conv);
    ck_assert_uint_eq(st.turns, 2);
    ck_assert_uint_eq(st.steps, 4);
    ck_assert_uint_eq(st.tool_calls, 2);
    ck_assert_uint_eq(st.completion_tokens, 32);
    ck_assert_uint_eq(st.messages, 9);
}
END_TEST

//  ---------------------------------------------------------------------------
//  A tool on another node (two nodes in this process, over inproc://)

static brg_system_t *ta_far_sys;

static void
ta_far_teardown(void)
{
    brg_system_destroy(&ta_far_sys);
    tu_teardown();
}

START_TEST(test_conv_calls_tools_on_another_node_by_ref_and_by_node_and_name)
{
    // This node (tu_sys) runs the conversation and the model; the far node
    // runs the tools.
    brg_config_t cfg;
    tu_config(&cfg, 2);
    ta_far_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(ta_far_sys);
    brg_node_t *nodes[2];
    brg_system_t *systems[2] = {tu_sys, ta_far_sys};
    for (int i = 0; i < 2; i++) {
        brg_node_config_t nc;
        brg_node_config_init(&nc);
        char name[32], ep[96];
        snprintf(name, sizeof name, "agent-%d", i);
        snprintf(ep, sizeof ep, "inproc://test-agent-%d-%d", (int)getpid(), i);
        nc.name = name;
        nc.listen[0] = ep;
        nodes[i] = brg_node_new(systems[i], &nc);
        ck_assert_ptr_nonnull(nodes[i]);
    }
    char ep[256];
    ck_assert_int_eq(brg_node_endpoint(nodes[1], 0, ep, sizeof ep), BRG_OK);
    brg_ref_t far;
    ck_assert_int_eq(brg_node_connect(nodes[0], ep, 5000, &far), BRG_OK);

    brg_ref_t by_ref;
    ck_assert_int_eq(brg_tool_spawn_root(ta_far_sys, NULL, ta_echo, NULL, 0, &by_ref), BRG_OK);
    ck_assert_int_eq(brg_tool_spawn_root(ta_far_sys, "tool.far_echo", ta_echo, NULL, 0, NULL),
                     BRG_OK);
    brg_tool_t tools[] = {ta_tool("echo_ref", by_ref), ta_tool("echo_named", BRG_REF_NONE),
                          ta_tool("echo_gone", BRG_REF_NONE)};
    tools[1].node = far;
    tools[1].actor_name = "tool.far_echo";
    tools[2].node = far;
    tools[2].actor_name = "tool.not_there";
    brg_model_tool_call_t calls[] = {
        {"r1", 0, "echo_ref", 0, "{\"via\":\"ref\"}", 0},
        {"r2", 0, "echo_named", 0, "{\"via\":\"name\"}", 0},
        {"r3", 0, "echo_gone", 0, "{}", 0},
    };
    brg_model_rule_t rules[] = {
        {.turn = 1, .tool_calls = calls, .n_tool_calls = 3},
        {.after_tool = true, .text = "Far away: {tool}"},
    };
    brg_conv_opts_t o;
    brg_conv_opts_init(&o);
    o.model = ta_model(rules, 2, 0);
    o.tools = tools;
    o.n_tools = 3;
    o.tool_timeout_ms = 5000;
    brg_ref_t conv = ta_conv(&o);
    ta_say(conv, "call far", BRG_OK, NULL);
    const char *h = ta_history(conv);
    ck_assert_msg(strstr(h, "tool echo_ref: echo {\"via\":\"ref\"}\n"), "%s", h);
    ck_assert_msg(strstr(h, "tool echo_named: echo {\"via\":\"name\"}\n"), "%s", h);
    // A name not registered there: that node answers no-actor.
    ck_assert_msg(strstr(h, "tool echo_gone: error: tool 'echo_gone' is not available"), "%s", h);
    ck_assert_int_eq(atomic_load(&ta_echoes), 2);
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

    TCase *conv = tcase_create("conversation");
    tcase_add_checked_fixture(conv, tu_setup, tu_teardown);
    tcase_set_timeout(conv, 60);
    tcase_add_test(conv, test_conv_answers_and_keeps_the_history_of_every_turn);
    tcase_add_test(conv, test_conv_sends_the_calls_of_one_step_to_their_tools_in_parallel);
    tcase_add_test(conv, test_conv_reports_timeouts_failures_dead_and_unknown_tools_to_the_model);
    tcase_add_test(conv, test_conv_step_limit_fails_the_turn_and_leaves_no_trace);
    tcase_add_test(conv, test_conv_fails_a_turn_whose_model_asks_for_too_many_calls_at_once);
    tcase_add_test(conv, test_conv_streams_the_model_deltas_and_tool_events_of_every_step);
    tcase_add_test(conv,
                   test_conv_cancel_stops_the_model_stream_and_fails_the_turn_without_a_trace);
    tcase_add_test(conv,
                   test_conv_a_streamed_model_call_past_its_deadline_is_cancelled_at_the_backend);
    tcase_add_test(conv, test_conv_usage_totals_are_the_sum_of_the_turns);
    tcase_add_test(conv, test_conv_trims_the_history_it_sends_by_whole_turns);
    tcase_add_test(conv, test_conv_model_errors_carry_their_detail_and_leave_no_trace);
    tcase_add_test(conv, test_conv_refuses_bad_options_and_bad_turns);
    tcase_add_test(conv, test_conv_answers_turns_that_arrive_together_one_after_the_other);
    tcase_add_test(conv, test_conv_waiting_turns_that_fail_at_once_are_each_answered);
    tcase_add_test(conv, test_conv_behind_a_limiter_answers_and_streams_its_turns);
    tcase_add_test(conv, test_conv_cancel_through_a_limiter_stops_the_backend_stream);
    tcase_add_test(conv, test_conv_cancel_of_a_turn_queued_in_the_limiter_drops_its_request);
    tcase_add_test(conv,
                   test_conv_refuses_a_turn_past_its_queue_and_answers_all_closed_when_stopped);
    suite_add_tcase(s, conv);

    TCase *http = tcase_create("http");
    tcase_add_checked_fixture(http, ta_http_setup, ta_http_teardown);
    tcase_set_timeout(http, 60);
    tcase_add_test(http,
                   test_conv_over_http_streams_the_tool_loop_and_sends_history_tools_and_settings);
    tcase_add_test(http, test_conv_model_and_tool_calls_are_traced_with_the_genai_names);
    suite_add_tcase(s, http);

    TCase *nodes = tcase_create("nodes");
    tcase_add_checked_fixture(nodes, tu_setup, ta_far_teardown);
    tcase_set_timeout(nodes, 60);
    tcase_add_test(nodes, test_conv_calls_tools_on_another_node_by_ref_and_by_node_and_name);
    suite_add_tcase(s, nodes);
    return s;
}

int
main(void)
{
    return tu_run(agent_suite());
}
