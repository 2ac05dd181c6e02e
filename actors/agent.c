//  agent - the conversation actor: history, the tool-call loop, streaming.
//
//  Design notes.
//
//  Ownership. Everything below lives in the conversation's state and is
//  touched only on its thread (its behaviour and its ask callbacks), so it
//  needs no lock. The only shared memory is brg_conv_say's hand-off box
//  (s_say_t), which has its own mutex.
//
//  One turn at a time. `turn.asker` is a brg_msg_dup of the running turn's
//  ask (NULL when idle); asks that come meanwhile wait, as copies, in a FIFO
//  of max_queue. A turn is a chain of steps: s_step asks the model with the
//  whole history; its callback either answers the turn (text, no calls) or
//  dispatches the calls (s_dispatch), whose callbacks fill the call slots;
//  the last one to settle adds the tool messages and runs s_step again.
//
//  Callback arguments carry no pointers: a model ask's arg is the turn's
//  sequence number, a tool ask's arg is (dispatch sequence, call index), so a
//  callback that comes after its turn ended (a tool that answers after the
//  deadline cannot, the runtime drops it; but a model reply after the turn
//  failed for another reason can) is recognised and ignored, and nothing
//  needs freeing when the actor stops: the runtime calls the pending
//  callbacks with BRG_ECLOSED before the state destructor frees the state.
//
//  Streaming. When the asker asked for it, the model is asked with a stream
//  id (brg_model_chat_set_stream) and stream_to = the conversation
//  (brg_model_chat_set_stream_to), still with brg_ask: the backend sends
//  BRG_MODEL_TAG_DELTA messages to the conversation's behaviour, then
//  answers the ask with BRG_MODEL_TAG_END (through a limiter, if the model
//  ref is one, which relays it). Messages from one actor to another arrive
//  in order, and a limiter relays the end only after the backend sent the
//  deltas, so every delta is in before the callback runs (with a limiter on
//  a third node that order is not guaranteed, see brigade/model.h). Deltas
//  are accumulated (text, and tool calls by index) and each text delta is
//  forwarded to the asker as a BRG_CONV_TAG_EVENT at once. A delta of another
//  stream id (a step that timed out) is ignored. When a streamed step times
//  out or the turn is cancelled, a stream cancel goes to the model ref, the
//  one asked: a backend matches it by stream id and by us as the stream_to,
//  a limiter passes it on to its backend with brg_forward (we stay the
//  sender). The backend then ends the stream at once; its end is a late
//  answer the callback recognises (by turn sequence) and ignores. Then the
//  model ask itself is cancelled (brg_ask_id / brg_cancel, brigade/cancel.h),
//  streamed or not, so a limiter drops a request still in its queue, where
//  the stream cancel cannot find it; the stream cancel goes first, so the
//  backend ends the stream with an answer (freeing the limiter's slot)
//  before a brg.cancel could stop it without one.
//
//  Failure leaves no trace: the history is truncated back to where the turn
//  began (turn.start), so the next turn sees the history as it was.
#include "actors_internal.h"

#include "agent_history.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#define S_GRACE_MS 1000 // an ask to the model waits this much past the call's deadline
#define S_DETAIL_MAX 600
#define S_CALL_SEQ_SHIFT 8 // tool ask arg: dispatch seq << 8 | call index (< 256)

_Static_assert(BRG_CONV_CALLS_MAX < (1 << S_CALL_SEQ_SHIFT), "call index must fit the arg");

//  One tool, copied from the options.
typedef struct {
    char *name, *description, *parameters, *actor_name;
    brg_ref_t ref, node;
} s_tool_t;

//  A tool call of the step being dispatched.
typedef struct {
    char *id, *name, *args; // owned
    bool done;
    bool is_error;
    bool monitored;   // a monitor watches its tool actor until it settles
    uint64_t monitor; //   (its id)
    char *result;     // owned: the text for the model
    brg_span_t *span; // its "execute_tool" span (NULL: tracing off; brigade/trace.h)
} s_call_t;

//  A tool call being streamed in by fragments.
typedef struct {
    char *id, *name;
    char *args;
    size_t args_len, args_cap;
} s_acc_call_t;

typedef struct {
    // Configuration (owned copies).
    brg_conv_opts_t opts; // strings below replace the caller's
    char *model_name, *system;
    s_tool_t *tools;
    size_t n_tools;

    brg__history_t h;

    // The running turn.
    struct {
        brg_msg_t *asker; // the say ask (a copy), or NULL when idle
        bool stream;
        size_t start; // history index of its user message
        int steps;
        int64_t tool_calls, prompt_tokens, completion_tokens;
        uint64_t seq; // this turn's number: the model ask's callback arg
    } turn;
    uint64_t turn_seq;

    // The model call in flight (streaming).
    brg_ref_t model_ref; // the backend asked last
    uint64_t model_ask;  // the model ask in flight (brg_ask_id), for a brg.cancel; 0: none
    uint64_t stream_id, stream_seq;
    char *acc_text;
    size_t acc_len, acc_cap;
    s_acc_call_t *acc_calls;
    size_t n_acc_calls;
    bool acc_failed; // a fragment was lost (out of memory): the step fails at its end

    // The step's tool calls.
    s_call_t *calls;
    size_t n_calls, pending;
    uint64_t dispatch_seq;

    // Turns waiting (copies of their asks), FIFO.
    brg_msg_t **queue;
    size_t q_head, q_len;
    bool starting; // s_next_turn is running

    brg_conv_stats_t stats;
} s_conv_t;

static const char *const s_role_names[] = {"system", "user", "assistant", "tool"};

const char *
brg_conv_role_name(brg_conv_role_t role)
{
    return (unsigned)role < 4 ? s_role_names[role] : "unknown";
}

//  ---------------------------------------------------------------------------
//  Small helpers

static char *
s_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *
s_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

//  Length of the valid UTF-8 sequence at s (1 .. 4), or 0 if invalid.
static size_t
s_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

static bool
s_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = s_utf8_seq(p + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

//  A copy of s[0 .. n) with every byte that is not valid UTF-8 (or a NUL)
//  replaced by '?': tool output goes to the model, which takes UTF-8 only.
static char *
s_utf8_clean(const char *s, size_t n)
{
    char *d = s_strndup(s, n);
    if (!d)
        return NULL;
    unsigned char *p = (unsigned char *)d;
    for (size_t i = 0; i < n;) {
        size_t k = p[i] ? s_utf8_seq(p + i, n - i) : 0;
        if (!k) {
            p[i] = '?';
            k = 1;
        }
        i += k;
    }
    return d;
}

static char *s_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
s_printf(const char *fmt, ...)
{
    char buf[S_DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return strdup(buf);
}

//  ---------------------------------------------------------------------------
//  Messages

brg_msg_t *
brg_conv_msg_say(const char *text, bool stream)
{
    if (!text || strlen(text) > BRG_TOOL_TEXT_MAX)
        return NULL;
    brg_msg_t *msg = brg_msg_new(BRG_CONV_TAG_SAY);
    if (msg && (brg_msg_add_str(msg, text) != BRG_OK || brg_msg_add_bool(msg, stream) != BRG_OK))
        brg_msg_destroy(&msg);
    return msg;
}

static brg_msg_t *
s_msg_answer(int status, const char *text, size_t len, int64_t steps, int64_t tool_calls,
             int64_t prompt, int64_t completion)
{
    brg_msg_t *msg = brg_msg_new(BRG_CONV_TAG_ANSWER);
    if (msg &&
        (brg_msg_add_int(msg, status) != BRG_OK ||
         brg_msg_add_strn(msg, text ? text : "", text ? len : 0) != BRG_OK ||
         brg_msg_add_int(msg, steps) != BRG_OK || brg_msg_add_int(msg, tool_calls) != BRG_OK ||
         brg_msg_add_int(msg, prompt) != BRG_OK || brg_msg_add_int(msg, completion) != BRG_OK))
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_conv_read_answer(const brg_msg_t *msg, brg_conv_answer_t *out)
{
    if (!brg_msg_is(msg, BRG_CONV_TAG_ANSWER))
        return BRG_ETYPE;
    brg_conv_answer_t a;
    int64_t status;
    size_t pos = 0;
    if (brg_msg_read_int(msg, &pos, &status) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &a.text, &a.len) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &a.steps) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &a.tool_calls) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &a.prompt_tokens) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &a.completion_tokens) != BRG_OK || status > 0 || status < -1000)
        return BRG_EBADMSG;
    a.status = (int)status;
    *out = a;
    return BRG_OK;
}

