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

//  The offline backend's state. A rule's strings are copies owned here.
typedef struct {
    char *contains, *tool_offered, *text;
    int turn;
    bool after_tool;
    brg_model_tool_call_t *calls; // strings NUL-terminated, lengths set
    size_t n_calls;
} s_rule_t;

typedef struct {
    brg_ref_t parent; // first, as in s_openai_t: the spawning actor, or NONE
    s_rule_t *rules;
    size_t n_rules;
    char *model;
    size_t chunk;
    int interval_ms; // > 0: one stream fragment per interval (see s_paced_t)
    struct s_paced *paced;
    uint64_t next_key;
    brg_model_stats_t stats;
} s_offline_t;

//  Where a streamed request's fragments go: its stream_to, else its sender.
static brg_ref_t
s_stream_dest(const brg_msg_t *request, const brg_model_chat_view_t *v)
{
    return brg_ref_is_none(v->stream_to) ? brg_msg_sender(request) : v->stream_to;
}

//  A stream cancel matches a stream by id, from its request's sender (who
//  asked, a limiter included) or from its stream_to (the actor that gets the
//  fragments; through a limiter, which brg_forwards the cancel, the sender
//  the backend sees is the original one).
static bool
s_cancel_from(brg_ref_t from, brg_ref_t sender, brg_ref_t stream_to)
{
    return !brg_ref_is_none(from) && (brg_ref_eq(from, sender) || brg_ref_eq(from, stream_to));
}

//  A paced offline stream: its fragments, sent one per tick (a timer
//  message to ourselves carrying `key`), then its end. A cancel drops the
//  rest and ends it at once.
typedef struct s_paced {
    struct s_paced *next;
    uint64_t key, stream_id;
    brg_ref_t sender;    // the request's, who may cancel
    brg_ref_t stream_to; // where fragments go (its stream_to, else sender), who may cancel too
    brg_msg_t *request;  // a copy, answered with the end (brg_reply_to)
    brg_msg_t **frags;
    size_t n, sent;
    brg_msg_t *end;
    int64_t prompt_tokens, completion_tokens;
} s_paced_t;

#define S_TAG_TICK "brg.model.offline.tick"

static void
s_paced_free(s_paced_t *p)
{
    for (size_t i = p->sent; i < p->n; i++)
        brg_msg_destroy(&p->frags[i]);
    free(p->frags);
    brg_msg_destroy(&p->end);
    brg_msg_destroy(&p->request);
    free(p);
}

static void
s_offline_destroy(void *state)
{
    s_offline_t *self = state;
    for (size_t i = 0; i < self->n_rules; i++) {
        s_rule_t *r = &self->rules[i];
        free(r->contains);
        free(r->tool_offered);
        free(r->text);
        for (size_t k = 0; k < r->n_calls; k++) {
            free((char *)r->calls[k].id);
            free((char *)r->calls[k].name);
            free((char *)r->calls[k].arguments);
        }
        free(r->calls);
    }
    free(self->rules);
    free(self->model);
    while (self->paced) { // streams still running when we stop: their callers get no end
        s_paced_t *p = self->paced;
        self->paced = p->next;
        s_paced_free(p);
    }
    free(self);
}

static int
s_trap_if_child(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    const brg_ref_t *parent = brg_state(ctx); // first field of either state
    if (!brg_ref_is_none(*parent))
        brg_trap_exits(ctx, true); // to end with the parent (brg__actors_on_exit)
    return BRG_OK;
}

//  The old tasks.
static void
s_offline_task(brg_ctx_t *ctx, s_offline_t *self, const brg_msg_t *msg)
{
    brg_model_request_t req;
    self->stats.requests++;
    if (brg_model_read_request(msg, &req) != BRG_OK) {
        self->stats.errors++;
        brg_reply_error(ctx, BRG_EBADMSG);
        return;
    }
    s_buf_t b = {0};
    int rc = s_offline_work(&req, &b);
    if (rc == BRG_OK && b.failed)
        rc = BRG_ENOMEM;
    if (rc == BRG_OK)
        s_reply_text(ctx, NULL, b.data ? b.data : "", b.len, "offline", "text", -1, -1);
    else
        self->stats.errors++, brg_reply_error(ctx, rc);
    free(b.data);
}

//  Tokens by the documented estimate: (bytes + 3) / 4.
static int64_t
s_estimate(size_t bytes)
{
    return (int64_t)((bytes + 3) / 4);
}

//  What the script looks at in a request.
typedef struct {
    const char *user, *tool; // the last user message, the last tool result (NULL: none)
    size_t user_len, tool_len;
    int turn;        // 1 + the assistant messages
    bool after_tool; // the last message is a tool result
    size_t prompt_bytes;
} s_facts_t;

static int
s_facts(const brg_model_chat_view_t *v, s_facts_t *f)
{
    memset(f, 0, sizeof *f);
    f->turn = 1;
    for (uint32_t i = 0; i < v->n_messages; i++) {
        brg_model_message_t m;
        int rc = brg_model_chat_message(v, i, &m);
        if (rc != BRG_OK)
            return rc;
        f->prompt_bytes += m.content_len;
        for (uint32_t k = 0; k < m.n_tool_calls; k++) {
            brg_model_tool_call_t c;
            if (brg_model_message_tool_call(&m, k, &c) == BRG_OK)
                f->prompt_bytes += c.arguments_len;
        }
        if (m.role == BRG_MODEL_USER)
            f->user = m.content, f->user_len = m.content_len;
        else if (m.role == BRG_MODEL_TOOL)
            f->tool = m.content, f->tool_len = m.content_len;
        else if (m.role == BRG_MODEL_ASSISTANT)
            f->turn++;
        f->after_tool = m.role == BRG_MODEL_TOOL;
    }
    for (uint32_t i = 0; i < v->n_tools; i++) {
        brg_model_tool_t t;
        if (brg_model_chat_tool(v, i, &t) == BRG_OK)
            f->prompt_bytes += t.name_len + t.description_len + t.parameters_len;
    }
    return BRG_OK;
}

static bool
s_contains(const char *hay, size_t hay_len, const char *needle)
{
    size_t n = strlen(needle);
    if (!hay)
        return false;
    if (n == 0)
        return true;
    for (size_t i = 0; i + n <= hay_len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return true;
    return false;
}

static bool
s_offers(const brg_model_chat_view_t *v, const char *name)
{
    for (uint32_t i = 0; i < v->n_tools; i++) {
        brg_model_tool_t t;
        if (brg_model_chat_tool(v, i, &t) == BRG_OK && t.name_len == strlen(name) &&
            memcmp(t.name, name, t.name_len) == 0)
            return true;
    }
    return false;
}

static const s_rule_t *
s_match(const s_offline_t *self, const brg_model_chat_view_t *v, const s_facts_t *f)
{
    for (size_t i = 0; i < self->n_rules; i++) {
        const s_rule_t *r = &self->rules[i];
        if (r->contains && !s_contains(f->user, f->user_len, r->contains))
            continue;
        if (r->turn > 0 && r->turn != f->turn)
            continue;
        if (r->after_tool && !f->after_tool)
            continue;
        if (r->tool_offered && !s_offers(v, r->tool_offered))
            continue;
        return r;
    }
    return NULL;
}

//  Expand {user} and {tool} of template into b.
static void
s_expand(s_buf_t *b, const char *template, const s_facts_t *f)
{
    for (const char *p = template; *p;) {
        if (strncmp(p, "{user}", 6) == 0) {
            s_buf_printf(b, "%.*s", (int)f->user_len, f->user ? f->user : "");
            p += 6;
        } else if (strncmp(p, "{tool}", 6) == 0) {
            s_buf_printf(b, "%.*s", (int)f->tool_len, f->tool ? f->tool : "");
            p += 6;
        } else {
            const char *next = strchr(p + 1, '{');
            size_t n = next ? (size_t)(next - p) : strlen(p);
            s_buf_printf(b, "%.*s", (int)n, p);
            p += n;
        }
    }
}

//  The longest prefix of s[0..len) of at most max bytes that does not cut a
//  UTF-8 character (at least one character, so the stream moves on).
static size_t
s_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    if (n == 0) { // a character longer than max: take it whole
        n = 1;
        while (n < len && ((unsigned char)s[n] & 0xC0) == 0x80)
            n++;
    }
    return n;
}

//  A growing list of fragments.
typedef struct {
    brg_msg_t **frags;
    size_t n, cap;
} s_frags_t;

