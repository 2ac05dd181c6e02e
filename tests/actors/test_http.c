//  test_http - the HTTP client actor against a test HTTP server on 127.0.0.1 that
//  each test starts itself: a response with its status, content type and
//  body; what went over the wire (method, path, headers, body); HTTP error
//  statuses as responses; the deadline (BRG_ETIMEDOUT), a refused connection
//  (BRG_ENETWORK), a body over the limit (BRG_EMSGSIZE), requests refused
//  before any transfer (BRG_EINVAL, BRG_EBUSY); many transfers at once from
//  one actor, each answered once; an actor stopped mid-transfer; streaming
//  mode (chunks in order before the answer, errors kept whole, the size
//  limit), cancelling one stream, failures with detail (nothing_sent), and
//  Retry-After.
//
//  The server's "/gate" requests wait until the test opens th_gate, so "all
//  requests are in flight at once" is a fact of the test, not of timing.
#include "http_test_server.h"
#include "test_util.h"

#include <netinet/in.h>

static atomic_int th_gate;

static void
th_handler(const tu_http_req_t *req, tu_http_resp_t *resp, void *arg)
{
    (void)arg;
    if (strcmp(req->path, "/hello") == 0) {
        resp->content_type = "text/plain; charset=utf-8";
        resp->body = strdup("hello, brigade");
    } else if (strcmp(req->path, "/echo") == 0) {
        resp->body = malloc(req->body_len + 1);
        memcpy(resp->body, req->body, req->body_len + 1);
        resp->body_len = req->body_len;
        resp->content_type = "application/octet-stream";
    } else if (strcmp(req->path, "/fail") == 0) {
        resp->status = 503;
        resp->body = strdup("{\"error\":\"overloaded\"}");
    } else if (strcmp(req->path, "/slow") == 0) {
        resp->delay_ms = 5000;
        resp->body = strdup("too late");
    } else if (strcmp(req->path, "/big") == 0 || strcmp(req->path, "/big-stream") == 0) {
        resp->body = malloc(4096);
        memset(resp->body, 'x', 4096);
        resp->body_len = 4096;
        resp->no_length = strcmp(req->path, "/big-stream") == 0; // no early size check
    } else if (strcmp(req->path, "/gate") == 0) {
        tu_gate_wait(&th_gate);
        resp->body = strdup("opened");
    } else if (strncmp(req->path, "/jitter/", 8) == 0) {
        // A random short delay, so transfers finish in every order.
        resp->delay_ms = (int)(strtoul(req->path + 8, NULL, 10) % 7);
        resp->body = strdup(req->path + 8);
    } else if (strcmp(req->path, "/garbage") == 0) {
        // Not HTTP at all: libcurl sees an HTTP/0.9 response it refuses.
        resp->raw = true;
        resp->body = strdup("SSH-2.0-OpenSSH_9.2\r\n\x01\x02garbage bytes\r\n\r\n");
    } else if (strcmp(req->path, "/bad-status") == 0) {
        resp->raw = true;
        resp->body = strdup("HTTP/1.1 abc Broken\r\nContent-Length: 0\r\n\r\n");
    } else if (strcmp(req->path, "/stream") == 0 || strcmp(req->path, "/stream-hang") == 0) {
        resp->content_type = "text/event-stream";
        resp->chunks[0] = strdup("data: one\n\n");
        resp->chunks[1] = strdup("data: two\n\n");
        resp->chunks[2] = strdup("data: three\n\n");
        resp->n_chunks = 3;
        resp->chunk_delay_ms = 50;
        if (strcmp(req->path, "/stream-hang") == 0)
            resp->hang_after = 1, resp->hang_ms = 10000;
    } else if (strcmp(req->path, "/retry-after") == 0) {
        resp->status = 429;
        snprintf(resp->headers, sizeof resp->headers, "Retry-After: 3\r\n");
        resp->body = strdup("{}");
    } else if (strcmp(req->path, "/hangup") == 0) {
        resp->status = 0; // close without answering
    } else {
        resp->status = 404;
    }
}

static tu_http_server_t *th_server;
static brg_ref_t th_http;

static void
th_setup_with(int max_pending, size_t max_response)
{
    // A proxy in the environment must not matter: the actor uses none.
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
    tu_setup();
    th_server = tu_http_server_start(th_handler, NULL);
    ck_assert_ptr_nonnull(th_server);
    brg_http_opts_t opts;
    brg_http_opts_init(&opts);
    opts.max_pending = max_pending;
    opts.max_response_bytes = max_response;
    opts.user_agent = "brigade-test/1";
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, &th_http), BRG_OK);
}

static void
th_setup(void)
{
    th_setup_with(256, 1024);
}

static void
th_teardown(void)
{
    atomic_store(&th_gate, 1);
    brg_actor_stop(tu_sys, th_http);
    TU_WAIT_DEAD(tu_sys, th_http); // joins the I/O thread before the server goes
    tu_http_server_stop(&th_server);
    tu_teardown();
}