static brg_msg_t *
s_msg_event(brg_conv_event_kind_t kind, int step, const char *text, size_t len, const char *name,
            const char *id, bool is_error)
{
    brg_msg_t *msg = brg_msg_new(BRG_CONV_TAG_EVENT);
    if (msg &&
        (brg_msg_add_int(msg, kind) != BRG_OK || brg_msg_add_int(msg, step) != BRG_OK ||
         brg_msg_add_strn(msg, text ? text : "", text ? len : 0) != BRG_OK ||
         brg_msg_add_str(msg, name ? name : "") != BRG_OK ||
         brg_msg_add_str(msg, id ? id : "") != BRG_OK || brg_msg_add_bool(msg, is_error) != BRG_OK))
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_conv_read_event(const brg_msg_t *msg, brg_conv_event_t *out)
{
    if (!brg_msg_is(msg, BRG_CONV_TAG_EVENT))
        return BRG_ETYPE;
    brg_conv_event_t e;
    int64_t kind, step;
    size_t pos = 0;
    if (brg_msg_read_int(msg, &pos, &kind) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &step) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &e.text, &e.len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &e.name, &e.name_len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &e.id, &e.id_len) != BRG_OK ||
        brg_msg_read_bool(msg, &pos, &e.is_error) != BRG_OK || kind < 0 ||
        kind > BRG_CONV_EV_TOOL_RESULT || step < 0 || step > 1000000)
        return BRG_EBADMSG;
    e.kind = (brg_conv_event_kind_t)kind;
    e.step = (int)step;
    *out = e;
    return BRG_OK;
}

#define S_STATS_FIELDS 11

static void
s_stats_fields(const brg_conv_stats_t *s, uint64_t *f)
{
    uint64_t v[S_STATS_FIELDS] = {
        s->turns,         s->failed_turns,      s->steps,    s->tool_calls,     s->tool_errors,
        s->prompt_tokens, s->completion_tokens, s->messages, s->history_tokens, s->dropped,
        s->waiting};
    memcpy(f, v, sizeof(v));
}

int
brg_conv_read_stats(const brg_msg_t *msg, brg_conv_stats_t *out)
{
    uint64_t f[S_STATS_FIELDS];
    int rc = brg__actors_read_uints(msg, BRG_CONV_TAG_STATS, f, S_STATS_FIELDS);
    if (rc != BRG_OK)
        return rc;
    brg_conv_stats_t s = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]};
    *out = s;
    return BRG_OK;
}

static int
s_read_stats(const brg_msg_t *msg, void *out)
{
    return brg_conv_read_stats(msg, out);
}

int
brg_conv_stats(brg_system_t *sys, brg_ref_t conv, int timeout_ms, brg_conv_stats_t *out)
{
    return brg__actors_ask_read(sys, conv, brg_msg_new(BRG_CONV_TAG_STATS), timeout_ms,
                                s_read_stats, out);
}

int
brg_conv_history_count(const brg_msg_t *msg, size_t *pos, size_t *count)
{
    if (!brg_msg_is(msg, BRG_CONV_TAG_HISTORY))
        return BRG_ETYPE;
    size_t p = 0;
    uint64_t n;
    if (brg_msg_read_uint(msg, &p, &n) != BRG_OK || n > SIZE_MAX)
        return BRG_EBADMSG;
    *pos = p;
    *count = (size_t)n;
    return BRG_OK;
}

int
brg_conv_history_next(const brg_msg_t *msg, size_t *pos, brg_conv_entry_t *out)
{
    if (!brg_msg_is(msg, BRG_CONV_TAG_HISTORY))
        return BRG_ETYPE;
    size_t p = *pos;
    int64_t role;
    uint32_t n;
    brg_conv_entry_t *e = out;
    if (brg_msg_read_int(msg, &p, &role) != BRG_OK || role < 0 || role > BRG_CONV_TOOL ||
        brg_msg_read_str(msg, &p, &e->content, &e->len) != BRG_OK ||
        brg_msg_read_str(msg, &p, &e->name, &e->name_len) != BRG_OK ||
        brg_msg_read_str(msg, &p, &e->id, &e->id_len) != BRG_OK ||
        brg_msg_read_bool(msg, &p, &e->is_error) != BRG_OK ||
        brg_msg_read_array(msg, &p, &n) != BRG_OK || n > BRG_CONV_CALLS_MAX)
        return BRG_EBADMSG;
    e->role = (brg_conv_role_t)role;
    e->n_calls = n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t three;
        brg_tool_call_t *c = &e->calls[i];
        if (brg_msg_read_array(msg, &p, &three) != BRG_OK || three != 3 ||
            brg_msg_read_str(msg, &p, &c->id, &c->id_len) != BRG_OK ||
            brg_msg_read_str(msg, &p, &c->name, &c->name_len) != BRG_OK ||
            brg_msg_read_str(msg, &p, &c->arguments, &c->arguments_len) != BRG_OK)
            return BRG_EBADMSG;
    }
    *pos = p;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Options

void
brg_conv_opts_init(brg_conv_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->model = BRG_REF_NONE;
    opts->max_steps = 8;
    opts->max_messages = 100;
    opts->max_history_tokens = 8000;
    opts->model_timeout_ms = 60000;
    opts->tool_timeout_ms = 10000;
    opts->max_queue = 16;
    opts->temperature = -1;
}

static void
s_conv_destroy(void *state)
{
    s_conv_t *s = state;
    free(s->model_name);
    free(s->system);
    for (size_t i = 0; i < s->n_tools; i++) {
        free(s->tools[i].name);
        free(s->tools[i].description);
        free(s->tools[i].parameters);
        free(s->tools[i].actor_name);
    }
    free(s->tools);
    brg__history_free(&s->h);
    brg_msg_destroy(&s->turn.asker);
    free(s->acc_text);
    for (size_t i = 0; i < s->n_acc_calls; i++) {
        free(s->acc_calls[i].id);
        free(s->acc_calls[i].name);
        free(s->acc_calls[i].args);
    }
    free(s->acc_calls);
    for (size_t i = 0; i < s->n_calls; i++) {
        free(s->calls[i].id);
        free(s->calls[i].name);
        free(s->calls[i].args);
        free(s->calls[i].result);
    }
    free(s->calls);
    for (size_t k = 0; k < s->q_len; k++)
        brg_msg_destroy(&s->queue[(s->q_head + k) % (size_t)s->opts.max_queue]);
    free(s->queue);
    free(s);
}