static int
s_frags_push(s_frags_t *f, brg_msg_t *m)
{
    if (!m)
        return BRG_ENOMEM;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        brg_msg_t **more = realloc(f->frags, cap * sizeof(*more));
        if (!more) {
            brg_msg_destroy(&m);
            return BRG_ENOMEM;
        }
        f->frags = more;
        f->cap = cap;
    }
    f->frags[f->n++] = m;
    return BRG_OK;
}

static void
s_frags_free(s_frags_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        brg_msg_destroy(&f->frags[i]);
    free(f->frags);
    f->frags = NULL;
    f->n = f->cap = 0;
}

//  The answer as stream fragments, in order, into out. BRG_OK or BRG_ENOMEM.
static int
s_offline_fragments(const s_offline_t *self, uint64_t id, const char *text, size_t len,
                    const brg_model_tool_call_t *calls, size_t n_calls, s_frags_t *out)
{
    int rc = BRG_OK;
    for (size_t off = 0; rc == BRG_OK && off < len;) {
        size_t n = s_utf8_cut(text + off, len - off, self->chunk);
        brg_model_delta_t d = {.stream_id = id, .text = text + off, .len = n, .tool_index = -1};
        rc = s_frags_push(out, brg_model_msg_delta(&d));
        off += n;
    }
    for (size_t k = 0; rc == BRG_OK && k < n_calls; k++) {
        const brg_model_tool_call_t *c = &calls[k];
        brg_model_delta_t d = {.stream_id = id,
                               .tool_index = (int)k,
                               .id = c->id,
                               .id_len = c->id_len,
                               .name = c->name,
                               .name_len = c->name_len};
        rc = s_frags_push(out, brg_model_msg_delta(&d));
        for (size_t off = 0; rc == BRG_OK && off < c->arguments_len;) {
            size_t n = s_utf8_cut(c->arguments + off, c->arguments_len - off, self->chunk);
            brg_model_delta_t a = {.stream_id = id,
                                   .tool_index = (int)k,
                                   .arguments = c->arguments + off,
                                   .arguments_len = n};
            rc = s_frags_push(out, brg_model_msg_delta(&a));
            off += n;
        }
    }
    return rc;
}

//  Arm the next tick of a paced stream. BRG_OK or brg_send_after's error.
static int
s_paced_arm(brg_ctx_t *ctx, const s_offline_t *self, const s_paced_t *p)
{
    brg_msg_t *tick = brg_msg_new(S_TAG_TICK);
    if (!tick || brg_msg_add_uint(tick, p->key) != BRG_OK) {
        brg_msg_destroy(&tick);
        return BRG_ENOMEM;
    }
    return brg_send_after(ctx, brg_self(ctx), &tick, self->interval_ms, NULL);
}

//  Unlink p from the paced list (it must be there).
static void
s_paced_unlink(s_offline_t *self, s_paced_t *p)
{
    for (s_paced_t **at = &self->paced; *at; at = &(*at)->next)
        if (*at == p) {
            *at = p->next;
            return;
        }
}

//  A tick: send the stream's next fragment, or its end after the last.
static void
s_offline_tick(brg_ctx_t *ctx, s_offline_t *self, const brg_msg_t *msg)
{
    size_t pos = 0;
    uint64_t key;
    if (brg_msg_read_uint(msg, &pos, &key) != BRG_OK)
        return;
    s_paced_t *p = self->paced;
    while (p && p->key != key)
        p = p->next;
    if (!p)
        return; // cancelled meanwhile
    if (p->sent < p->n) {
        brg_msg_t *m = p->frags[p->sent];
        p->frags[p->sent++] = NULL;
        if (brg_send(ctx, p->stream_to, &m) != BRG_OK) {
            brg_msg_destroy(&m);
            p->sent = p->n; // the caller is gone: no more fragments, the end still goes
        }
    }
    if (p->sent < p->n && s_paced_arm(ctx, self, p) == BRG_OK)
        return;
    // The last fragment went (or no tick could be armed): the end.
    self->stats.prompt_tokens += (uint64_t)p->prompt_tokens;
    self->stats.completion_tokens += (uint64_t)p->completion_tokens;
    brg_reply_to(ctx, p->request, &p->end);
    s_paced_unlink(self, p);
    s_paced_free(p);
}

//  A cancel from a paced stream's caller: drop the rest, end it "cancelled".
static void
s_offline_cancel(brg_ctx_t *ctx, s_offline_t *self, const brg_msg_t *msg)
{
    size_t pos = 0;
    uint64_t id;
    if (brg_msg_read_uint(msg, &pos, &id) != BRG_OK)
        return;
    brg_ref_t from = brg_msg_sender(msg);
    s_paced_t *p = self->paced;
    while (p && !(p->stream_id == id && s_cancel_from(from, p->sender, p->stream_to)))
        p = p->next;
    if (!p)
        return; // ended already, or never ours: ignored
    brg_model_chat_reply_t r = {.finish_reason = "cancelled",
                                .finish_reason_len = 9,
                                .prompt_tokens = p->prompt_tokens,
                                .completion_tokens = -1,
                                .total_tokens = -1,
                                .model = self->model,
                                .model_len = strlen(self->model),
                                .backend = "offline",
                                .backend_len = 7};
    brg_msg_t *end = brg_model_msg_end(p->stream_id, BRG_OK, &r, NULL);
    self->stats.cancelled++;
    self->stats.prompt_tokens += (uint64_t)p->prompt_tokens;
    if (end)
        brg_reply_to(ctx, p->request, &end);
    else
        brg_reply_to(ctx, p->request, &p->end); // out of memory: the full end, at least an end
    s_paced_unlink(self, p);
    s_paced_free(p);
}

//  A brg.cancel of a paced stream's request (its asker gave up): drop the
//  rest and stop, without an end (nobody waits for it).
static void
s_offline_ask_cancel(s_offline_t *self, const brg_msg_t *msg)
{
    s_paced_t *p = self->paced;
    while (p && !brg_cancel_matches(msg, p->request))
        p = p->next;
    if (!p)
        return; // ended already, or never ours: ignored
    self->stats.cancelled++;
    self->stats.prompt_tokens += (uint64_t)p->prompt_tokens;
    s_paced_unlink(self, p);
    s_paced_free(p);
}

//  Answer the current chat request with an error message carrying `message`
//  (an error end for a stream, stream_id != 0), counting it in *errors;
//  BRG_ENOMEM as a plain ask error if even that cannot be built. Shared by
//  both backends.
static void
s_chat_error(brg_ctx_t *ctx, uint64_t *errors, uint64_t stream_id, int code, const char *message)
{
    (*errors)++;
    brg_model_error_t e = {.code = code,
                           .message = message,
                           .message_len = strlen(message),
                           .retry_after_ms = -1,
                           .stream_id = stream_id};
    brg_msg_t *m =
        stream_id ? brg_model_msg_end(stream_id, code, NULL, &e) : brg_model_msg_error(&e);
    if (m)
        brg_reply(ctx, &m);
    else
        brg_reply_error(ctx, BRG_ENOMEM);
}

static void
s_offline_error(brg_ctx_t *ctx, s_offline_t *self, uint64_t stream_id, int code,
                const char *message)
{
    s_chat_error(ctx, &self->stats.errors, stream_id, code, message);
}