//  Ask the HTTP actor from this thread. Returns the ask's status; *reply is
//  the response (caller destroys it).
static int
th_ask(const char *method, const char *path, const char *const *headers, size_t n_headers,
       const char *body, int timeout_ms, brg_msg_t **reply)
{
    char url[256];
    tu_http_server_url(th_server, url, sizeof url, path);
    brg_http_request_t req = {.method = method,
                              .url = url,
                              .headers = headers,
                              .n_headers = n_headers,
                              .body = body,
                              .body_len = body ? strlen(body) : 0,
                              .timeout_ms = timeout_ms};
    brg_msg_t *msg = brg_http_msg_request(&req);
    ck_assert_ptr_nonnull(msg);
    *reply = NULL;
    return brg_system_ask(tu_sys, th_http, &msg, 10000, reply);
}

static brg_http_stats_t
th_stats(void)
{
    brg_http_stats_t s;
    ck_assert_int_eq(brg_http_stats(tu_sys, th_http, 5000, &s), BRG_OK);
    return s;
}

START_TEST(test_http_get_answers_with_status_content_type_and_body)
{
    static const char *const headers[] = {"X-Trace: 42", "Accept: text/plain"};
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask(NULL, "/hello", headers, 2, NULL, 0, &reply), BRG_OK);
    brg_http_response_t r;
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.content_type_len, strlen("text/plain; charset=utf-8"));
    ck_assert(memcmp(r.content_type, "text/plain; charset=utf-8", r.content_type_len) == 0);
    ck_assert_uint_eq(r.body_len, 14);
    ck_assert(memcmp(r.body, "hello, brigade", 14) == 0);
    brg_msg_destroy(&reply);

    tu_http_req_t seen;
    ck_assert_int_eq(tu_http_server_last(th_server, &seen, NULL, 0), 1);
    ck_assert_str_eq(seen.method, "GET");
    ck_assert_str_eq(seen.path, "/hello");
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nX-Trace: 42"));
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nAccept: text/plain"));
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nUser-Agent: brigade-test/1"));
    brg_http_stats_t s = th_stats();
    ck_assert_uint_eq(s.requests, 1);
    ck_assert_uint_eq(s.responses, 1);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_uint_eq(s.in_flight, 0);
}
END_TEST

