//  test_trace - trace contexts through send, ask, reply, forward and gather;
//  spans (asks, gather, user spans) exported as OTLP/JSON to a hook and to a
//  file, parsed back with jansson; the bounded buffer; tracing off.
#include "test_util.h"

#include <jansson.h>
#include <unistd.h>

//  ---------------------------------------------------------------------------
//  Recording what actors saw as their current context.

#define REC_MAX 64

typedef struct {
    char what[32];
    bool has;
    brg_trace_ctx_t tc;
} rec_t;

static pthread_mutex_t s_rec_lock = PTHREAD_MUTEX_INITIALIZER;
static rec_t s_recs[REC_MAX];
static atomic_int s_nrecs;

static void
rec_ctx(const char *what, const brg_ctx_t *ctx)
{
    pthread_mutex_lock(&s_rec_lock);
    int i = atomic_load(&s_nrecs);
    if (i < REC_MAX) {
        snprintf(s_recs[i].what, sizeof s_recs[i].what, "%s", what);
        s_recs[i].has = brg_trace_current(ctx, &s_recs[i].tc);
        atomic_store(&s_nrecs, i + 1);
    }
    pthread_mutex_unlock(&s_rec_lock);
}

static const rec_t *
rec_find(const char *what)
{
    const rec_t *found = NULL;
    pthread_mutex_lock(&s_rec_lock);
    for (int i = 0; i < atomic_load(&s_nrecs); i++)
        if (strcmp(s_recs[i].what, what) == 0)
            found = &s_recs[i];
    pthread_mutex_unlock(&s_rec_lock);
    ck_assert_msg(found != NULL, "no record '%s'", what);
    return found;
}

static bool
rec_has(const char *what)
{
    bool found = false;
    pthread_mutex_lock(&s_rec_lock);
    for (int i = 0; i < atomic_load(&s_nrecs); i++)
        found |= strcmp(s_recs[i].what, what) == 0;
    pthread_mutex_unlock(&s_rec_lock);
    return found;
}

static bool
tc_eq(const brg_trace_ctx_t *a, const brg_trace_ctx_t *b)
{
    return memcmp(a->trace_id, b->trace_id, 16) == 0 && memcmp(a->span_id, b->span_id, 8) == 0 &&
           a->flags == b->flags;
}

