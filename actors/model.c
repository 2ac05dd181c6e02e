//  model - the model backend protocol and its two backends: offline (the
//  text functions) and openai (chat completions over the HTTP actor).
//
//  Design notes.
//  The protocol is msgpack like every message: a request is
//  [task, instructions or nil, text]; a reply is [text, backend, model,
//  prompt_tokens, completion_tokens]. JSON appears only at the edge, in the
//  openai backend, and is built and parsed with jansson.
//  The openai backend keeps a copy of each request (brg_msg_dup) as the ask
//  callback's arg and answers it with brg_reply_to when the HTTP actor's
//  answer comes; the callback frees the copy on every path, including
//  BRG_ECLOSED when the backend stops with calls in flight.
#include "actors_internal.h"

#include <jansson.h>
#include <stdarg.h>

#define S_STRING_MAX 2048 // URL, key and model name

static const char *const s_task_names[] = {"chat", "summarise", "check", "keywords"};
#define S_TASKS (sizeof s_task_names / sizeof s_task_names[0])

//  ---------------------------------------------------------------------------
//  Protocol

const char *
brg_model_task_name(brg_model_task_t task)
{
    return (unsigned)task < S_TASKS ? s_task_names[task] : "unknown";
}

brg_msg_t *
brg_model_msg_request(const brg_model_request_t *req)
{
    assert(req);
    if ((unsigned)req->task >= S_TASKS || !req->text)
        return NULL;
    size_t len = req->len ? req->len : strlen(req->text);
    if (len > BRG_TEXT_MAX)
        return NULL;
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_REQUEST);
    int rc = msg ? brg_msg_add_int(msg, req->task) : BRG_ENOMEM;
    if (rc == BRG_OK && req->instructions)
        rc = brg_msg_add_strn(msg, req->instructions,
                              req->instructions_len ? req->instructions_len
                                                    : strlen(req->instructions));
    else if (rc == BRG_OK)
        rc = brg_msg_add_nil(msg);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, req->text, len);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_model_read_request(const brg_msg_t *msg, brg_model_request_t *out)
{
    assert(msg);
    assert(out);
    if (!brg_msg_is(msg, BRG_MODEL_TAG_REQUEST))
        return BRG_ETYPE;
    brg_model_request_t r = {0};
    size_t pos = 0;
    int64_t task;
    if (brg_msg_read_int(msg, &pos, &task) != BRG_OK || task < 0 || task >= (int64_t)S_TASKS)
        return BRG_EBADMSG;
    r.task = (brg_model_task_t)task;
    if (brg_msg_peek(msg, pos) == BRG_TYPE_NIL)
        brg_msg_read_nil(msg, &pos);
    else if (brg_msg_read_str(msg, &pos, &r.instructions, &r.instructions_len) != BRG_OK)
        return BRG_EBADMSG;
    if (brg_msg_read_str(msg, &pos, &r.text, &r.len) != BRG_OK)
        return BRG_EBADMSG;
    *out = r;
    return BRG_OK;
}

int
brg_model_msg_reply(const brg_model_reply_t *in, brg_msg_t **reply)
{
    assert(in);
    assert(reply);
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_REPLY);
    int rc = msg ? brg_msg_add_strn(msg, in->text ? in->text : "", in->len) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, in->backend ? in->backend : "", in->backend_len);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, in->model ? in->model : "", in->model_len);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, in->prompt_tokens);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, in->completion_tokens);
    if (rc != BRG_OK) {
        brg_msg_destroy(&msg);
        return BRG_ENOMEM;
    }
    *reply = msg;
    return BRG_OK;
}

int
brg_model_read_reply(const brg_msg_t *reply, brg_model_reply_t *out)
{
    assert(reply);
    assert(out);
    if (!brg_msg_is(reply, BRG_MODEL_TAG_REPLY))
        return BRG_ETYPE;
    brg_model_reply_t r;
    size_t pos = 0;
    if (brg_msg_read_str(reply, &pos, &r.text, &r.len) != BRG_OK ||
        brg_msg_read_str(reply, &pos, &r.backend, &r.backend_len) != BRG_OK ||
        brg_msg_read_str(reply, &pos, &r.model, &r.model_len) != BRG_OK ||
        brg_msg_read_int(reply, &pos, &r.prompt_tokens) != BRG_OK ||
        brg_msg_read_int(reply, &pos, &r.completion_tokens) != BRG_OK)
        return BRG_EBADMSG;
    *out = r;
    return BRG_OK;
}

