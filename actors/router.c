//  router - a pool of N workers behind one address, built on the public API
//
//  Design notes.
//
//  The router is an actor that traps exits. Its state (s_router_t) holds
//  one slot per worker: the running incarnation's ref, a `down` mark and,
//  for least busy, the requests in flight to it. Workers are spawned with
//  BRG_SPAWN_LINK, so exactly one EXIT comes per incarnation, even for a
//  worker that fails in its init; the EXIT names the slot (by ref) and the
//  slot is filled again at once. An EXIT from a ref that is no longer a
//  worker (a stale incarnation, or some other actor that linked to the
//  router) is ignored, as the supervisor does; one from the parent or from
//  brg_exit (sender BRG_REF_NONE) stops the router.
//
//  Picking a worker. Round robin keeps a cursor and skips slots that are
//  down. Least busy scans every slot for the fewest in flight, starting at
//  the cursor so that ties rotate instead of piling on slot 0; N is small
//  (a pool, not a table), so a scan costs less than keeping a heap in step.
//
//  Dead workers. A worker can die while its EXIT is still on the way, so
//  brg_forward (or brg_ask) may say BRG_ENOACTOR. The slot is then marked
//  down (it is skipped until its EXIT restarts it) and the same message
//  goes to the next pick, at most once per slot, so the loop ends. The
//  failed copy is already a counted dead letter (the runtime's doing).
//
//  Least busy relays. The router asks the worker with a copy of the message
//  and keeps another copy (s_request_t) to answer the original sender with
//  brg_reply_to / brg_reply_error_to from the ask callback, which also
//  lowers the slot's in-flight count. A request remembers the incarnation
//  it went to: after a restart the slot's count starts again from zero, and
//  a late answer from the old incarnation must not lower the new one's.
//  Requests live in a list in the state, because the runtime never calls an
//  ask callback of an actor that stopped: the state destructor frees what
//  is left, so nothing leaks when the router stops with requests in flight
//  (their askers time out).
//
//  Intensity. The virtual-or-real time of the last max_restarts restarts is
//  kept in a ring (brg_system_now_ms, so deterministic tests control it);
//  a restart that finds the oldest of them within restart_period_ms is one
//  too many, and the router shuts down with reason failed.
//
//  Cancels (brigade/cancel.h) are never routed as requests. Round robin
//  forwarded the request (the worker sees the asker), and the router keeps
//  no record of where it went, so a caller's cancel is forwarded to every
//  live worker (brg_forward keeps the caller as its sender): the one that
//  holds the request matches it, the others find no match. Least busy asked
//  the worker itself (brg_ask_id): a caller's cancel that matches a kept
//  request becomes the router's own cancel to that worker, and so does a
//  request whose request_timeout_ms passed. Cancels are rare; a broadcast
//  over a pool is cheap next to the work it stops.
//
//  Stopping. The router sends every worker brg_exit(shutdown), which also
//  stops a worker that does not trap exits when the router's own reason is
//  normal (normal exits do not travel along links), then exits with its
//  reason: brg_stop for normal, brg_fail for failed, and for shutdown it
//  stops trapping and signals itself, the one way to end with that reason.
#include "actors_internal.h"

//  The router's protocol tags start with this; they are never routed.
#define S_PREFIX "brg.router."

//  A least-busy request in flight: the caller's message, kept to answer it.
typedef struct s_request {
    struct s_request *prev, *next; // the router's list of requests in flight
    brg_msg_t *request;            // owned copy of the caller's message
    size_t slot;                   // the worker slot it went to
    brg_ref_t worker;              // the incarnation it went to
    uint64_t ask_id;               // the router's ask, for a cancel
} s_request_t;

//  One worker slot.
typedef struct {
    brg_ref_t ref;      // the running incarnation, or BRG_REF_NONE
    uint64_t in_flight; // least busy: requests relayed to ref and not answered
    bool down;          // a send found ref dead; its EXIT is on the way
} s_slot_t;

//  The router's state: owned by its actor, touched only on its thread.
typedef struct {
    brg_system_t *sys;         // the system it lives in
    brg_ref_t parent;          // the linked parent, or BRG_REF_NONE for a root
    brg_router_opts_t opts;    // copied (opts.name is not kept)
    s_slot_t *slots;           // opts.workers slots
    size_t cursor;             // the slot to try first
    s_request_t *requests;     // least busy: in flight, newest first
    uint64_t *ring;            // times of the last max_restarts restarts
    uint32_t ring_len;         // times in the ring
    uint32_t ring_next;        // where the next time goes
    brg_router_stats_t counts; // routed, rerouted, dropped, restarts
    bool stopping;             // shutting down: restart nothing
} s_router_t;

