//  test_trace_node - a trace across two nodes in one process (inproc://):
//  the context rides in the wire envelope, and each node's OTLP lines link
//  its spans to the other's by trace id and parent span id.
#include "test_util.h"

#include <jansson.h>
#include <unistd.h>

//  Each node's exported lines (hook arg = node index).
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static char *s_lines[2][256];
static int s_nlines[2];

static void
hook_keep(void *arg, const char *json, size_t len)
{
    int i = (int)(intptr_t)arg;
    pthread_mutex_lock(&s_lock);
    if (s_nlines[i] < 256)
        s_lines[i][s_nlines[i]++] = strndup(json, len);
    pthread_mutex_unlock(&s_lock);
}

typedef struct {
    char trace[33], span[17], parent[17], name[64], node[64];
} span_t;

static span_t s_spans[64];
static int s_nspans;

static void
parse_node(int i)
{
    for (int l = 0; l < s_nlines[i]; l++) {
        json_error_t err;
        json_t *root = json_loads(s_lines[i][l], 0, &err);
        ck_assert_msg(root != NULL, "not JSON: %s", err.text);
        json_t *rs = json_array_get(json_object_get(root, "resourceSpans"), 0);
        const char *node = NULL;
        json_t *rattrs = json_object_get(json_object_get(rs, "resource"), "attributes");
        for (size_t k = 0; k < json_array_size(rattrs); k++) {
            json_t *a = json_array_get(rattrs, k);
            if (strcmp(json_string_value(json_object_get(a, "key")), "brg.node.name") == 0)
                node =
                    json_string_value(json_object_get(json_object_get(a, "value"), "stringValue"));
        }
        ck_assert_ptr_nonnull(node);
        json_t *spans =
            json_object_get(json_array_get(json_object_get(rs, "scopeSpans"), 0), "spans");
        for (size_t k = 0; k < json_array_size(spans); k++) {
            json_t *s = json_array_get(spans, k);
            ck_assert_int_lt(s_nspans, 64);
            span_t *out = &s_spans[s_nspans++];
            memset(out, 0, sizeof *out);
            snprintf(out->trace, sizeof out->trace, "%s",
                     json_string_value(json_object_get(s, "traceId")));
            snprintf(out->span, sizeof out->span, "%s",
                     json_string_value(json_object_get(s, "spanId")));
            const char *p = json_string_value(json_object_get(s, "parentSpanId"));
            snprintf(out->parent, sizeof out->parent, "%s", p ? p : "");
            snprintf(out->name, sizeof out->name, "%s",
                     json_string_value(json_object_get(s, "name")));
            snprintf(out->node, sizeof out->node, "%s", node);
        }
        json_decref(root);
    }
}

static const span_t *
span_named(const char *name)
{
    for (int i = 0; i < s_nspans; i++)
        if (strcmp(s_spans[i].name, name) == 0)
            return &s_spans[i];
    ck_abort_msg("no span named '%s'", name);
    return NULL;
}

static brg_system_t *s_sys[2];
static brg_node_t *s_node[2];
static brg_ref_t s_peer_b; // node B's node ref, as A knows it

static void
make_node(int i, const char *name)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.trace_hook = hook_keep;
    cfg.trace_hook_arg = (void *)(intptr_t)i;
    cfg.trace_node_name = name;
    cfg.trace_flush_ms = 10;
    s_sys[i] = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(s_sys[i]);
    brg_node_config_t nc;
    brg_node_config_init(&nc);
    nc.name = name;
    char ep[128];
    snprintf(ep, sizeof ep, "inproc://test-trace-%d-%d", (int)getpid(), i);
    nc.listen[0] = ep;
    s_node[i] = brg_node_new(s_sys[i], &nc);
    ck_assert_ptr_nonnull(s_node[i]);
}

//  On B: what the specialist saw.
static brg_trace_ctx_t s_seen_ask, s_seen_note;
static atomic_int s_notes;

static int
specialist(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "note")) {
        brg_trace_current(ctx, &s_seen_note);
        atomic_store(&s_notes, 1);
        return BRG_OK;
    }
    brg_trace_current(ctx, &s_seen_ask);
    brg_span_t *span = brg_span_start(ctx, "execute_tool lookup", BRG_SPAN_INTERNAL);
    brg_span_set_str(span, BRG_ATTR_GEN_AI_TOOL_NAME, "lookup");
    brg_msg_t *r = brg_msg_new_str("answer", "42");
    ck_assert_int_eq(brg_reply(ctx, &r), BRG_OK); // a child of the tool span
    brg_span_end(ctx, &span);
    return BRG_OK;
}

