//  trace - trace contexts, spans and their OTLP/JSON export
//
//  Design notes.
//
//  Context. Every message has room for a context (msg.h: trace_flags in the
//  first cache line, the 24 id bytes at the end). A behaviour's current
//  context is its message's, or the ctx's own copy while a span started in
//  the call is open (actor.h, struct brg_ctx); an outside thread's is a
//  thread-local (brg__trace_tls, initial-exec: a plain %fs load). Every
//  send stamps the outgoing message from the current context; with none
//  that is a byte copied and a branch not taken, whether tracing is on or
//  off. So contexts travel even through a node whose tracing is off (W3C:
//  propagate what you do not record), and only recording costs when on.
//
//  Spans. A span is one malloc: its ids, times, name and attributes. It
//  belongs to the thread using it (an actor's, in turn). Ending stamps the
//  time and queues it for export; the export thread formats and frees it.
//  Ids come from a per-thread xoshiro256** seeded from getrandom: no lock,
//  no syscall per id.
//
//  Export. One queue per system under a mutex: a worker ending a span holds
//  it for a pointer append (no I/O, no allocation under it), and signals the
//  export thread only when a batch's worth is waiting. The export thread
//  takes the whole list under the lock and formats and writes without it,
//  so a slow disk or hook never holds a worker. The queue is bounded
//  (cfg.trace_buffer): a span ended while it is full is freed and counted as
//  dropped. Destroy stops the thread after the workers: every span ended
//  before is written.
#include "runtime_internal.h"

#include <inttypes.h>
#include <sys/random.h>

_Thread_local brg__tctx_t brg__trace_tls __attribute__((tls_model("initial-exec")));

#define S_NAME_MAX 127
#define S_ATTRS_MAX 32
#define S_STRS_MAX 32
#define S_BATCH_WAKE 256 // queued spans that wake the export thread early
#define S_LINE_SPANS 512 // spans in one OTLP line at most
#define S_BUFFER_DEFAULT 4096
#define S_FLUSH_DEFAULT_MS 200

typedef enum { S_STR, S_INT, S_DOUBLE, S_STRS } s_attr_type_t;

typedef struct {
    char *key;
    s_attr_type_t type;
    union {
        char *s;
        int64_t i;
        double d;
        struct {
            char **v;
            size_t n;
        } strs;
    } u;
} s_attr_t;

struct brg_span {
    struct brg_span *next;  // export queue link (tracer lock)
    brg__tracer_t *tracer;  // where it goes when ended
    uint8_t trace_id[16];   //
    uint8_t span_id[8];     //
    uint8_t parent_id[8];   // all zero for a root
    uint8_t flags;          // W3C flags (sampled)
    uint8_t kind;           // brg_span_kind_t
    bool failed;            // status ERROR
    brg__tctx_t prev;       // the current context before it (brg_span_start):
                            //   restored when it ends or leaves while current
    uint64_t start_ns;      // CLOCK_REALTIME
    uint64_t end_ns;        //
    char *status_msg;       // with failed, or NULL
    const char *error_type; // with failed: the code's name (static), written as
                            //   "error.type" unless an attribute of that key is set
    uint32_t nattrs;        //
    s_attr_t attrs[S_ATTRS_MAX];
    char name[S_NAME_MAX + 1];
};

struct brg__tracer {
    brg_system_t *sys;
    char *path;                // trace file, or NULL
    FILE *file;                // open for append, or NULL
    brg_trace_hook_fn hook;    // or NULL
    void *hook_arg;            //
    char *service;             // resource service.name
    char *node_name;           // resource brg.node.name, or NULL
    char node[37];             // node UUID text
    uint32_t cap;              // spans queued at most
    int flush_ms;              //
    pthread_t thread;          // the export thread
    pthread_mutex_t lock;      // guards head, tail, count, stop
    pthread_cond_t cond;       //   (signalled: a batch is waiting, or stop)
    brg_span_t *head, *tail;   // ended spans, oldest first
    uint32_t count;            //
    bool stop;                 //
    _Atomic uint64_t ended;    // relaxed counters: they order nothing
    _Atomic uint64_t exported; //
    _Atomic uint64_t dropped;  //
    _Atomic uint64_t batches;  //
    _Atomic uint64_t write_errors;
};