static void
s_offline_chat(brg_ctx_t *ctx, s_offline_t *self, const brg_msg_t *msg)
{
    brg_model_chat_view_t v;
    s_facts_t f;
    self->stats.requests++;
    if (brg_model_read_chat(msg, &v) != BRG_OK || s_facts(&v, &f) != BRG_OK) {
        self->stats.errors++;
        brg_reply_error(ctx, BRG_EBADMSG);
        return;
    }
    if (v.stream_id)
        self->stats.streams++;
    const s_rule_t *rule = s_match(self, &v, &f);
    s_buf_t b = {0};
    if (rule && rule->text)
        s_expand(&b, rule->text, &f);
    else if (!rule)
        s_expand(&b, f.after_tool ? "Tool result: {tool}" : "You said: {user}", &f);
    const brg_model_tool_call_t *calls = rule ? rule->calls : NULL;
    size_t n_calls = rule ? rule->n_calls : 0;
    if (b.failed) {
        free(b.data);
        s_offline_error(ctx, self, v.stream_id, BRG_ENOMEM, "out of memory");
        return;
    }
    size_t answer_bytes = b.len;
    for (size_t k = 0; k < n_calls; k++)
        answer_bytes += calls[k].arguments_len;
    const char *finish = n_calls ? "tool_calls" : "stop";
    brg_model_chat_reply_t r = {.text = b.data ? b.data : "",
                                .len = b.len,
                                .finish_reason = finish,
                                .finish_reason_len = strlen(finish),
                                .prompt_tokens = s_estimate(f.prompt_bytes),
                                .completion_tokens = s_estimate(answer_bytes),
                                .model = self->model,
                                .model_len = strlen(self->model),
                                .backend = "offline",
                                .backend_len = 7};
    r.total_tokens = r.prompt_tokens + r.completion_tokens;
    int rc = BRG_OK;
    brg_msg_t *reply = NULL;
    s_frags_t frags = {NULL, 0, 0};
    if (v.stream_id) {
        rc = s_offline_fragments(self, v.stream_id, r.text, r.len, calls, n_calls, &frags);
        if (rc == BRG_OK && !(reply = brg_model_msg_end(v.stream_id, BRG_OK, &r, NULL)))
            rc = BRG_ENOMEM;
    } else if (!(reply = brg_model_msg_chat_reply(&r, calls, n_calls))) {
        rc = BRG_ENOMEM;
    }
    free(b.data);
    if (rc == BRG_OK && v.stream_id && self->interval_ms > 0 && frags.n > 0) {
        // Paced: the fragments go one per tick; the end after the last.
        s_paced_t *p = calloc(1, sizeof(*p));
        brg_msg_t *request = p ? brg_msg_dup(msg) : NULL;
        if (request) {
            p->next = self->paced;
            p->key = ++self->next_key;
            p->stream_id = v.stream_id;
            p->sender = brg_msg_sender(msg);
            p->stream_to = s_stream_dest(msg, &v);
            p->request = request;
            p->prompt_tokens = r.prompt_tokens;
            p->completion_tokens = r.completion_tokens;
            if (s_paced_arm(ctx, self, p) == BRG_OK) {
                p->frags = frags.frags; // the fragments and the end are p's now
                p->n = frags.n;
                p->end = reply;
                self->paced = p;
                return;
            }
            s_paced_free(p); // frees the request copy only
        } else {
            free(p);
        }
        rc = BRG_ENOMEM;
    }
    for (size_t i = 0; rc == BRG_OK && i < frags.n; i++) {
        rc = brg_send(ctx, s_stream_dest(msg, &v), &frags.frags[i]);
    }
    s_frags_free(&frags);
    if (rc != BRG_OK) {
        brg_msg_destroy(&reply);
        s_offline_error(ctx, self, v.stream_id, rc, "could not send the answer");
        return;
    }
    self->stats.prompt_tokens += (uint64_t)r.prompt_tokens;
    self->stats.completion_tokens += (uint64_t)r.completion_tokens;
    brg_reply(ctx, &reply);
}

static void
s_reply_stats(brg_ctx_t *ctx, const brg_model_stats_t *stats)
{
    brg_msg_t *reply = brg__model_msg_stats_reply(stats);
    if (reply)
        brg_reply(ctx, &reply);
    else
        brg_reply_error(ctx, BRG_ENOMEM);
}

static int
s_offline(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_offline_t *self = brg_state(ctx);
    if (brg__actors_on_exit(ctx, msg, self->parent))
        return BRG_OK;
    if (brg_msg_is(msg, BRG_MODEL_TAG_REQUEST))
        s_offline_task(ctx, self, msg);
    else if (brg_msg_is(msg, BRG_MODEL_TAG_CHAT))
        s_offline_chat(ctx, self, msg);
    else if (brg_msg_is(msg, BRG_MODEL_TAG_STATS))
        s_reply_stats(ctx, &self->stats);
    else if (brg_msg_is(msg, BRG_MODEL_TAG_CANCEL))
        s_offline_cancel(ctx, self, msg);
    else if (brg_msg_is_cancel(msg))
        s_offline_ask_cancel(self, msg);
    else if (brg_msg_is(msg, S_TAG_TICK))
        s_offline_tick(ctx, self, msg);
    else
        return BRG_UNHANDLED;
    return BRG_OK;
}

void
brg_model_offline_opts_init(brg_model_offline_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
    opts->model = "offline-script";
    opts->stream_chunk = 16;
}

static char *
s_strdup_or_null(const char *s, bool *failed)
{
    if (!s)
        return NULL;
    char *copy = strdup(s);
    if (!copy)
        *failed = true;
    return copy;
}

//  Copy rule `in` into out (zeroed). BRG_OK, BRG_EINVAL or BRG_ENOMEM; out
//  holds what was copied either way (s_offline_destroy frees it).
static int
s_rule_copy(s_rule_t *out, const brg_model_rule_t *in)
{
    if ((!in->text && in->n_tool_calls == 0) || in->n_tool_calls > BRG_MODEL_TOOL_CALLS_MAX ||
        (in->n_tool_calls && !in->tool_calls) || in->turn < 0 ||
        (in->text && !brg__model_utf8_ok(in->text, strlen(in->text))))
        return BRG_EINVAL;
    bool failed = false;
    out->contains = s_strdup_or_null(in->contains, &failed);
    out->tool_offered = s_strdup_or_null(in->tool_offered, &failed);
    out->text = s_strdup_or_null(in->text, &failed);
    out->turn = in->turn;
    out->after_tool = in->after_tool;
    if (in->n_tool_calls && !(out->calls = calloc(in->n_tool_calls, sizeof(*out->calls))))
        return BRG_ENOMEM;
    out->n_calls = in->n_tool_calls;
    for (size_t k = 0; k < in->n_tool_calls; k++) {
        const brg_model_tool_call_t *c = &in->tool_calls[k];
        if (!c->id || !c->name || !*c->id || !*c->name)
            return BRG_EINVAL;
        size_t il = c->id_len ? c->id_len : strlen(c->id);
        size_t nl = c->name_len ? c->name_len : strlen(c->name);
        const char *args = c->arguments ? c->arguments : "{}";
        size_t al = c->arguments ? (c->arguments_len ? c->arguments_len : strlen(args)) : 2;
        char *id = strndup(c->id, il), *name = strndup(c->name, nl), *a = strndup(args, al);
        out->calls[k] = (brg_model_tool_call_t){id, il, name, nl, a, al};
        if (!id || !name || !a)
            return BRG_ENOMEM;
        if (!brg__model_utf8_ok(id, il) || !brg__model_utf8_ok(name, nl) ||
            !brg__model_utf8_ok(a, al))
            return BRG_EINVAL;
    }
    return failed ? BRG_ENOMEM : BRG_OK;
}