static int
s_check_opts(const brg_conv_opts_t *o)
{
    if (!o || (brg_ref_is_none(o->model) && (!o->model_name || !o->model_name[0])))
        return BRG_EINVAL;
    if (o->model_name && strlen(o->model_name) > BRG_NAME_MAX)
        return BRG_EINVAL;
    if (o->max_steps < 1 || o->max_steps > 100 || o->max_messages < 0 ||
        o->max_history_tokens < 0 || o->model_timeout_ms < 1 || o->tool_timeout_ms < 1 ||
        o->max_queue < 1 || o->max_queue > 100000 || o->max_tokens < 0 || o->max_tokens > 1000000 ||
        o->temperature > 2 || o->n_tools > BRG_CONV_TOOLS_MAX || (o->n_tools && !o->tools))
        return BRG_EINVAL;
    if (o->system &&
        (strlen(o->system) > BRG_TOOL_TEXT_MAX || !s_utf8_valid(o->system, strlen(o->system))))
        return BRG_EINVAL;
    for (size_t i = 0; i < o->n_tools; i++) {
        if (brg_tool_check(&o->tools[i]) != BRG_OK)
            return BRG_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->tools[i].name, o->tools[j].name) == 0)
                return BRG_EINVAL;
    }
    return BRG_OK;
}

static int s_conv_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg);

static int
s_conv_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_conv_opts_t *opts, brg_ref_t *ref)
{
    int rc = s_check_opts(opts);
    if (rc != BRG_OK)
        return rc;
    s_conv_t *s = calloc(1, sizeof(*s));
    if (!s)
        return BRG_ENOMEM;
    s->opts = *opts;
    s->opts.tools = NULL;
    s->opts.name = NULL;
    s->opts.model_name = NULL; // the copies below are used instead
    s->opts.system = NULL;
    s->model_name = s_strdup(opts->model_name);
    s->system = s_strdup(opts->system);
    s->tools = opts->n_tools ? calloc(opts->n_tools, sizeof(*s->tools)) : NULL;
    s->queue = calloc((size_t)opts->max_queue, sizeof(*s->queue));
    bool ok = s->queue && (!opts->model_name || s->model_name) && (!opts->system || s->system) &&
              (!opts->n_tools || s->tools);
    s->n_tools = s->tools ? opts->n_tools : 0;
    for (size_t i = 0; ok && i < s->n_tools; i++) {
        const brg_tool_t *t = &opts->tools[i];
        s_tool_t *c = &s->tools[i];
        c->name = s_strdup(t->name);
        c->description = s_strdup(t->description);
        c->parameters = s_strdup(t->parameters);
        c->actor_name = s_strdup(t->actor_name);
        c->ref = t->ref;
        c->node = t->node;
        ok = c->name && (!t->description || c->description) && (!t->parameters || c->parameters) &&
             (!t->actor_name || c->actor_name);
    }
    s->h.max_messages = (size_t)opts->max_messages;
    s->h.max_tokens = (size_t)opts->max_history_tokens;
    if (ok && s->system)
        ok = brg__history_add(&s->h, BRG_CONV_SYSTEM, s->system, strlen(s->system), NULL, NULL,
                              false, NULL) == BRG_OK;
    if (!ok) {
        s_conv_destroy(s);
        return BRG_ENOMEM;
    }
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = s;
    so.state_destroy = s_conv_destroy;
    so.name = opts->name;
    so.label = "brg.conv";
    if (ctx) {
        so.flags = BRG_SPAWN_LINK;
        rc = brg_spawn(ctx, s_conv_behaviour, &so, ref);
    } else {
        rc = brg_system_spawn(sys, s_conv_behaviour, &so, ref);
    }
    if (rc != BRG_OK)
        s_conv_destroy(s);
    return rc;
}

int
brg_conv_spawn(brg_ctx_t *ctx, const brg_conv_opts_t *opts, brg_ref_t *conv)
{
    return s_conv_spawn(brg_ctx_system(ctx), ctx, opts, conv);
}

int
brg_conv_spawn_root(brg_system_t *sys, const brg_conv_opts_t *opts, brg_ref_t *conv)
{
    return s_conv_spawn(sys, NULL, opts, conv);
}

//  ---------------------------------------------------------------------------
//  The turn

static void s_next_turn(brg_ctx_t *ctx, s_conv_t *s);
static void s_step(brg_ctx_t *ctx, s_conv_t *s);

//  Send an event to the running turn's asker, if it streams. A lost event
//  (out of memory, asker gone) is not the turn's failure.
static void
s_event(brg_ctx_t *ctx, s_conv_t *s, brg_conv_event_kind_t kind, const char *text, size_t len,
        const char *name, const char *id, bool is_error)
{
    if (!s->turn.asker || !s->turn.stream)
        return;
    brg_ref_t to = brg_msg_sender(s->turn.asker);
    brg_msg_t *ev = s_msg_event(kind, s->turn.steps, text, len, name, id, is_error);
    if (ev && !brg_ref_is_none(to))
        brg_send(ctx, to, &ev);
    brg_msg_destroy(&ev);
}

static void
s_clear_calls(brg_ctx_t *ctx, s_conv_t *s)
{
    for (size_t i = 0; i < s->n_calls; i++) {
        if (s->calls[i].monitored)
            brg_demonitor(ctx, s->calls[i].monitor);
        if (s->calls[i].span) { // the turn ended before this call settled
            brg_span_set_error(s->calls[i].span, BRG_ECANCELED, "the turn ended first");
            brg_span_end(ctx, &s->calls[i].span);
        }
        free(s->calls[i].id);
        free(s->calls[i].name);
        free(s->calls[i].args);
        free(s->calls[i].result);
    }
    free(s->calls);
    s->calls = NULL;
    s->n_calls = s->pending = 0;
}

static void
s_clear_acc(s_conv_t *s)
{
    s->acc_len = 0;
    s->acc_failed = false;
    if (s->acc_text)
        s->acc_text[0] = '\0';
    for (size_t i = 0; i < s->n_acc_calls; i++) {
        free(s->acc_calls[i].id);
        free(s->acc_calls[i].name);
        free(s->acc_calls[i].args);
    }
    free(s->acc_calls);
    s->acc_calls = NULL;
    s->n_acc_calls = 0;
}

//  Answer the running turn and go on with the next one. status BRG_OK: text
//  is the answer; else the error's detail (and the turn's messages go).
static void
s_finish(brg_ctx_t *ctx, s_conv_t *s, int status, const char *text, size_t len)
{
    if (status != BRG_OK) {
        brg__history_truncate(&s->h, s->turn.start);
        s->stats.failed_turns++;
    } else {
        s->stats.turns++;
        brg__history_trim(&s->h); // the history kept stays within the limits too
    }
    brg_msg_t *answer = s_msg_answer(status, text, len, s->turn.steps, s->turn.tool_calls,
                                     s->turn.prompt_tokens, s->turn.completion_tokens);
    if (answer)
        brg_reply_to(ctx, s->turn.asker, &answer);
    else
        brg_reply_error_to(ctx, s->turn.asker, BRG_ENOMEM);
    brg_msg_destroy(&s->turn.asker);
    s_clear_calls(ctx, s);
    s_clear_acc(s);
    s->stream_id = 0;
    s->turn_seq++; // late callbacks of this turn are recognised
    s_next_turn(ctx, s);
}