static void
s_router_destroy(void *state)
{
    s_router_t *self = state;
    while (self->requests) {
        s_request_t *r = self->requests;
        self->requests = r->next;
        brg_msg_destroy(&r->request);
        free(r);
    }
    free(self->slots);
    free(self->ring);
    free(self);
}

static s_router_t *
s_router_new(brg_system_t *sys, const brg_router_opts_t *opts, brg_ref_t parent)
{
    s_router_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->sys = sys;
    self->parent = parent;
    self->opts = *opts;
    self->opts.name = NULL;
    self->slots = calloc((size_t)opts->workers, sizeof(*self->slots));
    if (opts->max_restarts > 0)
        self->ring = calloc((size_t)opts->max_restarts, sizeof(*self->ring));
    if (!self->slots || (opts->max_restarts > 0 && !self->ring)) {
        s_router_destroy(self);
        return NULL;
    }
    self->counts.workers = (uint64_t)opts->workers;
    return self;
}

static bool
s_live(const s_slot_t *slot)
{
    return !brg_ref_is_none(slot->ref) && !slot->down;
}

//  ---------------------------------------------------------------------------
//  Workers: start, exit, stop.

static int
s_start_worker(s_router_t *self, brg_ctx_t *ctx, size_t i)
{
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state_size = self->opts.state_size;
    so.state_destroy = self->opts.state_destroy;
    so.init = self->opts.init;
    so.init_arg = self->opts.init_arg;
    so.flags = self->opts.flags | BRG_SPAWN_LINK;
    s_slot_t *slot = &self->slots[i];
    slot->in_flight = 0;
    slot->down = false;
    slot->ref = BRG_REF_NONE;
    return brg_spawn(ctx, self->opts.behaviour, &so, &slot->ref);
}

//  Stop the workers and exit with reason (see the design notes).
static void
s_shutdown(s_router_t *self, brg_ctx_t *ctx, const brg_exit_reason_t *reason)
{
    self->stopping = true;
    for (int i = 0; i < self->opts.workers; i++) {
        if (!brg_ref_is_none(self->slots[i].ref))
            brg_exit(self->sys, self->slots[i].ref, BRG_EXIT_SHUTDOWN);
        self->slots[i].ref = BRG_REF_NONE;
    }
    switch (reason->kind) {
    case BRG_EXIT_NORMAL:
        brg_stop(ctx);
        break;
    case BRG_EXIT_FAILED:
        brg_fail(ctx, reason->code < 0 ? reason->code : BRG_EFAILED, reason->text);
        break;
    default:
        // Shutdown (and killed or noproc from a parent, which only a
        // supervisor's decision could tell apart): end with shutdown.
        brg_trap_exits(ctx, false);
        if (brg_exit(self->sys, brg_self(ctx), BRG_EXIT_SHUTDOWN) != BRG_OK)
            brg_fail(ctx, BRG_ENOMEM, "router: cannot signal its own exit");
        break;
    }
}

static void
s_fail(s_router_t *self, brg_ctx_t *ctx, int code, const char *text)
{
    brg_exit_reason_t reason = {BRG_EXIT_FAILED, code, ""};
    snprintf(reason.text, sizeof(reason.text), "%s", text);
    s_shutdown(self, ctx, &reason);
}

//  True if one more restart now stays within the intensity.
static bool
s_restart_allowed(s_router_t *self)
{
    uint32_t cap = (uint32_t)self->opts.max_restarts;
    if (cap == 0)
        return false;
    uint64_t now = brg_system_now_ms(self->sys);
    if (self->ring_len == cap) {
        uint64_t oldest = self->ring[self->ring_next]; // the ring is full: next is oldest
        if (now - oldest < (uint64_t)self->opts.restart_period_ms)
            return false;
    } else {
        self->ring_len++;
    }
    self->ring[self->ring_next] = now;
    self->ring_next = (self->ring_next + 1) % cap;
    return true;
}