//  A request asked in a trace carries it on as a W3C traceparent header,
//  unless the caller wrote one; with no trace, none.
START_TEST(test_http_sends_the_trace_context_as_traceparent)
{
    brg_trace_ctx_t tc;
    ck_assert_int_eq(
        brg_trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &tc), BRG_OK);
    brg_trace_set(&tc);
    brg_msg_t *reply;
    tu_http_req_t seen;
    ck_assert_int_eq(th_ask(NULL, "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tu_http_server_last(th_server, &seen, NULL, 0), 1);
    ck_assert_ptr_nonnull(strstr(
        seen.headers, "\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    static const char *const own[] = {
        "TraceParent: 00-11111111111111111111111111111111-2222222222222222-00"};
    ck_assert_int_eq(th_ask(NULL, "/hello", own, 1, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tu_http_server_last(th_server, &seen, NULL, 0), 2);
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nTraceParent: 00-1111"));
    ck_assert_ptr_null(strstr(seen.headers, "4bf92f35"));
    brg_trace_set(NULL);
    ck_assert_int_eq(th_ask(NULL, "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(tu_http_server_last(th_server, &seen, NULL, 0), 3);
    ck_assert_ptr_null(strcasestr(seen.headers, "traceparent"));
}
END_TEST

START_TEST(test_http_post_and_put_send_the_body_byte_for_byte)
{
    static const char *const json[] = {"Content-Type: application/json"};
    const char *body = "{\"question\":\"why?\",\"n\":3}";
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask(NULL, "/echo", json, 1, body, 0, &reply), BRG_OK);
    brg_http_response_t r;
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, strlen(body));
    ck_assert(memcmp(r.body, body, r.body_len) == 0);
    brg_msg_destroy(&reply);
    tu_http_req_t seen;
    char seen_body[256];
    tu_http_server_last(th_server, &seen, seen_body, sizeof seen_body);
    ck_assert_str_eq(seen.method, "POST"); // a body and no method: POST
    ck_assert_str_eq(seen_body, body);
    ck_assert_ptr_nonnull(strstr(seen.headers, "\r\nContent-Type: application/json"));
    ck_assert_ptr_null(strstr(seen.headers, "Expect:"));

    ck_assert_int_eq(th_ask("PUT", "/echo", NULL, 0, "put me", 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    tu_http_server_last(th_server, &seen, seen_body, sizeof seen_body);
    ck_assert_str_eq(seen.method, "PUT");
    ck_assert_str_eq(seen_body, "put me");
}
END_TEST

START_TEST(test_http_head_and_bodyless_post_are_well_formed)
{
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask("HEAD", "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_http_response_t r;
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    brg_msg_destroy(&reply);
    tu_http_req_t seen;
    tu_http_server_last(th_server, &seen, NULL, 0);
    ck_assert_str_eq(seen.method, "HEAD");

    ck_assert_int_eq(th_ask("POST", "/echo", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    tu_http_server_last(th_server, &seen, NULL, 0);
    ck_assert_str_eq(seen.method, "POST");
    ck_assert_ptr_nonnull(strcasestr(seen.headers, "\r\nContent-Length: 0"));
}
END_TEST

START_TEST(test_http_large_upload_arrives_whole)
{
    enum { N = 200 * 1024 };
    char *body = malloc(N + 1);
    for (size_t i = 0; i < N; i++)
        body[i] = (char)('a' + i % 26);
    body[N] = '\0';
    // An HTTP actor that takes the echo back (the fixture's keeps 1 KiB).
    brg_http_opts_t opts;
    brg_http_opts_init(&opts);
    opts.max_response_bytes = 512 * 1024;
    brg_ref_t fixture = th_http;
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, &th_http), BRG_OK);
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask("PUT", "/echo", NULL, 0, body, 0, &reply), BRG_OK);
    brg_http_response_t r;
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_uint_eq(r.body_len, N);
    ck_assert(memcmp(r.body, body, N) == 0);
    brg_msg_destroy(&reply);
    free(body);
    brg_actor_stop(tu_sys, th_http);
    TU_WAIT_DEAD(tu_sys, th_http);
    th_http = fixture;
}
END_TEST

START_TEST(test_http_error_status_is_a_response_not_a_failure)
{
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask(NULL, "/fail", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_http_response_t r;
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_int_eq(r.status, 503);
    ck_assert(memcmp(r.body, "{\"error\":\"overloaded\"}", r.body_len) == 0);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(th_ask(NULL, "/nowhere", NULL, 0, NULL, 0, &reply), BRG_OK);
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_int_eq(r.status, 404);
    ck_assert_uint_eq(r.body_len, 0);
    brg_msg_destroy(&reply);
    ck_assert_uint_eq(th_stats().responses, 2);
}
END_TEST

START_TEST(test_http_request_deadline_answers_timed_out)
{
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask(NULL, "/slow", NULL, 0, NULL, 200, &reply), BRG_ETIMEDOUT);
    ck_assert_ptr_null(reply);
    brg_http_stats_t s = th_stats();
    ck_assert_uint_eq(s.failed, 1);
    ck_assert_uint_eq(s.responses, 0);
    ck_assert_uint_eq(s.in_flight, 0);
    // The actor still works afterwards.
    ck_assert_int_eq(th_ask(NULL, "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
}
END_TEST

START_TEST(test_http_refused_connection_and_hangup_answer_network_error)
{
    // A port bound but not listening, held until the ask is answered: a
    // connection to it is refused for certain.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(addr.sin_port));
    brg_http_request_t req = {.url = url};
    brg_msg_t *msg = brg_http_msg_request(&req), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, th_http, &msg, 10000, &reply), BRG_ENETWORK);
    ck_assert_ptr_null(reply);
    close(fd);

    ck_assert_int_eq(th_ask(NULL, "/hangup", NULL, 0, NULL, 0, &reply), BRG_ENETWORK);
    ck_assert_uint_eq(th_stats().failed, 2);
}
END_TEST

START_TEST(test_http_server_answering_with_non_http_bytes_is_a_network_error)
{
    // The request was fine; the server's answer was not HTTP. That is a
    // failure of the far end (BRG_ENETWORK), never the caller's BRG_EINVAL.
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(th_ask(NULL, "/garbage", NULL, 0, NULL, 0, &reply), BRG_ENETWORK);
    ck_assert_ptr_null(reply);
    ck_assert_int_eq(th_ask(NULL, "/bad-status", NULL, 0, NULL, 0, &reply), BRG_ENETWORK);
    ck_assert_ptr_null(reply);
    ck_assert_uint_eq(th_stats().failed, 2);
}
END_TEST

START_TEST(test_http_body_over_the_limit_answers_msgsize)
{
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask(NULL, "/big", NULL, 0, NULL, 0, &reply), BRG_EMSGSIZE);
    ck_assert_ptr_null(reply);
    // Without Content-Length the limit is found while reading.
    ck_assert_int_eq(th_ask(NULL, "/big-stream", NULL, 0, NULL, 0, &reply), BRG_EMSGSIZE);
    ck_assert_ptr_null(reply);
    ck_assert_int_eq(th_ask(NULL, "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
}
END_TEST

//  Ask with a hand-made request message.
static int
th_ask_raw(brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask(tu_sys, th_http, &msg, 5000, &reply);
    brg_msg_destroy(&reply);
    return rc;
}

START_TEST(test_http_rejects_bad_requests_before_any_transfer)
{
    const char *bad_urls[] = {"file:///etc/passwd", "ftp://127.0.0.1/", "http://a b/",
                              "gopher://x",         "http://",          "127.0.0.1:80/"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        brg_http_request_t req = {.url = bad_urls[i]};
        ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&req)), BRG_EINVAL);
    }
    char url[256];
    tu_http_server_url(th_server, url, sizeof url, "/hello");
    static const char *const injected[] = {"X-A: 1\r\nX-B: 2"};
    static const char *const no_colon[] = {"X-A 1"};
    static const char *const folded[] = {"X-A: 1", " X-B: 2"};
    static const char *const spaced[] = {"X-C\t: 3"};
    static const char *const control[] = {"X-D: a\x01b"};
    brg_http_request_t req = {.url = url, .headers = injected, .n_headers = 1};
    ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&req)), BRG_EINVAL);
    req.headers = no_colon;
    ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&req)), BRG_EINVAL);
    req.headers = spaced;
    ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&req)), BRG_EINVAL);
    req.headers = control;
    ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&req)), BRG_EINVAL);
    req.headers = folded;
    req.n_headers = 2;
    ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&req)), BRG_EINVAL);
    brg_http_request_t no_host = {.url = "http:///etc/passwd"};
    ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&no_host)), BRG_EINVAL);
    brg_http_request_t lower = {.method = "get", .url = url};
    ck_assert_int_eq(th_ask_raw(brg_http_msg_request(&lower)), BRG_EINVAL);
    // Malformed payloads: missing fields, wrong types.
    brg_msg_t *msg = brg_msg_new(BRG_HTTP_TAG_REQUEST);
    brg_msg_add_str(msg, "GET");
    ck_assert_int_eq(th_ask_raw(msg), BRG_EINVAL);
    msg = brg_msg_new(BRG_HTTP_TAG_REQUEST);
    brg_msg_add_str(msg, "GET");
    brg_msg_add_str(msg, url);
    brg_msg_add_array(msg, 0);
    brg_msg_add_str(msg, "a body must be bin or nil");
    brg_msg_add_int(msg, 0);
    ck_assert_int_eq(th_ask_raw(msg), BRG_EINVAL);
    // The encoder refuses what it can see is wrong.
    brg_http_request_t no_url = {0};
    ck_assert_ptr_null(brg_http_msg_request(&no_url));
    brg_http_request_t negative = {.url = url, .timeout_ms = -1};
    ck_assert_ptr_null(brg_http_msg_request(&negative));

    brg_http_stats_t s = th_stats();
    ck_assert_uint_eq(s.rejected, 15);
    ck_assert_uint_eq(s.requests, 0);
    ck_assert_int_eq(tu_http_server_last(th_server, NULL, NULL, 0), 0); // nothing went out
}
END_TEST

