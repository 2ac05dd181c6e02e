//  test_model - the model backend protocol and both backends.
//
//  Offline: each task's exact answer on fixed inputs, CHAT refused, a
//  malformed request refused. OpenAI-compatible: against a test HTTP server on
//  127.0.0.1 that this test starts: the request it builds (path, headers,
//  JSON body), a success with the completion's text, model and token
//  counts, an HTTP error status (BRG_EHTTP), a deadline (BRG_ETIMEDOUT),
//  malformed JSON and JSON that is not a completion (BRG_EPROTO), invalid
//  UTF-8 input (BRG_EINVAL), a backend stopped mid-call, and the choice of
//  backend from the environment.
#include "model_test_server.h"
#include "test_util.h"

#include <jansson.h>

//  ---------------------------------------------------------------------------
//  Helpers

//  Ask a backend; on BRG_OK copy the reply's text into out (NUL-terminated).
static int
tm_ask(brg_ref_t model, brg_model_task_t task, const char *instructions, const char *text,
       char *out, size_t size, brg_model_reply_t *info, brg_msg_t **keep)
{
    brg_model_request_t req = {task, instructions, 0, text, 0};
    brg_msg_t *msg = brg_model_msg_request(&req), *reply = NULL;
    ck_assert_ptr_nonnull(msg);
    int rc = brg_system_ask(tu_sys, model, &msg, 10000, &reply);
    if (rc == BRG_OK) {
        brg_model_reply_t r;
        ck_assert_int_eq(brg_model_read_reply(reply, &r), BRG_OK);
        ck_assert_uint_lt(r.len, size);
        memcpy(out, r.text, r.len);
        out[r.len] = '\0';
        if (info)
            *info = r;
    }
    if (keep)
        *keep = reply;
    else
        brg_msg_destroy(&reply);
    return rc;
}

static brg_ref_t tm_offline;

static void
tm_setup_offline(void)
{
    tu_setup();
    ck_assert_int_eq(brg_model_offline_spawn_root(tu_sys, "model", &tm_offline), BRG_OK);
}

static const char tm_doc[] =
    "Actors keep their state private. Actors talk only by messages, and messages are "
    "msgpack. A supervisor restarts actors that fail. the scheduler runs actors on a few "
    "threads.  It is is fast.";

//  ---------------------------------------------------------------------------
//  Offline backend

START_TEST(test_model_offline_summarises_with_the_best_sentences_in_order)
{
    char out[1024];
    brg_model_reply_t info;
    brg_msg_t *reply;
    ck_assert_int_eq(
        tm_ask(tm_offline, BRG_MODEL_SUMMARISE, NULL, tm_doc, out, sizeof out, &info, &reply),
        BRG_OK);
    // The same three spans brg_text_summarise picks, joined by a space.
    brg_text_span_t best[BRG_MODEL_SUMMARY_SENTENCES];
    int n = brg_text_summarise(tm_doc, strlen(tm_doc), BRG_MODEL_SUMMARY_SENTENCES, best);
    ck_assert_int_eq(n, 3);
    char expected[1024] = "";
    for (int i = 0; i < n; i++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s%.*s",
                 i ? " " : "", (int)best[i].length, tm_doc + best[i].offset);
    ck_assert_str_eq(out, expected);
    // Lead 7/5 x 1.5, supervisor 7/6, messages 10/9; the scheduler 7/8 is left out.
    ck_assert_str_eq(out, "Actors keep their state private. Actors talk only by messages, and "
                          "messages are msgpack. A supervisor restarts actors that fail.");
    ck_assert(info.backend_len == 7 && memcmp(info.backend, "offline", 7) == 0);
    ck_assert(info.model_len == 4 && memcmp(info.model, "text", 4) == 0);
    ck_assert_int_eq(info.prompt_tokens, -1);
    ck_assert_int_eq(info.completion_tokens, -1);
    brg_msg_destroy(&reply);
}
END_TEST

START_TEST(test_model_offline_checks_style_one_finding_per_line)
{
    char out[2048];
    ck_assert_int_eq(tm_ask(tm_offline, BRG_MODEL_CHECK, NULL, tm_doc, out, sizeof out, NULL, NULL),
                     BRG_OK);
    ck_assert_str_eq(
        out, "line 1, column 130: sentence starts with a lowercase letter: \"the\" (capital)\n"
             "line 1, column 173: 2 spaces in a row (double-space)\n"
             "line 1, column 181: repeated word \"is\" (repeated-word)\n");
    ck_assert_int_eq(
        tm_ask(tm_offline, BRG_MODEL_CHECK, NULL, "All is well here.", out, sizeof out, NULL, NULL),
        BRG_OK);
    ck_assert_str_eq(out, "No problems found.");
}
END_TEST

START_TEST(test_model_offline_lists_keywords_with_counts)
{
    char out[1024];
    ck_assert_int_eq(
        tm_ask(tm_offline, BRG_MODEL_KEYWORDS, NULL, tm_doc, out, sizeof out, NULL, NULL), BRG_OK);
    ck_assert_str_eq(out, "actors (4), messages (2), fail (1), fast (1), keep (1), msgpack (1), "
                          "private (1), restarts (1), runs (1), scheduler (1)");
}
END_TEST

START_TEST(test_model_offline_refuses_chat_and_malformed_requests)
{
    char out[64];
    ck_assert_int_eq(
        tm_ask(tm_offline, BRG_MODEL_CHAT, "be nice", "hello", out, sizeof out, NULL, NULL),
        BRG_EINVAL);
    brg_msg_t *bad = brg_msg_new(BRG_MODEL_TAG_REQUEST), *reply = NULL;
    brg_msg_add_int(bad, 99); // no such task
    ck_assert_int_eq(brg_system_ask(tu_sys, tm_offline, &bad, 5000, &reply), BRG_EBADMSG);
    bad = brg_msg_new(BRG_MODEL_TAG_REQUEST);
    brg_msg_add_int(bad, BRG_MODEL_SUMMARISE);
    brg_msg_add_nil(bad); // and no text
    ck_assert_int_eq(brg_system_ask(tu_sys, tm_offline, &bad, 5000, &reply), BRG_EBADMSG);
    // The encoder refuses what it can see is wrong.
    brg_model_request_t no_text = {BRG_MODEL_SUMMARISE, NULL, 0, NULL, 0};
    brg_model_request_t no_task = {(brg_model_task_t)7, NULL, 0, "x", 0};
    ck_assert_ptr_null(brg_model_msg_request(&no_text));
    ck_assert_ptr_null(brg_model_msg_request(&no_task));
    ck_assert_str_eq(brg_model_task_name(BRG_MODEL_CHECK), "check");
    ck_assert_str_eq(brg_model_task_name((brg_model_task_t)7), "unknown");
}
END_TEST