//  Answer the current ask with a text reply.
static int
s_reply_text(brg_ctx_t *ctx, const brg_msg_t *request, const char *text, size_t len,
             const char *backend, const char *model, int64_t prompt_tokens,
             int64_t completion_tokens)
{
    brg_model_reply_t r = {text,  len,           backend,       strlen(backend),
                           model, strlen(model), prompt_tokens, completion_tokens};
    brg_msg_t *reply = NULL;
    if (brg_model_msg_reply(&r, &reply) != BRG_OK)
        return request ? brg_reply_error_to(ctx, request, BRG_ENOMEM)
                       : brg_reply_error(ctx, BRG_ENOMEM);
    return request ? brg_reply_to(ctx, request, &reply) : brg_reply(ctx, &reply);
}

//  ---------------------------------------------------------------------------
//  Offline backend

//  A growing string; `failed` once an allocation failed.
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} s_buf_t;

static void s_buf_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
s_buf_printf(s_buf_t *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->failed; attempt++) {
        va_list args;
        va_start(args, fmt);
        int n =
            vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, args);
        va_end(args);
        if (n < 0) {
            b->failed = true;
        } else if (b->data && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        } else {
            size_t cap = (b->cap ? b->cap : 256);
            while (cap < b->len + (size_t)n + 1)
                cap *= 2;
            char *data = realloc(b->data, cap);
            if (!data)
                b->failed = true;
            else
                b->data = data, b->cap = cap;
        }
    }
}

//  Do the task with brigade/text.h into b. BRG_OK or an error.
static int
s_offline_work(const brg_model_request_t *req, s_buf_t *b)
{
    if (req->task == BRG_MODEL_SUMMARISE) {
        brg_text_span_t best[BRG_MODEL_SUMMARY_SENTENCES];
        int n = brg_text_summarise(req->text, req->len, BRG_MODEL_SUMMARY_SENTENCES, best);
        for (int i = 0; i < n; i++)
            s_buf_printf(b, "%s%.*s", i ? " " : "", (int)best[i].length,
                         req->text + best[i].offset);
        return n < 0 ? n : BRG_OK;
    }
    if (req->task == BRG_MODEL_CHECK) {
        enum { MAX = 50 };
        brg_text_finding_t *found = malloc(MAX * sizeof(*found));
        int n = found ? brg_text_check(req->text, req->len, NULL, found, MAX) : BRG_ENOMEM;
        for (int i = 0; i < n && i < MAX; i++)
            s_buf_printf(b, "line %d, column %d: %s (%s)\n", found[i].line, found[i].column,
                         found[i].message, brg_text_rule_name(found[i].rule));
        if (n > MAX)
            s_buf_printf(b, "... and %d more\n", n - MAX);
        else if (n == 0)
            s_buf_printf(b, "No problems found.");
        free(found);
        return n < 0 ? n : BRG_OK;
    }
    if (req->task == BRG_MODEL_KEYWORDS) {
        brg_text_keyword_t top[10];
        int n = brg_text_keywords(req->text, req->len, top, 10);
        for (int i = 0; i < n && i < 10; i++)
            s_buf_printf(b, "%s%s (%zu)", i ? ", " : "", top[i].word, top[i].count);
        return n < 0 ? n : BRG_OK;
    }
    return BRG_EINVAL; // CHAT: no language model here
}

//  Both backends: the spawning actor (whose exit ends them), or NONE.
typedef struct {
    brg_ref_t parent;
} s_offline_t;

static int
s_trap_if_child(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    const brg_ref_t *parent = brg_state(ctx); // first field of either state
    if (!brg_ref_is_none(*parent))
        brg_trap_exits(ctx, true); // to end with the parent (brg__actors_on_exit)
    return BRG_OK;
}

static int
s_offline(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    const s_offline_t *self = brg_state(ctx);
    brg_model_request_t req;
    if (brg__actors_on_exit(ctx, msg, self->parent))
        return BRG_OK;
    if (!brg_msg_is(msg, BRG_MODEL_TAG_REQUEST))
        return BRG_UNHANDLED;
    if (brg_model_read_request(msg, &req) != BRG_OK)
        return brg_reply_error(ctx, BRG_EBADMSG), BRG_OK;
    s_buf_t b = {0};
    int rc = s_offline_work(&req, &b);
    if (rc == BRG_OK && b.failed)
        rc = BRG_ENOMEM;
    if (rc == BRG_OK)
        s_reply_text(ctx, NULL, b.data ? b.data : "", b.len, "offline", "text", -1, -1);
    else
        brg_reply_error(ctx, rc);
    free(b.data);
    return BRG_OK;
}