static brg_trace_ctx_t
tc_make(uint8_t seed)
{
    brg_trace_ctx_t tc;
    for (int i = 0; i < 16; i++)
        tc.trace_id[i] = (uint8_t)(seed + i);
    for (int i = 0; i < 8; i++)
        tc.span_id[i] = (uint8_t)(0xa0 + seed + i);
    tc.flags = BRG_TRACE_SAMPLED;
    return tc;
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

//  ---------------------------------------------------------------------------
//  Exported lines (the hook) and their spans, parsed with jansson.

static pthread_mutex_t s_lines_lock = PTHREAD_MUTEX_INITIALIZER;
static char *s_lines[1024];
static int s_nlines;

static void
hook_keep(void *arg, const char *json, size_t len)
{
    (void)arg;
    ck_assert_int_eq((int)strlen(json), (int)len); // NUL-terminated, no newline
    ck_assert(len == 0 || json[len - 1] != '\n');
    pthread_mutex_lock(&s_lines_lock);
    if (s_nlines < 1024)
        s_lines[s_nlines++] = strndup(json, len);
    pthread_mutex_unlock(&s_lines_lock);
}

typedef struct {
    char trace[33];
    char span[17];
    char parent[17]; // "" for a root
    char name[128];
    int kind;
    int status; // 1 ok, 2 error
    char status_msg[128];
    json_t *attrs; // the attributes array (a reference)
    json_t *resource;
} span_t;

static span_t s_spans[1024];
static int s_nspans;

static const char *
jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

//  Parse one OTLP/JSON line into s_spans, checking its shape.
static void
parse_line(const char *line)
{
    json_error_t err;
    json_t *root = json_loads(line, 0, &err);
    ck_assert_msg(root != NULL, "line is not JSON: %s (%s)", err.text, line);
    json_t *rs = json_object_get(root, "resourceSpans");
    ck_assert(json_is_array(rs) && json_array_size(rs) == 1);
    json_t *res = json_object_get(json_array_get(rs, 0), "resource");
    ck_assert(json_is_array(json_object_get(res, "attributes")));
    json_t *ss = json_object_get(json_array_get(rs, 0), "scopeSpans");
    ck_assert(json_is_array(ss) && json_array_size(ss) == 1);
    ck_assert_str_eq(jstr(json_object_get(json_array_get(ss, 0), "scope"), "name"), "brigade");
    json_t *spans = json_object_get(json_array_get(ss, 0), "spans");
    ck_assert(json_is_array(spans) && json_array_size(spans) >= 1);
    for (size_t i = 0; i < json_array_size(spans); i++) {
        json_t *s = json_array_get(spans, i);
        ck_assert_int_lt(s_nspans, 1024);
        span_t *out = &s_spans[s_nspans++];
        memset(out, 0, sizeof *out);
        const char *t = jstr(s, "traceId");
        const char *id = jstr(s, "spanId");
        ck_assert(t && strlen(t) == 32 && id && strlen(id) == 16);
        snprintf(out->trace, sizeof out->trace, "%s", t);
        snprintf(out->span, sizeof out->span, "%s", id);
        const char *p = jstr(s, "parentSpanId");
        if (p) {
            ck_assert_int_eq((int)strlen(p), 16);
            snprintf(out->parent, sizeof out->parent, "%s", p);
        }
        snprintf(out->name, sizeof out->name, "%s", jstr(s, "name"));
        out->kind = (int)json_integer_value(json_object_get(s, "kind"));
        // Times are decimal strings (proto3 JSON of fixed64), end >= start.
        const char *start = jstr(s, "startTimeUnixNano");
        const char *end = jstr(s, "endTimeUnixNano");
        ck_assert(start && end);
        ck_assert(strtoull(end, NULL, 10) >= strtoull(start, NULL, 10));
        ck_assert(strtoull(start, NULL, 10) > 1600000000ull * 1000000000ull);
        json_t *st = json_object_get(s, "status");
        out->status = (int)json_integer_value(json_object_get(st, "code"));
        const char *msg = jstr(st, "message");
        snprintf(out->status_msg, sizeof out->status_msg, "%s", msg ? msg : "");
        out->attrs = json_incref(json_object_get(s, "attributes"));
        out->resource = json_incref(json_object_get(res, "attributes"));
    }
    json_decref(root);
}

static void
parse_hook_lines(void)
{
    pthread_mutex_lock(&s_lines_lock);
    for (int i = 0; i < s_nlines; i++)
        parse_line(s_lines[i]);
    pthread_mutex_unlock(&s_lines_lock);
}

static const span_t *
span_named(const char *name)
{
    const span_t *found = NULL;
    for (int i = 0; i < s_nspans; i++)
        if (strcmp(s_spans[i].name, name) == 0) {
            ck_assert_msg(found == NULL, "two spans named '%s'", name);
            found = &s_spans[i];
        }
    ck_assert_msg(found != NULL, "no span named '%s' (of %d)", name, s_nspans);
    return found;
}

static int
spans_named(const char *name)
{
    int n = 0;
    for (int i = 0; i < s_nspans; i++)
        n += strcmp(s_spans[i].name, name) == 0;
    return n;
}

//  The attribute's value object ({"stringValue": ...} etc.), or NULL.
static json_t *
attr(json_t *attrs, const char *key)
{
    for (size_t i = 0; i < json_array_size(attrs); i++) {
        json_t *a = json_array_get(attrs, i);
        if (strcmp(jstr(a, "key"), key) == 0)
            return json_object_get(a, "value");
    }
    return NULL;
}

static const char *
attr_str(const span_t *s, const char *key)
{
    json_t *v = attr(s->attrs, key);
    ck_assert_msg(v != NULL, "span '%s' has no attribute %s", s->name, key);
    return jstr(v, "stringValue");
}

static const char *
attr_int(const span_t *s, const char *key)
{
    json_t *v = attr(s->attrs, key);
    ck_assert_msg(v != NULL, "span '%s' has no attribute %s", s->name, key);
    return jstr(v, "intValue"); // a decimal string, as proto3 JSON has int64
}

//  A system with tracing to the keeping hook.
static brg_system_t *
traced_system(int workers)
{
    brg_config_t cfg;
    tu_config(&cfg, workers);
    cfg.trace_hook = hook_keep;
    cfg.trace_service = "trace-test";
    cfg.trace_node_name = "node-a";
    cfg.trace_flush_ms = 10;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    ck_assert(brg_trace_enabled(sys));
    return sys;
}

//  ---------------------------------------------------------------------------
//  Behaviours.

static brg_ref_t s_b, s_c, s_d;

//  C: records what it gets and, for an ask, replies.
static int
c_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    char what[32];
    snprintf(what, sizeof what, "c.%s", brg_msg_tag(msg));
    rec_ctx(what, ctx);
    if (brg_msg_is(msg, "q")) {
        brg_msg_t *r = brg_msg_new_int("r", 1);
        ck_assert_int_eq(brg_reply(ctx, &r), BRG_OK);
    }
    if (brg_msg_is(msg, "tool")) {
        // A tool call span as the tool layer makes it (GenAI conventions).
        brg_span_t *span = brg_span_start(ctx, "execute_tool search", BRG_SPAN_INTERNAL);
        brg_span_set_str(span, BRG_ATTR_GEN_AI_OPERATION_NAME, "execute_tool");
        brg_span_set_str(span, BRG_ATTR_GEN_AI_TOOL_NAME, "search");
        brg_span_set_str(span, BRG_ATTR_GEN_AI_TOOL_CALL_ID, "call_1");
        rec_ctx("c.in_span", ctx);
        brg_span_end(ctx, &span);
        ck_assert_ptr_null(span);
        rec_ctx("c.after_span", ctx);
        brg_msg_t *r = brg_msg_new_int("r", 2);
        ck_assert_int_eq(brg_reply(ctx, &r), BRG_OK);
    }
    return BRG_OK;
}

//  B: hops on to C with every kind of send.
static int
b_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    brg_msg_t *request = arg;
    rec_ctx(status == BRG_OK ? "b.reply_cb" : "b.timeout_cb", ctx);
    brg_msg_t *r = brg_msg_new_int("done", status);
    ck_assert_int_eq(brg_reply_to(ctx, request, &r), BRG_OK);
    brg_msg_destroy(&request);
    return BRG_OK;
}