START_TEST(test_http_spawn_rejects_bad_options)
{
    brg_http_opts_t opts;
    brg_ref_t ref = BRG_REF_NONE;
    brg_http_opts_init(&opts);
    opts.max_pending = 0;
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, &ref), BRG_EINVAL);
    brg_http_opts_init(&opts);
    opts.timeout_ms = 0;
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, &ref), BRG_EINVAL);
    brg_http_opts_init(&opts);
    opts.max_response_bytes = BRG_MSG_MAX;
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, &ref), BRG_EINVAL);
    brg_http_opts_init(&opts);
    opts.name = "http";
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, &ref), BRG_OK);
    ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, NULL), BRG_EEXIST);
    brg_ref_t named;
    ck_assert_int_eq(brg_whereis(tu_sys, "http", &named), BRG_OK);
    ck_assert(brg_ref_eq(named, ref));
    brg_actor_stop(tu_sys, ref);
    TU_WAIT_DEAD(tu_sys, ref);
}
END_TEST

//  An HTTP actor spawned from a behaviour ends with its parent, also when the
//  parent stops normally (a link alone would not pass that on).
static int
th_parent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "spawn")) {
        brg_http_opts_t opts;
        brg_http_opts_init(&opts);
        brg_ref_t child;
        ck_assert_int_eq(brg_http_spawn(ctx, &opts, &child), BRG_OK);
        brg_msg_t *reply = brg_msg_new("child");
        brg_msg_add_ref(reply, child);
        return brg_reply(ctx, &reply);
    }
    if (brg_msg_is(msg, "stop"))
        brg_stop(ctx);
    if (brg_msg_is(msg, "fail"))
        return BRG_EPROTO;
    return BRG_OK;
}

static brg_ref_t
th_spawn_child(brg_ref_t parent)
{
    brg_msg_t *ask = brg_msg_new("spawn"), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, parent, &ask, 5000, &reply), BRG_OK);
    brg_ref_t child;
    size_t pos = 0;
    ck_assert_int_eq(brg_msg_read_ref(reply, &pos, &child), BRG_OK);
    brg_msg_destroy(&reply);
    return child;
}

START_TEST(test_http_spawned_from_an_actor_ends_with_it_however_it_ends)
{
    const char *how[] = {"stop", "fail"};
    for (int i = 0; i < 2; i++) {
        brg_ref_t parent = tu_spawn(tu_sys, th_parent);
        brg_ref_t child = th_spawn_child(parent);
        ck_assert(brg_system_is_alive(tu_sys, child));
        brg_msg_t *ask = brg_http_msg_stats(), *reply = NULL;
        ck_assert_int_eq(brg_system_ask(tu_sys, child, &ask, 5000, &reply), BRG_OK);
        brg_msg_destroy(&reply);
        ck_assert_int_eq(tu_send_tag(tu_sys, parent, how[i]), BRG_OK);
        TU_WAIT_DEAD(tu_sys, parent);
        TU_WAIT_DEAD(tu_sys, child);
    }
}
END_TEST

//  ---------------------------------------------------------------------------
//  Many at once: a client actor fires N asks at the HTTP actor, all of them to
//  "/gate", and counts the answers by status.

static atomic_int th_ok, th_busy, th_other, th_answers;

static int
th_on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    brg_http_response_t r;
    if (status == BRG_OK && brg_http_read_response(reply, &r) == BRG_OK && r.status == 200 &&
        r.body_len == 6 && memcmp(r.body, "opened", 6) == 0)
        atomic_fetch_add(&th_ok, 1);
    else if (status == BRG_EBUSY)
        atomic_fetch_add(&th_busy, 1);
    else if (status != BRG_ECLOSED)
        atomic_fetch_add(&th_other, 1);
    atomic_fetch_add(&th_answers, 1);
    return BRG_OK;
}