static void
s_fail(brg_ctx_t *ctx, s_conv_t *s, int status, const char *detail)
{
    s_finish(ctx, s, status, detail, strlen(detail));
}

//  Start the turn asked by `ask` (taken).
static void
s_start(brg_ctx_t *ctx, s_conv_t *s, brg_msg_t *ask)
{
    size_t pos = 0, len;
    const char *text;
    bool stream = false;
    brg_msg_read_str(ask, &pos, &text, &len); // checked when it came in
    brg_msg_read_bool(ask, &pos, &stream);
    memset(&s->turn, 0, sizeof(s->turn));
    s->turn.asker = ask;
    s->turn.stream = stream;
    s->turn.start = s->h.n;
    s->turn.seq = ++s->turn_seq;
    if (brg__history_add(&s->h, BRG_CONV_USER, text, len, NULL, NULL, false, NULL) != BRG_OK) {
        s_fail(ctx, s, BRG_ENOMEM, "out of memory");
        return;
    }
    s_step(ctx, s);
}

//  Start the waiting turns while none runs. A turn that fails at once
//  (no model registered) calls this again from s_finish: the flag makes
//  that a no-op, and this loop takes the next one, so a long queue of such
//  turns never grows the stack.
static void
s_next_turn(brg_ctx_t *ctx, s_conv_t *s)
{
    if (s->starting)
        return;
    s->starting = true;
    while (!s->turn.asker && s->q_len > 0) {
        brg_msg_t *ask = s->queue[s->q_head];
        s->queue[s->q_head] = NULL;
        s->q_head = (s->q_head + 1) % (size_t)s->opts.max_queue;
        s->q_len--;
        s_start(ctx, s, ask);
    }
    s->starting = false;
}

//  The chat request for the history as it is now.
static brg_msg_t *
s_request(brg_ctx_t *ctx, s_conv_t *s, int *err)
{
    brg_model_chat_t *chat = brg_model_chat_new();
    int rc = chat ? BRG_OK : BRG_ENOMEM;
    for (size_t i = 0; rc == BRG_OK && i < s->h.n; i++) {
        const brg__hmsg_t *m = &s->h.v[i];
        switch (m->role) {
        case BRG_CONV_SYSTEM:
            rc = brg_model_chat_add_message(chat, BRG_MODEL_SYSTEM, m->content, m->len);
            break;
        case BRG_CONV_USER:
            rc = brg_model_chat_add_message(chat, BRG_MODEL_USER, m->content, m->len);
            break;
        case BRG_CONV_ASSISTANT:
            if (m->n_calls) {
                brg_model_tool_call_t calls[BRG_CONV_CALLS_MAX];
                for (size_t k = 0; k < m->n_calls; k++) {
                    brg_model_tool_call_t c = {
                        m->calls[k].id,        strlen(m->calls[k].id),
                        m->calls[k].name,      strlen(m->calls[k].name),
                        m->calls[k].arguments, strlen(m->calls[k].arguments)};
                    calls[k] = c;
                }
                rc = brg_model_chat_add_assistant(chat, m->len ? m->content : NULL, calls,
                                                  m->n_calls);
            } else {
                rc = brg_model_chat_add_message(chat, BRG_MODEL_ASSISTANT, m->content, m->len);
            }
            break;
        case BRG_CONV_TOOL:
            rc = brg_model_chat_add_tool_result(chat, m->call_id, m->content, m->len);
            break;
        }
    }
    for (size_t i = 0; rc == BRG_OK && i < s->n_tools; i++) {
        const s_tool_t *t = &s->tools[i];
        brg_model_tool_t mt = {t->name,
                               strlen(t->name),
                               t->description ? t->description : "",
                               t->description ? strlen(t->description) : 0,
                               t->parameters,
                               t->parameters ? strlen(t->parameters) : 0};
        rc = brg_model_chat_add_tool(chat, &mt);
    }
    if (rc == BRG_OK && s->opts.max_tokens > 0)
        rc = brg_model_chat_set_max_tokens(chat, s->opts.max_tokens);
    if (rc == BRG_OK && s->opts.temperature >= 0)
        rc = brg_model_chat_set_temperature(chat, s->opts.temperature);
    if (rc == BRG_OK)
        rc = brg_model_chat_set_timeout(chat, s->opts.model_timeout_ms);
    if (rc == BRG_OK && s->turn.stream) {
        s->stream_id = ++s->stream_seq;
        brg_model_chat_set_stream(chat, s->stream_id);
        brg_model_chat_set_stream_to(chat, brg_self(ctx)); // also through a limiter
    } else {
        s->stream_id = 0;
    }
    brg_msg_t *msg = rc == BRG_OK ? brg_model_chat_msg(chat) : NULL;
    if (rc == BRG_OK && !msg)
        rc = BRG_ENOMEM;
    brg_model_chat_destroy(&chat);
    *err = rc;
    return msg;
}

static int s_on_model(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg);

//  Give up the model call in flight, if there is one. A stream is stopped
//  first with a stream cancel (the backend ends it at once and answers the
//  ask with a "cancelled" end, which frees a limiter's slot); then the ask
//  itself is cancelled (brigade/cancel.h): a limiter drops the request if it
//  still waits in its queue (where a stream cancel cannot find it), else
//  passes that on to its target. Both go to the model ref asked; a late
//  answer is recognised by its turn sequence and ignored.
static void
s_cancel_model(brg_ctx_t *ctx, s_conv_t *s)
{
    if (s->stream_id) {
        brg_msg_t *cancel = brg_model_msg_cancel(s->stream_id);
        if (cancel)
            brg_send(ctx, s->model_ref, &cancel);
        brg_msg_destroy(&cancel);
        s->stream_id = 0; // its late fragments are ignored
    }
    if (s->model_ask)
        brg_cancel(ctx, s->model_ref, s->model_ask); // advisory: a failed send changes nothing
    s->model_ask = 0;
}

//  Ask the model with the whole history.
static void
s_step(brg_ctx_t *ctx, s_conv_t *s)
{
    s->turn.steps++;
    s->stats.steps++;
    brg__history_trim(&s->h);
    s_clear_acc(s);
    int rc;
    brg_msg_t *req = s_request(ctx, s, &rc);
    if (!req) {
        char *d = s_printf("the chat request could not be built: %s", brg_strerror(rc));
        s_fail(ctx, s, rc, d ? d : "the chat request could not be built");
        free(d);
        return;
    }
    brg_ref_t model = s->opts.model;
    if (s->model_name && brg_ref_is_none(model) &&
        brg_whereis(brg_ctx_system(ctx), s->model_name, &model) != BRG_OK) {
        brg_msg_destroy(&req);
        char *d = s_printf("no model backend is registered as '%s'", s->model_name);
        s_fail(ctx, s, BRG_ENOACTOR, d ? d : "no model backend");
        free(d);
        return;
    }
    s->model_ref = model;
    rc = brg_ask_id(ctx, model, &req, s->opts.model_timeout_ms + S_GRACE_MS, s_on_model,
                    (void *)(uintptr_t)s->turn.seq, &s->model_ask);
    if (rc != BRG_OK) {
        char *d = s_printf("the model could not be asked: %s", brg_strerror(rc));
        s_fail(ctx, s, rc, d ? d : "the model could not be asked");
        free(d);
    }
}