static int
b_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    char what[32];
    snprintf(what, sizeof what, "b.%s", brg_msg_tag(msg));
    rec_ctx(what, ctx);
    if (brg_msg_is(msg, "hop")) {
        brg_msg_t *m = brg_msg_new("sent");
        ck_assert_int_eq(brg_send(ctx, s_c, &m), BRG_OK);
        ck_assert_int_eq(brg_forward(ctx, s_c), BRG_OK); // C gets "hop" as c.hop
    } else if (brg_msg_is(msg, "ask") || brg_msg_is(msg, "ask_tool") ||
               brg_msg_is(msg, "ask_silent")) {
        brg_msg_t *keep = brg_msg_dup(msg);
        const char *tag = brg_msg_is(msg, "ask") ? "q" : brg_msg_is(msg, "ask_tool") ? "tool" : "x";
        brg_ref_t to = brg_msg_is(msg, "ask_silent") ? s_d : s_c;
        brg_msg_t *q = brg_msg_new(tag);
        ck_assert_int_eq(
            brg_ask(ctx, to, &q, brg_msg_is(msg, "ask_silent") ? 50 : 5000, b_on_reply, keep),
            BRG_OK);
        rec_ctx("b.after_ask", ctx);
    }
    return BRG_OK;
}

//  D never answers.
static int
d_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    rec_ctx("d.x", ctx);
    return BRG_OK;
}

static void
spawn_bcd(brg_system_t *sys)
{
    s_b = tu_spawn(sys, b_behaviour);
    s_c = tu_spawn(sys, c_behaviour);
    s_d = tu_spawn(sys, d_behaviour);
}

//  ---------------------------------------------------------------------------
//  Context propagation (tracing off: contexts travel all the same).

START_TEST(test_off_by_default)
{
    unsetenv("BRG_TRACE_FILE");
    brg_system_t *sys = tu_system_new(2);
    ck_assert(!brg_trace_enabled(sys));
    ck_assert_ptr_null(brg_system_span_start(sys, "x", BRG_SPAN_INTERNAL));
    ck_assert_ptr_null(brg_system_trace_start(sys, "x", BRG_SPAN_INTERNAL));
    // Every span call takes NULL.
    brg_span_t *none = NULL;
    ck_assert_int_eq(brg_span_set_str(none, "k", "v"), BRG_OK);
    ck_assert_int_eq(brg_span_set_int(none, "k", 1), BRG_OK);
    ck_assert_int_eq(brg_span_set_double(none, "k", 1.5), BRG_OK);
    brg_span_set_error(none, BRG_EFAILED, NULL);
    brg_span_leave(NULL, none);
    brg_span_end(NULL, &none);
    brg_trace_stats_t st;
    brg_trace_stats(sys, &st);
    ck_assert_uint_eq(st.spans_ended + st.spans_exported + st.spans_dropped + st.batches, 0);
    brg_system_destroy(&sys);
}
END_TEST

START_TEST(test_no_context_is_none)
{
    brg_system_t *sys = tu_system_new(2);
    spawn_bcd(sys);
    brg_trace_set(NULL);
    ck_assert_int_eq(tu_send_tag(sys, s_b, "hop"), BRG_OK);
    TU_WAIT_UNTIL(rec_has("c.hop") && rec_has("c.sent"), TU_WAIT_MS);
    ck_assert(!rec_find("b.hop")->has);
    ck_assert(!rec_find("c.sent")->has);
    ck_assert(!rec_find("c.hop")->has);
    brg_trace_ctx_t tc;
    ck_assert(!brg_trace_current(NULL, &tc));
    brg_system_destroy(&sys);
}
END_TEST

START_TEST(test_send_and_forward_inherit)
{
    brg_system_t *sys = tu_system_new(2);
    spawn_bcd(sys);
    brg_trace_ctx_t tc = tc_make(1), got;
    brg_trace_set(&tc);
    ck_assert(brg_trace_current(NULL, &got) && tc_eq(&got, &tc));
    ck_assert_int_eq(tu_send_tag(sys, s_b, "hop"), BRG_OK);
    TU_WAIT_UNTIL(rec_has("c.hop") && rec_has("c.sent"), TU_WAIT_MS);
    ck_assert(rec_find("b.hop")->has && tc_eq(&rec_find("b.hop")->tc, &tc));
    ck_assert(rec_find("c.sent")->has && tc_eq(&rec_find("c.sent")->tc, &tc)); // brg_send
    ck_assert(rec_find("c.hop")->has && tc_eq(&rec_find("c.hop")->tc, &tc));   // brg_forward
    brg_trace_set(NULL);
    ck_assert(!brg_trace_current(NULL, &got));
    brg_system_destroy(&sys);
}
END_TEST

//  brg_system_ask -> B asks C -> C replies -> B's callback replies to the
//  saved request: every hop carries the context, the callback has it back.
START_TEST(test_ask_and_reply_inherit)
{
    brg_system_t *sys = tu_system_new(2);
    spawn_bcd(sys);
    brg_trace_ctx_t tc = tc_make(7), got;
    brg_trace_set(&tc);
    brg_msg_t *q = brg_msg_new("ask");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(sys, s_b, &q, 5000, &reply), BRG_OK);
    ck_assert(brg_msg_trace(reply, &got) && tc_eq(&got, &tc)); // brg_reply_to
    ck_assert_int_eq(tu_msg_int(reply), BRG_OK);
    brg_msg_destroy(&reply);
    ck_assert(tc_eq(&rec_find("b.ask")->tc, &tc));
    ck_assert(tc_eq(&rec_find("c.q")->tc, &tc));        // brg_ask
    ck_assert(tc_eq(&rec_find("b.reply_cb")->tc, &tc)); // the asker's context again
    ck_assert(tc_eq(&rec_find("b.after_ask")->tc, &tc));
    brg_system_destroy(&sys);
}
END_TEST

