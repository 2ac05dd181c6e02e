//  model_test_server - an OpenAI-compatible chat-completions handler for the
//  test HTTP server (http_test_server.h), shared by the Check suites and
//  tests/tools/model_server.c. Deterministic, 127.0.0.1 only.
//
//  It checks the request body it receives against the chat-completions wire
//  format (model; messages with their roles, content, tool_calls and
//  tool_call_id; tools; max_tokens; temperature; response_format; stream and
//  stream_options.include_usage) and answers 400 with the reason in the
//  error message (also kept in last_error) when something is off, so tests
//  prove what we send. Answers:
//    - the last message is a tool result: "Tool said: <its content>"
//    - tools are offered and the last message is the user's: a call of the
//      first tool, id "call_<n>", arguments {"q":"<the user's text>"}
//    - response_format json_object: {"answer":"json"}
//    - an old-task system prompt (summary, copy editor): as before
//    - else: "Echo: <the last user message>"
//  with the request's model, finish reason "stop" or "tool_calls", usage
//  prompt = body bytes / 4, completion 8. With "stream": true it answers with
//  server-sent events (chunked): a role chunk, the text in 4-byte pieces or
//  the tool call (id, type and name first, then the arguments in 5-byte
//  pieces), a finish chunk, a usage chunk with empty choices, data: [DONE].
//  Failure injection: the first fail_first requests get fail_status with an
//  OpenAI error body (and a Retry-After header when retry_after is set);
//  paths containing "/hang/" stop for 10 s after the second event (cancel);
//  "/cut/" ends the stream after two events without [DONE]; "/error-event/"
//  and "/not-json/" send an error event or a broken JSON event third;
//  "/variants/" sends the stream with CRLF, comments, event: fields, events
//  cut across chunks and a multi-line data event.
//
//  Thread contract: the handler runs on connection threads; the counters are
//  atomics and last_error is under `lock`.
#ifndef TU_MODEL_TEST_SERVER_H
#define TU_MODEL_TEST_SERVER_H

#include "http_test_server.h"

#include <jansson.h>

typedef struct {
    atomic_int requests;     // chat requests seen (failed ones included)
    int fail_first;          // the first fail_first requests fail...
    int fail_status;         //   with this status (default 0: 503)
    const char *retry_after; // ... and this Retry-After value (NULL: none)
    int chunk_delay_ms;      // between stream events
    int delay_ms;            // before every answer
    int close_first;         // the first close_first requests: the connection is closed
                             //   after the request was read, with no answer
    pthread_mutex_t lock;
    char last_error[256]; // why the last refused body was refused
} tu_model_server_t;

#define TU_MODEL_SERVER_INIT                                                                       \
    {                                                                                              \
        .lock = PTHREAD_MUTEX_INITIALIZER                                                          \
    }

//  Why body is not a valid chat-completions request, or NULL.
static const char *
tu__model_check(json_t *root)
{
    if (!json_is_object(root))
        return "the body is not a JSON object";
    if (!json_is_string(json_object_get(root, "model")))
        return "model is not a string";
    json_t *messages = json_object_get(root, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return "messages is not a non-empty array";
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        json_t *calls = json_object_get(m, "tool_calls");
        if (!role)
            return "a message without role";
        if (strcmp(role, "tool") == 0 &&
            (!json_is_string(json_object_get(m, "tool_call_id")) || !json_is_string(content)))
            return "a tool message without tool_call_id or content";
        if (strcmp(role, "assistant") == 0 && calls) {
            size_t k;
            json_t *c;
            if (!json_is_array(calls))
                return "tool_calls is not an array";
            json_array_foreach(calls, k, c)
            {
                json_t *fn = json_object_get(c, "function");
                const char *type = json_string_value(json_object_get(c, "type"));
                if (!json_is_string(json_object_get(c, "id")) || !type ||
                    strcmp(type, "function") != 0 || !json_is_string(json_object_get(fn, "name")) ||
                    !json_is_string(json_object_get(fn, "arguments")))
                    return "a tool call without id, type function, name or arguments";
            }
            if (!json_is_string(content) && !json_is_null(content))
                return "assistant content is neither a string nor null";
        } else if (strcmp(role, "tool") != 0) {
            if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
                strcmp(role, "assistant") != 0)
                return "a message with an unknown role";
            if (!json_is_string(content))
                return "a message without string content";
        }
    }
    json_t *tools = json_object_get(root, "tools");
    if (tools) {
        size_t k;
        json_t *t;
        if (!json_is_array(tools))
            return "tools is not an array";
        json_array_foreach(tools, k, t)
        {
            json_t *fn = json_object_get(t, "function");
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!type || strcmp(type, "function") != 0 ||
                !json_is_string(json_object_get(fn, "name")) ||
                !json_is_object(json_object_get(fn, "parameters")))
                return "a tool without type function, name or parameters object";
        }
    }
    json_t *max = json_object_get(root, "max_tokens");
    json_t *temp = json_object_get(root, "temperature");
    if (!json_is_integer(max) || json_integer_value(max) < 1)
        return "max_tokens is not a positive integer";
    if (!json_is_number(temp) || json_number_value(temp) < 0 || json_number_value(temp) > 2)
        return "temperature is not a number in 0..2";
    json_t *format = json_object_get(root, "response_format");
    if (format && !json_is_string(json_object_get(format, "type")))
        return "response_format without type";
    json_t *stream = json_object_get(root, "stream");
    if (stream && !json_is_boolean(stream))
        return "stream is not a boolean";
    if (json_is_true(stream) &&
        !json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage")))
        return "a stream without stream_options.include_usage";
    return NULL;
}