//  Append n bytes to the NUL-terminated buffer *buf (length *len, capacity
//  *cap, doubled from `first` as needed). false if out of memory (the
//  buffer is then unchanged).
static bool
s_append(char **buf, size_t *len, size_t *cap, size_t first, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : first;
        while (c < *len + n + 1)
            c *= 2;
        char *t = realloc(*buf, c);
        if (!t)
            return false;
        *buf = t;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

//  A streamed fragment (the behaviour's BRG_MODEL_TAG_DELTA).
static void
s_on_delta(brg_ctx_t *ctx, s_conv_t *s, const brg_msg_t *msg)
{
    brg_model_delta_t d;
    if (brg_model_read_delta(msg, &d) != BRG_OK || !s->turn.asker || d.stream_id != s->stream_id ||
        s->stream_id == 0)
        return; // another (earlier) stream's, or malformed: dropped
    if (d.tool_index < 0) {
        if (d.len == 0)
            return;
        if (!s_append(&s->acc_text, &s->acc_len, &s->acc_cap, 256, d.text, d.len)) {
            s->acc_failed = true;
            return;
        }
        s_event(ctx, s, BRG_CONV_EV_TEXT, d.text, d.len, NULL, NULL, false);
        return;
    }
    if ((size_t)d.tool_index >= BRG_MODEL_TOOL_CALLS_MAX)
        return;
    size_t i = (size_t)d.tool_index;
    if (i >= s->n_acc_calls) {
        s_acc_call_t *v = realloc(s->acc_calls, (i + 1) * sizeof(*v));
        if (!v) {
            s->acc_failed = true;
            return;
        }
        memset(v + s->n_acc_calls, 0, (i + 1 - s->n_acc_calls) * sizeof(*v));
        s->acc_calls = v;
        s->n_acc_calls = i + 1;
    }
    s_acc_call_t *c = &s->acc_calls[i];
    if (d.id_len && !c->id && !(c->id = s_strndup(d.id, d.id_len)))
        s->acc_failed = true;
    if (d.name_len && !c->name && !(c->name = s_strndup(d.name, d.name_len)))
        s->acc_failed = true;
    if (d.arguments_len &&
        !s_append(&c->args, &c->args_len, &c->args_cap, 64, d.arguments, d.arguments_len))
        s->acc_failed = true;
}

//  The detail of a failed model call, as a malloc'ed line.
static char *
s_model_detail(int code, const brg_msg_t *reply)
{
    brg_model_error_t e;
    brg_model_end_t end;
    bool have = false;
    if (reply && brg_model_read_error(reply, &e) == BRG_OK)
        have = true;
    else if (reply && brg_model_read_end(reply, &end) == BRG_OK && end.status != BRG_OK) {
        e = end.error;
        have = true;
    }
    if (!have)
        return s_printf("the model call failed: %s", brg_strerror(code));
    char http[32] = "";
    if (e.http_status)
        snprintf(http, sizeof(http), " (HTTP %d)", e.http_status);
    return s_printf("the model call failed: %s%s%s%.*s%s%.*s", brg_strerror(code), http,
                    e.type_len || e.message_len ? ": " : "", (int)e.type_len, e.type,
                    e.type_len && e.message_len ? ": " : "", (int)e.message_len, e.message);
}

static int s_on_tool(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg);

//  The conversation is stopping (a pending callback is called with
//  BRG_ECLOSED, before the state goes): the running turn and every waiting
//  one are answered BRG_ECLOSED now, not at their askers' deadlines.
static void
s_closing(brg_ctx_t *ctx, s_conv_t *s)
{
    if (s->turn.asker) {
        brg_reply_error_to(ctx, s->turn.asker, BRG_ECLOSED);
        brg_msg_destroy(&s->turn.asker);
    }
    for (; s->q_len > 0; s->q_len--) {
        brg_msg_t **ask = &s->queue[s->q_head];
        brg_reply_error_to(ctx, *ask, BRG_ECLOSED);
        brg_msg_destroy(ask);
        s->q_head = (s->q_head + 1) % (size_t)s->opts.max_queue;
    }
}

static const s_tool_t *
s_find_tool(const s_conv_t *s, const char *name)
{
    for (size_t i = 0; i < s->n_tools; i++)
        if (strcmp(s->tools[i].name, name) == 0)
            return &s->tools[i];
    return NULL;
}

//  Settle call i with a result text (copied, made valid UTF-8).
static void
s_settle(brg_ctx_t *ctx, s_conv_t *s, size_t i, bool is_error, const char *text, size_t len)
{
    s_call_t *c = &s->calls[i];
    c->done = true;
    c->is_error = is_error;
    if (c->monitored) {
        brg_demonitor(ctx, c->monitor); // a DOWN already on its way is dropped
        c->monitored = false;
    }
    c->result = s_utf8_clean(text, len);
    if (is_error)
        s->stats.tool_errors++;
    if (c->span) {
        if (is_error)
            brg_span_set_error(c->span, BRG_EFAILED, c->result);
        brg_span_end(ctx, &c->span);
    }
    s_event(ctx, s, BRG_CONV_EV_TOOL_RESULT, text, len, c->name, c->id, is_error);
}

//  Every call of the step is settled: add the tool messages, ask again.
static void
s_tools_done(brg_ctx_t *ctx, s_conv_t *s)
{
    for (size_t i = 0; i < s->n_calls; i++) {
        s_call_t *c = &s->calls[i];
        const char *text = c->result ? c->result : "error: out of memory";
        if (brg__history_add(&s->h, BRG_CONV_TOOL, text, strlen(text), c->id, c->name, c->is_error,
                             NULL) != BRG_OK) {
            s_fail(ctx, s, BRG_ENOMEM, "out of memory");
            return;
        }
    }
    s_clear_calls(ctx, s);
    s_step(ctx, s);
}

//  Send each call of the assistant message just added to its tool.
static void
s_dispatch(brg_ctx_t *ctx, s_conv_t *s, const brg__hmsg_t *m)
{
    s->dispatch_seq++;
    s->calls = calloc(m->n_calls, sizeof(*s->calls));
    if (!s->calls) {
        s_fail(ctx, s, BRG_ENOMEM, "out of memory");
        return;
    }
    s->n_calls = m->n_calls;
    s->pending = 0;
    for (size_t i = 0; i < s->n_calls; i++) {
        s->calls[i].id = s_strdup(m->calls[i].id);
        s->calls[i].name = s_strdup(m->calls[i].name);
        s->calls[i].args = s_strdup(m->calls[i].arguments);
        if (!s->calls[i].id || !s->calls[i].name || !s->calls[i].args) {
            s_fail(ctx, s, BRG_ENOMEM, "out of memory");
            return;
        }
    }
    // All asks go out before any can be answered (callbacks run on this
    // actor's thread after this behaviour call), so they share one deadline.
    for (size_t i = 0; i < s->n_calls; i++) {
        s_call_t *c = &s->calls[i];
        s->turn.tool_calls++;
        s->stats.tool_calls++;
        s_event(ctx, s, BRG_CONV_EV_TOOL_CALL, c->args, strlen(c->args), c->name, c->id, false);
        // The call's span (GenAI names); the ask below is its child, and it
        // ends when the call settles (s_settle).
        char span_name[BRG_TOOL_NAME_MAX + 16];
        snprintf(span_name, sizeof span_name, "execute_tool %s", c->name);
        c->span = brg_span_start(ctx, span_name, BRG_SPAN_INTERNAL);
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_OPERATION_NAME, "execute_tool");
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_TOOL_NAME, c->name);
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_TOOL_CALL_ID, c->id);
        brg_span_set_str(c->span, BRG_ATTR_GEN_AI_TOOL_TYPE, "function");
        const s_tool_t *t = s_find_tool(s, c->name);
        if (!t) {
            char *d = s_printf("error: unknown tool '%s'", c->name);
            s_settle(ctx, s, i, true, d ? d : "error: unknown tool", d ? strlen(d) : 19);
            free(d);
            continue;
        }
        brg_msg_t *call = brg_tool_msg_call(c->name, c->args, c->id);
        if (!call) {
            s_settle(ctx, s, i, true, "error: out of memory", 20);
            continue;
        }
        void *arg = (void *)(uintptr_t)(s->dispatch_seq << S_CALL_SEQ_SHIFT | i);
        int rc;
        brg_ref_t ref = t->ref; // none for a (node, name) address
        if (brg_ref_is_none(ref) && brg_ref_is_none(t->node) &&
            brg_whereis(brg_ctx_system(ctx), t->actor_name, &ref) != BRG_OK)
            ref = BRG_REF_NONE; // not registered: the ask below is not made
        // As gen_server:call does: watch the callee from before the call, so
        // a tool that dies before it answers settles its call now, with its
        // exit reason, not at the deadline. An answer it sent first arrives
        // before the DOWN.
        if (!brg_ref_is_none(ref) && brg_monitor(ctx, ref, &c->monitor) == BRG_OK)
            c->monitored = true;
        if (!brg_ref_is_none(ref))
            rc = brg_ask(ctx, ref, &call, s->opts.tool_timeout_ms, s_on_tool, arg);
        else if (!brg_ref_is_none(t->node))
            rc = brg_ask_named_at(ctx, t->node, t->actor_name, &call, s->opts.tool_timeout_ms,
                                  s_on_tool, arg);
        else
            rc = BRG_ENOACTOR;
        brg_msg_destroy(&call);
        brg_span_leave(ctx, c->span); // the next call's ask is not this one's child
        if (rc == BRG_OK) {
            s->pending++;
        } else {
            char *d = s_printf("error: tool '%s' is not available (%s)", c->name, brg_strerror(rc));
            s_settle(ctx, s, i, true, d ? d : "error: tool not available", d ? strlen(d) : 25);
            free(d);
        }
    }
    if (s->pending == 0)
        s_tools_done(ctx, s);
}

