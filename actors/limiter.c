//  limiter - at most K requests in flight (and R per second) to one actor
//
//  Design notes.
//
//  The limiter is the asker. For each request it keeps a brg_msg_dup of the
//  caller's message (the copy keeps the caller's sender and ask correlation)
//  and asks the target with a second copy; the ask callback answers the
//  caller through the kept copy with brg_reply_to / brg_reply_error_to.
//  brg_reply would not do: in a reply callback the current message is the
//  target's reply, not the caller's request. Because the limiter sees every
//  answer (reply, error reply, or the runtime's timeout), "in flight" is
//  exact: +1 when brg_ask succeeds, -1 in its callback, which the runtime
//  calls exactly once.
//
//  Waiting requests are kept copies in a ring of max_queue slots, allocated
//  once, so a burst of callers costs no allocation beyond the copies and the
//  bound is enforced before anything is copied. FIFO: a new request never
//  overtakes the queue, even when a slot is free (the queue is only
//  non-empty with a free slot while the rate holds it back).
//
//  Expiry: queued_at[] (parallel to the ring) holds when each request was
//  queued. s_expire answers the asks at the head that waited more than
//  max_queue_wait_ms with BRG_ETIMEDOUT; they are never started. It runs
//  before a queued request could start (a slot freed up, a token is due) and
//  before a new request is queued or refused, so none starts late and an
//  expired one never holds a place; its answer may come late (its caller has
//  then usually timed out, and the answer is a late-reply dead letter).
//
//  Rate: a token bucket in thousandths of a token, refilled from
//  brg_system_now_ms (virtual time in deterministic mode, so tests control
//  it): one token per 1000 / rate_per_sec ms, at most `burst` tokens. A
//  request needs a free slot and a token. When the queue waits only for a
//  token, the limiter sends itself one tick (brg_send_after) for the moment
//  the next token is due; at most one tick is armed at a time.
//
//  Cancels (brigade/cancel.h). Each ask to the target is made with
//  brg_ask_id and remembered with its target, so a request whose
//  request_timeout_ms passes sends the target a cancel for it. A cancel
//  from a caller is matched (brg_cancel_matches) against the kept copies: a
//  queued request is taken out of the ring and never started (its caller
//  gave up: no answer is sent); an in-flight one has the cancel passed on
//  to the target for the limiter's own ask, and keeps its slot until the
//  target answers or the request times out, since the target may still be
//  at work. Both count as cancelled.
//
//  Stream cancels (BRG_MODEL_TAG_CANCEL of brigade/model.h, by stream id):
//  the limiter cannot match them (it does not read chat requests), so it
//  passes each on to the target at once with brg_forward, never limited or
//  queued. The target sees the canceller as the sender and matches it to the
//  stream whose stream_to (or sender) it is. If the target cannot be reached
//  the cancel is unhandled, a dead letter.
//
//  In-flight requests live in a list in the state, because the runtime never
//  calls an ask callback of an actor that stopped: the state destructor
//  frees them and the queue, so a stopped limiter leaks nothing.
#include "actors_internal.h"

#define S_PREFIX "brg.limiter."
#define S_TAG_TICK "brg.limiter.tick" // to itself: a token is due

//  A request in flight: the caller's message, kept to answer it.
typedef struct s_request {
    struct s_request *prev, *next; // the list of requests in flight
    brg_msg_t *request;            // owned copy of the caller's message
    brg_ref_t target;              // where it went
    uint64_t ask_id;               // the limiter's ask, for a cancel
} s_request_t;

//  The limiter's state: owned by its actor, touched only on its thread.
typedef struct {
    brg_system_t *sys;          // the system it lives in
    brg_limiter_opts_t opts;    // copied; target_name points to name_copy, name is not kept
    char *name_copy;            // owned copy of opts.target_name, or NULL
    brg_msg_t **queue;          // max_queue slots: a ring of kept copies
    uint64_t *queued_at;        // brg_system_now_ms when each slot's request was queued
    size_t q_head;              // the oldest waiting request
    size_t q_len;               // waiting requests
    s_request_t *requests;      // in flight, newest first
    uint64_t tokens;            // rate: thousandths of a token in the bucket
    uint64_t refilled_ms;       // rate: when the bucket was last refilled
    bool tick_armed;            // rate: a tick is on its way
    brg_limiter_stats_t counts; // see brg_limiter_stats_t
} s_limiter_t;