START_TEST(test_model_request_round_trips_through_the_reader)
{
    brg_model_request_t in = {BRG_MODEL_CHAT, "sys", 0, "user text", 0}, out;
    brg_msg_t *msg = brg_model_msg_request(&in);
    ck_assert_int_eq(brg_model_read_request(msg, &out), BRG_OK);
    ck_assert_int_eq(out.task, BRG_MODEL_CHAT);
    ck_assert(out.instructions_len == 3 && memcmp(out.instructions, "sys", 3) == 0);
    ck_assert(out.len == 9 && memcmp(out.text, "user text", 9) == 0);
    brg_msg_destroy(&msg);
    in.instructions = NULL;
    msg = brg_model_msg_request(&in);
    ck_assert_int_eq(brg_model_read_request(msg, &out), BRG_OK);
    ck_assert_ptr_null(out.instructions);
    brg_msg_destroy(&msg);
    msg = brg_msg_new("other");
    ck_assert_int_eq(brg_model_read_request(msg, &out), BRG_ETYPE);
    ck_assert_int_eq(brg_model_read_reply(msg, &(brg_model_reply_t){0}), BRG_ETYPE);
    brg_msg_destroy(&msg);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Chat protocol: the codec

//  s equals the view (ptr, len).
#define tm_eq(ptr, len, s)                                                                         \
    ck_assert_msg((len) == strlen(s) && memcmp((ptr), (s), (len)) == 0,                            \
                  "got \"%.*s\", want \"%s\"", (int)(len), (ptr), (s))

START_TEST(test_model_chat_request_round_trips_through_the_readers)
{
    brg_model_chat_t *chat = brg_model_chat_new();
    ck_assert_ptr_nonnull(chat);
    ck_assert_int_eq(brg_model_chat_add_message(chat, BRG_MODEL_SYSTEM, "Be brief.", 0), BRG_OK);
    ck_assert_int_eq(brg_model_chat_add_message(chat, BRG_MODEL_USER, "Weather in Oslo?", 0),
                     BRG_OK);
    brg_model_tool_call_t calls[] = {{"call_1", 0, "get_weather", 0, "{\"city\":\"Oslo\"}", 0},
                                     {"call_2", 0, "get_time", 0, NULL, 0}};
    ck_assert_int_eq(brg_model_chat_add_assistant(chat, NULL, calls, 2), BRG_OK);
    ck_assert_int_eq(brg_model_chat_add_tool_result(chat, "call_1", "rain, 4 C", 0), BRG_OK);
    brg_model_tool_t tool = {
        "get_weather",
        0,
        "The weather in a city",
        0,
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}",
        0};
    ck_assert_int_eq(brg_model_chat_add_tool(chat, &tool), BRG_OK);
    ck_assert_int_eq(brg_model_chat_set_model(chat, "gpt-test"), BRG_OK);
    ck_assert_int_eq(brg_model_chat_set_temperature(chat, 0.5), BRG_OK);
    ck_assert_int_eq(brg_model_chat_set_max_tokens(chat, 77), BRG_OK);
    ck_assert_int_eq(brg_model_chat_set_timeout(chat, 1234), BRG_OK);
    ck_assert_int_eq(brg_model_chat_set_max_attempts(chat, 4), BRG_OK);
    brg_model_chat_set_json_mode(chat, true);
    brg_model_chat_set_retry_unsafe(chat, true);
    brg_model_chat_set_stream(chat, 99);
    brg_ref_t to = {.node_hi = 7, .node_lo = 9, .id = 42};
    brg_model_chat_set_stream_to(chat, to);
    // Refused: bad role, bad UTF-8, bad tool name, a call without id, ranges.
    ck_assert_int_eq(brg_model_chat_add_message(chat, BRG_MODEL_TOOL, "x", 0), BRG_EINVAL);
    ck_assert_int_eq(brg_model_chat_add_message(chat, BRG_MODEL_USER, "\xff", 0), BRG_EINVAL);
    ck_assert_int_eq(brg_model_chat_add_message(chat, BRG_MODEL_USER, NULL, 0), BRG_EINVAL);
    ck_assert_int_eq(brg_model_chat_add_assistant(chat, NULL, NULL, 0), BRG_EINVAL);
    brg_model_tool_call_t no_id = {NULL, 0, "f", 0, "{}", 0};
    ck_assert_int_eq(brg_model_chat_add_assistant(chat, NULL, &no_id, 1), BRG_EINVAL);
    brg_model_tool_t bad_name = {"get weather", 0, NULL, 0, NULL, 0};
    ck_assert_int_eq(brg_model_chat_add_tool(chat, &bad_name), BRG_EINVAL);
    ck_assert_int_eq(brg_model_chat_add_tool_result(chat, "", "x", 0), BRG_EINVAL);
    ck_assert_int_eq(brg_model_chat_set_temperature(chat, 2.5), BRG_EINVAL);
    ck_assert_int_eq(brg_model_chat_set_max_tokens(chat, 0), BRG_EINVAL);
    ck_assert_int_eq(brg_model_chat_set_max_attempts(chat, 11), BRG_EINVAL);

    brg_msg_t *msg = brg_model_chat_msg(chat);
    ck_assert_ptr_nonnull(msg);
    brg_model_chat_view_t v;
    ck_assert_int_eq(brg_model_read_chat(msg, &v), BRG_OK);
    ck_assert_uint_eq(v.stream_id, 99);
    ck_assert(brg_ref_eq(v.stream_to, to));
    tm_eq(v.model, v.model_len, "gpt-test");
    ck_assert(v.temperature == 0.5);
    ck_assert_int_eq(v.max_tokens, 77);
    ck_assert(v.json_mode && v.retry_unsafe);
    ck_assert_int_eq(v.timeout_ms, 1234);
    ck_assert_int_eq(v.max_attempts, 4);
    ck_assert_uint_eq(v.n_messages, 4);
    ck_assert_uint_eq(v.n_tools, 1);
    brg_model_message_t m;
    ck_assert_int_eq(brg_model_chat_message(&v, 0, &m), BRG_OK);
    ck_assert_int_eq(m.role, BRG_MODEL_SYSTEM);
    tm_eq(m.content, m.content_len, "Be brief.");
    ck_assert_ptr_null(m.tool_call_id);
    ck_assert_int_eq(brg_model_chat_message(&v, 2, &m), BRG_OK);
    ck_assert_int_eq(m.role, BRG_MODEL_ASSISTANT);
    ck_assert_ptr_null(m.content);
    ck_assert_uint_eq(m.n_tool_calls, 2);
    brg_model_tool_call_t c;
    ck_assert_int_eq(brg_model_message_tool_call(&m, 0, &c), BRG_OK);
    tm_eq(c.id, c.id_len, "call_1");
    tm_eq(c.name, c.name_len, "get_weather");
    tm_eq(c.arguments, c.arguments_len, "{\"city\":\"Oslo\"}");
    ck_assert_int_eq(brg_model_message_tool_call(&m, 1, &c), BRG_OK);
    tm_eq(c.arguments, c.arguments_len, "{}"); // NULL arguments: an empty object
    ck_assert_int_eq(brg_model_message_tool_call(&m, 2, &c), BRG_ERANGE);
    ck_assert_int_eq(brg_model_chat_message(&v, 3, &m), BRG_OK);
    ck_assert_int_eq(m.role, BRG_MODEL_TOOL);
    tm_eq(m.tool_call_id, m.tool_call_id_len, "call_1");
    tm_eq(m.content, m.content_len, "rain, 4 C");
    ck_assert_int_eq(brg_model_chat_message(&v, 4, &m), BRG_ERANGE);
    brg_model_tool_t t;
    ck_assert_int_eq(brg_model_chat_tool(&v, 0, &t), BRG_OK);
    tm_eq(t.name, t.name_len, "get_weather");
    tm_eq(t.description, t.description_len, "The weather in a city");
    ck_assert(t.parameters_len > 10 && t.parameters[0] == '{');
    ck_assert_int_eq(brg_model_chat_tool(&v, 1, &t), BRG_ERANGE);
    brg_msg_destroy(&msg);

    // Defaults: nothing set.
    brg_model_chat_t *plain = brg_model_chat_new();
    ck_assert_int_eq(brg_model_chat_add_message(plain, BRG_MODEL_USER, "hi", 0), BRG_OK);
    msg = brg_model_chat_msg(plain);
    ck_assert_int_eq(brg_model_read_chat(msg, &v), BRG_OK);
    ck_assert(v.stream_id == 0 && !v.model && v.temperature == -1 && v.max_tokens == 0 &&
              !v.json_mode && !v.retry_unsafe && v.timeout_ms == 0 && v.max_attempts == 0);
    ck_assert(brg_ref_is_none(v.stream_to));
    // stream_to is optional and last: a request without it is the old
    // layout; something else in its place, or a none ref, is malformed.
    ck_assert_int_eq(brg_msg_add_int(msg, 5), BRG_OK);
    ck_assert_int_eq(brg_model_read_chat(msg, &v), BRG_EBADMSG);
    brg_msg_destroy(&msg);
    msg = brg_model_chat_msg(plain);
    ck_assert_int_eq(brg_msg_add_ref(msg, BRG_REF_NONE), BRG_OK);
    ck_assert_int_eq(brg_model_read_chat(msg, &v), BRG_EBADMSG);
    brg_msg_destroy(&msg);
    brg_model_chat_set_stream_to(plain, to);
    brg_model_chat_set_stream_to(plain, BRG_REF_NONE); // back to the sender: not on the wire
    msg = brg_model_chat_msg(plain);
    ck_assert_int_eq(brg_model_read_chat(msg, &v), BRG_OK);
    ck_assert(brg_ref_is_none(v.stream_to));
    brg_msg_destroy(&msg);
    brg_model_chat_destroy(&plain);
    brg_model_chat_destroy(&chat);
    ck_assert_ptr_null(chat);

    // Malformed requests: another tag, a tool message without its call id.
    msg = brg_msg_new("other");
    ck_assert_int_eq(brg_model_read_chat(msg, &v), BRG_ETYPE);
    brg_msg_destroy(&msg);
    msg = brg_msg_new(BRG_MODEL_TAG_CHAT);
    brg_msg_add_uint(msg, 0);
    brg_msg_add_nil(msg);
    brg_msg_add_double(msg, -1);
    brg_msg_add_int(msg, 0);
    brg_msg_add_bool(msg, false);
    brg_msg_add_bool(msg, false);
    brg_msg_add_int(msg, 0);
    brg_msg_add_int(msg, 0);
    brg_msg_add_array(msg, 1);
    brg_msg_add_array(msg, 4);
    brg_msg_add_int(msg, BRG_MODEL_TOOL);
    brg_msg_add_str(msg, "result");
    brg_msg_add_nil(msg); // no tool_call_id
    brg_msg_add_array(msg, 0);
    brg_msg_add_array(msg, 0);
    ck_assert_int_eq(brg_model_read_chat(msg, &v), BRG_EBADMSG);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_model_chat_reply_error_delta_and_end_round_trip)
{
    brg_model_tool_call_t calls[] = {{"c1", 0, "f", 0, "{\"a\":1}", 0}};
    brg_model_chat_reply_t in = {.text = "hello",
                                 .len = 5,
                                 .finish_reason = "tool_calls",
                                 .prompt_tokens = 10,
                                 .completion_tokens = 3,
                                 .total_tokens = 13,
                                 .model = "m",
                                 .backend = "openai",
                                 .attempts = 2};
    brg_msg_t *msg = brg_model_msg_chat_reply(&in, calls, 1);
    brg_model_chat_reply_t r;
    ck_assert_int_eq(brg_model_read_chat_reply(msg, &r), BRG_OK);
    tm_eq(r.text, r.len, "hello");
    tm_eq(r.finish_reason, r.finish_reason_len, "tool_calls");
    tm_eq(r.model, r.model_len, "m");
    tm_eq(r.backend, r.backend_len, "openai");
    ck_assert(r.prompt_tokens == 10 && r.completion_tokens == 3 && r.total_tokens == 13);
    ck_assert_int_eq(r.attempts, 2);
    ck_assert_uint_eq(r.n_tool_calls, 1);
    brg_model_tool_call_t c;
    ck_assert_int_eq(brg_model_chat_reply_tool_call(&r, 0, &c), BRG_OK);
    tm_eq(c.arguments, c.arguments_len, "{\"a\":1}");
    ck_assert_int_eq(brg_model_chat_status(BRG_OK, msg), BRG_OK);
    ck_assert_int_eq(brg_model_chat_status(BRG_ETIMEDOUT, msg), BRG_ETIMEDOUT);
    brg_model_error_t e;
    ck_assert_int_eq(brg_model_read_error(msg, &e), BRG_ETYPE);
    brg_msg_destroy(&msg);

    brg_model_error_t ein = {.code = BRG_EHTTP,
                             .http_status = 429,
                             .type = "rate_limit_exceeded",
                             .message = "slow down",
                             .retry_after_ms = 2000,
                             .attempts = 3};
    ein.type_len = strlen(ein.type);
    ein.message_len = strlen(ein.message);
    msg = brg_model_msg_error(&ein);
    ck_assert_int_eq(brg_model_read_error(msg, &e), BRG_OK);
    ck_assert_int_eq(e.code, BRG_EHTTP);
    ck_assert_int_eq(e.http_status, 429);
    tm_eq(e.type, e.type_len, "rate_limit_exceeded");
    tm_eq(e.message, e.message_len, "slow down");
    ck_assert_int_eq(e.retry_after_ms, 2000);
    ck_assert_int_eq(e.attempts, 3);
    ck_assert_int_eq(brg_model_chat_status(BRG_OK, msg), BRG_EHTTP);
    ck_assert_int_eq(brg_model_read_chat_reply(msg, &r), BRG_ETYPE);
    brg_msg_destroy(&msg);

    brg_model_delta_t din = {.stream_id = 7,
                             .tool_index = 1,
                             .id = "c1",
                             .id_len = 2,
                             .name = "f",
                             .name_len = 1,
                             .arguments = "{\"a",
                             .arguments_len = 3};
    msg = brg_model_msg_delta(&din);
    brg_model_delta_t d;
    ck_assert_int_eq(brg_model_read_delta(msg, &d), BRG_OK);
    ck_assert_uint_eq(d.stream_id, 7);
    ck_assert_int_eq(d.tool_index, 1);
    ck_assert_uint_eq(d.len, 0);
    tm_eq(d.id, d.id_len, "c1");
    tm_eq(d.name, d.name_len, "f");
    tm_eq(d.arguments, d.arguments_len, "{\"a");
    brg_msg_destroy(&msg);

    in.finish_reason_len = 0;
    msg = brg_model_msg_end(7, BRG_OK, &in, NULL);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(msg, &end), BRG_OK);
    ck_assert_uint_eq(end.stream_id, 7);
    ck_assert_int_eq(end.status, BRG_OK);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "tool_calls");
    ck_assert_int_eq(end.reply.total_tokens, 13);
    tm_eq(end.reply.backend, end.reply.backend_len, "openai");
    ck_assert_int_eq(brg_model_chat_status(BRG_OK, msg), BRG_OK);
    brg_msg_destroy(&msg);
    msg = brg_model_msg_end(8, BRG_EHTTP, NULL, &ein);
    ck_assert_int_eq(brg_model_read_end(msg, &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_EHTTP);
    ck_assert_int_eq(end.error.http_status, 429);
    tm_eq(end.error.message, end.error.message_len, "slow down");
    ck_assert_int_eq(end.error.retry_after_ms, 2000);
    ck_assert_int_eq(end.error.attempts, 3);
    ck_assert_int_eq(brg_model_chat_status(BRG_OK, msg), BRG_EHTTP);
    brg_msg_destroy(&msg);

    msg = brg_model_msg_cancel(5);
    ck_assert(brg_msg_is(msg, BRG_MODEL_TAG_CANCEL));
    ck_assert_int_eq(tu_msg_int(msg), 5);
    brg_msg_destroy(&msg);
    ck_assert_str_eq(brg_model_role_name(BRG_MODEL_TOOL), "tool");
    ck_assert_str_eq(brg_model_role_name((brg_model_role_t)9), "unknown");
}
END_TEST

//  Run every reader (and, when they accept, every view) on msg.
static void
tm_read_everything(const brg_msg_t *msg)
{
    brg_model_chat_view_t v;
    if (brg_model_read_chat(msg, &v) == BRG_OK) {
        for (uint32_t i = 0; i < v.n_messages; i++) {
            brg_model_message_t m;
            ck_assert_int_eq(brg_model_chat_message(&v, i, &m), BRG_OK);
            for (uint32_t k = 0; k < m.n_tool_calls; k++) {
                brg_model_tool_call_t c;
                ck_assert_int_eq(brg_model_message_tool_call(&m, k, &c), BRG_OK);
            }
        }
        for (uint32_t i = 0; i < v.n_tools; i++) {
            brg_model_tool_t t;
            ck_assert_int_eq(brg_model_chat_tool(&v, i, &t), BRG_OK);
        }
    }
    brg_model_chat_reply_t r;
    if (brg_model_read_chat_reply(msg, &r) == BRG_OK)
        for (uint32_t k = 0; k < r.n_tool_calls; k++) {
            brg_model_tool_call_t c;
            ck_assert_int_eq(brg_model_chat_reply_tool_call(&r, k, &c), BRG_OK);
        }
    brg_model_error_t e;
    brg_model_delta_t d;
    brg_model_end_t end;
    brg_model_stats_t st;
    (void)brg_model_read_error(msg, &e);
    (void)brg_model_read_delta(msg, &d);
    (void)brg_model_read_end(msg, &end);
    (void)brg_model_read_stats(msg, &st);
    (void)brg_model_chat_status(BRG_OK, msg);
}