START_TEST(test_timeout_callback_keeps_context)
{
    brg_system_t *sys = tu_system_new(2);
    spawn_bcd(sys);
    brg_trace_ctx_t tc = tc_make(9);
    brg_trace_set(&tc);
    brg_msg_t *q = brg_msg_new("ask_silent");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(sys, s_b, &q, 5000, &reply), BRG_OK);
    ck_assert_int_eq(tu_msg_int(reply), BRG_ETIMEDOUT);
    brg_msg_destroy(&reply);
    ck_assert(tc_eq(&rec_find("d.x")->tc, &tc));
    ck_assert(tc_eq(&rec_find("b.timeout_cb")->tc, &tc));
    brg_system_destroy(&sys);
}
END_TEST

//  A spawned actor's init runs in its spawner's context.
static int
child_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_OK;
}

static int
child_init(brg_ctx_t *ctx, void *arg)
{
    rec_ctx((const char *)arg, ctx);
    brg_msg_t *m = brg_msg_new("from_init");
    ck_assert_int_eq(brg_send(ctx, s_c, &m), BRG_OK);
    brg_stop(ctx);
    return BRG_OK;
}

static int
spawner_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    rec_ctx("s.go", ctx);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = child_init;
    opts.init_arg = "child.init";
    ck_assert_int_eq(brg_spawn(ctx, child_behaviour, &opts, NULL), BRG_OK);
    return BRG_OK;
}

START_TEST(test_spawn_init_inherits)
{
    brg_system_t *sys = tu_system_new(2);
    spawn_bcd(sys);
    brg_ref_t sp = tu_spawn(sys, spawner_behaviour);
    brg_trace_ctx_t tc = tc_make(5);
    brg_trace_set(&tc);
    ck_assert_int_eq(tu_send_tag(sys, sp, "go"), BRG_OK);
    // brg_system_spawn from this thread: its init runs in our context too.
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = child_init;
    opts.init_arg = "outside.init";
    ck_assert_int_eq(brg_system_spawn(sys, child_behaviour, &opts, NULL), BRG_OK);
    TU_WAIT_UNTIL(rec_has("child.init") && rec_has("outside.init") && rec_has("c.from_init"),
                  TU_WAIT_MS);
    ck_assert(tc_eq(&rec_find("child.init")->tc, &tc));
    ck_assert(tc_eq(&rec_find("outside.init")->tc, &tc));
    ck_assert(tc_eq(&rec_find("c.from_init")->tc, &tc));
    // Spawned with no context current: its init has none.
    brg_trace_set(NULL);
    opts.init_arg = "plain.init";
    ck_assert_int_eq(brg_system_spawn(sys, child_behaviour, &opts, NULL), BRG_OK);
    TU_WAIT_UNTIL(rec_has("plain.init"), TU_WAIT_MS);
    ck_assert(!rec_find("plain.init")->has);
    brg_system_destroy(&sys);
}
END_TEST

//  Timer messages belong to no trace.
static int
timer_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "arm")) {
        brg_msg_t *m = brg_msg_dup(msg); // carries the context: the timer clears it
        brg_msg_t *t = brg_msg_new("tick");
        brg_msg_destroy(&m);
        ck_assert_int_eq(brg_send_after(ctx, brg_self(ctx), &t, 1, NULL), BRG_OK);
    } else {
        rec_ctx("tick", ctx);
    }
    return BRG_OK;
}

START_TEST(test_timer_has_no_context)
{
    brg_system_t *sys = tu_system_new(2);
    brg_ref_t a = tu_spawn(sys, timer_behaviour);
    brg_trace_ctx_t tc = tc_make(3);
    brg_trace_set(&tc);
    ck_assert_int_eq(tu_send_tag(sys, a, "arm"), BRG_OK);
    TU_WAIT_UNTIL(rec_has("tick"), TU_WAIT_MS);
    ck_assert(!rec_find("tick")->has);
    brg_system_destroy(&sys);
}
END_TEST

START_TEST(test_traceparent)
{
    brg_trace_ctx_t tc = tc_make(0x10), back;
    char text[56];
    ck_assert_int_eq(brg_trace_format(&tc, text), BRG_OK);
    ck_assert_str_eq(text, "00-101112131415161718191a1b1c1d1e1f-b0b1b2b3b4b5b6b7-01");
    ck_assert_int_eq(brg_trace_parse(text, &back), BRG_OK);
    ck_assert(tc_eq(&tc, &back));
    // W3C's example.
    ck_assert_int_eq(
        brg_trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &back), BRG_OK);
    ck_assert_uint_eq(back.trace_id[0], 0x4b);
    ck_assert_uint_eq(back.span_id[7], 0xb7);
    const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",            // short
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",           // version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",           // upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",           // zero trace
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",           // zero span
        "00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",           // separator
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-something", // long
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(brg_trace_parse(bad[i], &back) == BRG_EINVAL, "accepted '%s'", bad[i]);
    memset(&tc, 0, sizeof tc);
    ck_assert_int_eq(brg_trace_format(&tc, text), BRG_EINVAL);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Spans.