static int
s_offline_spawn_opts(brg_system_t *sys, brg_ctx_t *ctx, const brg_model_offline_opts_t *opts,
                     brg_ref_t *model)
{
    if (opts->n_rules > 1024 || (opts->n_rules && !opts->rules) || opts->stream_chunk < 1 ||
        opts->stream_interval_ms < 0 || opts->stream_interval_ms > 60000 ||
        opts->stream_chunk > 65536 || (opts->model && (!*opts->model || strlen(opts->model) > 256)))
        return BRG_EINVAL;
    s_offline_t *self = calloc(1, sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    self->parent = ctx ? brg_self(ctx) : BRG_REF_NONE;
    self->chunk = opts->stream_chunk;
    self->interval_ms = opts->stream_interval_ms;
    self->model = strdup(opts->model ? opts->model : "offline-script");
    int rc = self->model ? BRG_OK : BRG_ENOMEM;
    if (rc == BRG_OK && opts->n_rules &&
        !(self->rules = calloc(opts->n_rules, sizeof(*self->rules))))
        rc = BRG_ENOMEM;
    for (size_t i = 0; rc == BRG_OK && i < opts->n_rules; i++) {
        self->n_rules = i + 1;
        rc = s_rule_copy(&self->rules[i], &opts->rules[i]);
    }
    if (rc != BRG_OK) {
        s_offline_destroy(self);
        return rc;
    }
    return brg__actors_spawn(sys, ctx, s_offline, self, s_offline_destroy, s_trap_if_child,
                             opts->name, model);
}

static int
s_offline_spawn(brg_system_t *sys, brg_ctx_t *ctx, const char *name, brg_ref_t *model)
{
    brg_model_offline_opts_t opts;
    brg_model_offline_opts_init(&opts);
    opts.name = name;
    return s_offline_spawn_opts(sys, ctx, &opts, model);
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

int
brg_model_offline_spawn_opts(brg_ctx_t *ctx, const brg_model_offline_opts_t *opts, brg_ref_t *model)
{
    assert(ctx);
    assert(opts);
    return s_offline_spawn_opts(brg_ctx_system(ctx), ctx, opts, model);
}

int
brg_model_offline_spawn_opts_root(brg_system_t *sys, const brg_model_offline_opts_t *opts,
                                  brg_ref_t *model)
{
    assert(sys);
    assert(opts);
    return s_offline_spawn_opts(sys, NULL, opts, model);
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
    // Retries.
    int max_attempts, retry_base_ms, retry_max_ms, retry_budget_min, retry_window_ms;
    double retry_budget_ratio;
    int64_t window_start_ms; // the budget's window: its start and counts
    uint64_t window_requests, window_retries;
    unsigned rand_state; // rand_r state for the jitter
    // Chat calls in progress, and the last HTTP stream id used.
    struct s_call *calls;
    struct s_req *reqs; // task requests (brg.model.request) waiting for their HTTP call
    uint64_t next_http_id;
    brg_model_stats_t stats;
} s_openai_t;

static void s_call_unlink_free(s_openai_t *self, struct s_call *c);

//  A task request (brg.model.request) out to the HTTP actor: from the ask
//  until its callback (s_on_http), which unlinks and frees it. A cancel of
//  its request cancels the ask at the HTTP actor and marks it, so the
//  callback answers nobody.
typedef struct s_req {
    struct s_req *next, *prev;
    brg_msg_t *request; // our copy of the caller's request
    uint64_t http_ask;  // the ask's id at the HTTP actor
    bool cancelled;
} s_req_t;

static void
s_req_unlink_free(s_openai_t *self, s_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (self->reqs == r)
        self->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    brg_msg_destroy(&r->request);
    free(r);
}

static void
s_openai_destroy(void *state)
{
    s_openai_t *self = state;
    while (self->calls) // only if an ask callback never came (it frees its call)
        s_call_unlink_free(self, self->calls);
    while (self->reqs)
        s_req_unlink_free(self, self->reqs);
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
        self->stats.errors++;
        return brg_reply_error_to(ctx, request, BRG_EPROTO);
    }
    json_t *usage = json_object_get(root, "usage");
    json_t *prompt = json_object_get(usage, "prompt_tokens");
    json_t *completion = json_object_get(usage, "completion_tokens");
    const char *model = json_string_value(json_object_get(root, "model"));
    if (json_is_integer(prompt) && json_integer_value(prompt) > 0)
        self->stats.prompt_tokens += (uint64_t)json_integer_value(prompt);
    if (json_is_integer(completion) && json_integer_value(completion) > 0)
        self->stats.completion_tokens += (uint64_t)json_integer_value(completion);
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
    s_req_t *req = arg;
    brg_msg_t *request = req->request; // our copy of the caller's request
    brg_http_response_t r;
    self->stats.in_flight--;
    if (req->cancelled) {
        // Its asker gave up (counted `cancelled` then): answer nobody.
        s_req_unlink_free(self, req);
        return BRG_OK;
    }
    if (status != BRG_OK || brg_http_read_response(reply, &r) != BRG_OK || r.status < 200 ||
        r.status > 299)
        self->stats.errors++;
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
    s_req_unlink_free(self, req);
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

//  ---------------------------------------------------------------------------
//  OpenAI-compatible backend: chat requests
//
//  A chat call (s_call_t) lives from the request until it is answered
//  (`ended`) and no ask of ours still names it (`http_out`, `waiting`):
//  the ask callbacks run exactly once, also with BRG_ECLOSED when the
//  backend stops, and the last one frees the call. Attempts: each is an ask
//  to the HTTP actor with error_detail (so a failure says whether anything
//  was sent) and, when streaming, a stream id of its own (`http_id`) that
//  the HTTP actor's chunks carry. A retry waits by asking ourselves a
//  message nobody answers, with the wait as the ask's deadline: the
//  callback comes with BRG_ETIMEDOUT after the wait, or BRG_ECLOSED at once
//  when we stop, so a waiting caller is answered then too.

#define S_TAG_WAIT "brg.model.wait"
#define S_SSE_MAX (1024 * 1024) // longest SSE line or event

typedef struct s_call {
    struct s_call *next, *prev;
    brg_msg_t *request;  // the caller's chat request (a copy), answered with brg_reply_to
    brg_ref_t sender;    // the request's (who may cancel)
    brg_ref_t stream_to; // where stream fragments go: its stream_to, else sender
    uint64_t stream_id;  // the caller's; 0: not streamed
    uint64_t http_id;    // the current attempt's HTTP stream id (streaming)
    char *body;          // the JSON body, kept for retries
    char *model;         // the model asked for
    int attempts, max_attempts;
    bool retry_unsafe;
    int64_t deadline_ms; // monotonic
    uint64_t http_ask;   // the current attempt's ask id at the HTTP actor
    bool ended, http_out, waiting;
    // The last failure.
    int err_code, err_http;
    int64_t err_retry_after;
    char err_type[128], err_message[512];
    // The stream: the line being received, the event's data, what came.
    char *line, *data;
    size_t line_len, line_cap, data_len, data_cap;
    bool delta_sent, done, has_data;
    char finish[32], answered_model[128];
    int64_t prompt, completion, total;
    brg_span_t *span; // the model call's span (NULL: tracing off; trace.h, GenAI names)
} s_call_t;

static int64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_call_unlink_free(s_openai_t *self, s_call_t *c)
{
    if (c->span) { // never answered (the backend stopped): the span says so
        brg_span_set_error(c->span, BRG_ECLOSED, NULL);
        brg_span_end(NULL, &c->span);
    }
    if (c->prev)
        c->prev->next = c->next;
    else if (self->calls == c)
        self->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    brg_msg_destroy(&c->request);
    free(c->body);
    free(c->model);
    free(c->line);
    free(c->data);
    free(c);
}

//  End the call's model span with what the answer says (r NULL: failed
//  with code and message). Attribute names: OpenTelemetry's GenAI
//  conventions (brigade/trace.h, docs/AGENTS.md "Tracing").
static void
s_call_span_end(brg_ctx_t *ctx, s_call_t *c, const brg_model_chat_reply_t *r, int code,
                const char *message)
{
    if (!c->span)
        return;
    if (r) {
        char model[128], finish[64];
        snprintf(model, sizeof model, "%.*s", (int)r->model_len, r->model);
        snprintf(finish, sizeof finish, "%.*s", (int)r->finish_reason_len, r->finish_reason);
        const char *reasons[1] = {finish};
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_RESPONSE_MODEL, model);
        brg_span_set_strs(c->span, BRG_ATTR_GEN_AI_RESPONSE_FINISH_REASONS, reasons, 1);
        if (r->prompt_tokens >= 0)
            brg_span_set_int(c->span, BRG_ATTR_GEN_AI_USAGE_INPUT_TOKENS, r->prompt_tokens);
        if (r->completion_tokens >= 0)
            brg_span_set_int(c->span, BRG_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, r->completion_tokens);
    } else {
        brg_span_set_error(c->span, code, message);
    }
    brg_span_set_int(c->span, "brg.model.attempts", c->attempts);
    brg_span_end(ctx, &c->span);
}

//  Free the call if it is answered and nothing of ours names it any more.
static void
s_call_release(s_openai_t *self, s_call_t *c)
{
    if (c->ended && !c->http_out && !c->waiting) {
        self->stats.in_flight--;
        s_call_unlink_free(self, c);
    }
}

//  Keep a failure's detail (strings cut to fit, on a character boundary).
static void
s_call_error(s_call_t *c, int code, int http, const char *type, size_t type_len,
             const char *message, size_t message_len, int64_t retry_after)
{
    c->err_code = code;
    c->err_http = http;
    c->err_retry_after = retry_after;
    if (!type || !brg__model_utf8_ok(type, type_len))
        type = "", type_len = 0;
    if (!message || !brg__model_utf8_ok(message, message_len))
        message = "(the server's error is not text)", message_len = strlen(message);
    size_t t = s_utf8_cut(type, type_len, sizeof c->err_type - 1);
    size_t m = s_utf8_cut(message, message_len, sizeof c->err_message - 1);
    memcpy(c->err_type, type, t);
    c->err_type[t] = '\0';
    memcpy(c->err_message, message, m);
    c->err_message[m] = '\0';
}

//  Answer the call with its last failure: an error message, or an error end
//  for a stream. Counts and logs it.
static void
s_call_fail(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c)
{
    brg_model_error_t e = {.code = c->err_code,
                           .http_status = c->err_http,
                           .type = c->err_type,
                           .type_len = strlen(c->err_type),
                           .message = c->err_message,
                           .message_len = strlen(c->err_message),
                           .retry_after_ms = c->err_retry_after,
                           .attempts = c->attempts,
                           .stream_id = c->stream_id};
    char what[64];
    snprintf(what, sizeof what, "chat failed after %d attempt%s (HTTP %d)", c->attempts,
             c->attempts == 1 ? "" : "s", c->err_http);
    s_log(ctx, self, c->err_code, what, e.message, e.message_len);
    s_call_span_end(ctx, c, NULL, c->err_code, c->err_message);
    brg_msg_t *m = c->stream_id ? brg_model_msg_end(c->stream_id, c->err_code, NULL, &e)
                                : brg_model_msg_error(&e);
    if (m)
        brg_reply_to(ctx, c->request, &m);
    else
        brg_reply_error_to(ctx, c->request, BRG_ENOMEM);
    self->stats.errors++;
    c->ended = true;
}

static void
s_call_fail_with(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c, int code, const char *message)
{
    s_call_error(c, code, c->err_http, NULL, 0, message, strlen(message), -1);
    s_call_fail(ctx, self, c);
}

static void
s_add_usage(s_openai_t *self, int64_t prompt, int64_t completion)
{
    if (prompt > 0)
        self->stats.prompt_tokens += (uint64_t)prompt;
    if (completion > 0)
        self->stats.completion_tokens += (uint64_t)completion;
}

//  Usage counts of a JSON usage object, -1 each when unknown.
static void
s_read_usage_json(json_t *usage, int64_t *prompt, int64_t *completion, int64_t *total)
{
    json_t *p = json_object_get(usage, "prompt_tokens");
    json_t *c = json_object_get(usage, "completion_tokens");
    json_t *t = json_object_get(usage, "total_tokens");
    *prompt = json_is_integer(p) ? json_integer_value(p) : -1;
    *completion = json_is_integer(c) ? json_integer_value(c) : -1;
    *total = json_is_integer(t)                 ? json_integer_value(t)
             : *prompt >= 0 && *completion >= 0 ? *prompt + *completion
                                                : -1;
}

//  Answer a non-streamed call with the chat completion in body.
static void
s_chat_completion(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c, const void *body, size_t len)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, 0, &err);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *message = json_object_get(choice, "message");
    json_t *content = json_object_get(message, "content");
    json_t *calls = json_object_get(message, "tool_calls");
    size_t n_calls = json_is_array(calls) ? json_array_size(calls) : 0;
    const char *why = !root                                  ? err.text
                      : !json_is_object(message)             ? "no choices[0].message"
                      : !json_is_string(content) && !n_calls ? "no content and no tool calls"
                      : n_calls > BRG_MODEL_TOOL_CALLS_MAX   ? "too many tool calls"
                                                             : NULL;
    brg_model_tool_call_t tc[BRG_MODEL_TOOL_CALLS_MAX];
    for (size_t i = 0; !why && i < n_calls; i++) {
        json_t *call = json_array_get(calls, i);
        json_t *fn = json_object_get(call, "function");
        json_t *id = json_object_get(call, "id"), *name = json_object_get(fn, "name");
        json_t *args = json_object_get(fn, "arguments");
        if (!json_is_string(id) || !json_is_string(name) || !json_is_string(args)) {
            why = "a tool call without id, function.name or function.arguments";
            break;
        }
        tc[i] = (brg_model_tool_call_t){json_string_value(id),   json_string_length(id),
                                        json_string_value(name), json_string_length(name),
                                        json_string_value(args), json_string_length(args)};
    }
    if (why) {
        char text[256];
        snprintf(text, sizeof text, "not a chat completion: %s", why);
        s_call_error(c, BRG_EPROTO, c->err_http, NULL, 0, text, strlen(text), -1);
        json_decref(root);
        s_call_fail(ctx, self, c);
        return;
    }
    json_t *finish = json_object_get(choice, "finish_reason");
    const char *model = json_string_value(json_object_get(root, "model"));
    brg_model_chat_reply_t r = {.text = json_is_string(content) ? json_string_value(content) : "",
                                .len = json_is_string(content) ? json_string_length(content) : 0,
                                .finish_reason = json_is_string(finish) ? json_string_value(finish)
                                                 : n_calls              ? "tool_calls"
                                                                        : "stop",
                                .model = model ? model : c->model,
                                .backend = "openai",
                                .attempts = c->attempts};
    r.finish_reason_len = strlen(r.finish_reason);
    r.model_len = strlen(r.model);
    r.backend_len = 6;
    s_read_usage_json(json_object_get(root, "usage"), &r.prompt_tokens, &r.completion_tokens,
                      &r.total_tokens);
    s_call_span_end(ctx, c, &r, BRG_OK, NULL);
    brg_msg_t *reply = brg_model_msg_chat_reply(&r, tc, n_calls);
    json_decref(root);
    c->ended = true;
    if (!reply) {
        self->stats.errors++;
        brg_reply_error_to(ctx, c->request, BRG_ENOMEM);
        return;
    }
    s_add_usage(self, r.prompt_tokens, r.completion_tokens);
    brg_reply_to(ctx, c->request, &reply);
}