START_TEST(test_model_chat_readers_survive_mutated_messages)
{
    // Valid messages of every kind, then each with bytes changed (kept when
    // still msgpack): the readers answer BRG_OK or an error, never read
    // out of bounds (the sanitizer builds check), and a request they accept
    // can be walked whole.
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "hello", 0);
    brg_model_tool_call_t calls[] = {{"c1", 0, "f", 0, "{}", 0}, {"c2", 0, "g", 0, "[]", 0}};
    brg_model_chat_add_assistant(chat, "x", calls, 2);
    brg_model_chat_add_tool_result(chat, "c1", "r", 0);
    brg_model_tool_t tool = {"f", 0, "d", 0, NULL, 0};
    brg_model_chat_add_tool(chat, &tool);
    brg_model_chat_reply_t in = {.text = "t", .len = 1, .finish_reason = "stop"};
    brg_model_error_t ein = {.code = BRG_EHTTP, .message = "m", .retry_after_ms = -1};
    brg_model_delta_t din = {.stream_id = 1, .text = "a", .len = 1, .tool_index = -1};
    brg_msg_t *valid[] = {brg_model_chat_msg(chat),
                          brg_model_msg_chat_reply(&in, calls, 2),
                          brg_model_msg_error(&ein),
                          brg_model_msg_delta(&din),
                          brg_model_msg_end(1, BRG_OK, &in, NULL),
                          brg_model_msg_end(1, BRG_EHTTP, NULL, &ein)};
    unsigned seed = 12345;
    int accepted = 0;
    for (size_t k = 0; k < sizeof valid / sizeof valid[0]; k++) {
        ck_assert_ptr_nonnull(valid[k]);
        tm_read_everything(valid[k]);
        const uint8_t *data = brg_msg_data(valid[k]);
        size_t size = brg_msg_size(valid[k]);
        uint8_t copy[1024];
        ck_assert_uint_le(size, sizeof copy);
        for (int round = 0; round < 3000; round++) {
            memcpy(copy, data, size);
            for (int flips = 1 + rand_r(&seed) % 3; flips > 0; flips--)
                copy[rand_r(&seed) % size] = (uint8_t)rand_r(&seed);
            brg_msg_t *m = brg_msg_new(brg_msg_tag(valid[k]));
            if (brg_msg_add_raw(m, copy, size) == BRG_OK) {
                accepted++;
                tm_read_everything(m);
            }
            brg_msg_destroy(&m);
        }
        brg_msg_destroy(&valid[k]);
    }
    ck_assert_int_gt(accepted, 1000); // most mutations stay msgpack
    brg_model_chat_destroy(&chat);
}
END_TEST

//  ---------------------------------------------------------------------------
//  A stream collector: an actor that sends a chat request and gathers the
//  stream's fragments. The test thread reads the results under tm_col.lock
//  once `done` counts the ends it waits for.

typedef struct {
    pthread_mutex_t lock;
    brg_ref_t model;
    brg_msg_t *request;  // handed over by the test before "tm.go"
    brg_msg_t *request2; // optional second request, sent right after
    uint64_t cancel_id;  // "tm.cancel": the stream to cancel
    char text[4096];     // text deltas of stream 1 and 2, in order
    char text2[4096];
    char args[4][1024]; // tool-call argument fragments by index (stream 1)
    char ids[4][64];
    char names[4][64];
    int deltas;
    int first_fragments; // tool deltas with an id and name
    int done;
    brg_msg_t *ends[4];
} tm_collector_t;

static tm_collector_t tm_col = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
tm_cat(char *dst, size_t size, const char *s, size_t len)
{
    size_t have = strlen(dst);
    ck_assert_uint_lt(have + len, size);
    memcpy(dst + have, s, len);
    dst[have + len] = '\0';
}

static int
tm_collect(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_model_delta_t d;
    pthread_mutex_lock(&tm_col.lock);
    if (brg_msg_is(msg, "tm.go")) {
        brg_msg_t *req = tm_col.request, *req2 = tm_col.request2;
        tm_col.request = tm_col.request2 = NULL;
        pthread_mutex_unlock(&tm_col.lock);
        ck_assert_int_eq(brg_send(ctx, tm_col.model, &req), BRG_OK);
        if (req2)
            ck_assert_int_eq(brg_send(ctx, tm_col.model, &req2), BRG_OK);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "tm.cancel")) {
        brg_msg_t *cancel = brg_model_msg_cancel(tm_col.cancel_id);
        pthread_mutex_unlock(&tm_col.lock);
        ck_assert_int_eq(brg_send(ctx, tm_col.model, &cancel), BRG_OK);
        return BRG_OK;
    }
    if (brg_model_read_delta(msg, &d) == BRG_OK) {
        tm_col.deltas++;
        if (d.tool_index < 0) {
            char *dst = d.stream_id == 2 ? tm_col.text2 : tm_col.text;
            tm_cat(dst, sizeof tm_col.text, d.text, d.len);
        } else {
            ck_assert_int_lt(d.tool_index, 4);
            if (d.id_len) {
                tm_col.first_fragments++;
                tm_cat(tm_col.ids[d.tool_index], 64, d.id, d.id_len);
                tm_cat(tm_col.names[d.tool_index], 64, d.name, d.name_len);
            }
            tm_cat(tm_col.args[d.tool_index], 1024, d.arguments, d.arguments_len);
        }
    } else if (brg_msg_is(msg, BRG_MODEL_TAG_END)) {
        ck_assert_int_lt(tm_col.done, 4);
        tm_col.ends[tm_col.done++] = brg_msg_dup(msg);
    }
    pthread_mutex_unlock(&tm_col.lock);
    return BRG_OK;
}

static void
tm_collector_reset(void)
{
    pthread_mutex_lock(&tm_col.lock);
    for (int i = 0; i < tm_col.done; i++)
        brg_msg_destroy(&tm_col.ends[i]);
    brg_msg_destroy(&tm_col.request);
    brg_msg_destroy(&tm_col.request2);
    memset(tm_col.text, 0, sizeof tm_col.text);
    memset(tm_col.text2, 0, sizeof tm_col.text2);
    memset(tm_col.args, 0, sizeof tm_col.args);
    memset(tm_col.ids, 0, sizeof tm_col.ids);
    memset(tm_col.names, 0, sizeof tm_col.names);
    tm_col.deltas = tm_col.first_fragments = tm_col.done = 0;
    pthread_mutex_unlock(&tm_col.lock);
}

//  Start a collector that sends `request` and then `request2` (taken; may
//  be NULL) to model.
static brg_ref_t
tm_stream_two(brg_ref_t model, brg_msg_t *request, brg_msg_t *request2)
{
    tm_collector_reset();
    pthread_mutex_lock(&tm_col.lock);
    tm_col.model = model;
    tm_col.request = request;
    tm_col.request2 = request2;
    pthread_mutex_unlock(&tm_col.lock);
    brg_ref_t col = tu_spawn(tu_sys, tm_collect);
    ck_assert_int_eq(tu_send_tag(tu_sys, col, "tm.go"), BRG_OK);
    return col;
}

static brg_ref_t
tm_stream(brg_ref_t model, brg_msg_t *request)
{
    return tm_stream_two(model, request, NULL);
}

//  Wait until at least n fragments came.
static void
tm_wait_deltas(int n)
{
    for (int t = 0; t < 1000 * (int)tu_multiplier(); t++) {
        pthread_mutex_lock(&tm_col.lock);
        int deltas = tm_col.deltas;
        pthread_mutex_unlock(&tm_col.lock);
        if (deltas >= n)
            return;
        tu_sleep_ms(10);
    }
    ck_abort_msg("no stream fragment came");
}

//  Wait until n ends came (10 s at most, times the multiplier).
static void
tm_wait_ends(int n)
{
    for (int t = 0; t < 1000 * (int)tu_multiplier(); t++) {
        pthread_mutex_lock(&tm_col.lock);
        int done = tm_col.done;
        pthread_mutex_unlock(&tm_col.lock);
        if (done >= n)
            return;
        tu_sleep_ms(10);
    }
    ck_abort_msg("the stream did not end");
}

//  ---------------------------------------------------------------------------
//  Offline chat script

static const brg_model_tool_call_t tm_weather_call[] = {
    {"call_w1", 0, "get_weather", 0, "{\"city\":\"Oslo\",\"unit\":\"celsius\"}", 0}};

static const brg_model_rule_t tm_rules[] = {
    {.after_tool = true, .text = "The tool says: {tool}."},
    {.contains = "weather",
     .tool_offered = "get_weather",
     .tool_calls = tm_weather_call,
     .n_tool_calls = 1},
    {.contains = "json", .text = "{\"ok\":true}"},
    {.turn = 2, .text = "This is turn two; you said {user}!"},
};

static brg_ref_t tm_script;

static void
tm_setup_script(void)
{
    tu_setup();
    tm_collector_reset();
    brg_model_offline_opts_t opts;
    brg_model_offline_opts_init(&opts);
    opts.rules = tm_rules;
    opts.n_rules = sizeof tm_rules / sizeof tm_rules[0];
    opts.model = "script-1";
    opts.stream_chunk = 5;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &opts, &tm_script), BRG_OK);
}

static void
tm_teardown_script(void)
{
    tu_teardown();
    tm_collector_reset();
}

//  Ask the script; the reply is the caller's.
static brg_msg_t *
tm_chat(brg_ref_t model, brg_model_chat_t *chat)
{
    brg_msg_t *msg = brg_model_chat_msg(chat), *reply = NULL;
    ck_assert_ptr_nonnull(msg);
    ck_assert_int_eq(brg_system_ask(tu_sys, model, &msg, 10000, &reply), BRG_OK);
    return reply;
}

START_TEST(test_model_offline_chat_follows_its_script)
{
    brg_model_tool_t weather = {"get_weather", 0, "weather", 0, NULL, 0};
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_SYSTEM, "You help.", 0);
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "hello there", 0);
    // No rule: the default echo; usage by the estimate.
    brg_msg_t *reply = tm_chat(tm_script, chat);
    brg_model_chat_reply_t r;
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "You said: hello there");
    tm_eq(r.finish_reason, r.finish_reason_len, "stop");
    tm_eq(r.model, r.model_len, "script-1");
    tm_eq(r.backend, r.backend_len, "offline");
    ck_assert_uint_eq(r.n_tool_calls, 0);
    ck_assert_int_eq(r.prompt_tokens, (9 + 11 + 3) / 4); // all the contents
    ck_assert_int_eq(r.completion_tokens, (21 + 3) / 4);
    ck_assert_int_eq(r.total_tokens, r.prompt_tokens + r.completion_tokens);
    brg_msg_destroy(&reply);

    // Turn 2 (one assistant message before): the turn rule, with {user}.
    brg_model_chat_add_assistant(chat, "You said: hello there", NULL, 0);
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "again", 0);
    reply = tm_chat(tm_script, chat);
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "This is turn two; you said again!");
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);

    // "weather" matches only when the tool is offered.
    chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "what is the weather in Oslo?", 0);
    reply = tm_chat(tm_script, chat);
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "You said: what is the weather in Oslo?");
    brg_msg_destroy(&reply);
    ck_assert_int_eq(brg_model_chat_add_tool(chat, &weather), BRG_OK);
    reply = tm_chat(tm_script, chat);
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "");
    tm_eq(r.finish_reason, r.finish_reason_len, "tool_calls");
    ck_assert_uint_eq(r.n_tool_calls, 1);
    brg_model_tool_call_t c;
    ck_assert_int_eq(brg_model_chat_reply_tool_call(&r, 0, &c), BRG_OK);
    tm_eq(c.id, c.id_len, "call_w1");
    tm_eq(c.name, c.name_len, "get_weather");
    tm_eq(c.arguments, c.arguments_len, "{\"city\":\"Oslo\",\"unit\":\"celsius\"}");
    // The agent runs the tool and sends the result: the after_tool rule.
    ck_assert_int_eq(brg_model_chat_add_assistant(chat, NULL, &c, 1), BRG_OK);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(brg_model_chat_add_tool_result(chat, "call_w1", "rain, 4 C", 0), BRG_OK);
    reply = tm_chat(tm_script, chat);
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "The tool says: rain, 4 C.");
    tm_eq(r.finish_reason, r.finish_reason_len, "stop");
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);

    // A malformed chat request: an ask error, as for the old tasks.
    brg_msg_t *bad = brg_msg_new(BRG_MODEL_TAG_CHAT);
    brg_msg_add_str(bad, "nonsense");
    ck_assert_int_eq(brg_system_ask(tu_sys, tm_script, &bad, 10000, &reply), BRG_EBADMSG);

    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, tm_script, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.requests, 6);
    ck_assert_uint_eq(st.errors, 1);
    ck_assert_uint_eq(st.streams, 0);
    ck_assert_uint_gt(st.prompt_tokens, 0);
    ck_assert_uint_gt(st.completion_tokens, 0);
    ck_assert_uint_eq(st.retries, 0);
}
END_TEST