//  Append one SSE event "data: <json>\n\n" (json taken) to resp's chunks.
static void
tu__model_event(tu_http_resp_t *resp, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT) : strdup("[DONE]");
    json_decref(json);
    if (!text || resp->n_chunks >= (int)(sizeof resp->chunks / sizeof resp->chunks[0])) {
        free(text);
        return;
    }
    size_t len = strlen(text) + 16;
    char *event = malloc(len);
    if (event)
        snprintf(event, len, "data: %s\n\n", text);
    free(text);
    if (event)
        resp->chunks[resp->n_chunks++] = event;
}

//  "/variants/": the same events as other servers may send them: "\r\n"
//  line ends, a comment and an "event:" field before each, every event cut
//  in two chunks mid-line, and one event's JSON over two data: lines.
static void
tu__model_variants(tu_http_resp_t *resp)
{
    int n = resp->n_chunks;
    char *events[64];
    memcpy(events, resp->chunks, sizeof(char *) * (size_t)n);
    resp->n_chunks = 0;
    for (int i = 0; i < n && resp->n_chunks + 2 <= 64; i++) {
        // "data: X\n\n" -> ": ping\r\nevent: message\r\ndata: X\r\n\r\n", the
        // first event's JSON split over two data: lines at its first comma.
        const char *x = events[i] + 6;
        size_t xlen = strlen(x) - 2;
        size_t len = xlen + 64;
        char *out = malloc(len);
        const char *comma = i == 1 ? memchr(x, ',', xlen) : NULL;
        if (comma)
            snprintf(out, len, ": ping\r\nevent: message\r\ndata: %.*s\r\ndata: %.*s\r\n\r\n",
                     (int)(comma + 1 - x), x, (int)(xlen - (size_t)(comma + 1 - x)), comma + 1);
        else
            snprintf(out, len, ": ping\r\nevent: message\r\ndata: %.*s\r\n\r\n", (int)xlen, x);
        free(events[i]);
        size_t half = strlen(out) / 2;
        resp->chunks[resp->n_chunks++] = strndup(out, half);
        resp->chunks[resp->n_chunks++] = strdup(out + half);
        free(out);
    }
}