//  End a stream well: finish reason and usage as they came.
static void
s_stream_end(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c, const char *finish)
{
    brg_model_chat_reply_t r = {.finish_reason = finish,
                                .finish_reason_len = strlen(finish),
                                .prompt_tokens = c->prompt,
                                .completion_tokens = c->completion,
                                .total_tokens = c->total,
                                .model = c->answered_model[0] ? c->answered_model : c->model,
                                .backend = "openai",
                                .backend_len = 6,
                                .attempts = c->attempts};
    r.model_len = strlen(r.model);
    s_call_span_end(ctx, c, &r, BRG_OK, NULL);
    brg_msg_t *end = brg_model_msg_end(c->stream_id, BRG_OK, &r, NULL);
    c->ended = true;
    if (!end) {
        self->stats.errors++;
        brg_reply_error_to(ctx, c->request, BRG_ENOMEM);
        return;
    }
    s_add_usage(self, c->prompt, c->completion);
    brg_reply_to(ctx, c->request, &end);
}

//  Send one fragment to the caller. false (and the call failed) if it could not.
static bool
s_stream_send(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c, const brg_model_delta_t *d)
{
    brg_msg_t *m = brg_model_msg_delta(d);
    int rc = m ? brg_send(ctx, c->stream_to, &m) : BRG_ENOMEM;
    if (rc != BRG_OK) {
        brg_msg_destroy(&m);
        s_call_fail_with(ctx, self, c, rc, "could not send a stream fragment to the caller");
        return false;
    }
    c->delta_sent = true;
    return true;
}

//  One server-sent event's data: a chat.completion.chunk, or [DONE].
static void
s_sse_event(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c, const char *data, size_t len)
{
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->done = true;
        s_stream_end(ctx, self, c, c->finish[0] ? c->finish : "stop");
        return;
    }
    json_error_t err;
    json_t *root = json_loadb(data, len, 0, &err);
    if (!json_is_object(root)) {
        char text[256];
        snprintf(text, sizeof text, "a stream event is not a JSON object: %s",
                 root ? "another JSON value" : err.text);
        s_call_error(c, BRG_EPROTO, c->err_http, NULL, 0, text, strlen(text), -1);
        json_decref(root);
        s_call_fail(ctx, self, c);
        return;
    }
    json_t *error = json_object_get(root, "error");
    if (json_is_object(error)) { // an error in the middle of a stream
        json_t *type = json_object_get(error, "type"), *message = json_object_get(error, "message");
        if (!json_is_string(type))
            type = json_object_get(error, "code");
        s_call_error(c, BRG_EPROTO, c->err_http, json_string_value(type), json_string_length(type),
                     json_string_value(message), json_string_length(message), -1);
        json_decref(root);
        s_call_fail(ctx, self, c);
        return;
    }
    const char *model = json_string_value(json_object_get(root, "model"));
    if (model && !c->answered_model[0])
        snprintf(c->answered_model, sizeof c->answered_model, "%s", model);
    json_t *usage = json_object_get(root, "usage");
    if (json_is_object(usage))
        s_read_usage_json(usage, &c->prompt, &c->completion, &c->total);
    // choices is empty (or null) in the usage chunk.
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    json_t *content = json_object_get(delta, "content");
    json_t *calls = json_object_get(delta, "tool_calls");
    json_t *finish = json_object_get(choice, "finish_reason");
    bool ok = true;
    if (json_is_string(content) && json_string_length(content) > 0) {
        brg_model_delta_t d = {.stream_id = c->stream_id,
                               .text = json_string_value(content),
                               .len = json_string_length(content),
                               .tool_index = -1};
        ok = s_stream_send(ctx, self, c, &d);
    }
    for (size_t i = 0; ok && json_is_array(calls) && i < json_array_size(calls); i++) {
        json_t *call = json_array_get(calls, i);
        json_t *index = json_object_get(call, "index");
        json_t *fn = json_object_get(call, "function");
        json_t *id = json_object_get(call, "id"), *name = json_object_get(fn, "name");
        json_t *args = json_object_get(fn, "arguments");
        if (!json_is_integer(index) || json_integer_value(index) < 0 ||
            json_integer_value(index) >= BRG_MODEL_TOOL_CALLS_MAX) {
            s_call_fail_with(ctx, self, c, BRG_EPROTO,
                             "a tool-call fragment without a valid index");
            ok = false;
            break;
        }
        brg_model_delta_t d = {.stream_id = c->stream_id,
                               .tool_index = (int)json_integer_value(index),
                               .id = json_string_value(id),
                               .id_len = json_string_length(id),
                               .name = json_string_value(name),
                               .name_len = json_string_length(name),
                               .arguments = json_string_value(args),
                               .arguments_len = json_string_length(args)};
        ok = s_stream_send(ctx, self, c, &d);
    }
    if (ok && json_is_string(finish))
        snprintf(c->finish, sizeof c->finish, "%s", json_string_value(finish));
    json_decref(root);
}