static int
s_on_tool(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_conv_t *s = brg_state(ctx);
    uintptr_t a = (uintptr_t)arg;
    size_t i = a & ((1u << S_CALL_SEQ_SHIFT) - 1);
    if (status == BRG_ECLOSED) {
        s_closing(ctx, s);
        return BRG_OK;
    }
    if (!s->turn.asker ||
        (a >> S_CALL_SEQ_SHIFT) != (s->dispatch_seq & (UINTPTR_MAX >> S_CALL_SEQ_SHIFT)) ||
        i >= s->n_calls || s->calls[i].done)
        return BRG_OK; // stopping, or a call of a step that is over
    s_call_t *c = &s->calls[i];
    brg_tool_result_t r;
    char *d = NULL;
    if (status == BRG_OK && brg_tool_read_result(reply, &r) == BRG_OK) {
        s_settle(ctx, s, i, r.is_error, r.text, r.len);
    } else {
        if (status == BRG_OK)
            d = s_printf("error: tool '%s' answered with a malformed result ('%s')", c->name,
                         brg_msg_tag(reply));
        else if (status == BRG_ETIMEDOUT)
            d = s_printf("error: tool '%s' timed out after %d ms", c->name,
                         s->opts.tool_timeout_ms);
        else if (status == BRG_ENOACTOR)
            d = s_printf("error: tool '%s' is not available (its actor is gone)", c->name);
        else
            d = s_printf("error: tool '%s' failed: %s", c->name, brg_strerror(status));
        s_settle(ctx, s, i, true, d ? d : "error: tool failed", d ? strlen(d) : 18);
        free(d);
    }
    if (--s->pending == 0)
        s_tools_done(ctx, s);
    return BRG_OK;
}

static int
s_on_model(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_conv_t *s = brg_state(ctx);
    if (!s->turn.asker || (uint64_t)(uintptr_t)arg != s->turn.seq)
        return BRG_OK; // a turn that already ended
    if (status == BRG_ECLOSED) {
        s_closing(ctx, s);
        return BRG_OK;
    }
    int code = brg_model_chat_status(status, reply);
    if (code != BRG_OK) {
        if (status == BRG_ETIMEDOUT)
            s_cancel_model(ctx, s); // we gave up: the backend (or limiter) may stop too
        s->model_ask = 0;
        char *d = s_model_detail(code, status == BRG_OK ? reply : NULL);
        s_fail(ctx, s, code, d ? d : "the model call failed");
        free(d);
        return BRG_OK;
    }
    s->model_ask = 0; // answered
    // The answer: text and tool calls, from the reply or the stream.
    brg_model_chat_reply_t r;
    const char *text = "";
    size_t len = 0;
    if (s->stream_id) {
        brg_model_end_t end;
        if (brg_model_read_end(reply, &end) != BRG_OK) {
            s_fail(ctx, s, BRG_EPROTO, "the model's stream did not end with an end message");
            return BRG_OK;
        }
        if (s->acc_failed) {
            s_fail(ctx, s, BRG_ENOMEM, "out of memory while the model's answer streamed in");
            return BRG_OK;
        }
        r = end.reply;
        text = s->acc_text ? s->acc_text : "";
        len = s->acc_len;
    } else {
        if (brg_model_read_chat_reply(reply, &r) != BRG_OK) {
            s_fail(ctx, s, BRG_EPROTO, "the model answered with a malformed reply");
            return BRG_OK;
        }
        text = r.text;
        len = r.len;
    }
    if (r.prompt_tokens > 0) {
        s->turn.prompt_tokens += r.prompt_tokens;
        s->stats.prompt_tokens += (uint64_t)r.prompt_tokens;
    }
    if (r.completion_tokens > 0) {
        s->turn.completion_tokens += r.completion_tokens;
        s->stats.completion_tokens += (uint64_t)r.completion_tokens;
    }
    size_t n_calls = s->stream_id ? s->n_acc_calls : r.n_tool_calls;
    if (n_calls == 0) {
        brg__hmsg_t *m;
        if (brg__history_add(&s->h, BRG_CONV_ASSISTANT, text, len, NULL, NULL, false, &m) !=
            BRG_OK) {
            s_fail(ctx, s, BRG_ENOMEM, "out of memory");
            return BRG_OK;
        }
        s_finish(ctx, s, BRG_OK, m->content, m->len);
        return BRG_OK;
    }
    if (s->turn.steps >= s->opts.max_steps) {
        char *d =
            s_printf("step limit reached (%d model calls without a final answer)", s->turn.steps);
        s_fail(ctx, s, BRG_ERANGE, d ? d : "step limit reached");
        free(d);
        return BRG_OK;
    }
    if (n_calls > BRG_CONV_CALLS_MAX) {
        char *d = s_printf("the model asked for %zu tool calls at once (at most %d)", n_calls,
                           BRG_CONV_CALLS_MAX);
        s_fail(ctx, s, BRG_ERANGE, d ? d : "too many tool calls");
        free(d);
        return BRG_OK;
    }
    brg__hmsg_t *m;
    int rc = brg__history_add(&s->h, BRG_CONV_ASSISTANT, text, len, NULL, NULL, false, &m);
    for (size_t i = 0; rc == BRG_OK && i < n_calls; i++) {
        brg_model_tool_call_t c = {0};
        if (s->stream_id) {
            const s_acc_call_t *a = &s->acc_calls[i];
            if (!a->id || !a->name) {
                s_fail(ctx, s, BRG_EPROTO, "the model streamed a tool call without id or name");
                return BRG_OK;
            }
            c.id = a->id;
            c.id_len = strlen(a->id);
            c.name = a->name;
            c.name_len = strlen(a->name);
            c.arguments = a->args ? a->args : "";
            c.arguments_len = a->args_len;
        } else if (brg_model_chat_reply_tool_call(&r, (uint32_t)i, &c) != BRG_OK) {
            s_fail(ctx, s, BRG_EPROTO, "the model answered with a malformed tool call");
            return BRG_OK;
        }
        if (c.arguments_len == 0) {
            c.arguments = "{}";
            c.arguments_len = 2;
        }
        rc = brg__history_add_call(&s->h, m, c.id, c.id_len, c.name, c.name_len, c.arguments,
                                   c.arguments_len);
    }
    if (rc != BRG_OK) {
        s_fail(ctx, s, BRG_ENOMEM, "out of memory");
        return BRG_OK;
    }
    s_dispatch(ctx, s, m);
    return BRG_OK;
}