static void
s_limiter_destroy(void *state)
{
    s_limiter_t *self = state;
    while (self->requests) {
        s_request_t *r = self->requests;
        self->requests = r->next;
        brg_msg_destroy(&r->request);
        free(r);
    }
    for (size_t k = 0; k < self->q_len; k++)
        brg_msg_destroy(&self->queue[(self->q_head + k) % (size_t)self->opts.max_queue]);
    free(self->queue);
    free(self->queued_at);
    free(self->name_copy);
    free(self);
}

static s_limiter_t *
s_limiter_new(brg_system_t *sys, const brg_limiter_opts_t *opts)
{
    s_limiter_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->sys = sys;
    self->opts = *opts;
    self->opts.name = NULL;
    self->opts.target_name = NULL;
    bool ok = true;
    if (opts->target_name) {
        self->name_copy = strdup(opts->target_name);
        self->opts.target_name = self->name_copy;
        ok = self->name_copy != NULL;
    }
    if (opts->max_queue > 0) {
        self->queue = calloc((size_t)opts->max_queue, sizeof(*self->queue));
        self->queued_at = calloc((size_t)opts->max_queue, sizeof(*self->queued_at));
        ok = ok && self->queue && self->queued_at;
    }
    if (!ok) {
        s_limiter_destroy(self);
        return NULL;
    }
    self->tokens = (uint64_t)opts->burst * 1000u;
    self->refilled_ms = brg_system_now_ms(sys);
    return self;
}

//  ---------------------------------------------------------------------------
//  Rate.

static void
s_refill(s_limiter_t *self)
{
    uint64_t now = brg_system_now_ms(self->sys);
    uint64_t cap = (uint64_t)self->opts.burst * 1000u;
    uint64_t elapsed = now - self->refilled_ms;
    self->refilled_ms = now;
    // elapsed * rate could overflow after a long idle time; cap first.
    uint64_t rate = (uint64_t)self->opts.rate_per_sec;
    if (elapsed >= cap / rate + 1)
        self->tokens = cap;
    else
        self->tokens = self->tokens + elapsed * rate < cap ? self->tokens + elapsed * rate : cap;
}

//  Take a token if there is one (always, without a rate).
static bool
s_take_token(s_limiter_t *self)
{
    if (self->opts.rate_per_sec == 0)
        return true;
    s_refill(self);
    if (self->tokens < 1000u)
        return false;
    self->tokens -= 1000u;
    return true;
}

//  Have a tick arrive when the next token is due.
static void
s_arm_tick(s_limiter_t *self, brg_ctx_t *ctx)
{
    if (self->tick_armed)
        return;
    uint64_t rate = (uint64_t)self->opts.rate_per_sec;
    uint64_t need = 1000u - self->tokens; // s_take_token just refilled: tokens < 1000
    int delay_ms = (int)((need + rate - 1) / rate);
    brg_msg_t *tick = brg_msg_new(S_TAG_TICK);
    if (!tick)
        return; // out of memory: the next request or answer pumps again
    if (brg_send_after(ctx, brg_self(ctx), &tick, delay_ms, NULL) == BRG_OK)
        self->tick_armed = true;
}

//  ---------------------------------------------------------------------------
//  Requests.

static void s_pump(s_limiter_t *self, brg_ctx_t *ctx);