//  Append to a growing buffer; false past S_SSE_MAX or out of memory.
static bool
s_grow_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n > S_SSE_MAX)
        return false;
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 256;
        while (want < *len + n + 1)
            want *= 2;
        char *more = realloc(*buf, want);
        if (!more)
            return false;
        *buf = more;
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

//  One line of the stream (without its line end). The SSE rules: a blank
//  line dispatches the event; "data:" lines add to its data (joined by
//  "\n"); ':' starts a comment; other fields (event, id, retry) are ignored.
static void
s_sse_line(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c, const char *line, size_t len)
{
    if (len == 0) {
        if (c->has_data)
            s_sse_event(ctx, self, c, c->data ? c->data : "", c->data_len);
        c->data_len = 0;
        c->has_data = false;
        return;
    }
    if (line[0] == ':')
        return;
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    if (name_len != 4 || memcmp(line, "data", 4) != 0)
        return;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len && value[0] == ' ')
        value++, value_len--;
    if ((c->has_data && !s_grow_append(&c->data, &c->data_len, &c->data_cap, "\n", 1)) ||
        !s_grow_append(&c->data, &c->data_len, &c->data_cap, value, value_len)) {
        s_call_fail_with(ctx, self, c, BRG_EPROTO, "a stream event larger than 1 MiB");
        return;
    }
    c->has_data = true;
}

//  Stream bytes as they come: split lines ("\n", "\r\n") and feed them.
static void
s_sse_feed(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c, const char *data, size_t len)
{
    for (size_t i = 0; i < len && !c->ended;) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (data + i)) : len - i;
        if (!s_grow_append(&c->line, &c->line_len, &c->line_cap, data + i, n)) {
            s_call_fail_with(ctx, self, c, BRG_EPROTO, "a stream line larger than 1 MiB");
            return;
        }
        i += n;
        if (!nl)
            break;
        i++; // the '\n'
        size_t line_len = c->line_len;
        if (line_len && c->line[line_len - 1] == '\r')
            line_len--;
        s_sse_line(ctx, self, c, c->line ? c->line : "", line_len);
        c->line_len = 0;
    }
}

static s_call_t *
s_call_by_http_id(s_openai_t *self, uint64_t http_id)
{
    for (s_call_t *c = self->calls; c; c = c->next)
        if (c->http_id == http_id && c->http_out)
            return c;
    return NULL;
}

static void
s_on_chunk(brg_ctx_t *ctx, s_openai_t *self, const brg_msg_t *msg)
{
    brg_http_chunk_t chunk;
    if (brg_http_read_chunk(msg, &chunk) != BRG_OK || chunk.stream_id == 0)
        return;
    s_call_t *c = s_call_by_http_id(self, chunk.stream_id);
    if (!c || c->ended)
        return; // a cancelled or failed stream: the rest of its bytes go
    c->err_http = chunk.status;
    s_sse_feed(ctx, self, c, chunk.data, chunk.len);
    if (c->ended && !c->done) {
        // Failed mid-stream: stop the transfer (its answer releases the call).
        brg_msg_t *cancel = brg_http_msg_cancel(c->http_id);
        if (cancel && brg_send(ctx, self->http, &cancel) != BRG_OK)
            brg_msg_destroy(&cancel);
    }
}

//  The retry budget (after gRPC's retry throttling, as a window): at most
//  retry_budget_min + retry_budget_ratio x requests retries per window.
static void
s_window_roll(s_openai_t *self, int64_t now)
{
    if (now - self->window_start_ms >= self->retry_window_ms) {
        self->window_start_ms = now;
        self->window_requests = self->window_retries = 0;
    }
}

static bool
s_budget_allows(s_openai_t *self)
{
    s_window_roll(self, s_now_ms());
    double allowed = self->retry_budget_min + self->retry_budget_ratio * self->window_requests;
    return (double)self->window_retries < allowed;
}

static void s_attempt(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c);

static int
s_on_wait(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    s_openai_t *self = brg_state(ctx);
    s_call_t *c = arg;
    c->waiting = false;
    if (!c->ended && status == BRG_ECLOSED)
        s_call_fail_with(ctx, self, c, BRG_ECLOSED, "the model backend stopped");
    else if (!c->ended)
        s_attempt(ctx, self, c); // the wait is over (its ask timed out, as meant)
    s_call_release(self, c);
    return BRG_OK;
}

//  After a retryable failure (kept in c): wait and try again, or fail now
//  if the attempts, the budget or the deadline do not allow it.
static void
s_retry(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c)
{
    if (c->attempts >= c->max_attempts) {
        s_call_fail(ctx, self, c);
        return;
    }
    if (!s_budget_allows(self)) {
        self->stats.retries_throttled++;
        s_call_fail(ctx, self, c);
        return;
    }
    // Full jitter: uniform in [0, min(cap, base x 2^(attempts-1))].
    int64_t ceiling = self->retry_base_ms;
    for (int i = 1; i < c->attempts && ceiling < self->retry_max_ms; i++)
        ceiling *= 2;
    if (ceiling > self->retry_max_ms)
        ceiling = self->retry_max_ms;
    int64_t wait = (int64_t)(rand_r(&self->rand_state) % (unsigned)(ceiling + 1));
    if (c->err_retry_after >= 0) {
        int64_t asked =
            c->err_retry_after < self->retry_max_ms ? c->err_retry_after : self->retry_max_ms;
        if (asked > wait)
            wait = asked;
    }
    if (s_now_ms() + wait >= c->deadline_ms) {
        s_call_fail(ctx, self, c); // no time left to wait and try again
        return;
    }
    brg_msg_t *m = brg_msg_new(S_TAG_WAIT);
    int rc =
        m ? brg_ask(ctx, brg_self(ctx), &m, wait > 0 ? (int)wait : 1, s_on_wait, c) : BRG_ENOMEM;
    if (rc != BRG_OK) {
        brg_msg_destroy(&m);
        s_call_fail(ctx, self, c);
        return;
    }
    c->waiting = true;
    self->window_retries++;
}

//  Keep the detail of an HTTP error response: status, the server's error
//  type and message, Retry-After.
static void
s_http_error_detail(s_call_t *c, const brg_http_response_t *r)
{
    json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *error = json_object_get(root, "error");
    json_t *type = json_object_get(error, "type"), *message = json_object_get(error, "message");
    if (!json_is_string(type))
        type = json_object_get(error, "code");
    if (json_is_string(message)) {
        s_call_error(c, BRG_EHTTP, r->status, json_string_value(type), json_string_length(type),
                     json_string_value(message), json_string_length(message), r->retry_after_ms);
    } else {
        // Not the OpenAI error shape: the body's start, if it is text.
        size_t n = r->body_len < 300 ? r->body_len : 300;
        n = s_utf8_cut(r->body, r->body_len, n);
        s_call_error(c, BRG_EHTTP, r->status, json_string_value(type), json_string_length(type),
                     r->body, n, r->retry_after_ms);
    }
    json_decref(root);
}