//  A tool actor being called stopped (its monitor's DOWN): its call settles.
static void
s_on_down(brg_ctx_t *ctx, s_conv_t *s, const brg_msg_t *msg)
{
    brg_ref_t from;
    uint64_t monitor;
    brg_exit_reason_t why;
    if (brg_msg_read_down(msg, &from, &monitor, &why) != BRG_OK || !s->turn.asker)
        return;
    for (size_t i = 0; i < s->n_calls; i++) {
        s_call_t *c = &s->calls[i];
        if (!c->monitored || c->monitor != monitor || c->done)
            continue;
        c->monitored = false; // a DOWN ends its monitor
        char *d = s_printf("error: tool '%s' stopped before it answered (%s%s%s)", c->name,
                           brg_exit_kind_name(why.kind), why.text[0] ? ": " : "", why.text);
        s_settle(ctx, s, i, true, d ? d : "error: tool stopped", d ? strlen(d) : 19);
        free(d);
        if (--s->pending == 0)
            s_tools_done(ctx, s);
        return;
    }
}

//  ---------------------------------------------------------------------------
//  The behaviour

static int
s_reply_history(brg_ctx_t *ctx, const s_conv_t *s)
{
    brg_msg_t *msg = brg_msg_new(BRG_CONV_TAG_HISTORY);
    int rc = msg ? brg_msg_add_uint(msg, s->h.n) : BRG_ENOMEM;
    for (size_t i = 0; rc == BRG_OK && i < s->h.n; i++) {
        const brg__hmsg_t *m = &s->h.v[i];
        rc = brg_msg_add_int(msg, m->role);
        if (rc == BRG_OK)
            rc = brg_msg_add_strn(msg, m->content, m->len);
        if (rc == BRG_OK)
            rc = brg_msg_add_str(msg, m->name ? m->name : "");
        if (rc == BRG_OK)
            rc = brg_msg_add_str(msg, m->call_id ? m->call_id : "");
        if (rc == BRG_OK)
            rc = brg_msg_add_bool(msg, m->is_error);
        if (rc == BRG_OK)
            rc = brg_msg_add_array(msg, (uint32_t)m->n_calls);
        for (size_t k = 0; rc == BRG_OK && k < m->n_calls; k++) {
            rc = brg_msg_add_array(msg, 3);
            if (rc == BRG_OK)
                rc = brg_msg_add_str(msg, m->calls[k].id);
            if (rc == BRG_OK)
                rc = brg_msg_add_str(msg, m->calls[k].name);
            if (rc == BRG_OK)
                rc = brg_msg_add_str(msg, m->calls[k].arguments);
        }
    }
    if (rc != BRG_OK) {
        brg_msg_destroy(&msg);
        return brg_reply_error(ctx, rc);
    }
    return brg_reply(ctx, &msg);
}

static int
s_conv_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_conv_t *s = brg_state(ctx);
    if (brg_msg_is_tag(msg, BRG_TAG(BRG_MODEL_TAG_DELTA))) {
        s_on_delta(ctx, s, msg);
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG(BRG_TAG_DOWN))) {
        s_on_down(ctx, s, msg);
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG(BRG_CONV_TAG_SAY))) {
        size_t pos = 0, len;
        const char *text;
        bool stream = false;
        if (brg_msg_read_str(msg, &pos, &text, &len) != BRG_OK ||
            (brg_msg_peek(msg, pos) != BRG_TYPE_NONE &&
             brg_msg_read_bool(msg, &pos, &stream) != BRG_OK)) {
            brg_reply_error(ctx, BRG_EBADMSG);
            return BRG_OK;
        }
        if (len > BRG_TOOL_TEXT_MAX || !s_utf8_valid(text, len)) {
            const char *why =
                len > BRG_TOOL_TEXT_MAX ? "the text is too long" : "the text is not valid UTF-8";
            brg_msg_t *a = s_msg_answer(BRG_EINVAL, why, strlen(why), 0, 0, 0, 0);
            s->stats.failed_turns++;
            if (a)
                brg_reply(ctx, &a); // an asker that is gone is a dead letter, not our failure
            else
                brg_reply_error(ctx, BRG_EINVAL);
            return BRG_OK;
        }
        brg_msg_t *ask = brg_msg_dup(msg);
        if (!ask) {
            brg_reply_error(ctx, BRG_ENOMEM);
            return BRG_OK;
        }
        if (!s->turn.asker) {
            s_start(ctx, s, ask);
        } else if (s->q_len < (size_t)s->opts.max_queue) {
            s->queue[(s->q_head + s->q_len) % (size_t)s->opts.max_queue] = ask;
            s->q_len++;
        } else {
            brg_msg_destroy(&ask);
            brg_reply_error(ctx, BRG_EBUSY);
        }
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG(BRG_CONV_TAG_CANCEL))) {
        bool running = s->turn.asker != NULL;
        if (running) {
            // The model call or the tool calls in flight are abandoned: their
            // late answers are recognised and ignored; a stream is stopped.
            s_cancel_model(ctx, s);
            s_fail(ctx, s, BRG_ECANCELED, "the turn was cancelled");
        }
        if (brg_ref_is_none(brg_msg_sender(msg)))
            return BRG_OK; // sent from outside any actor, not asked: nobody to tell
        brg_msg_t *reply = brg_msg_new(BRG_CONV_TAG_CANCEL);
        if (reply && brg_msg_add_bool(reply, running) != BRG_OK)
            brg_msg_destroy(&reply);
        if (reply)
            brg_reply(ctx, &reply); // an asker that is gone is a dead letter, not our failure
        else
            brg_reply_error(ctx, BRG_ENOMEM);
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG(BRG_CONV_TAG_STATS))) {
        brg_conv_stats_t st = s->stats;
        st.messages = s->h.n;
        st.history_tokens = s->h.tokens;
        st.dropped = s->h.dropped;
        st.waiting = s->q_len;
        uint64_t f[S_STATS_FIELDS];
        s_stats_fields(&st, f);
        brg_msg_t *reply = brg_msg_new(BRG_CONV_TAG_STATS);
        for (size_t i = 0; reply && i < S_STATS_FIELDS; i++)
            if (brg_msg_add_uint(reply, f[i]) != BRG_OK)
                brg_msg_destroy(&reply);
        if (reply)
            brg_reply(ctx, &reply); // an asker that is gone is a dead letter, not our failure
        else
            brg_reply_error(ctx, BRG_ENOMEM);
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG(BRG_CONV_TAG_HISTORY))) {
        s_reply_history(ctx, s);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

//  ---------------------------------------------------------------------------
//  brg_conv_say: a helper actor asks for the caller and hands each event
//  and the answer over through a mutex-protected box.

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int refs; // the caller and the helper; the last one frees (acq_rel)
    brg_msg_t **q;   // events, in order (mu)
    size_t q_len, q_cap;
    brg_msg_t *answer; // the answer (mu)
    int status;        // the ask's error when no answer (mu)
    bool done;         // (mu)
} s_say_t;