//  ---------------------------------------------------------------------------
//  Ids and time

typedef struct {
    uint64_t s[4];
    bool seeded;
} s_rng_t;

static _Thread_local s_rng_t s_rng;

static inline uint64_t
s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
s_rand64(void)
{
    s_rng_t *r = &s_rng;
    if (!r->seeded) {
        if (getrandom(r->s, sizeof r->s, 0) != (ssize_t)sizeof r->s) {
            // No entropy source: time and the thread's address still make
            // ids distinct across threads and runs.
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            r->s[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
            r->s[1] = (uint64_t)(uintptr_t)r * 0xbf58476d1ce4e5b9ull;
            r->s[2] = (uint64_t)getpid() * 0x94d049bb133111ebull;
            r->s[3] = 0x2545f4914f6cdd1dull;
        }
        if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
            r->s[0] = 1;
        r->seeded = true;
    }
    uint64_t *s = r->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

//  Random non-zero bytes of an id (W3C: an all-zero id is invalid).
static void
s_new_id(uint8_t *id, size_t len)
{
    do {
        for (size_t i = 0; i < len; i += 8) {
            uint64_t v = s_rand64();
            memcpy(id + i, &v, len - i < 8 ? len - i : 8);
        }
    } while (id[0] == 0 && memcmp(id, id + 1, len - 1) == 0);
}

static uint64_t
s_now_unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool
s_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

//  ---------------------------------------------------------------------------
//  Contexts (public)

static void
s_to_public(const brg__tctx_t *tc, brg_trace_ctx_t *out)
{
    memset(out, 0, sizeof *out);
    if (!tc->flags)
        return;
    memcpy(out->trace_id, tc->ids, 16);
    memcpy(out->span_id, tc->ids + 16, 8);
    out->flags = tc->flags & BRG__TRACE_W3C_MASK;
}

static void
s_from_public(const brg_trace_ctx_t *tc, brg__tctx_t *out)
{
    if (!tc || s_zero(tc->trace_id, 16)) {
        out->flags = 0;
        return;
    }
    memcpy(out->ids, tc->trace_id, 16);
    memcpy(out->ids + 16, tc->span_id, 8);
    out->flags = (uint8_t)(BRG__TRACE_PRESENT | (tc->flags & BRG__TRACE_W3C_MASK));
}

bool
brg_trace_current(const brg_ctx_t *ctx, brg_trace_ctx_t *out)
{
    assert(out);
    brg__tctx_t tc;
    if (ctx)
        brg__trace_current(ctx, &tc);
    else
        tc = brg__trace_tls;
    s_to_public(&tc, out);
    return tc.flags != 0;
}

void
brg__trace_stamp_slow(const brg_ctx_t *ctx, brg_msg_t *msg)
{
    brg__tctx_t tc;
    brg__trace_current(ctx, &tc);
    brg__trace_put(msg, &tc);
}

bool
brg_msg_trace(const brg_msg_t *msg, brg_trace_ctx_t *out)
{
    assert(msg && out);
    brg__tctx_t tc;
    brg__trace_get(msg, &tc);
    s_to_public(&tc, out);
    return tc.flags != 0;
}

void
brg_trace_set(const brg_trace_ctx_t *tc)
{
    s_from_public(tc, &brg__trace_tls);
}

void
brg_trace_enter(brg_ctx_t *ctx, const brg_trace_ctx_t *tc)
{
    assert(ctx);
    brg__tctx_t own;
    s_from_public(tc, &own);
    brg__ctx_trace_set(ctx, &own);
}

static const char s_hex[] = "0123456789abcdef";

static void
s_put_hex(char *out, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = s_hex[bytes[i] >> 4];
        out[2 * i + 1] = s_hex[bytes[i] & 15];
    }
}

int
brg_trace_format(const brg_trace_ctx_t *tc, char out[56])
{
    if (!tc || !out || s_zero(tc->trace_id, 16) || s_zero(tc->span_id, 8))
        return BRG_EINVAL;
    memcpy(out, "00-", 3);
    s_put_hex(out + 3, tc->trace_id, 16);
    out[35] = '-';
    s_put_hex(out + 36, tc->span_id, 8);
    out[52] = '-';
    s_put_hex(out + 53, &tc->flags, 1);
    out[55] = '\0';
    return BRG_OK;
}

static int
s_hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; // W3C: lowercase only
}