static int
s_on_chat_http(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_openai_t *self = brg_state(ctx);
    s_call_t *c = arg;
    c->http_out = false;
    brg_http_response_t r;
    brg_http_error_t he;
    if (c->ended) {
        // Answered already (cancelled, or failed mid-stream).
    } else if (status == BRG_ECLOSED) {
        s_call_fail_with(ctx, self, c, BRG_ECLOSED, "the model backend stopped");
    } else if (status != BRG_OK) {
        // Refused before any transfer (BRG_EBUSY: nothing sent, retry), or
        // our backstop deadline (the request may have gone: unsafe).
        s_call_error(c, status, 0, NULL, 0, brg_strerror(status), strlen(brg_strerror(status)), -1);
        if (status == BRG_EBUSY || (status == BRG_ETIMEDOUT && c->retry_unsafe))
            s_retry(ctx, self, c);
        else
            s_call_fail(ctx, self, c);
    } else if (brg_http_read_error(reply, &he) == BRG_OK) {
        s_call_error(c, he.code, 0, NULL, 0, he.message, he.message_len, -1);
        bool transient = he.code == BRG_ENETWORK || he.code == BRG_ETIMEDOUT;
        if (transient && !c->delta_sent && (he.nothing_sent || c->retry_unsafe))
            s_retry(ctx, self, c);
        else
            s_call_fail(ctx, self, c);
    } else if (brg_http_read_response(reply, &r) != BRG_OK) {
        s_call_fail_with(ctx, self, c, BRG_EPROTO, "the HTTP actor's answer is malformed");
    } else if (r.status < 200 || r.status > 299) {
        s_http_error_detail(c, &r);
        if (r.status == 429 || r.status >= 500)
            s_retry(ctx, self, c);
        else
            s_call_fail(ctx, self, c);
    } else if (!c->stream_id) {
        c->err_http = r.status;
        s_chat_completion(ctx, self, c, r.body, r.body_len);
    } else if (c->finish[0]) {
        // Closed after a finish reason but without [DONE]: accept it.
        s_stream_end(ctx, self, c, c->finish);
    } else {
        s_call_fail_with(ctx, self, c, BRG_EPROTO, "the stream ended before data: [DONE]");
    }
    s_call_release(self, c);
    return BRG_OK;
}

//  Send the next attempt.
static void
s_attempt(brg_ctx_t *ctx, s_openai_t *self, s_call_t *c)
{
    int64_t left = c->deadline_ms - s_now_ms();
    if (left <= 0) {
        if (!c->err_code)
            s_call_error(c, BRG_ETIMEDOUT, 0, NULL, 0, "the call's deadline passed", 26, -1);
        else
            c->err_code = BRG_ETIMEDOUT;
        s_call_fail(ctx, self, c);
        return;
    }
    if (c->attempts++ > 0)
        self->stats.retries++;
    c->http_id = c->stream_id ? ++self->next_http_id : 0;
    c->line_len = c->data_len = 0;
    c->has_data = false;
    const char *headers[] = {"Content-Type: application/json", self->auth};
    brg_http_request_t hr = {.method = "POST",
                             .url = self->url,
                             .headers = headers,
                             .n_headers = self->auth ? 2 : 1,
                             .body = c->body,
                             .body_len = strlen(c->body),
                             .timeout_ms = (int)left,
                             .stream_id = c->http_id,
                             .error_detail = true};
    brg_msg_t *call = brg_http_msg_request(&hr);
    int rc =
        call ? brg_ask_id(ctx, self->http, &call, (int)left + 2000, s_on_chat_http, c, &c->http_ask)
             : BRG_ENOMEM;
    if (rc != BRG_OK) {
        brg_msg_destroy(&call);
        s_call_fail_with(ctx, self, c, rc, "could not ask the HTTP actor");
        return;
    }
    c->http_out = true;
}

//  jansson helpers: set key to value (taken), or note the failure.
static void
s_set(json_t *obj, const char *key, json_t *value, bool *ok)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        *ok = false;
}

static void
s_push(json_t *array, json_t *value, bool *ok)
{
    if (!value || json_array_append_new(array, value) != 0)
        *ok = false;
}

//  The chat-completions body for a chat request, as a JSON string (free
//  it), or NULL with *why set (a string that is not UTF-8, tool parameters
//  that are not JSON, out of memory).
static char *
s_chat_body(const s_openai_t *self, const brg_model_chat_view_t *v, const char **why)
{
    bool ok = true;
    json_t *root = json_object(), *messages = json_array(), *tools = NULL;
    *why = "out of memory";
    if (!root || !messages) {
        json_decref(root);
        json_decref(messages);
        return NULL;
    }
    if (v->model)
        s_set(root, "model", json_stringn(v->model, v->model_len), &ok);
    else
        s_set(root, "model", json_string(self->model), &ok);
    for (uint32_t i = 0; ok && i < v->n_messages; i++) {
        brg_model_message_t m;
        json_t *jm = json_object();
        ok = brg_model_chat_message(v, i, &m) == BRG_OK && jm;
        if (ok)
            s_set(jm, "role", json_string(brg_model_role_name(m.role)), &ok);
        if (ok)
            s_set(jm, "content", m.content ? json_stringn(m.content, m.content_len) : json_null(),
                  &ok);
        if (ok && m.tool_call_id)
            s_set(jm, "tool_call_id", json_stringn(m.tool_call_id, m.tool_call_id_len), &ok);
        json_t *calls = m.n_tool_calls && ok ? json_array() : NULL;
        for (uint32_t k = 0; ok && k < m.n_tool_calls; k++) {
            brg_model_tool_call_t tc;
            ok = calls && brg_model_message_tool_call(&m, k, &tc) == BRG_OK;
            if (ok)
                s_push(calls,
                       json_pack("{s:s%, s:s, s:{s:s%, s:s%}}", "id", tc.id, tc.id_len, "type",
                                 "function", "function", "name", tc.name, tc.name_len, "arguments",
                                 tc.arguments, tc.arguments_len),
                       &ok);
        }
        if (calls)
            s_set(jm, "tool_calls", calls, &ok);
        if (jm)
            s_push(messages, jm, &ok);
        if (!ok)
            *why = "a message that is not valid UTF-8";
    }
    s_set(root, "messages", messages, &ok);
    if (ok && v->n_tools)
        ok = (tools = json_array()) != NULL;
    for (uint32_t i = 0; ok && i < v->n_tools; i++) {
        brg_model_tool_t t;
        ok = brg_model_chat_tool(v, i, &t) == BRG_OK;
        json_t *params = ok ? json_loadb(t.parameters, t.parameters_len, 0, NULL) : NULL;
        if (!json_is_object(params)) {
            json_decref(params);
            *why = "tool parameters that are not a JSON object";
            ok = false;
            break;
        }
        json_t *fn = json_pack("{s:s%, s:s%, s:o}", "name", t.name, t.name_len, "description",
                               t.description, t.description_len, "parameters", params);
        if (!fn) {
            *why = "a tool that is not valid UTF-8";
            ok = false;
            break;
        }
        s_push(tools, json_pack("{s:s, s:o}", "type", "function", "function", fn), &ok);
    }
    if (tools)
        s_set(root, "tools", tools, &ok);
    if (ok) {
        *why = "out of memory";
        s_set(root, "max_tokens", json_integer(v->max_tokens ? v->max_tokens : self->max_tokens),
              &ok);
        s_set(root, "temperature",
              json_real(v->temperature >= 0 ? v->temperature : self->temperature), &ok);
        if (v->json_mode)
            s_set(root, "response_format", json_pack("{s:s}", "type", "json_object"), &ok);
        if (v->stream_id) {
            s_set(root, "stream", json_true(), &ok);
            s_set(root, "stream_options", json_pack("{s:b}", "include_usage", 1), &ok);
        }
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

//  Answer the current chat request at once with an error message.
static void
s_chat_refuse(brg_ctx_t *ctx, s_openai_t *self, uint64_t stream_id, int code, const char *why)
{
    s_chat_error(ctx, &self->stats.errors, stream_id, code, why);
}

static void
s_openai_chat(brg_ctx_t *ctx, s_openai_t *self, const brg_msg_t *msg)
{
    brg_model_chat_view_t v;
    self->stats.requests++;
    int64_t now = s_now_ms();
    s_window_roll(self, now);
    self->window_requests++;
    if (brg_model_read_chat(msg, &v) != BRG_OK) {
        self->stats.errors++;
        brg_reply_error(ctx, BRG_EBADMSG);
        return;
    }
    if (v.stream_id)
        self->stats.streams++;
    const char *why;
    char *body = s_chat_body(self, &v, &why);
    if (!body) {
        s_chat_refuse(ctx, self, v.stream_id,
                      strcmp(why, "out of memory") ? BRG_EINVAL : BRG_ENOMEM, why);
        return;
    }
    if (strlen(body) > BRG_MSG_MAX - 4096) {
        free(body);
        s_chat_refuse(ctx, self, v.stream_id, BRG_EMSGSIZE, "the request body is too large");
        return;
    }
    s_call_t *c = calloc(1, sizeof(*c));
    if (c) {
        c->request = brg_msg_dup(msg);
        c->model = v.model ? strndup(v.model, v.model_len) : strdup(self->model);
    }
    if (!c || !c->request || !c->model) {
        free(body);
        if (c) {
            brg_msg_destroy(&c->request);
            free(c->model);
            free(c);
        }
        s_chat_refuse(ctx, self, v.stream_id, BRG_ENOMEM, "out of memory");
        return;
    }
    c->body = body;
    c->sender = brg_msg_sender(msg);
    c->stream_to = s_stream_dest(msg, &v);
    c->stream_id = v.stream_id;
    c->max_attempts = v.max_attempts ? v.max_attempts : self->max_attempts;
    c->retry_unsafe = v.retry_unsafe;
    c->deadline_ms = now + (v.timeout_ms ? v.timeout_ms : self->timeout_ms);
    c->prompt = c->completion = c->total = -1;
    c->err_retry_after = -1;
    c->next = self->calls;
    if (self->calls)
        self->calls->prev = c;
    self->calls = c;
    self->stats.in_flight++;
    // The model call's span: the HTTP asks below are its children; what
    // this behaviour sends after them is not.
    char span_name[160];
    snprintf(span_name, sizeof span_name, "chat %s", c->model);
    c->span = brg_span_start(ctx, span_name, BRG_SPAN_CLIENT);
    if (c->span) {
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_OPERATION_NAME, "chat");
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_PROVIDER_NAME, "openai");
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_REQUEST_MODEL, c->model);
        brg_span_set_int(c->span, BRG_ATTR_GEN_AI_REQUEST_MAX_TOKENS,
                         v.max_tokens ? v.max_tokens : self->max_tokens);
        brg_span_set_double(c->span, BRG_ATTR_GEN_AI_REQUEST_TEMPERATURE,
                            v.temperature >= 0 ? v.temperature : self->temperature);
        brg_span_set_int(c->span, "brg.model.stream", c->stream_id != 0);
    }
    s_attempt(ctx, self, c);
    brg_span_leave(ctx, c->span);
    s_call_release(self, c);
}