static int
s_offline_spawn(brg_system_t *sys, brg_ctx_t *ctx, const char *name, brg_ref_t *model)
{
    s_offline_t *self = malloc(sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    self->parent = ctx ? brg_self(ctx) : BRG_REF_NONE;
    return brg__actors_spawn(sys, ctx, s_offline, self, free, s_trap_if_child, name, model);
}

int
brg_model_offline_spawn(brg_ctx_t *ctx, const char *name, brg_ref_t *model)
{
    assert(ctx);
    return s_offline_spawn(brg_ctx_system(ctx), ctx, name, model);
}

int
brg_model_offline_spawn_root(brg_system_t *sys, const char *name, brg_ref_t *model)
{
    assert(sys);
    return s_offline_spawn(sys, NULL, name, model);
}

//  ---------------------------------------------------------------------------
//  OpenAI-compatible backend

static const char *const s_prompts[] = {
    "You are a helpful assistant. Answer briefly.",
    "You summarise documents. Answer with a summary of at most three sentences, in the "
    "document's language, and nothing else.",
    "You are a copy editor. List the style and grammar problems of the user's text, one per "
    "line, as 'line L: problem'. Answer 'No problems found.' if there are none.",
    "List the ten most important keywords of the user's text, most important first, "
    "comma-separated, and nothing else.",
};

typedef struct {
    brg_ref_t parent; // first, as in s_offline_t: the spawning actor, or NONE
    char *url;        // the full .../chat/completions URL
    char *auth;       // "Authorization: Bearer <key>", or NULL
    char *model;
    int max_tokens;
    double temperature;
    int timeout_ms;
    bool log_errors;
    bool own_http; // spawn the HTTP actor in init
    brg_ref_t http;
} s_openai_t;

static void
s_openai_destroy(void *state)
{
    s_openai_t *self = state;
    free(self->url);
    free(self->auth);
    free(self->model);
    free(self);
}

//  One log line (category "model", level warning) about a failed call.
static void
s_log(brg_ctx_t *ctx, const s_openai_t *self, int status, const char *what, const char *detail,
      size_t len)
{
    char url[256];
    if (!self->log_errors || !brg_log_enabled(brg_ctx_system(ctx), BRG_LOG_WARNING))
        return;
    brg__http_url_for_log(self->url, url, sizeof url);
    brg_system_log(brg_ctx_system(ctx), BRG_LOG_WARNING, "model", brg_self(ctx),
                   "POST %s: %s%s%.*s (%s)", url, what, len ? ": " : "", (int)len,
                   detail ? detail : "", brg_err_name(status));
}

//  The message text of an error body {"error": {"message": "..."}}, if any.
static void
s_log_http_error(brg_ctx_t *ctx, const s_openai_t *self, const brg_http_response_t *r)
{
    json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
    const char *message =
        json_string_value(json_object_get(json_object_get(root, "error"), "message"));
    char what[32];
    snprintf(what, sizeof what, "HTTP status %d", r->status);
    if (message)
        s_log(ctx, self, BRG_EHTTP, what, message, strlen(message));
    else
        s_log(ctx, self, BRG_EHTTP, what, r->body, r->body_len < 200 ? r->body_len : 200);
    json_decref(root);
}

//  Read a chat completion and answer `request` with it.
static int
s_answer_completion(brg_ctx_t *ctx, s_openai_t *self, const brg_msg_t *request,
                    const brg_http_response_t *r)
{
    json_error_t err;
    json_t *root = json_loadb(r->body, r->body_len, 0, &err);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *content = json_object_get(json_object_get(choice, "message"), "content");
    if (!json_is_string(content)) {
        s_log(ctx, self, BRG_EPROTO, "not a chat completion",
              root ? "no choices[0].message.content" : err.text,
              strlen(root ? "no choices[0].message.content" : err.text));
        json_decref(root);
        return brg_reply_error_to(ctx, request, BRG_EPROTO);
    }
    json_t *usage = json_object_get(root, "usage");
    json_t *prompt = json_object_get(usage, "prompt_tokens");
    json_t *completion = json_object_get(usage, "completion_tokens");
    const char *model = json_string_value(json_object_get(root, "model"));
    int rc = s_reply_text(ctx, request, json_string_value(content), json_string_length(content),
                          "openai", model ? model : self->model,
                          json_is_integer(prompt) ? json_integer_value(prompt) : -1,
                          json_is_integer(completion) ? json_integer_value(completion) : -1);
    json_decref(root);
    return rc;
}

static int
s_on_http(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_openai_t *self = brg_state(ctx);
    brg_msg_t *request = arg; // our copy of the caller's request
    brg_http_response_t r;
    if (status == BRG_ECLOSED) {
        // We are stopping: tell the caller now rather than at its deadline.
        brg_reply_error_to(ctx, request, BRG_ECLOSED);
    } else if (status != BRG_OK) {
        s_log(ctx, self, status, "the call failed", NULL, 0);
        brg_reply_error_to(ctx, request, status);
    } else if (brg_http_read_response(reply, &r) != BRG_OK) {
        brg_reply_error_to(ctx, request, BRG_EPROTO);
    } else if (r.status < 200 || r.status > 299) {
        s_log_http_error(ctx, self, &r);
        brg_reply_error_to(ctx, request, BRG_EHTTP);
    } else {
        s_answer_completion(ctx, self, request, &r);
    }
    brg_msg_destroy(&request);
    return BRG_OK;
}

//  The chat-completions request body for req, as a JSON string (free it).
static char *
s_body(const s_openai_t *self, const brg_model_request_t *req)
{
    const char *system = req->instructions ? req->instructions : s_prompts[req->task];
    size_t system_len = req->instructions ? req->instructions_len : strlen(system);
    // s# takes an int length; texts are at most BRG_TEXT_MAX (4 MiB).
    json_t *body = json_pack("{s:s, s:[{s:s, s:s#}, {s:s, s:s#}], s:i, s:f}", "model", self->model,
                             "messages", "role", "system", "content", system, (int)system_len,
                             "role", "user", "content", req->text, (int)req->len, "max_tokens",
                             self->max_tokens, "temperature", self->temperature);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

static int
s_openai(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_openai_t *self = brg_state(ctx);
    brg_model_request_t req;
    if (brg__actors_on_exit(ctx, msg, self->parent))
        return BRG_OK;
    if (!brg_msg_is(msg, BRG_MODEL_TAG_REQUEST))
        return BRG_UNHANDLED;
    if (brg_model_read_request(msg, &req) != BRG_OK)
        return brg_reply_error(ctx, BRG_EBADMSG), BRG_OK;
    // NULL also when the text is not valid UTF-8 (JSON strings must be).
    char *body = s_body(self, &req);
    if (!body)
        return brg_reply_error(ctx, BRG_EINVAL), BRG_OK;
    // JSON escapes can make the body up to 6 times the text: past the
    // message limit it cannot travel to the HTTP actor.
    if (strlen(body) > BRG_MSG_MAX - 4096) {
        free(body);
        return brg_reply_error(ctx, BRG_EMSGSIZE), BRG_OK;
    }
    const char *headers[] = {"Content-Type: application/json", self->auth};
    brg_http_request_t hr = {"POST", self->url,    headers,         self->auth ? 2 : 1,
                             body,   strlen(body), self->timeout_ms};
    brg_msg_t *call = brg_http_msg_request(&hr);
    brg_msg_t *saved = call ? brg_msg_dup(msg) : NULL;
    free(body);
    if (!saved) {
        brg_msg_destroy(&call);
        return brg_reply_error(ctx, BRG_ENOMEM), BRG_OK;
    }
    // The HTTP actor's own deadline answers first; ours is the backstop.
    int rc = brg_ask(ctx, self->http, &call, self->timeout_ms + 2000, s_on_http, saved);
    if (rc != BRG_OK) {
        brg_msg_destroy(&call);
        brg_msg_destroy(&saved);
        brg_reply_error(ctx, rc);
    }
    return BRG_OK;
}

static int
s_openai_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    s_openai_t *self = brg_state(ctx);
    s_trap_if_child(ctx, arg);
    if (!self->own_http)
        return BRG_OK;
    brg_http_opts_t opts;
    brg_http_opts_init(&opts);
    opts.timeout_ms = self->timeout_ms;
    opts.log_errors = self->log_errors;
    return brg_http_spawn(ctx, &opts, &self->http); // it ends with us, however we end
}

void
brg_model_openai_opts_init(brg_model_openai_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
    opts->model = "gpt-4o-mini";
    opts->max_tokens = 512;
    opts->temperature = 0.2;
    opts->timeout_ms = 60000;
    opts->http = BRG_REF_NONE;
    opts->log_errors = true;
}

int
brg_model_openai_opts_from_env(brg_model_openai_opts_t *opts)
{
    assert(opts);
    const char *url = getenv("BRG_MODEL_URL");
    if (!url || !*url)
        return BRG_ENOTFOUND;
    const char *key = getenv("BRG_MODEL_KEY"), *model = getenv("BRG_MODEL_NAME");
    opts->url = url;
    opts->api_key = key && *key ? key : NULL;
    if (model && *model)
        opts->model = model;
    return BRG_OK;
}

static bool
s_short(const char *s)
{
    return !s || strlen(s) <= S_STRING_MAX;
}

//  An API key goes into a header line: printable ASCII, no spaces.
static bool
s_token_ok(const char *key)
{
    for (; *key; key++)
        if (*key <= ' ' || *key >= 0x7f)
            return false;
    return true;
}

static int
s_openai_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_model_openai_opts_t *opts,
               brg_ref_t *model)
{
    if (!opts->url || !opts->model || !*opts->model || !s_short(opts->url) ||
        !s_short(opts->api_key) || !s_short(opts->model) ||
        !brg__http_url_ok(opts->url, strlen(opts->url)) ||
        (opts->api_key && !s_token_ok(opts->api_key)) || opts->max_tokens < 1 ||
        opts->max_tokens > 100000 || !(opts->temperature >= 0) || opts->temperature > 2 ||
        opts->timeout_ms < 1 || opts->timeout_ms > 3600000)
        return BRG_EINVAL;
    s_openai_t *self = calloc(1, sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    static const char suffix[] = "/chat/completions";
    size_t len = strlen(opts->url);
    while (len > 0 && opts->url[len - 1] == '/')
        len--;
    bool full = len >= sizeof suffix - 1 &&
                strncmp(opts->url + len - (sizeof suffix - 1), suffix, sizeof suffix - 1) == 0;
    size_t url_size = len + sizeof suffix;
    self->url = malloc(url_size);
    if (self->url)
        snprintf(self->url, url_size, "%.*s%s", (int)len, opts->url, full ? "" : suffix);
    if (opts->api_key) {
        size_t auth_size = strlen(opts->api_key) + 32;
        if ((self->auth = malloc(auth_size)) != NULL)
            snprintf(self->auth, auth_size, "Authorization: Bearer %s", opts->api_key);
    }
    self->model = strdup(opts->model);
    if (!self->url || !self->model || (opts->api_key && !self->auth)) {
        s_openai_destroy(self);
        return BRG_ENOMEM;
    }
    self->max_tokens = opts->max_tokens;
    self->temperature = opts->temperature;
    self->timeout_ms = opts->timeout_ms;
    self->log_errors = opts->log_errors;
    self->http = opts->http;
    self->own_http = brg_ref_is_none(opts->http);
    self->parent = ctx ? brg_self(ctx) : BRG_REF_NONE;
    return brg__actors_spawn(sys, ctx, s_openai, self, s_openai_destroy, s_openai_init, opts->name,
                             model);
}

int
brg_model_openai_spawn(brg_ctx_t *ctx, const brg_model_openai_opts_t *opts, brg_ref_t *model)
{
    assert(ctx);
    assert(opts);
    return s_openai_spawn(brg_ctx_system(ctx), ctx, opts, model);
}

int
brg_model_openai_spawn_root(brg_system_t *sys, const brg_model_openai_opts_t *opts,
                            brg_ref_t *model)
{
    assert(sys);
    assert(opts);
    return s_openai_spawn(sys, NULL, opts, model);
}

static int
s_spawn_from_env(brg_system_t *sys, brg_ctx_t *ctx, const char *name, brg_ref_t *model,
                 const char **backend)
{
    brg_model_openai_opts_t opts;
    brg_model_openai_opts_init(&opts);
    if (brg_model_openai_opts_from_env(&opts) == BRG_OK) {
        opts.name = name;
        if (backend)
            *backend = "openai";
        return s_openai_spawn(sys, ctx, &opts, model);
    }
    if (backend)
        *backend = "offline";
    return s_offline_spawn(sys, ctx, name, model);
}

int
brg_model_spawn_from_env(brg_ctx_t *ctx, const char *name, brg_ref_t *model, const char **backend)
{
    assert(ctx);
    return s_spawn_from_env(brg_ctx_system(ctx), ctx, name, model, backend);
}

int
brg_model_spawn_from_env_root(brg_system_t *sys, const char *name, brg_ref_t *model,
                              const char **backend)
{
    assert(sys);
    return s_spawn_from_env(sys, NULL, name, model, backend);
}