typedef struct {
    s_say_t *box;
    brg_ref_t conv;
    brg_msg_t *say; // taken by the init
    int timeout_ms;
} s_say_helper_t;

static void
s_say_unref(s_say_t *box)
{
    if (atomic_fetch_sub_explicit(&box->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < box->q_len; i++)
        brg_msg_destroy(&box->q[i]);
    free(box->q);
    brg_msg_destroy(&box->answer);
    pthread_mutex_destroy(&box->mu);
    pthread_cond_destroy(&box->cv);
    free(box);
}

static void
s_say_done(s_say_t *box, int status, const brg_msg_t *reply)
{
    brg_msg_t *copy = reply ? brg_msg_dup(reply) : NULL;
    pthread_mutex_lock(&box->mu);
    if (!box->done) {
        box->done = true;
        box->answer = copy;
        copy = NULL;
        box->status = reply && !box->answer ? BRG_ENOMEM : status;
        pthread_cond_signal(&box->cv);
    }
    pthread_mutex_unlock(&box->mu);
    brg_msg_destroy(&copy);
}

static void
s_say_helper_destroy(void *state)
{
    s_say_helper_t *h = state;
    s_say_done(h->box, BRG_ECLOSED, NULL); // if it never answered
    s_say_unref(h->box);
    brg_msg_destroy(&h->say);
    free(h);
}

static int
s_say_on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)arg;
    s_say_helper_t *h = brg_state(ctx);
    s_say_done(h->box, status, status == BRG_OK ? reply : NULL);
    brg_stop(ctx);
    return BRG_OK;
}

static int
s_say_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    s_say_helper_t *h = brg_state(ctx);
    int rc = brg_ask(ctx, h->conv, &h->say, h->timeout_ms, s_say_on_answer, NULL);
    if (rc != BRG_OK) {
        s_say_done(h->box, rc, NULL);
        brg_stop(ctx);
    }
    return BRG_OK;
}

static int
s_say_helper(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_say_helper_t *h = brg_state(ctx);
    if (!brg_msg_is(msg, BRG_CONV_TAG_EVENT))
        return BRG_UNHANDLED;
    brg_msg_t *copy = brg_msg_dup(msg);
    if (!copy)
        return BRG_OK; // a lost event, not a lost turn
    s_say_t *box = h->box;
    pthread_mutex_lock(&box->mu);
    if (box->q_len == box->q_cap) {
        size_t cap = box->q_cap ? box->q_cap * 2 : 32;
        brg_msg_t **q = realloc(box->q, cap * sizeof(*q));
        if (q) {
            box->q = q;
            box->q_cap = cap;
        }
    }
    if (box->q_len < box->q_cap) {
        box->q[box->q_len++] = copy;
        copy = NULL;
        pthread_cond_signal(&box->cv);
    }
    pthread_mutex_unlock(&box->mu);
    brg_msg_destroy(&copy);
    return BRG_OK;
}

static void
s_deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int
brg_conv_say(brg_system_t *sys, brg_ref_t conv, const char *text, int timeout_ms,
             brg_conv_event_fn on_event, void *arg, char **text_out, brg_conv_answer_t *turn)
{
    if (text_out)
        *text_out = NULL;
    if (!sys || !text || timeout_ms < 0)
        return BRG_EINVAL;
    if (brg_system_is_own_thread(sys))
        return BRG_EDEADLK;
    if (brg_system_is_deterministic(sys))
        return BRG_EINVAL; // nothing would run the conversation while we wait
    s_say_t *box = calloc(1, sizeof(*box));
    s_say_helper_t *h = calloc(1, sizeof(*h));
    brg_msg_t *say = brg_conv_msg_say(text, on_event != NULL);
    if (!box || !h || !say) {
        free(box);
        free(h);
        int rc = text && strlen(text) > BRG_TOOL_TEXT_MAX ? BRG_EINVAL : BRG_ENOMEM;
        brg_msg_destroy(&say);
        return rc;
    }
    pthread_mutex_init(&box->mu, NULL);
    pthread_cond_init(&box->cv, NULL);
    atomic_init(&box->refs, 2);
    h->box = box;
    h->conv = conv;
    h->say = say;
    h->timeout_ms = timeout_ms;
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = h;
    so.state_destroy = s_say_helper_destroy;
    so.init = s_say_init;
    so.label = "brg.conv.say";
    int rc = brg_system_spawn(sys, s_say_helper, &so, NULL);
    if (rc != BRG_OK) {
        brg_msg_destroy(&h->say);
        free(h);
        atomic_store(&box->refs, 1);
        s_say_unref(box);
        return rc;
    }
    struct timespec until;
    s_deadline(&until, timeout_ms + S_GRACE_MS);
    pthread_mutex_lock(&box->mu);
    size_t next = 0;
    for (;;) {
        while (next < box->q_len) {
            brg_msg_t *ev = box->q[next];
            box->q[next++] = NULL;
            pthread_mutex_unlock(&box->mu);
            brg_conv_event_t e;
            if (on_event && brg_conv_read_event(ev, &e) == BRG_OK)
                on_event(arg, &e);
            brg_msg_destroy(&ev);
            pthread_mutex_lock(&box->mu);
        }
        if (box->done)
            break;
        if (pthread_cond_timedwait(&box->cv, &box->mu, &until) != 0 && !box->done &&
            next == box->q_len) {
            box->status = BRG_ETIMEDOUT;
            break;
        }
    }
    brg_msg_t *answer = box->done ? box->answer : NULL;
    box->answer = NULL;
    int status = box->status;
    pthread_mutex_unlock(&box->mu);
    brg_conv_answer_t a;
    if (answer) {
        if (brg_conv_read_answer(answer, &a) == BRG_OK) {
            status = a.status;
            if (text_out)
                *text_out = s_strndup(a.text, a.len);
            if (turn) {
                *turn = a;
                turn->text = NULL; // the message goes below
                turn->len = 0;
            }
        } else {
            status = BRG_EPROTO;
        }
    } else if (text_out) {
        *text_out = s_printf("no answer: %s", brg_strerror(status));
    }
    brg_msg_destroy(&answer);
    s_say_unref(box);
    return status;
}