START_TEST(test_model_offline_chat_streams_text_and_tool_call_fragments)
{
    // Text: "You said: " + a multi-byte text, in fragments of at most 5 bytes
    // that never cut a character.
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "blåbærsyltetøy", 0);
    brg_model_chat_set_stream(chat, 1);
    tm_stream(tm_script, brg_model_chat_msg(chat));
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    ck_assert_str_eq(tm_col.text, "You said: blåbærsyltetøy");
    ck_assert_int_ge(tm_col.deltas, 5);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_uint_eq(end.stream_id, 1);
    ck_assert_int_eq(end.status, BRG_OK);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "stop");
    ck_assert_int_eq(end.reply.completion_tokens, (strlen("You said: blåbærsyltetøy") + 3) / 4);
    tm_eq(end.reply.model, end.reply.model_len, "script-1");
    pthread_mutex_unlock(&tm_col.lock);
    brg_model_chat_destroy(&chat);

    // Tool calls: the id and name in the first fragment, the arguments in pieces.
    chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "weather?", 0);
    brg_model_tool_t weather = {"get_weather", 0, "weather", 0, NULL, 0};
    brg_model_chat_add_tool(chat, &weather);
    brg_model_chat_set_stream(chat, 1);
    tm_stream(tm_script, brg_model_chat_msg(chat));
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    ck_assert_str_eq(tm_col.text, "");
    ck_assert_int_eq(tm_col.first_fragments, 1);
    ck_assert_str_eq(tm_col.ids[0], "call_w1");
    ck_assert_str_eq(tm_col.names[0], "get_weather");
    ck_assert_str_eq(tm_col.args[0], "{\"city\":\"Oslo\",\"unit\":\"celsius\"}");
    ck_assert_int_ge(tm_col.deltas, 1 + 33 / 5);
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "tool_calls");
    pthread_mutex_unlock(&tm_col.lock);
    brg_model_chat_destroy(&chat);

    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, tm_script, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.requests, 2);
    ck_assert_uint_eq(st.streams, 2);
}
END_TEST

START_TEST(test_model_offline_paced_stream_can_be_cancelled_mid_stream)
{
    brg_model_offline_opts_t opts;
    brg_model_offline_opts_init(&opts);
    opts.stream_chunk = 2;
    opts.stream_interval_ms = 20;
    brg_ref_t paced;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &opts, &paced), BRG_OK);
    // Played to its end: the same text as unpaced, fragment by fragment.
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "slowly", 0);
    brg_model_chat_set_stream(chat, 11);
    tm_stream(paced, brg_model_chat_msg(chat));
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    ck_assert_str_eq(tm_col.text, "You said: slowly");
    ck_assert_int_eq(tm_col.deltas, 8);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "stop");
    pthread_mutex_unlock(&tm_col.lock);
    // Cancelled after the first fragment: the rest never comes.
    brg_model_chat_t *long_chat = brg_model_chat_new();
    brg_model_chat_add_message(long_chat, BRG_MODEL_USER,
                               "a long question that takes many fragments to answer", 0);
    brg_model_chat_set_stream(long_chat, 12);
    brg_ref_t col = tm_stream(paced, brg_model_chat_msg(long_chat));
    pthread_mutex_lock(&tm_col.lock);
    tm_col.cancel_id = 12;
    pthread_mutex_unlock(&tm_col.lock);
    tm_wait_deltas(1);
    ck_assert_int_eq(tu_send_tag(tu_sys, col, "tm.cancel"), BRG_OK);
    tm_wait_ends(1);
    tu_sleep_ms(100); // time for more fragments, if any were still coming
    pthread_mutex_lock(&tm_col.lock);
    ck_assert_int_eq(tm_col.done, 1);
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_OK);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "cancelled");
    ck_assert_int_eq(end.reply.completion_tokens, -1);
    ck_assert_int_lt(tm_col.deltas, 30); // 61 bytes in 2-byte fragments when played whole
    int deltas = tm_col.deltas;
    pthread_mutex_unlock(&tm_col.lock);
    ck_assert_int_ge(deltas, 1);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, paced, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.streams, 2);
    brg_model_chat_destroy(&chat);
    brg_model_chat_destroy(&long_chat);
}
END_TEST

START_TEST(test_model_offline_spawn_rejects_bad_scripts)
{
    brg_model_offline_opts_t opts;
    brg_model_offline_opts_init(&opts);
    brg_model_rule_t empty = {.contains = "x"}; // no text, no call
    opts.rules = &empty;
    opts.n_rules = 1;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &opts, NULL), BRG_EINVAL);
    brg_model_tool_call_t no_name = {"id", 0, NULL, 0, NULL, 0};
    brg_model_rule_t bad_call = {.tool_calls = &no_name, .n_tool_calls = 1};
    opts.rules = &bad_call;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &opts, NULL), BRG_EINVAL);
    opts.n_rules = 0;
    opts.stream_chunk = 0;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &opts, NULL), BRG_EINVAL);
    opts.stream_chunk = 16;
    opts.stream_interval_ms = -1;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &opts, NULL), BRG_EINVAL);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 1); // the fixture's script only
}
END_TEST

//  ---------------------------------------------------------------------------
//  OpenAI-compatible backend against the server

static const char tm_completion[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"test-model-1\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
    "\"Actors share nothing.\\nThey talk by messages.\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":9,\"total_tokens\":51}}";

static void
tm_handler(const tu_http_req_t *req, tu_http_resp_t *resp, void *arg)
{
    (void)arg;
    if (strcmp(req->method, "POST") != 0 || !strstr(req->path, "/v1/chat/completions")) {
        resp->status = 404;
    } else if (strncmp(req->path, "/ok/", 4) == 0) {
        resp->body = strdup(tm_completion);
    } else if (strncmp(req->path, "/err/", 5) == 0) {
        resp->status = 429;
        resp->body = strdup("{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"x\"}}");
    } else if (strncmp(req->path, "/slow/", 6) == 0) {
        resp->delay_ms = 5000;
        resp->body = strdup(tm_completion);
    } else if (strncmp(req->path, "/bad/", 5) == 0) {
        resp->body = strdup("{\"choices\": [ {\"message\": "); // cut short
    } else if (strncmp(req->path, "/garbage", 8) == 0) {
        // "/garbage<seed>/v1/...": random bytes, sometimes starting like JSON.
        unsigned seed = (unsigned)strtoul(req->path + 8, NULL, 10);
        size_t len = 1 + rand_r(&seed) % 2048;
        resp->body = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            resp->body[i] = (char)(rand_r(&seed) % 256);
        static const char json_start[] = "{\"choices\":[{\"message\":";
        if (seed % 2)
            memcpy(resp->body, json_start, len < strlen(json_start) ? len : strlen(json_start));
        resp->body[len] = '\0';
        resp->body_len = len;
    } else if (strncmp(req->path, "/empty/", 7) == 0) {
        resp->body = strdup("{\"choices\":[]}");
    } else if (strncmp(req->path, "/number/", 8) == 0) {
        resp->body = strdup("{\"choices\":[{\"message\":{\"content\":42}}]}");
    } else if (strncmp(req->path, "/object/", 8) == 0) {
        resp->body = strdup("{\"choices\":{\"0\":{\"message\":{\"content\":\"x\"}}}}");
    } else if (strncmp(req->path, "/array/", 7) == 0) {
        resp->body = strdup("[1, 2, 3]");
    } else {
        resp->status = 404;
    }
}

static tu_http_server_t *tm_server;

static void
tm_setup_openai(void)
{
    tu_setup();
    tm_server = tu_http_server_start(tm_handler, NULL);
    ck_assert_ptr_nonnull(tm_server);
}

static void
tm_teardown_openai(void)
{
    brg_system_destroy(&tu_sys); // stops the backends and joins their I/O threads
    tu_http_server_stop(&tm_server);
}

//  Spawn a backend at the server's base URL "<prefix>/v1".
static brg_ref_t
tm_openai(const char *prefix, int timeout_ms)
{
    char url[256];
    tu_http_server_url(tm_server, url, sizeof url, prefix);
    strcat(url, "/v1/");
    brg_model_openai_opts_t opts;
    brg_model_openai_opts_init(&opts);
    opts.url = url;
    opts.api_key = "sk-test-123";
    opts.model = "test-model";
    opts.timeout_ms = timeout_ms;
    opts.max_tokens = 64;
    brg_ref_t model;
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &opts, &model), BRG_OK);
    return model;
}

START_TEST(test_model_openai_posts_a_chat_completion_and_answers_with_its_text)
{
    brg_ref_t model = tm_openai("/ok", 10000);
    char out[256];
    brg_model_reply_t info;
    brg_msg_t *reply;
    ck_assert_int_eq(tm_ask(model, BRG_MODEL_SUMMARISE, NULL, "Ünïcode text \"quoted\"\n", out,
                            sizeof out, &info, &reply),
                     BRG_OK);
    ck_assert_str_eq(out, "Actors share nothing.\nThey talk by messages.");
    ck_assert(info.backend_len == 6 && memcmp(info.backend, "openai", 6) == 0);
    ck_assert(info.model_len == 12 && memcmp(info.model, "test-model-1", 12) == 0);
    ck_assert_int_eq(info.prompt_tokens, 42);
    ck_assert_int_eq(info.completion_tokens, 9);
    brg_msg_destroy(&reply);

    // What went over the wire.
    tu_http_req_t seen;
    char body[4096];
    ck_assert_int_eq(tu_http_server_last(tm_server, &seen, body, sizeof body), 1);
    ck_assert_str_eq(seen.path, "/ok/v1/chat/completions");
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nAuthorization: Bearer sk-test-123"));
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nContent-Type: application/json"));
    json_error_t err;
    json_t *root = json_loads(body, 0, &err);
    ck_assert_msg(root != NULL, "request body is not JSON: %s", err.text);
    ck_assert_str_eq(json_string_value(json_object_get(root, "model")), "test-model");
    ck_assert_int_eq(json_integer_value(json_object_get(root, "max_tokens")), 64);
    json_t *messages = json_object_get(root, "messages");
    ck_assert_uint_eq(json_array_size(messages), 2);
    json_t *sys_msg = json_array_get(messages, 0), *user = json_array_get(messages, 1);
    ck_assert_str_eq(json_string_value(json_object_get(sys_msg, "role")), "system");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(sys_msg, "content")), "summar"));
    ck_assert_str_eq(json_string_value(json_object_get(user, "role")), "user");
    ck_assert_str_eq(json_string_value(json_object_get(user, "content")),
                     "Ünïcode text \"quoted\"\n");
    json_decref(root);

    // Instructions replace the task's prompt.
    ck_assert_int_eq(
        tm_ask(model, BRG_MODEL_CHAT, "Answer in French.", "Hi", out, sizeof out, NULL, NULL),
        BRG_OK);
    tu_http_server_last(tm_server, NULL, body, sizeof body);
    root = json_loads(body, 0, &err);
    sys_msg = json_array_get(json_object_get(root, "messages"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(sys_msg, "content")), "Answer in French.");
    json_decref(root);
}
END_TEST

START_TEST(test_model_openai_http_error_status_answers_ehttp)
{
    char out[64];
    ck_assert_int_eq(tm_ask(tm_openai("/err", 10000), BRG_MODEL_CHECK, NULL, "text", out,
                            sizeof out, NULL, NULL),
                     BRG_EHTTP);
    ck_assert_int_eq(tm_ask(tm_openai("/nowhere", 10000), BRG_MODEL_CHECK, NULL, "text", out,
                            sizeof out, NULL, NULL),
                     BRG_EHTTP);
}
END_TEST

START_TEST(test_model_openai_deadline_answers_timed_out)
{
    char out[64];
    ck_assert_int_eq(tm_ask(tm_openai("/slow", 300), BRG_MODEL_SUMMARISE, NULL, "text", out,
                            sizeof out, NULL, NULL),
                     BRG_ETIMEDOUT);
}
END_TEST

START_TEST(test_model_openai_malformed_json_answers_eproto)
{
    char out[64];
    ck_assert_int_eq(tm_ask(tm_openai("/bad", 10000), BRG_MODEL_SUMMARISE, NULL, "text", out,
                            sizeof out, NULL, NULL),
                     BRG_EPROTO);
    const char *wrong[] = {"/empty", "/number", "/object", "/array"};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        ck_assert_int_eq(tm_ask(tm_openai(wrong[i], 10000), BRG_MODEL_SUMMARISE, NULL, "text", out,
                                sizeof out, NULL, NULL),
                         BRG_EPROTO);
}
END_TEST

START_TEST(test_model_openai_random_bytes_from_the_server_answer_eproto)
{
    // Fuzzing the response side: whatever comes back, the caller gets
    // BRG_EPROTO and the backend keeps working.
    for (int i = 0; i < 60; i++) {
        char prefix[32], out[64];
        snprintf(prefix, sizeof prefix, "/garbage%d", i);
        ck_assert_int_eq(tm_ask(tm_openai(prefix, 10000), BRG_MODEL_SUMMARISE, NULL, "text", out,
                                sizeof out, NULL, NULL),
                         BRG_EPROTO);
    }
    char out[256];
    ck_assert_int_eq(tm_ask(tm_openai("/ok", 10000), BRG_MODEL_SUMMARISE, NULL, "text", out,
                            sizeof out, NULL, NULL),
                     BRG_OK);
}
END_TEST