static int
th_client(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int n = (int)tu_msg_int(msg);
    char url[256];
    tu_http_server_url(th_server, url, sizeof url, "/gate");
    brg_http_request_t req = {.url = url};
    for (int i = 0; i < n; i++) {
        brg_msg_t *ask = brg_http_msg_request(&req);
        ck_assert_int_eq(brg_ask(ctx, th_http, &ask, 20000, th_on_answer, NULL), BRG_OK);
    }
    return BRG_OK;
}

static void
th_fire(int n)
{
    brg_ref_t client;
    ck_assert_int_eq(brg_system_spawn(tu_sys, th_client, NULL, &client), BRG_OK);
    ck_assert_int_eq(tu_send_int(tu_sys, client, "go", n), BRG_OK);
}

START_TEST(test_http_runs_many_transfers_at_once_and_answers_each_once)
{
    enum { N = 40 };
    th_fire(N);
    // Every request is at the server, held at the gate, at the same time.
    TU_WAIT_UNTIL(tu_http_server_last(th_server, NULL, NULL, 0) == N, TU_WAIT_MS);
    ck_assert_uint_eq(th_stats().in_flight, N);
    ck_assert_int_eq(atomic_load(&th_answers), 0);
    atomic_store(&th_gate, 1);
    TU_WAIT_UNTIL(atomic_load(&th_answers) == N, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&th_ok), N);
    brg_http_stats_t s = th_stats();
    ck_assert_uint_eq(s.requests, N);
    ck_assert_uint_eq(s.responses, N);
    ck_assert_uint_eq(s.in_flight, 0);
    tu_sleep_ms(50); // and nothing comes twice
    ck_assert_int_eq(atomic_load(&th_answers), N);
}
END_TEST

static void
th_setup_small(void)
{
    th_setup_with(5, 1024);
}

static void
th_setup_stress(void)
{
    th_setup_with(1000, 1024);
}

START_TEST(test_http_past_max_pending_answers_busy)
{
    enum { N = 20, K = 5 };
    th_fire(N);
    TU_WAIT_UNTIL(atomic_load(&th_busy) == N - K, TU_WAIT_MS);
    TU_WAIT_UNTIL(tu_http_server_last(th_server, NULL, NULL, 0) == K, TU_WAIT_MS);
    brg_http_stats_t s = th_stats();
    ck_assert_uint_eq(s.in_flight, K);
    ck_assert_uint_eq(s.rejected, N - K);
    atomic_store(&th_gate, 1);
    TU_WAIT_UNTIL(atomic_load(&th_answers) == N, TU_WAIT_MS);
    ck_assert_int_eq(atomic_load(&th_ok), K);
    ck_assert_int_eq(atomic_load(&th_other), 0);
}
END_TEST

START_TEST(test_http_stopped_mid_transfer_cancels_and_frees_everything)
{
    enum { N = 10 };
    th_fire(N);
    TU_WAIT_UNTIL(tu_http_server_last(th_server, NULL, NULL, 0) == N, TU_WAIT_MS);
    brg_actor_stop(tu_sys, th_http);
    TU_WAIT_DEAD(tu_sys, th_http);
    // The askers are not answered (their deadline is far off); the I/O
    // thread has been joined and the transfers freed (ASan checks).
    ck_assert_int_eq(atomic_load(&th_answers), 0);
    atomic_store(&th_gate, 1);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: the hand-offs between actor and I/O thread under many transfers
//  finishing in random order, and actors stopped while transfers run.

static atomic_int th_right, th_wrong, th_failed; // right body, wrong body, no response

static int
th_on_jitter(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    brg_http_response_t r;
    char expected[32];
    snprintf(expected, sizeof expected, "%d", (int)(intptr_t)arg);
    if (status != BRG_OK)
        atomic_fetch_add(&th_failed, 1);
    else if (brg_http_read_response(reply, &r) == BRG_OK && r.body_len == strlen(expected) &&
             memcmp(r.body, expected, r.body_len) == 0)
        atomic_fetch_add(&th_right, 1);
    else
        atomic_fetch_add(&th_wrong, 1);
    return BRG_OK;
}

//  "go" [first, n, http, port]: ask for /jitter/<i> for each i in [first,
//  first + n). The port comes in the message: a client may still run when
//  the test's teardown frees th_server.
static int
th_jitter_client(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t first, n, port;
    brg_ref_t http;
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &first), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &n), BRG_OK);
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &http), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &port), BRG_OK);
    for (int64_t i = first; i < first + n; i++) {
        char url[256];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/jitter/%lld", (int)port, (long long)i);
        brg_http_request_t req = {.url = url};
        brg_msg_t *ask = brg_http_msg_request(&req);
        if (brg_ask(ctx, http, &ask, 30000, th_on_jitter, (void *)(intptr_t)i) != BRG_OK)
            atomic_fetch_add(&th_failed, 1); // the HTTP actor is gone already
    }
    return BRG_OK;
}

static void
th_jitter(brg_ref_t http, int64_t first, int64_t n)
{
    brg_ref_t client;
    ck_assert_int_eq(brg_system_spawn(tu_sys, th_jitter_client, NULL, &client), BRG_OK);
    brg_msg_t *go = brg_msg_new("go");
    brg_msg_add_int(go, first);
    brg_msg_add_int(go, n);
    brg_msg_add_ref(go, http);
    brg_msg_add_int(go, th_server->port);
    ck_assert_int_eq(brg_system_send(tu_sys, client, &go), BRG_OK);
}