//  A request from main(): root span, brg_system_ask to B, B asks C for a
//  tool, C's tool span. Parent links: root <- ask ask <- ask tool <- tool.
START_TEST(test_ask_spans_and_parents)
{
    brg_system_t *sys = traced_system(2);
    spawn_bcd(sys);
    brg_span_t *root = brg_system_trace_start(sys, "request", BRG_SPAN_SERVER);
    ck_assert_ptr_nonnull(root);
    brg_trace_ctx_t rc, cur;
    brg_span_context(root, &rc);
    ck_assert(brg_trace_current(NULL, &cur) && tc_eq(&cur, &rc)); // current while open
    brg_msg_t *q = brg_msg_new("ask_tool");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(sys, s_b, &q, 5000, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    brg_span_end(NULL, &root);
    ck_assert(!brg_trace_current(NULL, &cur)); // back to none
    // In C the tool span was current, and after it the ask's context again.
    ck_assert(!tc_eq(&rec_find("c.in_span")->tc, &rec_find("c.tool")->tc));
    ck_assert(tc_eq(&rec_find("c.after_span")->tc, &rec_find("c.tool")->tc));
    brg_system_destroy(&sys); // writes everything
    parse_hook_lines();
    ck_assert_int_eq(s_nspans, 4);
    const span_t *sr = span_named("request");
    const span_t *sa = span_named("ask ask_tool");
    const span_t *sb = span_named("ask tool");
    const span_t *st = span_named("execute_tool search");
    char trace[33];
    hex(rc.trace_id, 16, trace);
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(s_spans[i].trace, trace);
    ck_assert_str_eq(sr->parent, "");
    ck_assert_str_eq(sa->parent, sr->span);
    ck_assert_str_eq(sb->parent, sa->span);
    ck_assert_str_eq(st->parent, sb->span);
    // What C saw while its span was open is the span; in c.tool, ask tool.
    char id[17];
    hex(rec_find("c.in_span")->tc.span_id, 8, id);
    ck_assert_str_eq(id, st->span);
    hex(rec_find("c.tool")->tc.span_id, 8, id);
    ck_assert_str_eq(id, sb->span);
    ck_assert_int_eq(sr->kind, BRG_SPAN_SERVER);
    ck_assert_int_eq(sa->kind, BRG_SPAN_CLIENT);
    ck_assert_int_eq(st->kind, BRG_SPAN_INTERNAL);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(s_spans[i].status, 1);
    ck_assert_str_eq(attr_str(sb, "brg.msg.tag"), "tool");
    ck_assert_str_eq(attr_int(sb, "brg.ask.timeout_ms"), "5000");
    char cref[80];
    brg_ref_format(s_c, cref, sizeof cref);
    ck_assert_str_eq(attr_str(sb, "brg.ask.to"), cref);
    ck_assert_str_eq(attr_str(st, "gen_ai.tool.name"), "search");
    ck_assert_str_eq(attr_str(st, "gen_ai.tool.call.id"), "call_1");
    ck_assert_str_eq(attr_str(st, "gen_ai.operation.name"), "execute_tool");
    // Resource attributes.
    json_t *res = sr->resource;
    ck_assert_str_eq(jstr(attr(res, "service.name"), "stringValue"), "trace-test");
    ck_assert_str_eq(jstr(attr(res, "brg.node.name"), "stringValue"), "node-a");
    ck_assert_int_eq((int)strlen(jstr(attr(res, "service.instance.id"), "stringValue")), 36);
}
END_TEST

START_TEST(test_ask_timeout_span)
{
    brg_system_t *sys = traced_system(2);
    spawn_bcd(sys);
    brg_span_t *root = brg_system_trace_start(sys, "request", BRG_SPAN_SERVER);
    brg_msg_t *q = brg_msg_new("ask_silent");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(sys, s_b, &q, 5000, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    brg_span_end(NULL, &root);
    brg_system_destroy(&sys);
    parse_hook_lines();
    const span_t *sx = span_named("ask x");
    ck_assert_int_eq(sx->status, 2);
    ck_assert_str_eq(attr_str(sx, "error.type"), "BRG_ETIMEDOUT");
    ck_assert_str_eq(sx->status_msg, brg_strerror(BRG_ETIMEDOUT));
    ck_assert_int_eq(span_named("ask ask_silent")->status, 1);
    // The callback ran in B's context (the outer ask span), not in ask x.
    char id[17];
    hex(rec_find("b.timeout_cb")->tc.span_id, 8, id);
    ck_assert_str_eq(id, span_named("ask ask_silent")->span);
}
END_TEST

//  An ask made with no context current makes no span (spans live in traces).
START_TEST(test_no_trace_no_ask_span)
{
    brg_system_t *sys = traced_system(2);
    spawn_bcd(sys);
    brg_trace_set(NULL);
    brg_msg_t *q = brg_msg_new("ask");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(sys, s_b, &q, 5000, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    brg_trace_stats_t st;
    brg_trace_stats(sys, &st);
    ck_assert_uint_eq(st.spans_ended, 0);
    brg_system_destroy(&sys);
    ck_assert_int_eq(s_nlines, 0);
}
END_TEST

//  Gather: a span around the asks, the asks its children, done back in the
//  context of the call that gathered.
static int
gather_done(brg_ctx_t *ctx, const brg_gather_result_t *res, void *arg)
{
    (void)res;
    rec_ctx("g.done", ctx);
    brg_msg_t *request = arg;
    brg_msg_t *r = brg_msg_new_int("ok", (int64_t)brg_gather_result_ok_count(res));
    brg_reply_to(ctx, request, &r);
    brg_msg_destroy(&request);
    return BRG_OK;
}

static int
gather_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    rec_ctx("g.start", ctx);
    brg_ref_t targets[3] = {s_c, s_c, s_c};
    brg_msg_t *q = brg_msg_new("q");
    ck_assert_int_eq(brg_gather(ctx, targets, 3, &q, 5000, gather_done, brg_msg_dup(msg)), BRG_OK);
    rec_ctx("g.after", ctx);
    return BRG_OK;
}

START_TEST(test_gather_spans)
{
    brg_system_t *sys = traced_system(2);
    spawn_bcd(sys);
    brg_ref_t g = tu_spawn(sys, gather_behaviour);
    brg_span_t *root = brg_system_trace_start(sys, "request", BRG_SPAN_SERVER);
    brg_msg_t *q = brg_msg_new("go");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(sys, g, &q, 5000, &reply), BRG_OK);
    ck_assert_int_eq(tu_msg_int(reply), 3);
    brg_msg_destroy(&reply);
    brg_span_end(NULL, &root);
    ck_assert(tc_eq(&rec_find("g.done")->tc, &rec_find("g.start")->tc));
    ck_assert(tc_eq(&rec_find("g.after")->tc, &rec_find("g.start")->tc));
    brg_system_destroy(&sys);
    parse_hook_lines();
    const span_t *sg = span_named("gather q");
    ck_assert_str_eq(sg->parent, span_named("ask go")->span);
    ck_assert_str_eq(attr_int(sg, "brg.gather.targets"), "3");
    ck_assert_str_eq(attr_int(sg, "brg.gather.ok"), "3");
    ck_assert_int_eq(spans_named("ask q"), 3);
    for (int i = 0; i < s_nspans; i++)
        if (strcmp(s_spans[i].name, "ask q") == 0)
            ck_assert_str_eq(s_spans[i].parent, sg->span);
}
END_TEST

//  brg_system_gather from a traced thread: its helper gathers in that trace.
START_TEST(test_system_gather_in_the_callers_trace)
{
    brg_system_t *sys = traced_system(2);
    spawn_bcd(sys);
    brg_span_t *root = brg_system_trace_start(sys, "request", BRG_SPAN_SERVER);
    brg_ref_t targets[2] = {s_c, s_c};
    int statuses[2];
    brg_msg_t *replies[2];
    brg_msg_t *q = brg_msg_new("q");
    ck_assert_int_eq(brg_system_gather(sys, targets, 2, &q, 5000, statuses, replies), 2);
    for (int i = 0; i < 2; i++)
        brg_msg_destroy(&replies[i]);
    brg_span_end(NULL, &root);
    brg_system_destroy(&sys);
    parse_hook_lines();
    const span_t *sg = span_named("gather q");
    ck_assert_str_eq(sg->parent, span_named("request")->span);
    ck_assert_str_eq(sg->trace, span_named("request")->trace);
    ck_assert_int_eq(spans_named("ask q"), 2);
}
END_TEST

//  brg_trace_enter: a context that came another way (a traceparent).
static int
enter_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_trace_ctx_t tc;
    ck_assert_int_eq(
        brg_trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &tc), BRG_OK);
    brg_trace_enter(ctx, &tc);
    rec_ctx("e.entered", ctx);
    brg_msg_t *m = brg_msg_new("sent");
    ck_assert_int_eq(brg_send(ctx, s_c, &m), BRG_OK);
    brg_trace_enter(ctx, NULL);
    rec_ctx("e.none", ctx);
    (void)msg;
    return BRG_OK;
}