START_TEST(test_model_openai_refuses_text_that_is_not_utf8)
{
    char out[64];
    ck_assert_int_eq(tm_ask(tm_openai("/ok", 10000), BRG_MODEL_SUMMARISE, NULL, "bad \xff byte",
                            out, sizeof out, NULL, NULL),
                     BRG_EINVAL);
    ck_assert_int_eq(tu_http_server_last(tm_server, NULL, NULL, 0), 0);
}
END_TEST

static atomic_int tm_answers, tm_closed;

static int
tm_on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)reply;
    (void)arg;
    if (status == BRG_ECLOSED)
        atomic_fetch_add(&tm_closed, 1);
    atomic_fetch_add(&tm_answers, 1);
    return BRG_OK;
}

static int
tm_asker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t model;
    size_t pos = 0;
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &model), BRG_OK);
    brg_model_request_t req = {BRG_MODEL_SUMMARISE, NULL, 0, "text", 0};
    for (int i = 0; i < 5; i++) {
        brg_msg_t *ask = brg_model_msg_request(&req);
        ck_assert_int_eq(brg_ask(ctx, model, &ask, 60000, tm_on_answer, NULL), BRG_OK);
    }
    return BRG_OK;
}

START_TEST(test_model_openai_stopped_mid_call_frees_its_requests)
{
    brg_ref_t model = tm_openai("/slow", 30000), asker;
    ck_assert_int_eq(brg_system_spawn(tu_sys, tm_asker, NULL, &asker), BRG_OK);
    brg_msg_t *go = brg_msg_new("go");
    brg_msg_add_ref(go, model);
    ck_assert_int_eq(brg_system_send(tu_sys, asker, &go), BRG_OK);
    TU_WAIT_UNTIL(tu_http_server_last(tm_server, NULL, NULL, 0) == 5, TU_WAIT_MS);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 3); // asker, backend, its HTTP actor
    brg_actor_stop(tu_sys, model);
    TU_WAIT_DEAD(tu_sys, model);
    // Every caller hears BRG_ECLOSED at once (not at its 60 s deadline), the
    // saved requests are freed (ASan checks), and the backend's own HTTP
    // actor ends with it although the stop was a normal exit.
    TU_WAIT_UNTIL(atomic_load(&tm_answers) == 5, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&tm_closed), 5);
    TU_WAIT_UNTIL(tu_stats(tu_sys).actors_alive == 1, TU_WAIT_MS);
}
END_TEST

START_TEST(test_model_backend_is_chosen_from_the_environment)
{
    brg_ref_t model;
    const char *backend = NULL;
    unsetenv("BRG_MODEL_URL");
    ck_assert_int_eq(brg_model_spawn_from_env_root(tu_sys, "m1", &model, &backend), BRG_OK);
    ck_assert_str_eq(backend, "offline");
    char out[256];
    ck_assert_int_eq(
        tm_ask(model, BRG_MODEL_KEYWORDS, NULL, "cats and cats", out, sizeof out, NULL, NULL),
        BRG_OK);
    ck_assert_str_eq(out, "cats (2)");

    char url[256];
    tu_http_server_url(tm_server, url, sizeof url,
                       "/ok/v1/chat/completions"); // a full URL works too
    setenv("BRG_MODEL_URL", url, 1);
    setenv("BRG_MODEL_KEY", "k-env", 1);
    setenv("BRG_MODEL_NAME", "env-model", 1);
    ck_assert_int_eq(brg_model_spawn_from_env_root(tu_sys, "m2", &model, &backend), BRG_OK);
    ck_assert_str_eq(backend, "openai");
    ck_assert_int_eq(tm_ask(model, BRG_MODEL_KEYWORDS, NULL, "cats", out, sizeof out, NULL, NULL),
                     BRG_OK);
    ck_assert_str_eq(out, "Actors share nothing.\nThey talk by messages.");
    tu_http_req_t seen;
    char body[4096];
    tu_http_server_last(tm_server, &seen, body, sizeof body);
    ck_assert_str_eq(seen.path, "/ok/v1/chat/completions");
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nAuthorization: Bearer k-env"));
    ck_assert_ptr_nonnull(strstr(body, "\"model\":\"env-model\""));
}
END_TEST

START_TEST(test_model_openai_spawn_rejects_bad_options)
{
    brg_model_openai_opts_t opts;
    brg_model_openai_opts_init(&opts);
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &opts, NULL), BRG_EINVAL); // no URL
    opts.url = "file:///etc/passwd";
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &opts, NULL), BRG_EINVAL);
    opts.url = "http://127.0.0.1:1/v1";
    opts.temperature = 3;
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &opts, NULL), BRG_EINVAL);
    opts.temperature = 0.5;
    opts.max_tokens = 0;
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &opts, NULL), BRG_EINVAL);
    ck_assert_uint_eq(tu_stats(tu_sys).actors_alive, 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  OpenAI-compatible backend: chat, against tests/model_test_server.h

static tu_model_server_t tm_ms = TU_MODEL_SERVER_INIT;
static tu_http_server_t *tm_chat_server;
static brg_ref_t tm_chat_http; // the backends' HTTP actor (its stats are read)

static void
tm_setup_chat(void)
{
    tu_setup();
    tm_collector_reset();
    atomic_store(&tm_ms.requests, 0);
    tm_ms.fail_first = tm_ms.fail_status = tm_ms.close_first = 0;
    tm_ms.retry_after = NULL;
    tm_ms.chunk_delay_ms = tm_ms.delay_ms = 0;
    tm_ms.last_error[0] = '\0';
    tm_chat_server = tu_http_server_start(tu_model_handler, &tm_ms);
    ck_assert_ptr_nonnull(tm_chat_server);
    brg_http_opts_t hopts;
    brg_http_opts_init(&hopts);
    hopts.log_errors = false;
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &hopts, &tm_chat_http), BRG_OK);
}

static void
tm_teardown_chat(void)
{
    tu_teardown();
    tu_http_server_stop(&tm_chat_server);
    tm_collector_reset();
}

//  An openai backend on the chat server under path (e.g. "/v1"), fast
//  retries; tweak may change the options first.
static brg_ref_t
tm_chat_openai(const char *path, void (*tweak)(brg_model_openai_opts_t *))
{
    char url[128];
    tu_http_server_url(tm_chat_server, url, sizeof url, path);
    brg_model_openai_opts_t opts;
    brg_model_openai_opts_init(&opts);
    opts.url = url;
    opts.api_key = "sk-test";
    opts.model = "test-default";
    opts.http = tm_chat_http;
    opts.log_errors = false;
    opts.retry_base_ms = 10;
    opts.retry_max_ms = 50;
    opts.timeout_ms = 10000;
    if (tweak)
        tweak(&opts);
    brg_ref_t model;
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &opts, &model), BRG_OK);
    return model;
}

//  The server's copy of the last request body, parsed.
static json_t *
tm_last_body(void)
{
    static char body[16384];
    tu_http_server_last(tm_chat_server, NULL, body, sizeof body);
    json_t *root = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(root);
    return root;
}

//  Ask and read an error reply into *e (the reply is kept in *keep).
static void
tm_chat_error(brg_ref_t model, brg_model_chat_t *chat, brg_model_error_t *e, brg_msg_t **keep)
{
    *keep = tm_chat(model, chat);
    ck_assert_int_eq(brg_model_read_error(*keep, e), BRG_OK);
}

START_TEST(test_model_openai_chat_puts_history_tools_and_settings_on_the_wire)
{
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_SYSTEM, "You help.", 0);
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "Weather in Oslo?", 0);
    brg_model_tool_call_t call = {"call_9", 0, "get_weather", 0, "{\"city\":\"Oslo\"}", 0};
    brg_model_chat_add_assistant(chat, NULL, &call, 1);
    brg_model_chat_add_tool_result(chat, "call_9", "rain", 0);
    brg_model_tool_t tool = {
        "get_weather",
        0,
        "The weather",
        0,
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}",
        0};
    brg_model_chat_add_tool(chat, &tool);
    brg_model_chat_set_model(chat, "override-1");
    brg_model_chat_set_temperature(chat, 0.25);
    brg_model_chat_set_max_tokens(chat, 50);
    brg_msg_t *reply = tm_chat(model, chat);
    brg_model_chat_reply_t r;
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "Tool said: rain");
    tm_eq(r.finish_reason, r.finish_reason_len, "stop");
    tm_eq(r.model, r.model_len, "override-1");
    tm_eq(r.backend, r.backend_len, "openai");
    ck_assert_int_eq(r.attempts, 1);
    ck_assert_int_gt(r.prompt_tokens, 10);
    ck_assert_int_eq(r.completion_tokens, 8);
    ck_assert_int_eq(r.total_tokens, r.prompt_tokens + 8);
    brg_msg_destroy(&reply);

    json_t *body = tm_last_body();
    ck_assert_str_eq(json_string_value(json_object_get(body, "model")), "override-1");
    ck_assert_int_eq(json_integer_value(json_object_get(body, "max_tokens")), 50);
    ck_assert(json_real_value(json_object_get(body, "temperature")) == 0.25);
    ck_assert_ptr_null(json_object_get(body, "stream"));
    ck_assert_ptr_null(json_object_get(body, "response_format"));
    json_t *messages = json_object_get(body, "messages");
    ck_assert_uint_eq(json_array_size(messages), 4);
    json_t *asst = json_array_get(messages, 2);
    ck_assert(json_is_null(json_object_get(asst, "content")));
    json_t *tc = json_array_get(json_object_get(asst, "tool_calls"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(tc, "id")), "call_9");
    ck_assert_str_eq(json_string_value(json_object_get(tc, "type")), "function");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
        "{\"city\":\"Oslo\"}");
    json_t *toolmsg = json_array_get(messages, 3);
    ck_assert_str_eq(json_string_value(json_object_get(toolmsg, "role")), "tool");
    ck_assert_str_eq(json_string_value(json_object_get(toolmsg, "tool_call_id")), "call_9");
    json_t *fn = json_object_get(json_array_get(json_object_get(body, "tools"), 0), "function");
    ck_assert_str_eq(json_string_value(json_object_get(fn, "name")), "get_weather");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(fn, "parameters"), "type")),
                     "object");
    json_decref(body);

    // JSON mode, and the backend's defaults when the request sets none.
    brg_model_chat_t *json_chat = brg_model_chat_new();
    brg_model_chat_add_message(json_chat, BRG_MODEL_USER, "answer in JSON", 0);
    brg_model_chat_set_json_mode(json_chat, true);
    reply = tm_chat(model, json_chat);
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "{\"answer\":\"json\"}");
    brg_msg_destroy(&reply);
    body = tm_last_body();
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(body, "response_format"), "type")),
        "json_object");
    ck_assert_str_eq(json_string_value(json_object_get(body, "model")), "test-default");
    ck_assert_int_eq(json_integer_value(json_object_get(body, "max_tokens")), 512);
    json_decref(body);
    brg_model_chat_destroy(&json_chat);
    brg_model_chat_destroy(&chat);

    // A tool whose parameters are not JSON never leaves: an error with why.
    chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "x", 0);
    brg_model_tool_t bad = {"f", 0, "", 0, "{not json", 0};
    brg_model_chat_add_tool(chat, &bad);
    brg_model_error_t e;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.code, BRG_EINVAL);
    ck_assert_int_eq(e.attempts, 0);
    ck_assert(strstr(e.message, "parameters") != NULL);
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 2);

    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.requests, 3);
    ck_assert_uint_eq(st.errors, 1);
    ck_assert_uint_eq(st.completion_tokens, 16);
    ck_assert_uint_gt(st.prompt_tokens, 20);
    ck_assert_uint_eq(st.in_flight, 0);
}
END_TEST

START_TEST(test_model_openai_chat_answers_with_tool_calls)
{
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "look it up", 0);
    brg_model_tool_t tool = {"search", 0, "Search", 0, NULL, 0};
    brg_model_chat_add_tool(chat, &tool);
    brg_msg_t *reply = tm_chat(model, chat);
    brg_model_chat_reply_t r;
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "");
    tm_eq(r.finish_reason, r.finish_reason_len, "tool_calls");
    ck_assert_uint_eq(r.n_tool_calls, 1);
    brg_model_tool_call_t c;
    ck_assert_int_eq(brg_model_chat_reply_tool_call(&r, 0, &c), BRG_OK);
    tm_eq(c.id, c.id_len, "call_1");
    tm_eq(c.name, c.name_len, "search");
    tm_eq(c.arguments, c.arguments_len, "{\"q\":\"look it up\"}");
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);
}
END_TEST