//  A cancel from a stream's caller: abort the transfer and end the stream.
static void
s_openai_cancel(brg_ctx_t *ctx, s_openai_t *self, const brg_msg_t *msg)
{
    size_t pos = 0;
    uint64_t id;
    if (brg_msg_read_uint(msg, &pos, &id) != BRG_OK || id == 0)
        return;
    brg_ref_t from = brg_msg_sender(msg);
    for (s_call_t *c = self->calls; c; c = c->next) {
        if (c->ended || c->stream_id != id || !s_cancel_from(from, c->sender, c->stream_to))
            continue;
        if (c->http_out) {
            brg_msg_t *cancel = brg_http_msg_cancel(c->http_id);
            if (cancel && brg_send(ctx, self->http, &cancel) != BRG_OK)
                brg_msg_destroy(&cancel);
        }
        self->stats.cancelled++;
        s_stream_end(ctx, self, c, "cancelled");
        s_call_release(self, c);
        return;
    }
}

//  A brg.cancel (brigade/cancel.h) of a request or chat call still running:
//  its asker gave up. Cancel the HTTP call (the transfer is aborted), end
//  the call so no retry follows (also one waiting to retry), count it
//  `cancelled`, and answer nobody. The HTTP ask's callback still comes
//  (BRG_ECANCELED, at once) and frees what it names.
static void
s_openai_ask_cancel(brg_ctx_t *ctx, s_openai_t *self, const brg_msg_t *msg)
{
    for (s_req_t *r = self->reqs; r; r = r->next) {
        if (r->cancelled || !brg_cancel_matches(msg, r->request))
            continue;
        r->cancelled = true;
        self->stats.cancelled++;
        brg_cancel(ctx, self->http, r->http_ask);
        return;
    }
    for (s_call_t *c = self->calls; c; c = c->next) {
        if (c->ended || !brg_cancel_matches(msg, c->request))
            continue;
        c->ended = true; // no answer, no further attempt (s_on_chat_http, s_on_wait)
        self->stats.cancelled++;
        s_call_span_end(ctx, c, NULL, BRG_ECANCELED, "the asker gave up (brg.cancel)");
        if (c->http_out)
            brg_cancel(ctx, self->http, c->http_ask);
        s_call_release(self, c);
        return;
    }
}

static int
s_openai(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_openai_t *self = brg_state(ctx);
    brg_model_request_t req;
    if (brg__actors_on_exit(ctx, msg, self->parent))
        return BRG_OK;
    if (brg_msg_is(msg, BRG_HTTP_TAG_CHUNK))
        return s_on_chunk(ctx, self, msg), BRG_OK;
    if (brg_msg_is(msg, BRG_MODEL_TAG_CHAT))
        return s_openai_chat(ctx, self, msg), BRG_OK;
    if (brg_msg_is(msg, BRG_MODEL_TAG_CANCEL))
        return s_openai_cancel(ctx, self, msg), BRG_OK;
    if (brg_msg_is_cancel(msg))
        return s_openai_ask_cancel(ctx, self, msg), BRG_OK;
    if (brg_msg_is(msg, BRG_MODEL_TAG_STATS))
        return s_reply_stats(ctx, &self->stats), BRG_OK;
    if (brg_msg_is(msg, S_TAG_WAIT))
        return BRG_OK; // a retry's wait: left unanswered on purpose (s_retry)
    if (!brg_msg_is(msg, BRG_MODEL_TAG_REQUEST))
        return BRG_UNHANDLED;
    self->stats.requests++;
    if (brg_model_read_request(msg, &req) != BRG_OK)
        return self->stats.errors++, brg_reply_error(ctx, BRG_EBADMSG), BRG_OK;
    // NULL also when the text is not valid UTF-8 (JSON strings must be).
    char *body = s_body(self, &req);
    if (!body)
        return self->stats.errors++, brg_reply_error(ctx, BRG_EINVAL), BRG_OK;
    // JSON escapes can make the body up to 6 times the text: past the
    // message limit it cannot travel to the HTTP actor.
    if (strlen(body) > BRG_MSG_MAX - 4096) {
        free(body);
        self->stats.errors++;
        return brg_reply_error(ctx, BRG_EMSGSIZE), BRG_OK;
    }
    const char *headers[] = {"Content-Type: application/json", self->auth};
    brg_http_request_t hr = {.method = "POST",
                             .url = self->url,
                             .headers = headers,
                             .n_headers = self->auth ? 2 : 1,
                             .body = body,
                             .body_len = strlen(body),
                             .timeout_ms = self->timeout_ms};
    brg_msg_t *call = brg_http_msg_request(&hr);
    s_req_t *saved = call ? calloc(1, sizeof(*saved)) : NULL;
    if (saved)
        saved->request = brg_msg_dup(msg);
    free(body);
    if (!saved || !saved->request) {
        free(saved);
        brg_msg_destroy(&call);
        self->stats.errors++;
        return brg_reply_error(ctx, BRG_ENOMEM), BRG_OK;
    }
    // The HTTP actor's own deadline answers first; ours is the backstop.
    int rc = brg_ask_id(ctx, self->http, &call, self->timeout_ms + 2000, s_on_http, saved,
                        &saved->http_ask);
    if (rc != BRG_OK) {
        brg_msg_destroy(&call);
        brg_msg_destroy(&saved->request);
        free(saved);
        self->stats.errors++;
        brg_reply_error(ctx, rc);
    } else {
        saved->next = self->reqs;
        if (self->reqs)
            self->reqs->prev = saved;
        self->reqs = saved;
        self->stats.in_flight++;
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
    opts->max_attempts = 3;
    opts->retry_base_ms = 500;
    opts->retry_max_ms = 20000;
    opts->retry_budget_ratio = 0.1;
    opts->retry_budget_min = 10;
    opts->retry_window_ms = 60000;
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
        opts->timeout_ms < 1 || opts->timeout_ms > 3600000 || opts->max_attempts < 1 ||
        opts->max_attempts > 10 || opts->retry_base_ms < 1 || opts->retry_base_ms > 60000 ||
        opts->retry_max_ms < opts->retry_base_ms || opts->retry_max_ms > 600000 ||
        !(opts->retry_budget_ratio >= 0) || opts->retry_budget_ratio > 1 ||
        opts->retry_budget_min < 0 || opts->retry_budget_min > 1000000 ||
        opts->retry_window_ms < 1000 || opts->retry_window_ms > 3600000)
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
    self->max_attempts = opts->max_attempts;
    self->retry_base_ms = opts->retry_base_ms;
    self->retry_max_ms = opts->retry_max_ms;
    self->retry_budget_ratio = opts->retry_budget_ratio;
    self->retry_budget_min = opts->retry_budget_min;
    self->retry_window_ms = opts->retry_window_ms;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    self->rand_state = (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)self;
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