START_TEST(test_trace_enter)
{
    brg_system_t *sys = tu_system_new(2);
    spawn_bcd(sys);
    brg_ref_t e = tu_spawn(sys, enter_behaviour);
    ck_assert_int_eq(tu_send_tag(sys, e, "go"), BRG_OK);
    TU_WAIT_UNTIL(rec_has("c.sent"), TU_WAIT_MS);
    ck_assert(rec_find("e.entered")->has);
    ck_assert_uint_eq(rec_find("c.sent")->tc.trace_id[0], 0x4b);
    ck_assert_uint_eq(rec_find("c.sent")->tc.span_id[7], 0xb7);
    ck_assert(!rec_find("e.none")->has);
    brg_system_destroy(&sys);
}
END_TEST

//  User spans in a behaviour: nesting, leave, end in a later call, model
//  attributes, arrays, doubles, escapes, the attribute limit.
static brg_span_t *s_model_span;

static int
model_user(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "start")) {
        brg_trace_ctx_t before, in_a, in_b, after;
        brg_trace_current(ctx, &before);
        brg_span_t *a = brg_span_start(ctx, "chat test-model", BRG_SPAN_CLIENT);
        ck_assert_ptr_nonnull(a);
        brg_trace_current(ctx, &in_a);
        brg_span_t *b = brg_span_start(ctx, "inner \"quoted\"\nline", BRG_SPAN_INTERNAL);
        brg_trace_current(ctx, &in_b);
        ck_assert(memcmp(in_a.trace_id, in_b.trace_id, 16) == 0);
        ck_assert(!tc_eq(&in_a, &in_b));
        brg_span_end(ctx, &b);
        brg_trace_current(ctx, &after);
        ck_assert(tc_eq(&after, &in_a));
        brg_span_set_str(a, BRG_ATTR_GEN_AI_OPERATION_NAME, "chat");
        brg_span_set_str(a, BRG_ATTR_GEN_AI_REQUEST_MODEL, "test-model");
        brg_span_set_double(a, BRG_ATTR_GEN_AI_REQUEST_TEMPERATURE, 0.25);
        brg_span_set_int(a, BRG_ATTR_GEN_AI_USAGE_INPUT_TOKENS, 1); // replaced below
        brg_span_leave(ctx, a);                                     // open, no longer current
        brg_trace_current(ctx, &after);
        ck_assert(tc_eq(&after, &before));
        s_model_span = a;
        brg_send_tag(ctx, brg_self(ctx), "finish");
    } else {
        brg_span_t *a = s_model_span;
        brg_span_set_int(a, BRG_ATTR_GEN_AI_USAGE_INPUT_TOKENS, 12);
        brg_span_set_int(a, BRG_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, -34);
        brg_span_set_str(a, BRG_ATTR_GEN_AI_RESPONSE_MODEL, "test-model-1");
        const char *reasons[] = {"stop", "length"};
        ck_assert_int_eq(brg_span_set_strs(a, BRG_ATTR_GEN_AI_RESPONSE_FINISH_REASONS, reasons, 2),
                         BRG_OK);
        ck_assert_int_eq(brg_span_set_str(a, NULL, "v"), BRG_EINVAL);
        int rc = BRG_OK;
        for (int i = 0; i < 40 && rc == BRG_OK; i++) {
            char key[16];
            snprintf(key, sizeof key, "extra.%d", i);
            rc = brg_span_set_int(a, key, i);
        }
        ck_assert_int_eq(rc, BRG_EMSGSIZE);
        brg_span_set_error(a, BRG_EHTTP, "HTTP 500\tfrom model");
        // Not UTF-8 (tags may be any bytes): the line must stay JSON.
        brg_span_t *bad = brg_span_start(ctx, "bad \xff\xc3\x28 \xed\xa0\x80 caf\xc3\xa9", 1);
        brg_span_set_str(bad, "k\xfe", "\xc0\xaf");
        brg_span_end(ctx, &bad);
        brg_span_end(ctx, &a);
        rec_ctx("m.done", ctx);
    }
    return BRG_OK;
}