START_TEST(test_model_openai_chat_streams_text_tool_calls_and_usage)
{
    tm_ms.chunk_delay_ms = 5;
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    // Two streams at once from one actor: text (id 1) and a tool call (id 2).
    brg_model_chat_t *a = brg_model_chat_new(), *b = brg_model_chat_new();
    brg_model_chat_add_message(a, BRG_MODEL_USER, "hello stream", 0);
    brg_model_chat_set_stream(a, 1);
    brg_model_chat_add_message(b, BRG_MODEL_USER, "find it", 0);
    brg_model_tool_t tool = {"search", 0, "Search", 0, NULL, 0};
    brg_model_chat_add_tool(b, &tool);
    brg_model_chat_set_stream(b, 2);
    tm_stream_two(model, brg_model_chat_msg(a), brg_model_chat_msg(b));
    tm_wait_ends(2);
    pthread_mutex_lock(&tm_col.lock);
    ck_assert_str_eq(tm_col.text, "Echo: hello stream");
    ck_assert_str_eq(tm_col.text2, "");
    ck_assert_int_eq(tm_col.first_fragments, 1);
    ck_assert_str_eq(tm_col.names[0], "search");
    ck_assert(strncmp(tm_col.ids[0], "call_", 5) == 0);
    ck_assert_str_eq(tm_col.args[0], "{\"q\":\"find it\"}");
    ck_assert_int_ge(tm_col.deltas, 5 + 4); // 18 bytes in 4s, 15 in 5s and a first fragment
    for (int i = 0; i < 2; i++) {
        brg_model_end_t end;
        ck_assert_int_eq(brg_model_read_end(tm_col.ends[i], &end), BRG_OK);
        ck_assert_int_eq(end.status, BRG_OK);
        ck_assert(end.stream_id == 1 || end.stream_id == 2);
        tm_eq(end.reply.finish_reason, end.reply.finish_reason_len,
              end.stream_id == 1 ? "stop" : "tool_calls");
        ck_assert_int_eq(end.reply.completion_tokens, 8); // from the usage chunk
        ck_assert_int_gt(end.reply.prompt_tokens, 10);
        ck_assert_int_eq(end.reply.total_tokens, end.reply.prompt_tokens + 8);
        tm_eq(end.reply.model, end.reply.model_len, "test-default");
        ck_assert_int_eq(end.reply.attempts, 1);
    }
    pthread_mutex_unlock(&tm_col.lock);
    json_t *body = tm_last_body();
    ck_assert(json_is_true(json_object_get(body, "stream")));
    ck_assert(
        json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage")));
    json_decref(body);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.streams, 2);
    ck_assert_uint_eq(st.completion_tokens, 16);
    ck_assert_uint_eq(st.errors, 0);
    brg_model_chat_destroy(&a);
    brg_model_chat_destroy(&b);
}
END_TEST

START_TEST(test_model_openai_chat_cancel_mid_stream_aborts_the_transfer)
{
    brg_ref_t model = tm_chat_openai("/hang/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "a long answer please", 0);
    brg_model_chat_set_stream(chat, 5);
    brg_ref_t col = tm_stream(model, brg_model_chat_msg(chat));
    pthread_mutex_lock(&tm_col.lock);
    tm_col.cancel_id = 5;
    pthread_mutex_unlock(&tm_col.lock);
    tm_wait_deltas(1); // "Echo", then the server hangs for 10 s
    ck_assert_int_eq(tu_send_tag(tu_sys, col, "tm.cancel"), BRG_OK);
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_OK);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "cancelled");
    ck_assert_str_eq(tm_col.text, "Echo");
    pthread_mutex_unlock(&tm_col.lock);
    // The HTTP actor aborted the transfer (BRG_ECANCELED counts as failed)
    // long before the server's 10 s pause ends.
    brg_http_stats_t hs = {0};
    for (int t = 0; t < 500 * (int)tu_multiplier(); t++) {
        ck_assert_int_eq(brg_http_stats(tu_sys, tm_chat_http, 10000, &hs), BRG_OK);
        if (hs.failed == 1)
            break;
        tu_sleep_ms(10);
    }
    ck_assert_uint_eq(hs.failed, 1);
    ck_assert_uint_eq(hs.in_flight, 0);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_uint_eq(st.in_flight, 0);
    brg_model_chat_destroy(&chat);
}
END_TEST

//  A stream_to actor: collects the fragments it is sent; "tm.cancel" sends
//  the model a cancel for tm_col.cancel_id (from this actor).
static struct {
    pthread_mutex_t lock;
    char text[4096];
    int deltas, others;
} tm_to = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int
tm_stream_to_collect(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_model_delta_t d;
    if (brg_msg_is(msg, "tm.cancel")) {
        pthread_mutex_lock(&tm_col.lock);
        brg_msg_t *cancel = brg_model_msg_cancel(tm_col.cancel_id);
        brg_ref_t model = tm_col.model;
        pthread_mutex_unlock(&tm_col.lock);
        ck_assert_int_eq(brg_send(ctx, model, &cancel), BRG_OK);
        return BRG_OK;
    }
    pthread_mutex_lock(&tm_to.lock);
    if (brg_model_read_delta(msg, &d) == BRG_OK && d.tool_index < 0) {
        tm_to.deltas++;
        tm_cat(tm_to.text, sizeof tm_to.text, d.text, d.len);
    } else {
        tm_to.others++; // an end, or anything else: not for this actor
    }
    pthread_mutex_unlock(&tm_to.lock);
    return BRG_OK;
}

START_TEST(test_model_openai_chat_sends_fragments_to_stream_to_and_the_end_to_the_sender)
{
    tm_ms.chunk_delay_ms = 5;
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_ref_t to = tu_spawn(tu_sys, tm_stream_to_collect);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "hello stream", 0);
    brg_model_chat_set_stream(chat, 1);
    brg_model_chat_set_stream_to(chat, to);
    tm_stream(model, brg_model_chat_msg(chat)); // the collector sends it: the sender
    tm_wait_ends(1);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.streams, 1);
    ck_assert_uint_eq(st.errors, 0);
    // The end went to the sender, the fragments to stream_to and only there
    // (sent before the end, from the same backend: all in by now, but the
    // other actor's mailbox is its own, so wait for the text).
    for (int t = 0; t < 1000 * (int)tu_multiplier(); t++) {
        pthread_mutex_lock(&tm_to.lock);
        bool all = strcmp(tm_to.text, "Echo: hello stream") == 0;
        pthread_mutex_unlock(&tm_to.lock);
        if (all)
            break;
        tu_sleep_ms(10);
    }
    pthread_mutex_lock(&tm_to.lock);
    ck_assert_str_eq(tm_to.text, "Echo: hello stream");
    ck_assert_int_ge(tm_to.deltas, 4);
    ck_assert_int_eq(tm_to.others, 0);
    pthread_mutex_unlock(&tm_to.lock);
    pthread_mutex_lock(&tm_col.lock);
    ck_assert_int_eq(tm_col.deltas, 0);
    ck_assert_int_eq(tm_col.done, 1);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_OK);
    ck_assert_uint_eq(end.stream_id, 1);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "stop");
    pthread_mutex_unlock(&tm_col.lock);
    brg_model_chat_destroy(&chat);
}
END_TEST

//  A stranger: "tm.cancel" sends the model a cancel for tm_col.cancel_id,
//  then a stats request (a plain send: its answer comes back here, after
//  the cancel was handled); the stats it gets are kept.
static atomic_int tm_stranger_stats; // 0: none yet; else 1 + cancelled * 10 + in_flight

static int
tm_stranger(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_model_stats_t st;
    if (brg_msg_is(msg, "tm.cancel")) {
        pthread_mutex_lock(&tm_col.lock);
        brg_msg_t *cancel = brg_model_msg_cancel(tm_col.cancel_id);
        brg_ref_t model = tm_col.model;
        pthread_mutex_unlock(&tm_col.lock);
        brg_msg_t *stats = brg_model_msg_stats();
        ck_assert_int_eq(brg_send(ctx, model, &cancel), BRG_OK);
        ck_assert_int_eq(brg_send(ctx, model, &stats), BRG_OK);
    } else if (brg_model_read_stats(msg, &st) == BRG_OK) {
        atomic_store(&tm_stranger_stats, (int)(1 + st.cancelled * 10 + st.in_flight));
    }
    return BRG_OK;
}

START_TEST(test_model_openai_chat_stream_to_may_cancel_a_stranger_may_not)
{
    brg_ref_t model = tm_chat_openai("/hang/v1", NULL);
    brg_ref_t to = tu_spawn(tu_sys, tm_stream_to_collect);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "a long answer please", 0);
    brg_model_chat_set_stream(chat, 5);
    brg_model_chat_set_stream_to(chat, to);
    tm_stream(model, brg_model_chat_msg(chat));
    pthread_mutex_lock(&tm_col.lock);
    tm_col.cancel_id = 5;
    pthread_mutex_unlock(&tm_col.lock);
    for (int t = 0; t < 1000 * (int)tu_multiplier(); t++) { // "Echo", then a 10 s pause
        pthread_mutex_lock(&tm_to.lock);
        int deltas = tm_to.deltas;
        pthread_mutex_unlock(&tm_to.lock);
        if (deltas > 0)
            break;
        tu_sleep_ms(10);
    }
    // A cancel for the stream's id from an actor that is neither the sender
    // nor stream_to is ignored: the stats the stranger asks for after it
    // (handled after it) show the stream still running, nothing cancelled.
    atomic_store(&tm_stranger_stats, 0);
    brg_ref_t stranger = tu_spawn(tu_sys, tm_stranger);
    ck_assert_int_eq(tu_send_tag(tu_sys, stranger, "tm.cancel"), BRG_OK);
    for (int t = 0; t < 1000 * (int)tu_multiplier() && !atomic_load(&tm_stranger_stats); t++)
        tu_sleep_ms(10);
    ck_assert_int_eq(atomic_load(&tm_stranger_stats), 1 + 0 * 10 + 1);
    brg_model_stats_t st;
    // From stream_to, it ends the stream "cancelled"; the end goes to the sender.
    ck_assert_int_eq(tu_send_tag(tu_sys, to, "tm.cancel"), BRG_OK);
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_OK);
    tm_eq(end.reply.finish_reason, end.reply.finish_reason_len, "cancelled");
    ck_assert_int_eq(tm_col.deltas, 0);
    pthread_mutex_unlock(&tm_col.lock);
    pthread_mutex_lock(&tm_to.lock);
    ck_assert_str_eq(tm_to.text, "Echo");
    pthread_mutex_unlock(&tm_to.lock);
    // The call is released when the aborted transfer's answer comes back.
    for (int t = 0; t < 1000 * (int)tu_multiplier(); t++) {
        ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
        if (st.in_flight == 0)
            break;
        tu_sleep_ms(10);
    }
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.in_flight, 0);
    brg_model_chat_destroy(&chat);
}
END_TEST

START_TEST(test_model_openai_chat_stream_cut_short_ends_with_an_error)
{
    brg_ref_t model = tm_chat_openai("/cut/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "hello", 0);
    brg_model_chat_set_stream(chat, 3);
    tm_stream(model, brg_model_chat_msg(chat));
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_EPROTO);
    ck_assert_int_eq(end.error.http_status, 200);
    ck_assert(strstr(end.error.message, "[DONE]") != NULL);
    ck_assert_int_eq(end.error.attempts, 1); // fragments went out: never retried
    ck_assert_str_eq(tm_col.text, "Echo");
    pthread_mutex_unlock(&tm_col.lock);
    brg_model_chat_destroy(&chat);
}
END_TEST

START_TEST(test_model_openai_chat_errors_keep_status_type_message_and_retry_after)
{
    tm_ms.fail_first = 1000;
    tm_ms.fail_status = 401; // not retried
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "hi", 0);
    brg_model_error_t e;
    brg_msg_t *reply;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.code, BRG_EHTTP);
    ck_assert_int_eq(e.http_status, 401);
    tm_eq(e.type, e.type_len, "server_error");
    tm_eq(e.message, e.message_len, "injected failure 1 of 1000");
    ck_assert_int_eq(e.retry_after_ms, -1);
    ck_assert_int_eq(e.attempts, 1);
    ck_assert_int_eq(brg_model_chat_status(BRG_OK, reply), BRG_EHTTP);
    brg_msg_destroy(&reply);

    // 429 with Retry-After in seconds, one attempt allowed: the detail says when.
    tm_ms.fail_status = 429;
    tm_ms.retry_after = "7";
    ck_assert_int_eq(brg_model_chat_set_max_attempts(chat, 1), BRG_OK);
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.http_status, 429);
    tm_eq(e.type, e.type_len, "rate_limit_exceeded");
    ck_assert_int_eq(e.retry_after_ms, 7000);
    brg_msg_destroy(&reply);

    // ... and as an HTTP date a minute ahead.
    static char date[64];
    time_t later = time(NULL) + 60;
    struct tm gmt;
    gmtime_r(&later, &gmt);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &gmt);
    tm_ms.retry_after = date;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_ge(e.retry_after_ms, 55000);
    ck_assert_int_le(e.retry_after_ms, 60000);
    brg_msg_destroy(&reply);

    // A streamed request that fails before any fragment: an error end.
    brg_model_chat_set_stream(chat, 4);
    tm_stream(model, brg_model_chat_msg(chat));
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_EHTTP);
    ck_assert_uint_eq(end.stream_id, 4);
    ck_assert_int_eq(end.error.http_status, 429);
    ck_assert(end.error.retry_after_ms > 0);
    pthread_mutex_unlock(&tm_col.lock);
    brg_model_chat_destroy(&chat);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.errors, 4);
    ck_assert_uint_eq(st.retries, 0);
}
END_TEST