START_TEST(test_http_stress_every_transfer_answered_once_with_its_own_body)
{
    enum { CLIENTS = 4, EACH = 100, ROUNDS = 3 };
    for (int round = 0; round < ROUNDS; round++) {
        int before = atomic_load(&th_right);
        for (int c = 0; c < CLIENTS; c++)
            th_jitter(th_http, (int64_t)(round * CLIENTS + c) * EACH, EACH);
        TU_WAIT_UNTIL(atomic_load(&th_right) - before == CLIENTS * EACH, 60000);
    }
    ck_assert_int_eq(atomic_load(&th_wrong), 0);
    ck_assert_int_eq(atomic_load(&th_failed), 0);
    brg_http_stats_t s = th_stats();
    ck_assert_uint_eq(s.responses, CLIENTS * EACH * ROUNDS);
    ck_assert_uint_eq(s.in_flight, 0);
}
END_TEST

START_TEST(test_http_stress_actors_stopped_while_transfers_run)
{
    for (int i = 0; i < 30; i++) {
        brg_http_opts_t opts;
        brg_http_opts_init(&opts);
        brg_ref_t http;
        ck_assert_int_eq(brg_http_spawn_root(tu_sys, &opts, &http), BRG_OK);
        th_jitter(http, i * 20, 20);
        tu_sleep_us((useconds_t)(rand() % 3000));
        brg_actor_stop(tu_sys, http);
        TU_WAIT_DEAD(tu_sys, http);
    }
    // Whatever got a response got its own; the rest found the actor gone
    // (or are not answered, and the system's destroy ends their asks).
    ck_assert_int_eq(atomic_load(&th_wrong), 0);
    ck_assert_int_gt(atomic_load(&th_right) + atomic_load(&th_failed), 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Streaming mode, cancel, error detail, Retry-After

//  A streaming requester: on "th.go" it asks th_http for th_stream_path in
//  streaming mode (id 7); it gathers the chunks and the final answer, which
//  the test reads under th_col.lock. "th.cancel" cancels stream 7.
static struct {
    pthread_mutex_t lock;
    char url[256];
    char data[4096];
    int chunks;
    int bad_chunks; // chunks with another stream id or status
    bool answered;
    int status;      // the ask's status
    int http_status; // the response's status
    size_t body_len; // the response's body length
    uint64_t ask_id; // "th.go-plain": the ask's id (brg_ask_id)
} th_col = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int
th_on_stream_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)ctx;
    (void)arg;
    brg_http_response_t r;
    pthread_mutex_lock(&th_col.lock);
    th_col.status = status;
    if (status == BRG_OK && brg_http_read_response(reply, &r) == BRG_OK) {
        th_col.http_status = r.status;
        th_col.body_len = r.body_len;
    }
    th_col.answered = true;
    pthread_mutex_unlock(&th_col.lock);
    return BRG_OK;
}

static int
th_streamer(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_http_chunk_t c;
    if (brg_msg_is(msg, "th.go")) {
        char url[256];
        pthread_mutex_lock(&th_col.lock);
        snprintf(url, sizeof url, "%s", th_col.url);
        pthread_mutex_unlock(&th_col.lock);
        brg_http_request_t req = {.url = url, .stream_id = 7};
        brg_msg_t *m = brg_http_msg_request(&req);
        ck_assert_int_eq(brg_ask(ctx, th_http, &m, 20000, th_on_stream_answer, NULL), BRG_OK);
    } else if (brg_msg_is(msg, "th.go-plain")) {
        // Not streamed, asked with an id for brg_cancel ("th.ask-cancel").
        char url[256];
        pthread_mutex_lock(&th_col.lock);
        snprintf(url, sizeof url, "%s", th_col.url);
        pthread_mutex_unlock(&th_col.lock);
        brg_http_request_t req = {.url = url};
        brg_msg_t *m = brg_http_msg_request(&req);
        uint64_t id = 0;
        ck_assert_int_eq(brg_ask_id(ctx, th_http, &m, 20000, th_on_stream_answer, NULL, &id),
                         BRG_OK);
        pthread_mutex_lock(&th_col.lock);
        th_col.ask_id = id;
        pthread_mutex_unlock(&th_col.lock);
    } else if (brg_msg_is(msg, "th.ask-cancel")) {
        pthread_mutex_lock(&th_col.lock);
        uint64_t id = th_col.ask_id;
        pthread_mutex_unlock(&th_col.lock);
        ck_assert_int_eq(brg_cancel(ctx, th_http, id), BRG_OK);
    } else if (brg_msg_is(msg, "th.cancel")) {
        brg_msg_t *m = brg_http_msg_cancel(7);
        ck_assert_int_eq(brg_send(ctx, th_http, &m), BRG_OK);
    } else if (brg_http_read_chunk(msg, &c) == BRG_OK) {
        pthread_mutex_lock(&th_col.lock);
        // Chunks must all come before the answer.
        if (c.stream_id != 7 || c.status != 200 || th_col.answered)
            th_col.bad_chunks++;
        size_t have = strlen(th_col.data);
        if (have + c.len < sizeof th_col.data) {
            memcpy(th_col.data + have, c.data, c.len);
            th_col.data[have + c.len] = '\0';
        }
        th_col.chunks++;
        pthread_mutex_unlock(&th_col.lock);
    }
    return BRG_OK;
}