static void
s_on_exit(s_router_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    brg_exit_reason_t reason;
    if (brg_msg_read_exit(msg, &from, &reason) != BRG_OK)
        return;
    for (int i = 0; i < self->opts.workers; i++) {
        if (!brg_ref_eq(self->slots[i].ref, from))
            continue;
        self->slots[i].ref = BRG_REF_NONE;
        if (self->stopping)
            return;
        if (!s_restart_allowed(self)) {
            s_fail(self, ctx, BRG_EFAILED, "router: reached max restart intensity");
            return;
        }
        int rc = s_start_worker(self, ctx, (size_t)i);
        if (rc != BRG_OK) {
            s_fail(self, ctx, rc, "router: cannot restart a worker");
            return;
        }
        self->counts.restarts++;
        return;
    }
    if (brg_ref_eq(from, self->parent) || brg_ref_is_none(from))
        s_shutdown(self, ctx, &reason);
    // Anything else: a stale incarnation or a stranger; ignored.
}

//  ---------------------------------------------------------------------------
//  Routing.

//  The next slot to try, or -1 if none is live. Round robin: the next live
//  slot from the cursor. Least busy: the live slot with the fewest in
//  flight, ties to the first from the cursor.
static int
s_pick(s_router_t *self)
{
    size_t n = (size_t)self->opts.workers;
    int best = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (self->cursor + k) % n;
        if (!s_live(&self->slots[i]))
            continue;
        if (self->opts.strategy == BRG_ROUTE_ROUND_ROBIN)
            return (int)i;
        if (best < 0 || self->slots[i].in_flight < self->slots[best].in_flight)
            best = (int)i;
    }
    return best;
}

//  The least-busy ask callback: relay the answer, lower the count.
static int
s_on_worker_reply(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_router_t *self = brg_state(ctx);
    s_request_t *r = arg;
    if (r->prev)
        r->prev->next = r->next;
    else
        self->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    s_slot_t *slot = &self->slots[r->slot];
    if (brg_ref_eq(slot->ref, r->worker) && slot->in_flight > 0)
        slot->in_flight--;
    if (status == BRG_ETIMEDOUT)
        brg_cancel(ctx, r->worker, r->ask_id); // the worker may still be at it: stop it
    if (status == BRG_OK) {
        brg_msg_t *copy = brg_msg_dup(reply);
        if (copy)
            brg_reply_to(ctx, r->request, &copy);
        else
            brg_reply_error_to(ctx, r->request, BRG_ENOMEM);
    } else {
        // For a request that was not an ask this sends nothing: there is no
        // one waiting for an error.
        brg_reply_error_to(ctx, r->request, status);
    }
    brg_msg_destroy(&r->request);
    free(r);
    return BRG_OK;
}

//  Hand msg to slot i. BRG_ENOACTOR if the worker is dead.
static int
s_send_to(s_router_t *self, brg_ctx_t *ctx, const brg_msg_t *msg, size_t i)
{
    s_slot_t *slot = &self->slots[i];
    if (self->opts.strategy == BRG_ROUTE_ROUND_ROBIN)
        return brg_forward(ctx, slot->ref);
    s_request_t *r = calloc(1, sizeof(*r));
    brg_msg_t *copy = brg_msg_dup(msg);
    if (r)
        r->request = brg_msg_dup(msg);
    if (!r || !r->request || !copy) {
        if (r)
            brg_msg_destroy(&r->request);
        free(r);
        brg_msg_destroy(&copy);
        return BRG_ENOMEM;
    }
    r->slot = i;
    r->worker = slot->ref;
    int rc = brg_ask_id(ctx, slot->ref, &copy, self->opts.request_timeout_ms, s_on_worker_reply, r,
                        &r->ask_id);
    if (rc != BRG_OK) {
        brg_msg_destroy(&r->request);
        free(r);
        return rc;
    }
    r->next = self->requests;
    if (r->next)
        r->next->prev = r;
    self->requests = r;
    slot->in_flight++;
    return BRG_OK;
}

//  A caller gave up a request (see the design notes).
static void
s_on_cancel(s_router_t *self, brg_ctx_t *ctx, const brg_msg_t *cancel)
{
    if (self->opts.strategy == BRG_ROUTE_ROUND_ROBIN) {
        for (size_t i = 0; i < (size_t)self->opts.workers; i++)
            if (s_live(&self->slots[i]))
                brg_forward(ctx, self->slots[i].ref);
        return;
    }
    for (s_request_t *r = self->requests; r; r = r->next) {
        if (brg_cancel_matches(cancel, r->request)) {
            brg_cancel(ctx, r->worker, r->ask_id);
            return;
        }
    }
}