static void
tm_slow_retries(brg_model_openai_opts_t *opts)
{
    opts->retry_max_ms = 5000; // lets a Retry-After of 1 s through
}

START_TEST(test_model_openai_chat_retries_429_honouring_retry_after)
{
    tm_ms.fail_first = 2;
    tm_ms.fail_status = 429;
    tm_ms.retry_after = "1";
    brg_ref_t model = tm_chat_openai("/v1", tm_slow_retries);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "patience", 0);
    uint64_t start = tu_now_ms();
    brg_msg_t *reply = tm_chat(model, chat);
    uint64_t took = tu_now_ms() - start;
    brg_model_chat_reply_t r;
    ck_assert_int_eq(brg_model_read_chat_reply(reply, &r), BRG_OK);
    tm_eq(r.text, r.len, "Echo: patience");
    ck_assert_int_eq(r.attempts, 3);
    // Each retry waited for the server's Retry-After (a lower bound: the
    // backoff alone, at most 50 ms here, would not take this long).
    ck_assert_uint_ge(took, 2000);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 3);
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.retries, 2);
    ck_assert_uint_eq(st.errors, 0);
}
END_TEST

START_TEST(test_model_openai_chat_retries_5xx_until_the_attempts_run_out)
{
    tm_ms.fail_first = 1000;
    tm_ms.fail_status = 503;
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "down?", 0);
    brg_model_error_t e;
    brg_msg_t *reply;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.code, BRG_EHTTP);
    ck_assert_int_eq(e.http_status, 503);
    ck_assert_int_eq(e.attempts, 3);
    tm_eq(e.message, e.message_len, "injected failure 3 of 1000");
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 3);
    brg_msg_destroy(&reply);
    // The request's own limit wins over the backend's.
    ck_assert_int_eq(brg_model_chat_set_max_attempts(chat, 5), BRG_OK);
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.attempts, 5);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 8);
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);
}
END_TEST

static void
tm_small_budget(brg_model_openai_opts_t *opts)
{
    opts->retry_budget_min = 2;
    opts->retry_budget_ratio = 0;
    opts->max_attempts = 10;
}

START_TEST(test_model_openai_chat_retry_budget_stops_an_outage_from_multiplying)
{
    tm_ms.fail_first = 1000;
    tm_ms.fail_status = 500;
    brg_ref_t model = tm_chat_openai("/v1", tm_small_budget);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "x", 0);
    brg_model_error_t e;
    brg_msg_t *reply;
    // Two retries in the window in all: the first call spends them...
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.attempts, 3);
    brg_msg_destroy(&reply);
    // ... and the next ones get none, although max_attempts is 10.
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.attempts, 1);
    ck_assert_int_eq(e.http_status, 500);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 4);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.retries, 2);
    ck_assert_uint_eq(st.retries_throttled, 2);
    ck_assert_uint_eq(st.requests, 2);
    ck_assert_uint_eq(st.errors, 2);
    brg_model_chat_destroy(&chat);
}
END_TEST

START_TEST(test_model_openai_chat_does_not_retry_a_request_that_may_have_arrived)
{
    // The server reads the request and closes without answering: the
    // request was sent, so it is not sent again...
    tm_ms.close_first = 1000;
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "once only", 0);
    brg_model_error_t e;
    brg_msg_t *reply;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.code, BRG_ENETWORK);
    ck_assert_int_eq(e.http_status, 0);
    ck_assert_int_eq(e.attempts, 1);
    ck_assert_uint_gt(e.message_len, 0); // curl's explanation
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 1);
    brg_msg_destroy(&reply);
    // ... unless the request says it is safe.
    brg_model_chat_set_retry_unsafe(chat, true);
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.attempts, 3);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 4);
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);
}
END_TEST

START_TEST(test_model_openai_chat_retries_a_connect_failure_where_nothing_was_sent)
{
    // A port nobody listens on (the server's, after it stopped).
    char url[128];
    tu_http_server_url(tm_chat_server, url, sizeof url, "/v1");
    tu_http_server_stop(&tm_chat_server);
    brg_model_openai_opts_t opts;
    brg_model_openai_opts_init(&opts);
    opts.url = url;
    opts.http = tm_chat_http;
    opts.log_errors = false;
    opts.retry_base_ms = 10;
    opts.retry_max_ms = 50;
    brg_ref_t model;
    ck_assert_int_eq(brg_model_openai_spawn_root(tu_sys, &opts, &model), BRG_OK);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "anyone?", 0);
    brg_model_error_t e;
    brg_msg_t *reply;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.code, BRG_ENETWORK);
    ck_assert_int_eq(e.attempts, 3);
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.retries, 2);
}
END_TEST

static void
tm_short_deadline(brg_model_openai_opts_t *opts)
{
    opts->timeout_ms = 300;
    opts->retry_max_ms = 5000;
}

START_TEST(test_model_openai_chat_deadline_covers_the_retries)
{
    // 429 with Retry-After 2 s and a 300 ms deadline: no time to wait, so
    // the call fails at once with the 429's detail rather than waiting.
    tm_ms.fail_first = 1000;
    tm_ms.fail_status = 429;
    tm_ms.retry_after = "2";
    brg_ref_t model = tm_chat_openai("/v1", tm_short_deadline);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "quick", 0);
    brg_model_error_t e;
    brg_msg_t *reply;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.code, BRG_EHTTP);
    ck_assert_int_eq(e.http_status, 429);
    ck_assert_int_eq(e.attempts, 1);
    brg_msg_destroy(&reply);
    // A server slower than the deadline: BRG_ETIMEDOUT, not retried.
    tm_ms.fail_first = 0;
    tm_ms.delay_ms = 2000;
    tm_chat_error(model, chat, &e, &reply);
    ck_assert_int_eq(e.code, BRG_ETIMEDOUT);
    ck_assert_int_eq(e.attempts, 1);
    brg_msg_destroy(&reply);
    brg_model_chat_destroy(&chat);
}
END_TEST

START_TEST(test_model_openai_chat_reads_sse_variants)
{
    // CRLF line ends, comments, event: fields, events cut across chunks,
    // a JSON split over two data: lines: the same text comes out.
    brg_ref_t model = tm_chat_openai("/variants/v1", NULL);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "odd framing", 0);
    brg_model_chat_set_stream(chat, 8);
    tm_stream(model, brg_model_chat_msg(chat));
    tm_wait_ends(1);
    pthread_mutex_lock(&tm_col.lock);
    brg_model_end_t end;
    ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
    ck_assert_int_eq(end.status, BRG_OK);
    ck_assert_str_eq(tm_col.text, "Echo: odd framing");
    ck_assert_int_eq(end.reply.completion_tokens, 8);
    pthread_mutex_unlock(&tm_col.lock);
    brg_model_chat_destroy(&chat);
}
END_TEST

START_TEST(test_model_openai_chat_bad_stream_events_end_with_eproto)
{
    const char *paths[] = {"/error-event/v1", "/not-json/v1"};
    for (int i = 0; i < 2; i++) {
        brg_ref_t model = tm_chat_openai(paths[i], NULL);
        brg_model_chat_t *chat = brg_model_chat_new();
        brg_model_chat_add_message(chat, BRG_MODEL_USER, "hello", 0);
        brg_model_chat_set_stream(chat, 9);
        tm_stream(model, brg_model_chat_msg(chat));
        tm_wait_ends(1);
        pthread_mutex_lock(&tm_col.lock);
        brg_model_end_t end;
        ck_assert_int_eq(brg_model_read_end(tm_col.ends[0], &end), BRG_OK);
        ck_assert_int_eq(end.status, BRG_EPROTO);
        ck_assert_int_eq(end.error.attempts, 1);
        if (i == 0) {
            tm_eq(end.error.type, end.error.type_len, "server_error");
            tm_eq(end.error.message, end.error.message_len, "overloaded mid-stream");
        } else {
            ck_assert(strstr(end.error.message, "not a JSON object") != NULL);
        }
        ck_assert_str_eq(tm_col.text, "Echo");
        pthread_mutex_unlock(&tm_col.lock);
        brg_model_chat_destroy(&chat);
        brg_model_stats_t st;
        ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
        ck_assert_uint_eq(st.errors, 1);
    }
}
END_TEST

//  ---------------------------------------------------------------------------
//  brg.cancel (brigade/cancel.h): an asker that gives up

//  An asker actor: "tm.ask" asks tm_giver.target with tm_giver.request
//  (taken) by brg_ask_id, "tm.cancel" cancels that ask; the ask's status
//  and whether a reply came are kept, stream fragments counted.
typedef struct {
    pthread_mutex_t lock;
    brg_ref_t target;
    brg_msg_t *request;
    int timeout_ms;
    uint64_t ask_id;
    int status;   // the ask callback's status
    bool done;    // the callback ran
    bool replied; // ... with a reply
    int deltas;   // stream fragments that came
} tm_giver_t;

static tm_giver_t tm_giver = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int
tm_giver_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx, (void)arg;
    pthread_mutex_lock(&tm_giver.lock);
    tm_giver.status = status;
    tm_giver.replied = reply != NULL;
    tm_giver.done = true;
    pthread_mutex_unlock(&tm_giver.lock);
    return BRG_OK;
}

static int
tm_giver_fn(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_model_delta_t d;
    pthread_mutex_lock(&tm_giver.lock);
    if (brg_msg_is(msg, "tm.ask")) {
        brg_msg_t *req = tm_giver.request;
        tm_giver.request = NULL;
        int rc = brg_ask_id(ctx, tm_giver.target, &req, tm_giver.timeout_ms, tm_giver_answer, NULL,
                            &tm_giver.ask_id);
        pthread_mutex_unlock(&tm_giver.lock);
        ck_assert_int_eq(rc, BRG_OK);
        return BRG_OK;
    }
    if (brg_msg_is(msg, "tm.cancel")) {
        int rc = brg_cancel(ctx, tm_giver.target, tm_giver.ask_id);
        pthread_mutex_unlock(&tm_giver.lock);
        ck_assert_int_eq(rc, BRG_OK);
        return BRG_OK;
    }
    if (brg_model_read_delta(msg, &d) == BRG_OK)
        tm_giver.deltas++;
    pthread_mutex_unlock(&tm_giver.lock);
    return BRG_OK;
}

//  Start an asker that asks target with request (taken), timeout_ms.
static brg_ref_t
tm_giver_start(brg_ref_t target, brg_msg_t *request, int timeout_ms)
{
    ck_assert_ptr_nonnull(request);
    pthread_mutex_lock(&tm_giver.lock);
    brg_msg_destroy(&tm_giver.request);
    tm_giver.target = target;
    tm_giver.request = request;
    tm_giver.timeout_ms = timeout_ms;
    tm_giver.ask_id = 0;
    tm_giver.status = 0;
    tm_giver.done = tm_giver.replied = false;
    tm_giver.deltas = 0;
    pthread_mutex_unlock(&tm_giver.lock);
    brg_ref_t asker = tu_spawn(tu_sys, tm_giver_fn);
    ck_assert_int_eq(tu_send_tag(tu_sys, asker, "tm.ask"), BRG_OK);
    return asker;
}

static int
tm_giver_deltas(void)
{
    pthread_mutex_lock(&tm_giver.lock);
    int n = tm_giver.deltas;
    pthread_mutex_unlock(&tm_giver.lock);
    return n;
}

//  Wait for the asker's callback (at most 30 s times the multiplier); its status.
static int
tm_giver_wait(bool *replied)
{
    for (int t = 0; t < 3000 * (int)tu_multiplier(); t++) {
        pthread_mutex_lock(&tm_giver.lock);
        bool done = tm_giver.done;
        int status = tm_giver.status;
        *replied = tm_giver.replied;
        pthread_mutex_unlock(&tm_giver.lock);
        if (done)
            return status;
        tu_sleep_ms(10);
    }
    ck_abort_msg("the ask never ended");
    return 0;
}