//  On A: asks the specialist on B by name, and sends it a note.
static brg_trace_ctx_t s_seen_reply;

static int
coord_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    brg_msg_t *request = arg;
    ck_assert_int_eq(status, BRG_OK);
    brg_msg_trace(reply, &s_seen_reply); // what B stamped on its reply
    brg_msg_t *r = brg_msg_new_int("done", status);
    brg_reply_to(ctx, request, &r);
    brg_msg_destroy(&request);
    return BRG_OK;
}

static int
coordinator(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_msg_t *note = brg_msg_new("note");
    ck_assert_int_eq(brg_send_named_at(ctx, s_peer_b, "specialist", &note), BRG_OK);
    brg_msg_t *q = brg_msg_new("q");
    ck_assert_int_eq(
        brg_ask_named_at(ctx, s_peer_b, "specialist", &q, 5000, coord_on_reply, brg_msg_dup(msg)),
        BRG_OK);
    return BRG_OK;
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

START_TEST(test_trace_crosses_nodes)
{
    make_node(0, "node-a");
    make_node(1, "node-b");
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "specialist";
    ck_assert_int_eq(brg_system_spawn(s_sys[1], specialist, &opts, NULL), BRG_OK);
    char ep[256];
    ck_assert_int_eq(brg_node_endpoint(s_node[1], 0, ep, sizeof ep), BRG_OK);
    ck_assert_int_eq(brg_node_connect(s_node[0], ep, 5000, &s_peer_b), BRG_OK);
    brg_ref_t coord;
    ck_assert_int_eq(brg_system_spawn(s_sys[0], coordinator, NULL, &coord), BRG_OK);

    brg_span_t *root = brg_system_trace_start(s_sys[0], "user request", BRG_SPAN_SERVER);
    brg_trace_ctx_t rc;
    brg_span_context(root, &rc);
    brg_msg_t *go = brg_msg_new("go");
    brg_msg_t *reply = NULL;
    ck_assert_int_eq(brg_system_ask(s_sys[0], coord, &go, 10000, &reply), BRG_OK);
    brg_msg_destroy(&reply);
    brg_span_end(NULL, &root);
    brg_trace_set(NULL);
    TU_WAIT_UNTIL(atomic_load(&s_notes), TU_WAIT_MS);
    ck_assert_int_eq(brg_system_destroy(&s_sys[0]), BRG_OK);
    ck_assert_int_eq(brg_system_destroy(&s_sys[1]), BRG_OK);

    parse_node(0);
    int on_a = s_nspans;
    parse_node(1);
    ck_assert_int_eq(on_a, 3);            // user request, ask go, ask q
    ck_assert_int_eq(s_nspans - on_a, 1); // execute_tool lookup
    char trace[33];
    hex(rc.trace_id, 16, trace);
    for (int i = 0; i < s_nspans; i++)
        ck_assert_str_eq(s_spans[i].trace, trace);
    const span_t *go_span = span_named("ask go");
    const span_t *q_span = span_named("ask q");
    const span_t *tool = span_named("execute_tool lookup");
    ck_assert_str_eq(q_span->node, "node-a");
    ck_assert_str_eq(tool->node, "node-b");
    ck_assert_str_eq(q_span->parent, go_span->span);
    ck_assert_str_eq(tool->parent, q_span->span); // across the wire
    // What B's actor saw: the ask span of A; the note: the coordinator's
    // context (ask go); B's reply: the tool span's context.
    char id[17];
    hex(s_seen_ask.trace_id, 16, trace);
    ck_assert_str_eq(trace, q_span->trace);
    hex(s_seen_ask.span_id, 8, id);
    ck_assert_str_eq(id, q_span->span);
    ck_assert_uint_eq(s_seen_ask.flags, BRG_TRACE_SAMPLED);
    hex(s_seen_note.span_id, 8, id);
    ck_assert_str_eq(id, go_span->span);
    hex(s_seen_reply.span_id, 8, id);
    ck_assert_str_eq(id, tool->span);
}
END_TEST

static Suite *
trace_node_suite(void)
{
    Suite *s = suite_create("transport.trace_node");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_trace_crosses_nodes);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(trace_node_suite());
}