static void
tu_model_handler(const tu_http_req_t *req, tu_http_resp_t *resp, void *arg)
{
    tu_model_server_t *ms = arg;
    if (strcmp(req->method, "POST") != 0 || !strstr(req->path, "/chat/completions")) {
        resp->status = 404;
        return;
    }
    int n = atomic_fetch_add(&ms->requests, 1) + 1;
    resp->delay_ms = ms->delay_ms;
    if (n <= ms->close_first) {
        resp->status = 0;
        return;
    }
    if (n <= ms->fail_first) {
        resp->status = ms->fail_status ? ms->fail_status : 503;
        if (ms->retry_after)
            snprintf(resp->headers, sizeof resp->headers, "Retry-After: %s\r\n", ms->retry_after);
        char body[256];
        snprintf(body, sizeof body,
                 "{\"error\":{\"message\":\"injected failure %d of %d\",\"type\":\"%s\","
                 "\"code\":null}}",
                 n, ms->fail_first, resp->status == 429 ? "rate_limit_exceeded" : "server_error");
        resp->body = strdup(body);
        return;
    }
    json_error_t err;
    json_t *root = json_loadb(req->body, req->body_len, 0, &err);
    const char *why = tu__model_check(root);
    if (why) {
        pthread_mutex_lock(&ms->lock);
        snprintf(ms->last_error, sizeof ms->last_error, "%s", why);
        pthread_mutex_unlock(&ms->lock);
        char body[512];
        snprintf(body, sizeof body,
                 "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\"}}", why);
        resp->status = 400;
        resp->body = strdup(body);
        json_decref(root);
        return;
    }
    json_t *messages = json_object_get(root, "messages");
    json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    const char *system = json_string_value(json_object_get(json_array_get(messages, 0), "content"));
    const char *user = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "role")), "user") == 0)
            user = json_string_value(json_object_get(m, "content"));
    }
    json_t *tools = json_object_get(root, "tools");
    const char *model = json_string_value(json_object_get(root, "model"));
    bool stream = json_is_true(json_object_get(root, "stream"));
    char answer[1024] = "";
    char call_id[32] = "", call_name[80] = "", call_args[512] = "";
    if (strcmp(role, "tool") == 0) {
        snprintf(answer, sizeof answer, "Tool said: %s",
                 json_string_value(json_object_get(last, "content")));
    } else if (json_array_size(tools) > 0 && strcmp(role, "user") == 0) {
        snprintf(call_id, sizeof call_id, "call_%d", n);
        snprintf(call_name, sizeof call_name, "%s",
                 json_string_value(json_object_get(
                     json_object_get(json_array_get(tools, 0), "function"), "name")));
        json_t *args = json_pack("{s:s}", "q", user ? user : "");
        char *text = json_dumps(args, JSON_COMPACT);
        snprintf(call_args, sizeof call_args, "%s", text ? text : "{}");
        free(text);
        json_decref(args);
    } else if (json_object_get(root, "response_format")) {
        snprintf(answer, sizeof answer, "{\"answer\":\"json\"}");
    } else if (system && strstr(system, "summar")) {
        size_t user_len =
            json_string_length(json_object_get(json_array_get(messages, 1), "content"));
        snprintf(answer, sizeof answer, "Test summary of a %zu-byte text.", user_len);
    } else if (system && strstr(system, "copy editor")) {
        snprintf(answer, sizeof answer, "line 1: test finding");
    } else {
        snprintf(answer, sizeof answer, "Echo: %s", user ? user : "");
    }
    const char *finish = call_id[0] ? "tool_calls" : "stop";
    json_int_t prompt = (json_int_t)req->body_len / 4;
    if (!stream) {
        json_t *message = json_pack("{s:s}", "role", "assistant");
        if (call_id[0]) {
            json_object_set_new(message, "content", json_null());
            json_object_set_new(message, "tool_calls",
                                json_pack("[{s:s, s:s, s:{s:s, s:s}}]", "id", call_id, "type",
                                          "function", "function", "name", call_name, "arguments",
                                          call_args));
        } else {
            json_object_set_new(message, "content", json_string(answer));
        }
        json_t *reply = json_pack(
            "{s:s, s:s, s:[{s:i, s:o, s:s}], s:{s:I, s:i, s:I}}", "object", "chat.completion",
            "model", model, "choices", "index", 0, "message", message, "finish_reason", finish,
            "usage", "prompt_tokens", prompt, "completion_tokens", 8, "total_tokens", prompt + 8);
        resp->body = json_dumps(reply, JSON_COMPACT);
        json_decref(reply);
        json_decref(root);
        return;
    }
    resp->content_type = "text/event-stream";
    resp->chunk_delay_ms = ms->chunk_delay_ms;
    if (strstr(req->path, "/hang/"))
        resp->hang_after = 2, resp->hang_ms = 10000;
#define TU_CHUNK(delta, fin)                                                                       \
    json_pack("{s:s, s:s, s:[{s:i, s:o, s:o}], s:n}", "object", "chat.completion.chunk", "model",  \
              model, "choices", "index", 0, "delta", (delta), "finish_reason", (fin), "usage")
    tu__model_event(
        resp, TU_CHUNK(json_pack("{s:s, s:s}", "role", "assistant", "content", ""), json_null()));
    if (call_id[0]) {
        tu__model_event(resp,
                        TU_CHUNK(json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls",
                                           "index", 0, "id", call_id, "type", "function",
                                           "function", "name", call_name, "arguments", ""),
                                 json_null()));
        for (size_t off = 0; off < strlen(call_args); off += 5) {
            char piece[8];
            snprintf(piece, sizeof piece, "%.5s", call_args + off);
            tu__model_event(resp, TU_CHUNK(json_pack("{s:[{s:i, s:{s:s}}]}", "tool_calls", "index",
                                                     0, "function", "arguments", piece),
                                           json_null()));
        }
    } else {
        for (size_t off = 0; off < strlen(answer); off += 4) {
            char piece[8];
            snprintf(piece, sizeof piece, "%.4s", answer + off);
            tu__model_event(resp, TU_CHUNK(json_pack("{s:s}", "content", piece), json_null()));
        }
    }
    if (strstr(req->path, "/error-event/") || strstr(req->path, "/not-json/")) {
        while (resp->n_chunks > 2)
            free(resp->chunks[--resp->n_chunks]);
        resp->chunks[resp->n_chunks++] =
            strdup(strstr(req->path, "/not-json/")
                       ? "data: {\"choices\": [{\"delta\": \n\n"
                       : "data: {\"error\":{\"message\":\"overloaded mid-stream\","
                         "\"type\":\"server_error\"}}\n\n");
        json_decref(root);
        return;
    }
    if (strstr(req->path, "/cut/")) {
        while (resp->n_chunks > 2)
            free(resp->chunks[--resp->n_chunks]);
        json_decref(root);
        return;
    }
    tu__model_event(resp, TU_CHUNK(json_object(), json_string(finish)));
#undef TU_CHUNK
    tu__model_event(resp, json_pack("{s:s, s:s, s:[], s:{s:I, s:i, s:I}}", "object",
                                    "chat.completion.chunk", "model", model, "choices", "usage",
                                    "prompt_tokens", prompt, "completion_tokens", 8, "total_tokens",
                                    prompt + 8));
    tu__model_event(resp, NULL); // data: [DONE]
    if (strstr(req->path, "/variants/"))
        tu__model_variants(resp);
    json_decref(root);
}

#endif