static void
tm_giver_cleanup(void)
{
    pthread_mutex_lock(&tm_giver.lock);
    brg_msg_destroy(&tm_giver.request);
    pthread_mutex_unlock(&tm_giver.lock);
}

//  Wait until the HTTP actor has no transfer running and `failed` of them
//  failed (a cancelled transfer counts as failed); its stats.
static brg_http_stats_t
tm_wait_http_failed(uint64_t failed)
{
    brg_http_stats_t hs = {0};
    for (int t = 0; t < 500 * (int)tu_multiplier(); t++) {
        ck_assert_int_eq(brg_http_stats(tu_sys, tm_chat_http, 10000, &hs), BRG_OK);
        if (hs.failed == failed && hs.in_flight == 0)
            break;
        tu_sleep_ms(10);
    }
    return hs;
}

START_TEST(test_model_offline_paced_stream_stops_on_brg_cancel)
{
    brg_model_offline_opts_t opts;
    brg_model_offline_opts_init(&opts);
    opts.stream_chunk = 2;
    opts.stream_interval_ms = 20;
    brg_ref_t paced;
    ck_assert_int_eq(brg_model_offline_spawn_opts_root(tu_sys, &opts, &paced), BRG_OK);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER,
                               "a long question that takes many fragments to answer", 0);
    brg_model_chat_set_stream(chat, 7);
    brg_ref_t asker = tm_giver_start(paced, brg_model_chat_msg(chat), 1000);
    for (int t = 0; t < 1000 * (int)tu_multiplier() && tm_giver_deltas() < 1; t++)
        tu_sleep_ms(10);
    ck_assert_int_ge(tm_giver_deltas(), 1);
    ck_assert_int_eq(tu_send_tag(tu_sys, asker, "tm.cancel"), BRG_OK);
    // The stream stops and is not answered: the ask runs out its deadline.
    bool replied;
    ck_assert_int_eq(tm_giver_wait(&replied), BRG_ETIMEDOUT);
    ck_assert(!replied);
    int deltas = tm_giver_deltas();
    tu_sleep_ms(100); // time for more fragments, if any were still coming
    ck_assert_int_eq(tm_giver_deltas(), deltas);
    ck_assert_int_lt(deltas, 30); // 61 bytes in 2-byte fragments when played whole
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, paced, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.streams, 1);
    ck_assert_uint_eq(st.errors, 0);
    tm_giver_cleanup();
    brg_model_chat_destroy(&chat);
}
END_TEST

//  A limiter in front of the openai backend gives up on a slow chat call
//  (request_timeout_ms) and cancels it: the backend aborts the HTTP
//  transfer long before the server would answer, does not retry it, counts
//  it cancelled and answers nobody.
START_TEST(test_model_openai_limiter_timeout_cancels_the_http_call)
{
    tm_ms.delay_ms = 10000; // the server sits on every request for 10 s
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_limiter_opts_t lopts;
    brg_limiter_opts_init(&lopts);
    lopts.target = model;
    lopts.request_timeout_ms = 200;
    brg_ref_t limiter;
    ck_assert_int_eq(brg_limiter_spawn_root(tu_sys, &lopts, &limiter), BRG_OK);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "too slow", 0);
    brg_msg_t *msg = brg_model_chat_msg(chat), *reply = NULL;
    ck_assert_ptr_nonnull(msg);
    uint64_t start = tu_now_ms();
    ck_assert_int_eq(brg_system_ask(tu_sys, limiter, &msg, 10000, &reply), BRG_ETIMEDOUT);
    ck_assert_ptr_null(reply);
    brg_http_stats_t hs = tm_wait_http_failed(1);
    ck_assert_uint_lt(tu_now_ms() - start, 9000); // before the server's 10 s were up
    ck_assert_uint_eq(hs.failed, 1);              // BRG_ECANCELED
    ck_assert_uint_eq(hs.responses, 0);
    ck_assert_uint_eq(hs.in_flight, 0);
    tu_sleep_ms(200); // time for a retry, if one were coming
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 1);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.retries, 0);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_uint_eq(st.in_flight, 0);
    brg_limiter_stats_t ls;
    ck_assert_int_eq(brg_limiter_stats(tu_sys, limiter, 10000, &ls), BRG_OK);
    ck_assert_uint_eq(ls.failed, 1);
    ck_assert_uint_eq(ls.in_flight, 0);
    brg_model_chat_destroy(&chat);
}
END_TEST

//  A task request (brg.model.request) asked with brg_ask_id and cancelled
//  with brg_cancel: the HTTP transfer is aborted, and the ask is never
//  answered (its callback comes at its own deadline, with no reply).
START_TEST(test_model_openai_brg_cancel_aborts_a_task_request)
{
    tm_ms.delay_ms = 10000;
    brg_ref_t model = tm_chat_openai("/v1", NULL);
    brg_model_request_t req = {.task = BRG_MODEL_SUMMARISE, .text = "A long document."};
    brg_ref_t asker = tm_giver_start(model, brg_model_msg_request(&req), 1500);
    for (int t = 0; t < 1000 * (int)tu_multiplier() && atomic_load(&tm_ms.requests) < 1; t++)
        tu_sleep_ms(10);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 1); // the call is at the server
    uint64_t start = tu_now_ms();
    ck_assert_int_eq(tu_send_tag(tu_sys, asker, "tm.cancel"), BRG_OK);
    brg_http_stats_t hs = tm_wait_http_failed(1);
    ck_assert_uint_lt(tu_now_ms() - start, 9000);
    ck_assert_uint_eq(hs.failed, 1);
    ck_assert_uint_eq(hs.in_flight, 0);
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_uint_eq(st.in_flight, 0);
    bool replied;
    ck_assert_int_eq(tm_giver_wait(&replied), BRG_ETIMEDOUT);
    ck_assert(!replied);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 1);
    tm_giver_cleanup();
}
END_TEST

//  A chat call waiting to retry (after a 503) is cancelled: the retry
//  never happens.
START_TEST(test_model_openai_brg_cancel_stops_a_pending_retry)
{
    tm_ms.fail_first = 1;
    tm_ms.retry_after = "1"; // the retry waits 1 s
    brg_ref_t model = tm_chat_openai("/v1", tm_slow_retries);
    brg_model_chat_t *chat = brg_model_chat_new();
    brg_model_chat_add_message(chat, BRG_MODEL_USER, "again later", 0);
    brg_ref_t asker = tm_giver_start(model, brg_model_chat_msg(chat), 3000);
    for (int t = 0; t < 1000 * (int)tu_multiplier() && atomic_load(&tm_ms.requests) < 1; t++)
        tu_sleep_ms(10);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 1);
    brg_http_stats_t hs = {0};
    for (int t = 0; t < 1000 * (int)tu_multiplier(); t++) { // the 503 came back
        ck_assert_int_eq(brg_http_stats(tu_sys, tm_chat_http, 10000, &hs), BRG_OK);
        if (hs.responses == 1)
            break;
        tu_sleep_ms(5);
    }
    ck_assert_uint_eq(hs.responses, 1);
    ck_assert_int_eq(tu_send_tag(tu_sys, asker, "tm.cancel"), BRG_OK);
    bool replied;
    ck_assert_int_eq(tm_giver_wait(&replied), BRG_ETIMEDOUT);
    ck_assert(!replied);
    ck_assert_int_eq(atomic_load(&tm_ms.requests), 1); // the retry was due after 1 s
    brg_model_stats_t st;
    ck_assert_int_eq(brg_model_stats(tu_sys, model, 10000, &st), BRG_OK);
    ck_assert_uint_eq(st.cancelled, 1);
    ck_assert_uint_eq(st.retries, 0);
    ck_assert_uint_eq(st.errors, 0);
    tm_giver_cleanup();
    brg_model_chat_destroy(&chat);
}
END_TEST

Suite *
model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *offline = tcase_create("offline");
    tcase_add_checked_fixture(offline, tm_setup_offline, tu_teardown);
    tcase_set_timeout(offline, 30);
    tcase_add_test(offline, test_model_offline_summarises_with_the_best_sentences_in_order);
    tcase_add_test(offline, test_model_offline_checks_style_one_finding_per_line);
    tcase_add_test(offline, test_model_offline_lists_keywords_with_counts);
    tcase_add_test(offline, test_model_offline_refuses_chat_and_malformed_requests);
    tcase_add_test(offline, test_model_request_round_trips_through_the_reader);
    tcase_add_test(offline, test_model_chat_request_round_trips_through_the_readers);
    tcase_add_test(offline, test_model_chat_reply_error_delta_and_end_round_trip);
    tcase_add_test(offline, test_model_chat_readers_survive_mutated_messages);
    suite_add_tcase(s, offline);
    TCase *script = tcase_create("script");
    tcase_add_checked_fixture(script, tm_setup_script, tm_teardown_script);
    tcase_set_timeout(script, 30);
    tcase_add_test(script, test_model_offline_chat_follows_its_script);
    tcase_add_test(script, test_model_offline_chat_streams_text_and_tool_call_fragments);
    tcase_add_test(script, test_model_offline_paced_stream_can_be_cancelled_mid_stream);
    tcase_add_test(script, test_model_offline_spawn_rejects_bad_scripts);
    tcase_add_test(script, test_model_offline_paced_stream_stops_on_brg_cancel);
    suite_add_tcase(s, script);
    TCase *openai = tcase_create("openai");
    tcase_add_checked_fixture(openai, tm_setup_openai, tm_teardown_openai);
    tcase_set_timeout(openai, 30);
    tcase_add_test(openai, test_model_openai_posts_a_chat_completion_and_answers_with_its_text);
    tcase_add_test(openai, test_model_openai_http_error_status_answers_ehttp);
    tcase_add_test(openai, test_model_openai_deadline_answers_timed_out);
    tcase_add_test(openai, test_model_openai_malformed_json_answers_eproto);
    tcase_add_test(openai, test_model_openai_random_bytes_from_the_server_answer_eproto);
    tcase_add_test(openai, test_model_openai_refuses_text_that_is_not_utf8);
    tcase_add_test(openai, test_model_openai_stopped_mid_call_frees_its_requests);
    tcase_add_test(openai, test_model_backend_is_chosen_from_the_environment);
    tcase_add_test(openai, test_model_openai_spawn_rejects_bad_options);
    suite_add_tcase(s, openai);
    TCase *chat = tcase_create("chat");
    tcase_add_checked_fixture(chat, tm_setup_chat, tm_teardown_chat);
    tcase_set_timeout(chat, 30);
    tcase_add_test(chat, test_model_openai_chat_puts_history_tools_and_settings_on_the_wire);
    tcase_add_test(chat, test_model_openai_chat_answers_with_tool_calls);
    tcase_add_test(chat, test_model_openai_chat_streams_text_tool_calls_and_usage);
    tcase_add_test(chat, test_model_openai_chat_cancel_mid_stream_aborts_the_transfer);
    tcase_add_test(chat,
                   test_model_openai_chat_sends_fragments_to_stream_to_and_the_end_to_the_sender);
    tcase_add_test(chat, test_model_openai_chat_stream_to_may_cancel_a_stranger_may_not);
    tcase_add_test(chat, test_model_openai_chat_stream_cut_short_ends_with_an_error);
    tcase_add_test(chat, test_model_openai_chat_reads_sse_variants);
    tcase_add_test(chat, test_model_openai_chat_bad_stream_events_end_with_eproto);
    tcase_add_test(chat, test_model_openai_limiter_timeout_cancels_the_http_call);
    tcase_add_test(chat, test_model_openai_brg_cancel_aborts_a_task_request);
    tcase_add_test(chat, test_model_openai_brg_cancel_stops_a_pending_retry);
    tcase_add_test(chat, test_model_openai_chat_errors_keep_status_type_message_and_retry_after);
    tcase_add_test(chat, test_model_openai_chat_retries_429_honouring_retry_after);
    tcase_add_test(chat, test_model_openai_chat_retries_5xx_until_the_attempts_run_out);
    tcase_add_test(chat, test_model_openai_chat_retry_budget_stops_an_outage_from_multiplying);
    tcase_add_test(chat, test_model_openai_chat_does_not_retry_a_request_that_may_have_arrived);
    tcase_add_test(chat, test_model_openai_chat_retries_a_connect_failure_where_nothing_was_sent);
    tcase_add_test(chat, test_model_openai_chat_deadline_covers_the_retries);
    suite_add_tcase(s, chat);
    return s;
}

int
main(void)
{
    return tu_run(model_suite());
}