static bool
s_get_hex(const char *in, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int hi = s_hex_val(in[2 * i]);
        int lo = hi < 0 ? -1 : s_hex_val(in[2 * i + 1]);
        if (lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

int
brg_trace_parse(const char *traceparent, brg_trace_ctx_t *out)
{
    if (!traceparent || !out || strnlen(traceparent, 56) != 55 ||
        strncmp(traceparent, "00-", 3) != 0 || traceparent[35] != '-' || traceparent[52] != '-')
        return BRG_EINVAL;
    brg_trace_ctx_t tc;
    memset(&tc, 0, sizeof tc);
    if (!s_get_hex(traceparent + 3, tc.trace_id, 16) ||
        !s_get_hex(traceparent + 36, tc.span_id, 8) || !s_get_hex(traceparent + 53, &tc.flags, 1))
        return BRG_EINVAL;
    if (s_zero(tc.trace_id, 16) || s_zero(tc.span_id, 8))
        return BRG_EINVAL;
    *out = tc;
    return BRG_OK;
}

bool
brg_trace_enabled(brg_system_t *sys)
{
    assert(sys);
    return sys->tracer != NULL;
}

void
brg_trace_stats(brg_system_t *sys, brg_trace_stats_t *stats)
{
    assert(sys && stats);
    memset(stats, 0, sizeof *stats);
    brg__tracer_t *t = sys->tracer;
    if (!t)
        return;
    stats->spans_ended = atomic_load_explicit(&t->ended, memory_order_relaxed);
    stats->spans_exported = atomic_load_explicit(&t->exported, memory_order_relaxed);
    stats->spans_dropped = atomic_load_explicit(&t->dropped, memory_order_relaxed);
    stats->batches = atomic_load_explicit(&t->batches, memory_order_relaxed);
    stats->write_errors = atomic_load_explicit(&t->write_errors, memory_order_relaxed);
}

//  ---------------------------------------------------------------------------
//  Spans

static void
s_attr_clear(s_attr_t *a)
{
    free(a->key);
    if (a->type == S_STR)
        free(a->u.s);
    else if (a->type == S_STRS) {
        for (size_t i = 0; i < a->u.strs.n; i++)
            free(a->u.strs.v[i]);
        free(a->u.strs.v);
    }
}

static void
s_span_free(brg_span_t *span)
{
    for (uint32_t i = 0; i < span->nattrs; i++)
        s_attr_clear(&span->attrs[i]);
    free(span->status_msg);
    free(span);
}

brg_span_t *
brg__span_new(brg__tracer_t *tracer, const brg__tctx_t *parent, bool root, const char *name,
              brg_span_kind_t kind)
{
    if (!tracer)
        return NULL;
    bool child = !root && parent && parent->flags;
    if (child && !(parent->flags & BRG_TRACE_SAMPLED))
        return NULL; // the trace's root chose not to record it
    // Only the head is initialised: attrs are written as they are set.
    brg_span_t *span = malloc(sizeof *span);
    if (!span) {
        atomic_fetch_add_explicit(&tracer->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    span->next = NULL;
    span->tracer = tracer;
    if (child) {
        memcpy(span->trace_id, parent->ids, 16);
        memcpy(span->parent_id, parent->ids + 16, 8);
        span->flags = parent->flags & BRG__TRACE_W3C_MASK;
    } else {
        s_new_id(span->trace_id, 16);
        memset(span->parent_id, 0, 8);
        span->flags = BRG_TRACE_SAMPLED;
    }
    s_new_id(span->span_id, 8);
    span->kind =
        (uint8_t)(kind >= BRG_SPAN_INTERNAL && kind <= BRG_SPAN_CONSUMER ? kind
                                                                         : BRG_SPAN_INTERNAL);
    span->failed = false;
    span->prev.flags = 0;
    span->start_ns = s_now_unix_ns();
    span->end_ns = 0;
    span->status_msg = NULL;
    span->error_type = NULL;
    span->nattrs = 0;
    size_t len = name ? strnlen(name, S_NAME_MAX) : 0;
    memcpy(span->name, name ? name : "", len);
    span->name[len] = '\0';
    return span;
}

void
brg__span_tctx(const brg_span_t *span, brg__tctx_t *out)
{
    out->flags = (uint8_t)(BRG__TRACE_PRESENT | span->flags);
    memcpy(out->ids, span->trace_id, 16);
    memcpy(out->ids + 16, span->span_id, 8);
}

//  Queue an ended span for the export thread (see the design notes).
static void
s_queue(brg_span_t *span)
{
    brg__tracer_t *t = span->tracer;
    atomic_fetch_add_explicit(&t->ended, 1, memory_order_relaxed);
    pthread_mutex_lock(&t->lock);
    if (t->count >= t->cap || t->stop) {
        pthread_mutex_unlock(&t->lock);
        atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
        s_span_free(span);
        return;
    }
    span->next = NULL;
    if (t->tail)
        t->tail->next = span;
    else
        t->head = span;
    t->tail = span;
    bool wake = ++t->count == S_BATCH_WAKE;
    pthread_mutex_unlock(&t->lock);
    if (wake)
        pthread_cond_signal(&t->cond);
}

static void
s_set_failed(brg_span_t *span, int code, const char *message)
{
    span->failed = true;
    free(span->status_msg);
    span->status_msg = strdup(message ? message : brg_strerror(code));
    span->error_type = brg_err_name(code);
}

void
brg__span_finish(brg_span_t *span, int status)
{
    if (!span)
        return;
    if (status < 0 && !span->failed)
        s_set_failed(span, status, NULL);
    span->end_ns = s_now_unix_ns();
    if (span->end_ns < span->start_ns)
        span->end_ns = span->start_ns; // the wall clock stepped back
    s_queue(span);
}

//  Make span ctx's current context (ctx NULL: the thread's), keeping the
//  one before it in the span.
static void
s_enter(brg_ctx_t *ctx, brg_span_t *span)
{
    if (ctx) {
        // The value, not "the message's": a span ended in a later call (a
        // reply callback) gives that call the context the span started in.
        brg__trace_current(ctx, &span->prev);
        brg__tctx_t own;
        brg__span_tctx(span, &own);
        brg__ctx_trace_set(ctx, &own);
    } else {
        span->prev = brg__trace_tls;
        brg__span_tctx(span, &brg__trace_tls);
    }
}

static bool
s_is_current(const brg__tctx_t *cur, const brg_span_t *span)
{
    return cur->flags && memcmp(cur->ids + 16, span->span_id, 8) == 0 &&
           memcmp(cur->ids, span->trace_id, 16) == 0;
}

void
brg_span_leave(brg_ctx_t *ctx, brg_span_t *span)
{
    if (!span)
        return;
    if (ctx) {
        if ((ctx->trace_flags & BRG__TRACE_OWN) && s_is_current(&ctx->trace, span))
            brg__ctx_trace_set(ctx, &span->prev);
    } else if (s_is_current(&brg__trace_tls, span)) {
        brg__trace_tls = span->prev;
    }
}

static brg__tracer_t *
s_ctx_tracer(const brg_ctx_t *ctx)
{
    assert(ctx && ctx->actor);
    return ctx->actor->sys->tracer;
}

static brg_span_t *
s_start(brg_ctx_t *ctx, brg__tracer_t *tracer, const char *name, brg_span_kind_t kind, bool root)
{
    if (!tracer)
        return NULL;
    brg__tctx_t parent;
    if (ctx)
        brg__trace_current(ctx, &parent);
    else
        parent = brg__trace_tls;
    brg_span_t *span = brg__span_new(tracer, &parent, root, name, kind);
    if (span)
        s_enter(ctx, span);
    return span;
}

brg_span_t *
brg_span_start(brg_ctx_t *ctx, const char *name, brg_span_kind_t kind)
{
    assert(ctx);
    return s_start(ctx, s_ctx_tracer(ctx), name, kind, false);
}

brg_span_t *
brg_trace_start(brg_ctx_t *ctx, const char *name, brg_span_kind_t kind)
{
    assert(ctx);
    return s_start(ctx, s_ctx_tracer(ctx), name, kind, true);
}

brg_span_t *
brg_system_span_start(brg_system_t *sys, const char *name, brg_span_kind_t kind)
{
    assert(sys);
    return s_start(NULL, sys->tracer, name, kind, false);
}

brg_span_t *
brg_system_trace_start(brg_system_t *sys, const char *name, brg_span_kind_t kind)
{
    assert(sys);
    return s_start(NULL, sys->tracer, name, kind, true);
}

//  The attribute slot for key: its old one (cleared) or a new one; NULL if
//  the span is full.
static s_attr_t *
s_attr_slot(brg_span_t *span, const char *key, int *rc)
{
    for (uint32_t i = 0; i < span->nattrs; i++) {
        s_attr_t *a = &span->attrs[i];
        if (strcmp(a->key, key) == 0) {
            char *k = a->key;
            a->key = NULL;
            s_attr_clear(a);
            a->key = k;
            a->type = S_INT; // nothing owned until the caller fills it
            return a;
        }
    }
    if (span->nattrs >= S_ATTRS_MAX) {
        *rc = BRG_EMSGSIZE;
        return NULL;
    }
    s_attr_t *a = &span->attrs[span->nattrs];
    a->key = strdup(key);
    if (!a->key) {
        *rc = BRG_ENOMEM;
        return NULL;
    }
    a->type = S_INT;
    span->nattrs++;
    return a;
}

int
brg_span_set_str(brg_span_t *span, const char *key, const char *value)
{
    if (!span)
        return BRG_OK;
    if (!key || !value)
        return BRG_EINVAL;
    char *copy = strdup(value);
    if (!copy)
        return BRG_ENOMEM;
    int rc = BRG_OK;
    s_attr_t *a = s_attr_slot(span, key, &rc);
    if (!a) {
        free(copy);
        return rc;
    }
    a->type = S_STR;
    a->u.s = copy;
    return BRG_OK;
}

//  The slot for key in span, for a number: NULL with *rc set when there is
//  none to fill (span NULL: BRG_OK, nothing to do; key NULL: BRG_EINVAL).
static s_attr_t *
s_num_slot(brg_span_t *span, const char *key, int *rc)
{
    *rc = BRG_OK;
    if (!span)
        return NULL;
    if (!key) {
        *rc = BRG_EINVAL;
        return NULL;
    }
    return s_attr_slot(span, key, rc);
}

int
brg_span_set_int(brg_span_t *span, const char *key, int64_t value)
{
    int rc;
    s_attr_t *a = s_num_slot(span, key, &rc);
    if (!a)
        return rc;
    a->type = S_INT;
    a->u.i = value;
    return BRG_OK;
}

int
brg_span_set_double(brg_span_t *span, const char *key, double value)
{
    int rc;
    s_attr_t *a = s_num_slot(span, key, &rc);
    if (!a)
        return rc;
    a->type = S_DOUBLE;
    a->u.d = value;
    return BRG_OK;
}

int
brg_span_set_strs(brg_span_t *span, const char *key, const char *const *values, size_t n)
{
    if (!span)
        return BRG_OK;
    if (!key || (n && !values) || n > S_STRS_MAX)
        return BRG_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!values[i])
            return BRG_EINVAL;
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return BRG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(values[i]);
        if (!v[i]) {
            while (i > 0)
                free(v[--i]);
            free(v);
            return BRG_ENOMEM;
        }
    }
    int rc = BRG_OK;
    s_attr_t *a = s_attr_slot(span, key, &rc);
    if (!a) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    a->type = S_STRS;
    a->u.strs.v = v;
    a->u.strs.n = n;
    return BRG_OK;
}

void
brg_span_set_error(brg_span_t *span, int code, const char *message)
{
    if (span)
        s_set_failed(span, code, message);
}

void
brg_span_context(const brg_span_t *span, brg_trace_ctx_t *out)
{
    assert(out);
    if (!span) {
        memset(out, 0, sizeof *out);
        return;
    }
    brg__tctx_t tc;
    brg__span_tctx(span, &tc);
    s_to_public(&tc, out);
}

void
brg_span_end(brg_ctx_t *ctx, brg_span_t **span_p)
{
    assert(span_p);
    brg_span_t *span = *span_p;
    if (!span)
        return;
    *span_p = NULL;
    brg_span_leave(ctx, span);
    brg__span_finish(span, BRG_OK);
}

//  ---------------------------------------------------------------------------
//  OTLP/JSON

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed; // out of memory: the line is dropped
} s_buf_t;

static void
s_reserve(s_buf_t *b, size_t extra)
{
    if (b->failed || b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        b->failed = true;
        return;
    }
    b->data = data;
    b->cap = cap;
}

static void
s_putn(s_buf_t *b, const char *s, size_t n)
{
    s_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void
s_puts(s_buf_t *b, const char *s)
{
    s_putn(b, s, strlen(s));
}

static void s_printf(s_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
s_printf(s_buf_t *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        s_putn(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

//  Bytes of the well-formed UTF-8 sequence at p (1 to 4), or 0 if it is
//  not one (overlong, a surrogate, past U+10FFFF, cut short).
static size_t
s_utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    if (n == 0)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0; // a NUL ends the loop here too
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] > 0x8f))
        return 0;
    return n;
}

//  A JSON string: quotes, escapes, control characters as \u00XX. The
//  strings are the user's (tags may be any bytes): a byte that does not
//  start well-formed UTF-8 becomes U+FFFD, so every line is valid JSON.
static void
s_put_jstr(s_buf_t *b, const char *s)
{
    s_putn(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x80) {
            size_t n = s_utf8_len((const unsigned char *)p);
            if (n == 0) {
                s_putn(b, "\\ufffd", 6);
            } else {
                s_putn(b, p, n);
                p += n - 1;
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            s_putn(b, esc, 2);
        } else if (c == '\n') {
            s_putn(b, "\\n", 2);
        } else if (c == '\r') {
            s_putn(b, "\\r", 2);
        } else if (c == '\t') {
            s_putn(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            s_printf(b, "\\u%04x", c);
        } else {
            s_putn(b, (const char *)p, 1);
        }
    }
    s_putn(b, "\"", 1);
}

static void
s_put_jhex(s_buf_t *b, const uint8_t *bytes, size_t len)
{
    char hex[33];
    s_put_hex(hex, bytes, len);
    s_putn(b, "\"", 1);
    s_putn(b, hex, 2 * len);
    s_putn(b, "\"", 1);
}

static void
s_put_kv_str(s_buf_t *b, const char *key, const char *value, bool comma)
{
    if (comma)
        s_putn(b, ",", 1);
    s_puts(b, "{\"key\":");
    s_put_jstr(b, key);
    s_puts(b, ",\"value\":{\"stringValue\":");
    s_put_jstr(b, value);
    s_puts(b, "}}");
}

static void
s_put_attr(s_buf_t *b, const s_attr_t *a, bool comma)
{
    if (a->type == S_STR) {
        s_put_kv_str(b, a->key, a->u.s, comma);
        return;
    }
    if (comma)
        s_putn(b, ",", 1);
    s_puts(b, "{\"key\":");
    s_put_jstr(b, a->key);
    s_puts(b, ",\"value\":");
    switch (a->type) {
    case S_INT:
        // proto3 JSON: a 64-bit integer is a decimal string.
        s_printf(b, "{\"intValue\":\"%" PRId64 "\"}", a->u.i);
        break;
    case S_DOUBLE:
        if (a->u.d != a->u.d)
            s_puts(b, "{\"doubleValue\":\"NaN\"}");
        else if (a->u.d > 1.7976931348623157e308)
            s_puts(b, "{\"doubleValue\":\"Infinity\"}");
        else if (a->u.d < -1.7976931348623157e308)
            s_puts(b, "{\"doubleValue\":\"-Infinity\"}");
        else
            s_printf(b, "{\"doubleValue\":%.17g}", a->u.d);
        break;
    case S_STRS:
        s_puts(b, "{\"arrayValue\":{\"values\":[");
        for (size_t i = 0; i < a->u.strs.n; i++) {
            s_puts(b, i ? ",{\"stringValue\":" : "{\"stringValue\":");
            s_put_jstr(b, a->u.strs.v[i]);
            s_putn(b, "}", 1);
        }
        s_puts(b, "]}}");
        break;
    case S_STR:
        break;
    }
    s_putn(b, "}", 1);
}

static void
s_put_span(s_buf_t *b, const brg_span_t *span)
{
    s_puts(b, "{\"traceId\":");
    s_put_jhex(b, span->trace_id, 16);
    s_puts(b, ",\"spanId\":");
    s_put_jhex(b, span->span_id, 8);
    if (!s_zero(span->parent_id, 8)) {
        s_puts(b, ",\"parentSpanId\":");
        s_put_jhex(b, span->parent_id, 8);
    }
    s_printf(b, ",\"flags\":%u", (unsigned)span->flags);
    s_puts(b, ",\"name\":");
    s_put_jstr(b, span->name);
    s_printf(b, ",\"kind\":%u", (unsigned)span->kind);
    s_printf(b, ",\"startTimeUnixNano\":\"%" PRIu64 "\"", span->start_ns);
    s_printf(b, ",\"endTimeUnixNano\":\"%" PRIu64 "\"", span->end_ns);
    s_puts(b, ",\"attributes\":[");
    bool error_type = span->failed && span->error_type;
    for (uint32_t i = 0; i < span->nattrs; i++) {
        s_put_attr(b, &span->attrs[i], i > 0);
        if (strcmp(span->attrs[i].key, BRG_ATTR_ERROR_TYPE) == 0)
            error_type = false; // the user's own
    }
    if (error_type)
        s_put_kv_str(b, BRG_ATTR_ERROR_TYPE, span->error_type, span->nattrs > 0);
    s_puts(b, "],\"status\":{");
    if (span->failed) {
        s_puts(b, "\"code\":2");
        if (span->status_msg) {
            s_puts(b, ",\"message\":");
            s_put_jstr(b, span->status_msg);
        }
    } else {
        s_puts(b, "\"code\":1");
    }
    s_puts(b, "}}");
}

//  One ExportTraceServiceRequest with up to S_LINE_SPANS spans from *list
//  (advanced past them).
static void
s_put_request(s_buf_t *b, const brg__tracer_t *t, brg_span_t **list, uint32_t *n)
{
    s_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    s_put_kv_str(b, "service.name", t->service, false);
    s_put_kv_str(b, "service.instance.id", t->node, true);
    s_put_kv_str(b, "brg.node.id", t->node, true);
    if (t->node_name)
        s_put_kv_str(b, "brg.node.name", t->node_name, true);
    s_put_kv_str(b, "telemetry.sdk.name", "brigade", true);
    s_put_kv_str(b, "telemetry.sdk.language", "c", true);
    s_puts(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"brigade\",\"version\":");
    s_printf(b, "\"%d.%d.%d\"},\"spans\":[", BRG_VERSION_MAJOR, BRG_VERSION_MINOR,
             BRG_VERSION_PATCH);
    *n = 0;
    while (*list && *n < S_LINE_SPANS) {
        brg_span_t *span = *list;
        *list = span->next;
        s_put_span(b, span);
        s_span_free(span);
        if (*list && *n + 1 < S_LINE_SPANS)
            s_putn(b, ",", 1);
        (*n)++;
    }
    s_puts(b, "]}]}]}");
}

//  Write the spans of list (and free them). Thread: the export thread (or
//  destroy's, after it stopped).
static void
s_export(brg__tracer_t *t, brg_span_t *list)
{
    s_buf_t b = {0};
    while (list) {
        b.len = 0;
        b.failed = false;
        uint32_t n = 0;
        s_put_request(&b, t, &list, &n);
        if (b.failed) {
            atomic_fetch_add_explicit(&t->dropped, n, memory_order_relaxed);
            continue;
        }
        if (t->file) {
            s_putn(&b, "\n", 1);
            bool ok =
                !b.failed && fwrite(b.data, 1, b.len, t->file) == b.len && fflush(t->file) == 0;
            b.data[--b.len] = '\0'; // the hook's line has no newline
            if (!ok)
                atomic_fetch_add_explicit(&t->write_errors, 1, memory_order_relaxed);
        }
        if (t->hook)
            t->hook(t->hook_arg, b.data, b.len);
        atomic_fetch_add_explicit(&t->exported, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->batches, 1, memory_order_relaxed);
    }
    free(b.data);
}

static void *
s_export_main(void *arg)
{
    brg__tracer_t *t = arg;
    uint64_t logged_drops = 0;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        if (!t->stop && t->count < S_BATCH_WAKE) {
            struct timespec deadline;
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            uint64_t ns = (uint64_t)deadline.tv_nsec + (uint64_t)t->flush_ms * 1000000u;
            deadline.tv_sec += (time_t)(ns / 1000000000u);
            deadline.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&t->cond, &t->lock, &deadline);
        }
        brg_span_t *list = t->head;
        t->head = t->tail = NULL;
        t->count = 0;
        bool stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        s_export(t, list);
        // Drops are counted where they happen (a worker); said here, at most
        // once per flush interval, off the workers.
        uint64_t dropped = atomic_load_explicit(&t->dropped, memory_order_relaxed);
        if (dropped != logged_drops) {
            brg__log(t->sys, BRG_LOG_WARNING, "trace", BRG_REF_NONE,
                     "%llu spans dropped (export buffer of %u spans full, or out of memory); "
                     "%llu in all",
                     (unsigned long long)(dropped - logged_drops), t->cap,
                     (unsigned long long)dropped);
            logged_drops = dropped;
        }
        if (stop)
            return NULL;
        pthread_mutex_lock(&t->lock);
    }
}