//  Count and relay an answer to the caller of request.
static void
s_answer(s_limiter_t *self, brg_ctx_t *ctx, const brg_msg_t *request, int status,
         const brg_msg_t *reply)
{
    self->counts.answered++;
    if (status == BRG_OK) {
        brg_msg_t *copy = brg_msg_dup(reply);
        if (copy) {
            brg_reply_to(ctx, request, &copy);
            return;
        }
        status = BRG_ENOMEM;
    }
    self->counts.failed++;
    // For a request that was not an ask this sends nothing: no one waits.
    brg_reply_error_to(ctx, request, status);
}

static int
s_on_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_limiter_t *self = brg_state(ctx);
    s_request_t *r = arg;
    if (r->prev)
        r->prev->next = r->next;
    else
        self->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    assert(self->counts.in_flight > 0);
    self->counts.in_flight--;
    if (status == BRG_ETIMEDOUT)
        brg_cancel(ctx, r->target, r->ask_id); // the target may still be at it: stop it
    s_answer(self, ctx, r->request, status, reply);
    brg_msg_destroy(&r->request);
    free(r);
    s_pump(self, ctx);
    return BRG_OK;
}

//  Send a kept request to the target: the caller's slot and token are
//  already taken. Takes *request_p.
static void
s_start(s_limiter_t *self, brg_ctx_t *ctx, brg_msg_t **request_p)
{
    brg_msg_t *request = *request_p;
    *request_p = NULL;
    self->counts.started++;
    brg_ref_t target = self->opts.target;
    int rc = BRG_OK;
    if (self->opts.target_name && brg_whereis(self->sys, self->opts.target_name, &target) != BRG_OK)
        rc = BRG_ENOACTOR;
    s_request_t *r = NULL;
    brg_msg_t *copy = NULL;
    if (rc == BRG_OK) {
        r = calloc(1, sizeof(*r));
        copy = brg_msg_dup(request);
        if (!r || !copy) {
            brg_msg_destroy(&copy);
            rc = BRG_ENOMEM;
        }
    }
    if (rc == BRG_OK) {
        r->request = request;
        r->target = target;
        rc = brg_ask_id(ctx, target, &copy, self->opts.request_timeout_ms, s_on_reply, r,
                        &r->ask_id);
        if (rc != BRG_OK)
            r->request = NULL; // still ours below
    }
    if (rc != BRG_OK) {
        // Settled at once (target dead, out of memory): the slot stays free.
        s_answer(self, ctx, request, rc, NULL);
        brg_msg_destroy(&request);
        free(r);
        return;
    }
    r->next = self->requests;
    if (r->next)
        r->next->prev = r;
    self->requests = r;
    self->counts.in_flight++;
    if (self->counts.in_flight > self->counts.max_in_flight)
        self->counts.max_in_flight = self->counts.in_flight;
}

//  Answer BRG_ETIMEDOUT to the asks at the head of the queue that waited
//  longer than max_queue_wait_ms. A plain message (not an ask) has no caller
//  waiting for it, so it never expires: the expiry stops at it.
static void
s_expire(s_limiter_t *self, brg_ctx_t *ctx)
{
    if (!self->opts.max_queue_wait_ms)
        return;
    uint64_t now = brg_system_now_ms(self->sys);
    while (self->q_len > 0 &&
           now - self->queued_at[self->q_head] > (uint64_t)self->opts.max_queue_wait_ms) {
        brg_msg_t **slot = &self->queue[self->q_head];
        if (brg_reply_error_to(ctx, *slot, BRG_ETIMEDOUT) == BRG_EINVAL)
            return; // not an ask: nothing was sent; it waits for its turn
        self->q_head = (self->q_head + 1) % (size_t)self->opts.max_queue;
        self->q_len--;
        self->counts.expired++;
        brg_msg_destroy(slot);
    }
}

//  Start waiting requests while a slot and a token are free.
static void
s_pump(s_limiter_t *self, brg_ctx_t *ctx)
{
    s_expire(self, ctx);
    while (self->q_len > 0 && self->counts.in_flight < (uint64_t)self->opts.max_in_flight) {
        if (!s_take_token(self)) {
            s_arm_tick(self, ctx);
            return;
        }
        brg_msg_t **slot = &self->queue[self->q_head];
        self->q_head = (self->q_head + 1) % (size_t)self->opts.max_queue;
        self->q_len--;
        s_start(self, ctx, slot); // takes *slot and NULLs it
    }
}