static int
s_route(s_router_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int rc = BRG_ENOACTOR;
    bool retried = false;
    // Each failure marks a slot down, so this tries every slot at most once.
    for (int tries = 0; tries < self->opts.workers; tries++) {
        int i = s_pick(self);
        if (i < 0)
            break;
        rc = s_send_to(self, ctx, msg, (size_t)i);
        if (rc == BRG_OK) {
            self->cursor = ((size_t)i + 1) % (size_t)self->opts.workers;
            self->counts.routed++;
            self->counts.rerouted += retried;
            return BRG_OK;
        }
        if (rc != BRG_ENOACTOR)
            break; // out of memory: another worker would not help
        self->slots[i].down = true;
        retried = true;
    }
    self->counts.dropped++;
    // An ask gets its answer now; anything else becomes a dead letter.
    if (brg_reply_error(ctx, rc) == BRG_EINVAL)
        return BRG_UNHANDLED;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  The router's own protocol.

static void
s_on_stats(s_router_t *self, brg_ctx_t *ctx)
{
    brg_router_stats_t c = self->counts;
    c.live = 0;
    c.in_flight = 0;
    for (int i = 0; i < self->opts.workers; i++) {
        c.live += s_live(&self->slots[i]);
        c.in_flight += self->slots[i].in_flight;
    }
    brg_msg_t *reply = brg_msg_new(BRG_ROUTER_TAG_STATS);
    const uint64_t fields[] = {c.workers, c.live,     c.routed,   c.rerouted,
                               c.dropped, c.restarts, c.in_flight};
    for (size_t k = 0; reply && k < sizeof(fields) / sizeof(fields[0]); k++)
        if (brg_msg_add_uint(reply, fields[k]) != BRG_OK)
            brg_msg_destroy(&reply);
    if (reply)
        brg_reply(ctx, &reply);
    else
        brg_reply_error(ctx, BRG_ENOMEM);
}

static void
s_on_workers(s_router_t *self, brg_ctx_t *ctx)
{
    brg_msg_t *reply = brg_msg_new(BRG_ROUTER_TAG_WORKERS);
    if (reply && brg_msg_add_array(reply, (uint32_t)self->opts.workers) != BRG_OK)
        brg_msg_destroy(&reply);
    for (int i = 0; reply && i < self->opts.workers; i++) {
        const s_slot_t *slot = &self->slots[i];
        int rc = s_live(slot) ? brg_msg_add_ref(reply, slot->ref) : brg_msg_add_nil(reply);
        if (rc != BRG_OK)
            brg_msg_destroy(&reply);
    }
    if (reply)
        brg_reply(ctx, &reply);
    else
        brg_reply_error(ctx, BRG_ENOMEM);
}

static int
s_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_router_t *self = brg_state(ctx);
    if (self->stopping) {
        // Between brg_exit to itself and the exit (the signal overtakes the
        // mailbox, so this is rare): an ask is told at once.
        return brg_reply_error(ctx, BRG_ECLOSED) == BRG_EINVAL ? BRG_UNHANDLED : BRG_OK;
    }
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        s_on_exit(self, ctx, msg);
        return BRG_OK;
    }
    if (brg_msg_is_cancel(msg)) {
        s_on_cancel(self, ctx, msg); // never routed as a request
        return BRG_OK;
    }
    if (strncmp(brg_msg_tag(msg), S_PREFIX, sizeof(S_PREFIX) - 1) != 0)
        return s_route(self, ctx, msg);
    if (brg_msg_is(msg, BRG_ROUTER_TAG_STATS))
        s_on_stats(self, ctx);
    else if (brg_msg_is(msg, BRG_ROUTER_TAG_WORKERS))
        s_on_workers(self, ctx);
    else
        return BRG_UNHANDLED;
    return BRG_OK;
}

static int
s_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    s_router_t *self = brg_state(ctx);
    brg_trap_exits(ctx, true);
    for (int i = 0; i < self->opts.workers; i++) {
        int rc = s_start_worker(self, ctx, (size_t)i);
        if (rc != BRG_OK) {
            s_fail(self, ctx, rc, "router: cannot start a worker");
            return BRG_OK; // s_fail ends the router once init returns
        }
    }
    return BRG_OK;
}

static int
s_opts_check(const brg_router_opts_t *opts)
{
    if (!opts->behaviour || opts->workers < 1 || opts->workers > BRG_ROUTER_WORKERS_MAX)
        return BRG_EINVAL;
    if (opts->strategy != BRG_ROUTE_ROUND_ROBIN && opts->strategy != BRG_ROUTE_LEAST_BUSY)
        return BRG_EINVAL;
    if ((opts->flags & ~(unsigned)BRG_SPAWN_BLOCKING) != 0)
        return BRG_EINVAL;
    if (opts->request_timeout_ms < 0 || opts->max_restarts < 0 ||
        opts->max_restarts > BRG_ROUTER_RESTARTS_MAX || opts->restart_period_ms <= 0)
        return BRG_EINVAL;
    return BRG_OK;
}