//  ---------------------------------------------------------------------------
//  The tracer

brg__tracer_t *
brg__tracer_new(brg_system_t *sys, const brg_config_t *cfg, const char *node)
{
    const char *path = cfg->trace_file;
    if (!path) {
        const char *env = getenv("BRG_TRACE_FILE");
        if (env && env[0])
            path = env;
    }
    if (!path && !cfg->trace_hook)
        return NULL; // off: the default
    brg__tracer_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->sys = sys;
    t->hook = cfg->trace_hook;
    t->hook_arg = cfg->trace_hook_arg;
    const char *service = cfg->trace_service;
    if (!service || !service[0])
        service = getenv("OTEL_SERVICE_NAME");
    t->service = strdup(service && service[0] ? service : "brigade");
    t->node_name = cfg->trace_node_name ? strdup(cfg->trace_node_name) : NULL;
    snprintf(t->node, sizeof t->node, "%s", node);
    t->cap = cfg->trace_buffer ? cfg->trace_buffer : S_BUFFER_DEFAULT;
    t->flush_ms = cfg->trace_flush_ms > 0 ? cfg->trace_flush_ms : S_FLUSH_DEFAULT_MS;
    if (!t->service || (cfg->trace_node_name && !t->node_name))
        goto fail;
    if (path) {
        t->path = strdup(path);
        t->file = t->path ? fopen(t->path, "a") : NULL;
        if (!t->file) {
            // Said once, where the user looks; tracing stays on for the hook.
            brg__log(sys, BRG_LOG_ERROR, "trace", BRG_REF_NONE, "cannot open trace file %s: %s",
                     path, strerror(errno));
            if (!t->hook)
                goto fail;
        }
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&t->thread, NULL, s_export_main, t) != 0) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
        goto fail;
    }
    return t;
fail:
    if (t->file)
        fclose(t->file);
    free(t->path);
    free(t->service);
    free(t->node_name);
    free(t);
    return NULL;
}

void
brg__tracer_destroy(brg__tracer_t **self_p)
{
    brg__tracer_t *t = *self_p;
    if (!t)
        return;
    *self_p = NULL;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_mutex_unlock(&t->lock);
    pthread_cond_signal(&t->cond);
    pthread_join(t->thread, NULL);
    // Spans queued after the thread's last take (none: stop refuses them).
    s_export(t, t->head);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    if (t->file)
        fclose(t->file);
    free(t->path);
    free(t->service);
    free(t->node_name);
    free(t);
}