static int
s_on_request(s_limiter_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_expire(self, ctx); // expired requests give their places back first
    bool can_start = self->q_len == 0 &&
                     self->counts.in_flight < (uint64_t)self->opts.max_in_flight &&
                     s_take_token(self);
    if (!can_start && self->q_len == (size_t)self->opts.max_queue) {
        self->counts.rejected++;
        // An ask is told at once; anything else becomes a dead letter.
        return brg_reply_error(ctx, BRG_EBUSY) == BRG_EINVAL ? BRG_UNHANDLED : BRG_OK;
    }
    brg_msg_t *kept = brg_msg_dup(msg);
    if (!kept) {
        if (can_start)
            self->tokens += self->opts.rate_per_sec ? 1000u : 0u; // give the token back
        return brg_reply_error(ctx, BRG_ENOMEM) == BRG_EINVAL ? BRG_UNHANDLED : BRG_OK;
    }
    if (can_start) {
        s_start(self, ctx, &kept);
        return BRG_OK;
    }
    size_t tail = (self->q_head + self->q_len) % (size_t)self->opts.max_queue;
    self->queue[tail] = kept;
    self->queued_at[tail] = brg_system_now_ms(self->sys);
    self->q_len++;
    s_pump(self, ctx); // arms the tick if only the rate holds the queue back
    return BRG_OK;
}

//  A caller gave up a request (see the design notes).
static void
s_on_cancel(s_limiter_t *self, brg_ctx_t *ctx, const brg_msg_t *cancel)
{
    size_t cap = (size_t)self->opts.max_queue;
    for (size_t k = 0; k < self->q_len; k++) {
        size_t at = (self->q_head + k) % cap;
        if (!brg_cancel_matches(cancel, self->queue[at]))
            continue;
        brg_msg_destroy(&self->queue[at]);
        for (size_t j = k; j + 1 < self->q_len; j++) { // close the gap, keeping the order
            size_t to = (self->q_head + j) % cap, from = (self->q_head + j + 1) % cap;
            self->queue[to] = self->queue[from];
            self->queued_at[to] = self->queued_at[from];
        }
        self->queue[(self->q_head + self->q_len - 1) % cap] = NULL;
        self->q_len--;
        self->counts.cancelled++;
        return;
    }
    for (s_request_t *r = self->requests; r; r = r->next) {
        if (brg_cancel_matches(cancel, r->request)) {
            brg_cancel(ctx, r->target, r->ask_id);
            self->counts.cancelled++;
            return;
        }
    }
}

static void
s_on_stats(s_limiter_t *self, brg_ctx_t *ctx)
{
    brg_limiter_stats_t c = self->counts;
    c.queued = self->q_len;
    brg_msg_t *reply = brg_msg_new(BRG_LIMITER_TAG_STATS);
    const uint64_t fields[] = {c.in_flight, c.queued,   c.max_in_flight, c.started,  c.answered,
                               c.failed,    c.rejected, c.expired,       c.cancelled};
    for (size_t k = 0; reply && k < sizeof(fields) / sizeof(fields[0]); k++)
        if (brg_msg_add_uint(reply, fields[k]) != BRG_OK)
            brg_msg_destroy(&reply);
    if (reply)
        brg_reply(ctx, &reply);
    else
        brg_reply_error(ctx, BRG_ENOMEM);
}