static brg_ref_t
th_stream_go(const char *path, const char *go)
{
    pthread_mutex_lock(&th_col.lock);
    tu_http_server_url(th_server, th_col.url, sizeof th_col.url, path);
    th_col.data[0] = '\0';
    th_col.chunks = th_col.bad_chunks = 0;
    th_col.answered = false;
    th_col.status = th_col.http_status = 0;
    th_col.body_len = 0;
    th_col.ask_id = 0;
    pthread_mutex_unlock(&th_col.lock);
    brg_ref_t s = tu_spawn(tu_sys, th_streamer);
    ck_assert_int_eq(tu_send_tag(tu_sys, s, go), BRG_OK);
    return s;
}

static brg_ref_t
th_stream(const char *path)
{
    return th_stream_go(path, "th.go");
}

//  Wait until cond (evaluated under the lock) holds, 10 s at most.
#define TH_WAIT(cond)                                                                              \
    do {                                                                                           \
        bool ok_ = false;                                                                          \
        for (int t_ = 0; !ok_ && t_ < 1000 * (int)tu_multiplier(); t_++) {                         \
            pthread_mutex_lock(&th_col.lock);                                                      \
            ok_ = (cond);                                                                          \
            pthread_mutex_unlock(&th_col.lock);                                                    \
            if (!ok_)                                                                              \
                tu_sleep_ms(10);                                                                   \
        }                                                                                          \
        ck_assert_msg(ok_, "timed out waiting for " #cond);                                        \
    } while (0)

START_TEST(test_http_streaming_sends_chunks_as_they_arrive_then_the_end)
{
    th_stream("/stream");
    TH_WAIT(th_col.answered);
    pthread_mutex_lock(&th_col.lock);
    ck_assert_int_eq(th_col.status, BRG_OK);
    ck_assert_int_eq(th_col.http_status, 200);
    ck_assert_uint_eq(th_col.body_len, 0); // the body went as chunks
    ck_assert_str_eq(th_col.data, "data: one\n\ndata: two\n\ndata: three\n\n");
    ck_assert_int_ge(th_col.chunks, 2); // 50 ms apart: not one piece
    ck_assert_int_eq(th_col.bad_chunks, 0);
    pthread_mutex_unlock(&th_col.lock);
    // A status that is not 2xx is kept whole for the answer.
    th_stream("/fail");
    TH_WAIT(th_col.answered);
    pthread_mutex_lock(&th_col.lock);
    ck_assert_int_eq(th_col.http_status, 503);
    ck_assert_uint_eq(th_col.body_len, strlen("{\"error\":\"overloaded\"}"));
    ck_assert_int_eq(th_col.chunks, 0);
    pthread_mutex_unlock(&th_col.lock);
    // A streamed body over max_response_bytes (1024 here) still fails.
    th_stream("/big-stream");
    TH_WAIT(th_col.answered);
    pthread_mutex_lock(&th_col.lock);
    ck_assert_int_eq(th_col.status, BRG_EMSGSIZE);
    pthread_mutex_unlock(&th_col.lock);
}
END_TEST

START_TEST(test_http_cancel_aborts_one_stream)
{
    brg_ref_t s = th_stream("/stream-hang");
    TH_WAIT(th_col.chunks >= 1); // then the server waits 10 s
    ck_assert_int_eq(tu_send_tag(tu_sys, s, "th.cancel"), BRG_OK);
    TH_WAIT(th_col.answered);
    pthread_mutex_lock(&th_col.lock);
    ck_assert_int_eq(th_col.status, BRG_ECANCELED);
    ck_assert_str_eq(th_col.data, "data: one\n\n");
    pthread_mutex_unlock(&th_col.lock);
    brg_http_stats_t st = th_stats();
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.in_flight, 0);
    // A cancel from someone else, or for no stream, changes nothing.
    brg_msg_t *m = brg_http_msg_cancel(7);
    ck_assert_int_eq(brg_system_send(tu_sys, th_http, &m), BRG_OK);
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask("GET", "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
}
END_TEST

//  Any request, not only a stream, is cancelled by its asker's brg.cancel
//  (brigade/cancel.h); a cancel from another actor with the same id is not
//  its asker's and changes nothing.
START_TEST(test_http_brg_cancel_aborts_a_plain_request)
{
    brg_ref_t s = th_stream_go("/slow", "th.go-plain"); // the server waits 5 s
    TH_WAIT(th_col.ask_id != 0);
    for (int t = 0; t < 500 * (int)tu_multiplier() && th_stats().in_flight < 1; t++)
        tu_sleep_ms(10);
    pthread_mutex_lock(&th_col.lock);
    uint64_t id = th_col.ask_id;
    pthread_mutex_unlock(&th_col.lock);
    brg_msg_t *m = brg_msg_new(BRG_TAG_CANCEL);
    ck_assert_int_eq(brg_msg_add_uint(m, id), BRG_OK);
    ck_assert_int_eq(brg_system_send(tu_sys, th_http, &m), BRG_OK); // not from the asker
    tu_sleep_ms(100);
    pthread_mutex_lock(&th_col.lock);
    ck_assert(!th_col.answered);
    pthread_mutex_unlock(&th_col.lock);
    ck_assert_uint_eq(th_stats().in_flight, 1);
    uint64_t start = tu_now_ms();
    ck_assert_int_eq(tu_send_tag(tu_sys, s, "th.ask-cancel"), BRG_OK);
    TH_WAIT(th_col.answered);
    ck_assert_uint_lt(tu_now_ms() - start, 4500); // before the server's 5 s were up
    pthread_mutex_lock(&th_col.lock);
    ck_assert_int_eq(th_col.status, BRG_ECANCELED);
    pthread_mutex_unlock(&th_col.lock);
    brg_http_stats_t st = th_stats();
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.responses, 0);
    ck_assert_uint_eq(st.in_flight, 0);
    // A second cancel of the answered request matches nothing.
    ck_assert_int_eq(tu_send_tag(tu_sys, s, "th.ask-cancel"), BRG_OK);
    brg_msg_t *reply;
    ck_assert_int_eq(th_ask("GET", "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    st = th_stats();
    ck_assert_uint_eq(st.responses, 1);
    ck_assert_uint_eq(st.failed, 1);
}
END_TEST

START_TEST(test_http_error_detail_says_whether_anything_was_sent)
{
    char url[256];
    // Refused connection: nothing sent.
    tu_http_server_t *gone = tu_http_server_start(th_handler, NULL);
    tu_http_server_url(gone, url, sizeof url, "/hello");
    tu_http_server_stop(&gone);
    brg_http_request_t req = {.url = url, .error_detail = true};
    brg_msg_t *msg = brg_http_msg_request(&req), *reply = NULL;
    ck_assert_int_eq(brg_system_ask(tu_sys, th_http, &msg, 10000, &reply), BRG_OK);
    brg_http_error_t e;
    ck_assert_int_eq(brg_http_read_error(reply, &e), BRG_OK);
    ck_assert_int_eq(e.code, BRG_ENETWORK);
    ck_assert(e.nothing_sent);
    ck_assert_uint_gt(e.message_len, 0);
    brg_msg_destroy(&reply);
    // The server read the request and hung up: it was sent.
    tu_http_server_url(th_server, url, sizeof url, "/hangup");
    msg = brg_http_msg_request(&req);
    ck_assert_int_eq(brg_system_ask(tu_sys, th_http, &msg, 10000, &reply), BRG_OK);
    ck_assert_int_eq(brg_http_read_error(reply, &e), BRG_OK);
    ck_assert_int_eq(e.code, BRG_ENETWORK);
    ck_assert(!e.nothing_sent);
    brg_msg_destroy(&reply);
}
END_TEST

START_TEST(test_http_response_carries_retry_after)
{
    brg_msg_t *reply;
    brg_http_response_t r;
    ck_assert_int_eq(th_ask("GET", "/retry-after", NULL, 0, NULL, 0, &reply), BRG_OK);
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_int_eq(r.status, 429);
    ck_assert_int_eq(r.retry_after_ms, 3000);
    brg_msg_destroy(&reply);
    ck_assert_int_eq(th_ask("GET", "/hello", NULL, 0, NULL, 0, &reply), BRG_OK);
    ck_assert_int_eq(brg_http_read_response(reply, &r), BRG_OK);
    ck_assert_int_eq(r.retry_after_ms, -1);
    brg_msg_destroy(&reply);
}
END_TEST

Suite *
http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, th_setup, th_teardown);
    tcase_set_timeout(core, 30);
    tcase_add_test(core, test_http_get_answers_with_status_content_type_and_body);
    tcase_add_test(core, test_http_sends_the_trace_context_as_traceparent);
    tcase_add_test(core, test_http_post_and_put_send_the_body_byte_for_byte);
    tcase_add_test(core, test_http_head_and_bodyless_post_are_well_formed);
    tcase_add_test(core, test_http_large_upload_arrives_whole);
    tcase_add_test(core, test_http_error_status_is_a_response_not_a_failure);
    tcase_add_test(core, test_http_request_deadline_answers_timed_out);
    tcase_add_test(core, test_http_refused_connection_and_hangup_answer_network_error);
    tcase_add_test(core, test_http_server_answering_with_non_http_bytes_is_a_network_error);
    tcase_add_test(core, test_http_body_over_the_limit_answers_msgsize);
    tcase_add_test(core, test_http_rejects_bad_requests_before_any_transfer);
    tcase_add_test(core, test_http_spawn_rejects_bad_options);
    tcase_add_test(core, test_http_spawned_from_an_actor_ends_with_it_however_it_ends);
    tcase_add_test(core, test_http_runs_many_transfers_at_once_and_answers_each_once);
    tcase_add_test(core, test_http_stopped_mid_transfer_cancels_and_frees_everything);
    tcase_add_test(core, test_http_streaming_sends_chunks_as_they_arrive_then_the_end);
    tcase_add_test(core, test_http_cancel_aborts_one_stream);
    tcase_add_test(core, test_http_brg_cancel_aborts_a_plain_request);
    tcase_add_test(core, test_http_error_detail_says_whether_anything_was_sent);
    tcase_add_test(core, test_http_response_carries_retry_after);
    suite_add_tcase(s, core);
    TCase *small = tcase_create("small");
    tcase_add_checked_fixture(small, th_setup_small, th_teardown);
    tcase_set_timeout(small, 30);
    tcase_add_test(small, test_http_past_max_pending_answers_busy);
    suite_add_tcase(s, small);
    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_add_checked_fixture(stress, th_setup_stress, th_teardown);
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress, test_http_stress_every_transfer_answered_once_with_its_own_body);
    tcase_add_test(stress, test_http_stress_actors_stopped_while_transfers_run);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(http_suite());
}