START_TEST(test_user_spans_attributes)
{
    brg_system_t *sys = traced_system(2);
    brg_ref_t m = tu_spawn(sys, model_user);
    brg_span_t *root = brg_system_trace_start(sys, "request", BRG_SPAN_SERVER);
    ck_assert_int_eq(tu_send_tag(sys, m, "start"), BRG_OK);
    brg_span_end(NULL, &root);
    TU_WAIT_UNTIL(rec_has("m.done"), TU_WAIT_MS);
    brg_system_destroy(&sys);
    parse_hook_lines();
    ck_assert_int_eq(s_nspans, 4);
    // Each bad byte is U+FFFD; "café" stays as it is.
    const char *bad_name = "bad \xef\xbf\xbd\xef\xbf\xbd( \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                           "caf\xc3\xa9";
    ck_assert_str_eq(attr_str(span_named(bad_name), "k\xef\xbf\xbd"), "\xef\xbf\xbd\xef\xbf\xbd");
    const span_t *sa = span_named("chat test-model");
    const span_t *sb = span_named("inner \"quoted\"\nline");
    ck_assert_str_eq(sb->parent, sa->span);
    ck_assert_str_eq(sa->parent, span_named("request")->span);
    ck_assert_str_eq(attr_int(sa, "gen_ai.usage.input_tokens"), "12");
    ck_assert_str_eq(attr_int(sa, "gen_ai.usage.output_tokens"), "-34");
    ck_assert_str_eq(attr_str(sa, "gen_ai.response.model"), "test-model-1");
    json_t *t = json_object_get(attr(sa->attrs, "gen_ai.request.temperature"), "doubleValue");
    ck_assert(json_is_real(t) && json_real_value(t) == 0.25);
    json_t *fr = json_object_get(
        json_object_get(attr(sa->attrs, "gen_ai.response.finish_reasons"), "arrayValue"), "values");
    ck_assert_int_eq((int)json_array_size(fr), 2);
    ck_assert_str_eq(jstr(json_array_get(fr, 1), "stringValue"), "length");
    ck_assert_int_eq((int)json_array_size(sa->attrs), 33); // 32 and error.type
    ck_assert_int_eq(sa->status, 2);
    ck_assert_str_eq(sa->status_msg, "HTTP 500\tfrom model");
    ck_assert_str_eq(attr_str(sa, "error.type"), "BRG_EHTTP");
}
END_TEST

//  A trace file: BRG_TRACE_FILE turns tracing on; each line is one JSON
//  object, appended.
START_TEST(test_file_from_env)
{
    char path[] = "/tmp/brg_trace_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    setenv("BRG_TRACE_FILE", path, 1);
    setenv("OTEL_SERVICE_NAME", "from-env", 1);
    for (int round = 0; round < 2; round++) {
        brg_system_t *sys = tu_system_new(2);
        ck_assert(brg_trace_enabled(sys));
        for (int i = 0; i < 3; i++) {
            brg_span_t *s = brg_system_trace_start(sys, "file span", BRG_SPAN_INTERNAL);
            brg_span_end(NULL, &s);
        }
        brg_system_destroy(&sys);
    }
    unsetenv("BRG_TRACE_FILE");
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[65536];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        ck_assert(len > 0 && line[len - 1] == '\n');
        parse_line(line);
        lines++;
    }
    fclose(f);
    unlink(path);
    ck_assert_int_ge(lines, 2); // appended: both systems' lines
    ck_assert_int_eq(s_nspans, 6);
    ck_assert_int_eq(spans_named("file span"), 6);
    ck_assert_str_eq(jstr(attr(s_spans[0].resource, "service.name"), "stringValue"), "from-env");
    // Each root has its own trace.
    for (int i = 1; i < s_nspans; i++)
        ck_assert_str_ne(s_spans[i].trace, s_spans[0].trace);
}
END_TEST

