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
#include "http_test_server.h"
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
    suite_add_tcase(s, offline);
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
    return s;
}

int
main(void)
{
    return tu_run(model_suite());
}