static int
s_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_router_opts_t *opts, brg_ref_t *router)
{
    int rc = s_opts_check(opts);
    if (rc != BRG_OK)
        return rc;
    s_router_t *self = s_router_new(sys, opts, ctx ? brg_self(ctx) : BRG_REF_NONE);
    if (!self)
        return BRG_ENOMEM;
    return brg__actors_spawn(sys, ctx, s_behaviour, self, s_router_destroy, s_init, opts->name,
                             router);
}

//  ---------------------------------------------------------------------------
//  Public API

void
brg_router_opts_init(brg_router_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
    opts->strategy = BRG_ROUTE_ROUND_ROBIN;
    opts->workers = 4;
    opts->request_timeout_ms = 30000;
    opts->max_restarts = 10;
    opts->restart_period_ms = 5000;
}

int
brg_router_spawn(brg_ctx_t *ctx, const brg_router_opts_t *opts, brg_ref_t *router)
{
    assert(ctx);
    assert(opts);
    return s_spawn(brg_ctx_system(ctx), ctx, opts, router);
}

int
brg_router_spawn_root(brg_system_t *sys, const brg_router_opts_t *opts, brg_ref_t *router)
{
    assert(sys);
    assert(opts);
    return s_spawn(sys, NULL, opts, router);
}

brg_msg_t *
brg_router_msg_stats(void)
{
    return brg_msg_new(BRG_ROUTER_TAG_STATS);
}

brg_msg_t *
brg_router_msg_workers(void)
{
    return brg_msg_new(BRG_ROUTER_TAG_WORKERS);
}

int
brg_router_read_stats(const brg_msg_t *reply, brg_router_stats_t *out)
{
    assert(reply);
    assert(out);
    uint64_t f[7];
    int rc = brg__actors_read_uints(reply, BRG_ROUTER_TAG_STATS, f, 7);
    if (rc != BRG_OK)
        return rc;
    *out = (brg_router_stats_t){f[0], f[1], f[2], f[3], f[4], f[5], f[6]};
    return BRG_OK;
}

int
brg_router_read_workers(const brg_msg_t *reply, brg_ref_t *out, size_t max)
{
    assert(reply);
    assert(out || max == 0);
    if (!brg_msg_is(reply, BRG_ROUTER_TAG_WORKERS))
        return BRG_ETYPE;
    size_t pos = 0;
    uint32_t count;
    int rc = brg_msg_read_array(reply, &pos, &count);
    if (rc != BRG_OK)
        return rc == BRG_ENODATA ? BRG_EBADMSG : rc;
    for (uint32_t k = 0; k < count; k++) {
        brg_ref_t ref = BRG_REF_NONE;
        rc = brg_msg_peek(reply, pos) == BRG_TYPE_NIL ? brg_msg_read_nil(reply, &pos)
                                                      : brg_msg_read_ref(reply, &pos, &ref);
        if (rc != BRG_OK)
            return rc == BRG_ENODATA ? BRG_EBADMSG : rc;
        if (k < max)
            out[k] = ref;
    }
    return count > INT32_MAX ? BRG_EBADMSG : (int)count;
}

//  Ask the router request and hand back its reply.
static int
s_system_ask(brg_system_t *sys, brg_ref_t router, brg_msg_t *request, int timeout_ms,
             brg_msg_t **reply)
{
    if (!request)
        return BRG_ENOMEM;
    return brg_system_ask(sys, router, &request, timeout_ms, reply);
}

static int
s_read_stats(const brg_msg_t *reply, void *out)
{
    return brg_router_read_stats(reply, out);
}

int
brg_router_stats(brg_system_t *sys, brg_ref_t router, int timeout_ms, brg_router_stats_t *out)
{
    assert(sys);
    assert(out);
    return brg__actors_ask_read(sys, router, brg_router_msg_stats(), timeout_ms, s_read_stats, out);
}

int
brg_router_workers(brg_system_t *sys, brg_ref_t router, int timeout_ms, brg_ref_t *out, size_t max)
{
    assert(sys);
    assert(out || max == 0);
    brg_msg_t *reply = NULL;
    int rc = s_system_ask(sys, router, brg_router_msg_workers(), timeout_ms, &reply);
    if (rc == BRG_OK)
        rc = brg_router_read_workers(reply, out, max);
    brg_msg_destroy(&reply);
    return rc;
}