static int
s_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_limiter_t *self = brg_state(ctx);
    if (brg_msg_is_cancel(msg)) {
        s_on_cancel(self, ctx, msg); // never limited, never passed on as a request
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_MODEL_TAG_CANCEL)) {
        brg_ref_t target = self->opts.target;
        if (self->opts.target_name &&
            brg_whereis(self->sys, self->opts.target_name, &target) != BRG_OK)
            return BRG_UNHANDLED;
        return brg_forward(ctx, target) == BRG_OK ? BRG_OK : BRG_UNHANDLED;
    }
    if (strncmp(brg_msg_tag(msg), S_PREFIX, sizeof(S_PREFIX) - 1) != 0)
        return s_on_request(self, ctx, msg);
    if (brg_msg_is(msg, BRG_LIMITER_TAG_STATS)) {
        s_on_stats(self, ctx);
    } else if (brg_msg_is(msg, S_TAG_TICK) && brg_ref_eq(brg_msg_sender(msg), brg_self(ctx))) {
        self->tick_armed = false;
        s_pump(self, ctx);
    } else {
        return BRG_UNHANDLED;
    }
    return BRG_OK;
}

static int
s_opts_check(const brg_limiter_opts_t *opts)
{
    bool has_ref = !brg_ref_is_none(opts->target);
    bool has_name = opts->target_name != NULL;
    if (has_ref == has_name)
        return BRG_EINVAL;
    if (has_name && (opts->target_name[0] == '\0' || strlen(opts->target_name) > BRG_NAME_MAX))
        return BRG_EINVAL;
    if (opts->max_in_flight < 1 || opts->max_in_flight > BRG_LIMITER_MAX)
        return BRG_EINVAL;
    if (opts->max_queue < 0 || opts->max_queue > BRG_LIMITER_MAX)
        return BRG_EINVAL;
    if (opts->rate_per_sec < 0 || opts->rate_per_sec > BRG_LIMITER_MAX)
        return BRG_EINVAL;
    if (opts->burst < 1 || opts->burst > BRG_LIMITER_MAX || opts->request_timeout_ms < 0 ||
        opts->max_queue_wait_ms < 0)
        return BRG_EINVAL;
    return BRG_OK;
}

static int
s_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_limiter_opts_t *opts, brg_ref_t *limiter)
{
    int rc = s_opts_check(opts);
    if (rc != BRG_OK)
        return rc;
    s_limiter_t *self = s_limiter_new(sys, opts);
    if (!self)
        return BRG_ENOMEM;
    return brg__actors_spawn(sys, ctx, s_behaviour, self, s_limiter_destroy, NULL, opts->name,
                             limiter);
}

//  ---------------------------------------------------------------------------
//  Public API

void
brg_limiter_opts_init(brg_limiter_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
    opts->target = BRG_REF_NONE;
    opts->max_in_flight = 1;
    opts->max_queue = 64;
    opts->burst = 1;
    opts->request_timeout_ms = 30000;
}

int
brg_limiter_spawn(brg_ctx_t *ctx, const brg_limiter_opts_t *opts, brg_ref_t *limiter)
{
    assert(ctx);
    assert(opts);
    return s_spawn(brg_ctx_system(ctx), ctx, opts, limiter);
}

int
brg_limiter_spawn_root(brg_system_t *sys, const brg_limiter_opts_t *opts, brg_ref_t *limiter)
{
    assert(sys);
    assert(opts);
    return s_spawn(sys, NULL, opts, limiter);
}

brg_msg_t *
brg_limiter_msg_stats(void)
{
    return brg_msg_new(BRG_LIMITER_TAG_STATS);
}

int
brg_limiter_read_stats(const brg_msg_t *reply, brg_limiter_stats_t *out)
{
    assert(reply);
    assert(out);
    uint64_t f[9];
    int rc = brg__actors_read_uints(reply, BRG_LIMITER_TAG_STATS, f, 9);
    if (rc != BRG_OK)
        return rc;
    *out = (brg_limiter_stats_t){f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]};
    return BRG_OK;
}

static int
s_read_stats(const brg_msg_t *reply, void *out)
{
    return brg_limiter_read_stats(reply, out);
}

int
brg_limiter_stats(brg_system_t *sys, brg_ref_t limiter, int timeout_ms, brg_limiter_stats_t *out)
{
    assert(sys);
    assert(out);
    return brg__actors_ask_read(sys, limiter, brg_limiter_msg_stats(), timeout_ms, s_read_stats,
                                out);
}