START_TEST(test_bad_file_is_logged_and_off)
{
    tu_log_clear();
    brg_config_t cfg;
    tu_config(&cfg, 1);
    cfg.trace_file = "/nonexistent-dir/brg/trace.jsonl";
    cfg.log_fn = tu_log_keep;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    ck_assert(!brg_trace_enabled(sys));
    ck_assert_int_eq(tu_log_count("cannot open trace file", "/nonexistent-dir/brg"), 1);
    brg_system_destroy(&sys);
}
END_TEST

//  The buffer is bounded: with the export thread held in the hook, spans
//  beyond trace_buffer are dropped and counted, never queued.
static atomic_int s_gate, s_in_hook;

static void
hook_block(void *arg, const char *json, size_t len)
{
    hook_keep(arg, json, len);
    atomic_store(&s_in_hook, 1);
    tu_gate_wait(&s_gate);
}

START_TEST(test_buffer_overflow_counted)
{
    tu_log_clear();
    brg_config_t cfg;
    tu_config(&cfg, 1);
    cfg.log_fn = tu_log_keep;
    cfg.trace_hook = hook_block;
    cfg.trace_buffer = 4;
    cfg.trace_flush_ms = 5;
    brg_system_t *sys = brg_system_new(&cfg);
    brg_span_t *s = brg_system_trace_start(sys, "first", BRG_SPAN_INTERNAL);
    brg_span_end(NULL, &s);
    TU_WAIT_UNTIL(atomic_load(&s_in_hook), TU_WAIT_MS); // held, with "first" taken
    for (int i = 0; i < 20; i++) {
        s = brg_system_trace_start(sys, "more", BRG_SPAN_INTERNAL);
        ck_assert_ptr_nonnull(s);
        brg_span_end(NULL, &s);
    }
    brg_trace_stats_t st;
    brg_trace_stats(sys, &st);
    ck_assert_uint_eq(st.spans_ended, 21);
    ck_assert_uint_eq(st.spans_dropped, 16);
    atomic_store(&s_gate, 1);
    TU_WAIT_UNTIL((brg_trace_stats(sys, &st), st.spans_exported == 5), TU_WAIT_MS);
    brg_system_destroy(&sys);
    parse_hook_lines();
    ck_assert_int_eq(s_nspans, 5);
    ck_assert_int_eq(spans_named("more"), 4);
    ck_assert_int_eq(tu_log_count("16 spans dropped", "buffer of 4 spans full"), 1);
}
END_TEST

//  Many actors end spans at once (TSan: the queue; ASan: nothing leaks).
static int
busy_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    for (int i = 0; i < 50; i++) {
        brg_span_t *s = brg_span_start(ctx, "busy", BRG_SPAN_INTERNAL);
        brg_span_set_int(s, "i", i);
        brg_span_end(ctx, &s);
    }
    return BRG_OK;
}

START_TEST(test_concurrent_spans)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.trace_hook = hook_keep;
    cfg.trace_buffer = 100000;
    brg_system_t *sys = brg_system_new(&cfg);
    brg_span_t *root = brg_system_trace_start(sys, "root", BRG_SPAN_INTERNAL);
    for (int i = 0; i < 8; i++) {
        brg_ref_t a = tu_spawn(sys, busy_behaviour);
        ck_assert_int_eq(tu_send_tag(sys, a, "go"), BRG_OK);
        ck_assert_int_eq(tu_send_tag(sys, a, "go"), BRG_OK);
    }
    brg_span_end(NULL, &root);
    brg_trace_stats_t st;
    TU_WAIT_UNTIL((brg_trace_stats(sys, &st), st.spans_ended == 801), TU_WAIT_MS);
    brg_system_destroy(&sys);
    parse_hook_lines();
    ck_assert_int_eq(spans_named("busy"), 800);
    for (int i = 0; i < s_nspans; i++)
        if (strcmp(s_spans[i].name, "busy") == 0)
            ck_assert_str_eq(s_spans[i].parent, span_named("root")->span);
}
END_TEST

static Suite *
trace_suite(void)
{
    Suite *s = suite_create("runtime.trace");
    TCase *tc = tcase_create("context");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_off_by_default);
    tcase_add_test(tc, test_no_context_is_none);
    tcase_add_test(tc, test_send_and_forward_inherit);
    tcase_add_test(tc, test_ask_and_reply_inherit);
    tcase_add_test(tc, test_timeout_callback_keeps_context);
    tcase_add_test(tc, test_timer_has_no_context);
    tcase_add_test(tc, test_spawn_init_inherits);
    tcase_add_test(tc, test_traceparent);
    tcase_add_test(tc, test_trace_enter);
    suite_add_tcase(s, tc);
    tc = tcase_create("spans");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_ask_spans_and_parents);
    tcase_add_test(tc, test_ask_timeout_span);
    tcase_add_test(tc, test_no_trace_no_ask_span);
    tcase_add_test(tc, test_gather_spans);
    tcase_add_test(tc, test_system_gather_in_the_callers_trace);
    tcase_add_test(tc, test_user_spans_attributes);
    tcase_add_test(tc, test_file_from_env);
    tcase_add_test(tc, test_bad_file_is_logged_and_off);
    tcase_add_test(tc, test_buffer_overflow_counted);
    tcase_add_test(tc, test_concurrent_spans);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(trace_suite());
}
