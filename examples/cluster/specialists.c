//  specialists - the document assistant's three specialists as a
//  brigade-node plugin: brg_plugin_register registers the kinds "analyser",
//  "summariser" and "checker", so a node's config file can start one of
//  them under a supervisor, registered by name (analyser.json and the
//  others in this folder).
//
//  A specialist answers "work" [document, text] with "result" [json,
//  busy_us, work_us]: json is its part of the report (the offline text
//  backend's answer, examples/assistant/report.c), busy_us its own time for
//  the request, work_us the text work in it. A request it cannot read is
//  answered with the error BRG_EBADMSG (an ask) and logged. Its one
//  argument, "latency_ms" (integer 0..60000, default 25), makes every
//  request wait that long first: a sleep standing in for a language model,
//  so a run lasts long enough to kill a node in the middle of it. The kinds
//  are blocking (they sleep) and marked BRG_KIND_REMOTE, so another node may
//  also spawn one (brg_spawn_remote).
#include "../assistant/report.h"

#include <brigade.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const s_names[KINDS] = {"analyser", "summariser", "checker"};

typedef struct {
    int kind;       // ANALYSER, SUMMARISER or CHECKER
    int latency_ms; // the simulated model's time per request
} specialist_t;

static int64_t
s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  The args map: {"latency_ms": n} or empty. Anything else fails the init.
static int
s_init(brg_ctx_t *ctx, const brg_msg_t *args, int kind)
{
    specialist_t *self = brg_state(ctx);
    self->kind = kind;
    self->latency_ms = 25;
    if (brg_msg_size(args) == 0)
        return BRG_OK;
    size_t pos = 0;
    uint32_t n;
    int rc = brg_msg_read_map(args, &pos, &n);
    for (uint32_t i = 0; rc == BRG_OK && i < n; i++) {
        const char *key;
        size_t len;
        int64_t v;
        rc = brg_msg_read_str(args, &pos, &key, &len);
        if (rc != BRG_OK)
            break;
        if (len != 10 || memcmp(key, "latency_ms", 10) != 0) {
            brg_log(ctx, BRG_LOG_ERROR, "%s: unknown argument \"%.*s\" (it takes: latency_ms)",
                    s_names[kind], (int)len, key);
            return BRG_EINVAL;
        }
        rc = brg_msg_read_int(args, &pos, &v);
        if (rc == BRG_OK && (v < 0 || v > 60000))
            rc = BRG_ERANGE;
        if (rc == BRG_OK)
            self->latency_ms = (int)v;
    }
    if (rc != BRG_OK)
        brg_log(ctx, BRG_LOG_ERROR, "%s: bad arguments: %s (latency_ms: an integer 0..60000)",
                s_names[kind], brg_strerror(rc));
    return rc;
}

static int
s_init_analyser(brg_ctx_t *ctx, const brg_msg_t *args)
{
    return s_init(ctx, args, ANALYSER);
}

static int
s_init_summariser(brg_ctx_t *ctx, const brg_msg_t *args)
{
    return s_init(ctx, args, SUMMARISER);
}

static int
s_init_checker(brg_ctx_t *ctx, const brg_msg_t *args)
{
    return s_init(ctx, args, CHECKER);
}

static int
s_specialist(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    specialist_t *self = brg_state(ctx);
    size_t pos = 0, len;
    int64_t document;
    const char *text;
    if (!brg_msg_is(msg, "work"))
        return BRG_UNHANDLED;
    if (brg_msg_read_int(msg, &pos, &document) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &text, &len) != BRG_OK) {
        brg_log(ctx, BRG_LOG_WARNING, "%s: a \"work\" request without [document, text]: refused",
                s_names[self->kind]);
        brg_reply_error(ctx, BRG_EBADMSG);
        return BRG_OK;
    }
    int64_t start = s_now_us();
    if (self->latency_ms > 0) {
        struct timespec ts = {self->latency_ms / 1000, (self->latency_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    int64_t work_start = s_now_us();
    json_t *result = report_work(self->kind, text, len);
    char *json = result ? json_dumps(result, JSON_COMPACT | JSON_REAL_PRECISION(4)) : NULL;
    json_decref(result);
    int64_t end = s_now_us();
    brg_msg_t *reply = json ? brg_msg_new("result") : NULL;
    if (reply != NULL &&
        (brg_msg_add_str(reply, json) != BRG_OK || brg_msg_add_int(reply, end - start) != BRG_OK ||
         brg_msg_add_int(reply, end - work_start) != BRG_OK))
        brg_msg_destroy(&reply);
    free(json);
    if (reply == NULL) {
        brg_log(ctx, BRG_LOG_WARNING, "%s: document %lld: the text backend failed",
                s_names[self->kind], (long long)document);
        brg_reply_error(ctx, BRG_EFAILED);
        return BRG_OK;
    }
    brg_reply(ctx, &reply);
    return BRG_OK;
}

BRG_EXPORT int brg_plugin_register(brg_system_t *sys);

int
brg_plugin_register(brg_system_t *sys)
{
    static const brg_kind_init_fn inits[KINDS] = {s_init_analyser, s_init_summariser,
                                                  s_init_checker};
    json_object_seed(0); // before any worker thread hashes a key (a no-op once seeded)
    for (int k = 0; k < KINDS; k++) {
        brg_kind_t kind;
        brg_kind_init(&kind);
        kind.behaviour = s_specialist;
        kind.init = inits[k];
        kind.state_size = sizeof(specialist_t);
        kind.spawn_flags = BRG_SPAWN_BLOCKING; // it sleeps: keep it off the workers
        kind.flags = BRG_KIND_REMOTE;
        int rc = brg_kind_register(sys, s_names[k], &kind);
        if (rc != BRG_OK)
            return rc;
    }
    return BRG_OK;
}
