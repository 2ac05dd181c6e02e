//  supervisor - OTP-style supervisors, built on the public API only
//
//  Design notes.
//
//  A supervisor is an ordinary actor that traps exits. Its state (s_sup_t)
//  holds copies of the child specs and one record per child (s_child_t) in a
//  doubly linked list in start order. A hash map from a running child's ref
//  to its record finds the child an EXIT comes from in O(1), which matters
//  for a dynamic supervisor with thousands of children.
//
//  Links. The supervisor links to each child right after the start function
//  returns it. From then on exactly one EXIT comes per child incarnation:
//  with the real reason, or with noproc if the child died before the link
//  reached it. If brg_link itself says BRG_ENOACTOR, the child is already
//  gone and no EXIT will explain why, so the supervisor takes it as an exit
//  with reason noproc at once (through the retry below). An EXIT from a ref
//  that is no longer a child (a stale incarnation, or some other actor that
//  linked to the supervisor) is ignored, as OTP does; one from the parent or
//  from brg_exit (sender BRG_REF_NONE) is a request to shut down.
//
//  Monitors while stopping. A child that unlinked itself sends no EXIT, so,
//  as OTP's shutdown/2 does, the supervisor monitors a child from the moment
//  it asks it to stop: the stop ends with whichever of EXIT and DOWN comes
//  first. After an EXIT it demonitors (the DOWN in flight is dropped); after
//  a DOWN it unlinks (an EXIT in flight is ignored by the runtime).
//
//  Names. The runtime closes a dying actor's mailbox and releases its name
//  in one step, before it sends EXIT and DOWN (runtime/registry.c): whoever
//  learns that an actor is dead finds its name free. A child is started
//  again only after its previous incarnation's EXIT (or DOWN), so its own
//  old incarnation never holds the name. But an incarnation of another
//  supervisor may: when a nested supervisor is killed, its children die of
//  its exit signal on their own time, and the parent restarts the nested
//  supervisor meanwhile. So before a start function runs, a child with a
//  name looks it up; if an actor holds it, the child waits ("restarting"):
//  it monitors the holder and starts when the DOWN comes, which is after the
//  name was released. The wait is bounded by the child's shutdown time (an
//  old incarnation that takes longer would have been killed by its own
//  supervisor; brutal: the default worker shutdown; infinity: no bound); at
//  the bound the start fails with BRG_EEXIST, like one whose name some other
//  actor holds for good. A name taken between the look-up and the start
//  makes the start fail too (the new child is killed, unlinked first).
//
//  The state machine. A behaviour must not block, so every sequence that
//  waits is a phase in s_sup_t, moved on by events:
//
//    phase          waits for                       then
//    STARTING       the ready message of a nested   RUNNING once every child is
//      (init)       supervisor it has just started, started, in order
//                   or the DOWN of a name's holder
//    RUNNING        nothing (one_for_one and        RESTARTING on a group restart,
//                   dynamic restart at once; a      SHUTTING_DOWN on a request or
//                   child may wait for its name)    too many restarts
//    RESTARTING     first the EXIT of the group     RUNNING, once every member
//                   member it is stopping, then     (order >= group_from) is stopped
//                   ready messages, as STARTING     and started again in order
//    SHUTTING_DOWN  the EXITs (or DOWNs) of the     DONE, once no child runs
//                   children it is stopping
//    DONE           nothing                         the actor exits with `final`
//
//  Every event handler ends with s_advance(), which moves the machine as far
//  as it can without waiting. A static supervisor stops its children one at
//  a time in reverse start order; stopping one is a monitor, brg_exit(shutdown)
//  and a kill timer (brg_send_after to itself, carrying the child's ref, so a
//  timer that fires after the EXIT finds no STOPPING child and is ignored),
//  then brg_exit(killed); brutal kill skips to the last step. A dynamic supervisor
//  stops all its children at once, as OTP does: their order means nothing.
//  Events in the middle of a sequence are folded in: while a group is being
//  stopped, a member that exits by itself is only marked stopped (the group
//  restart takes it along) and a child outside a rest_for_one group whose
//  exit calls for a restart widens the group; once the group is being
//  started again, a failure is decided afresh (a new group restart abandons
//  what was left to start: the new group covers it); a shutdown request
//  abandons any start sequence and waits for the member being stopped.
//
//  Nested supervisors start synchronously, as in OTP: s_start notes in a
//  thread-local (s_starting) which supervisor's start function is running; a
//  supervisor spawned from inside it (s_spawn) learns that its parent is a
//  supervisor and sends it S_TAG_READY once its own start sequence is done,
//  and the parent waits for that before it starts its next child. An EXIT
//  instead of the ready message at init is a failed start. Ordinary children
//  are not waited for: their start order is their spawn order.
//
//  Failed starts. A start function that fails during a restart, or a child
//  that died before it could be linked, is marked pending ("restarting"),
//  and the supervisor sends itself one retry message; the retry applies the
//  restart decision as if the child had exited (reason failed, or noproc).
//  So a child that cannot start uses up restart intensity and escalates,
//  without recursion, and other messages are served in between (OTP's
//  try_again_restart): a terminate request can end the loop. At init a
//  failed start instead shuts the supervisor down (OTP: the supervisor fails
//  to start). A start function that answers BRG_CHILD_IGNORE starts nothing:
//  the child is left stopped (static) or forgotten (dynamic, temporary).
//
//  Requests that wait. terminate_child answers once the child is dead and
//  removed: the request is kept (brg_msg_dup) on the child and answered with
//  brg_reply_to when its EXIT or DOWN has been handled.
//
//  Intensity. The times (brg_system_now_ms) of the last intensity + 1
//  restarts are kept in a ring; the restart that finds the oldest of them
//  within period_ms is one too many: the supervisor gives up (s_give_up)
//  with reason shutdown, as OTP's does, so a parent whose spec for it is
//  transient does not restart it.
//
//  Threads. Everything here runs on the supervisor's own thread, except
//  brg_supervisor_add_child's parking of a spec (s_park, on the caller's
//  thread), which s_parked_lock orders against the supervisor's s_unpark.
//
//  Exit. Once no child runs, the supervisor exits with `final`: brg_stop for
//  normal, brg_fail for failed; for shutdown or killed it stops trapping and
//  sends itself that exit signal, the only way the public API has to end an
//  actor with that reason. Messages handled in DONE change nothing.
#include "actors_internal.h"

#include <pthread.h> // the parked specs of brg_supervisor_add_child

//  Internal messages the supervisor sends itself (accepted only from itself).
#define S_TAG_KILL "brg.sup.kill"   // a child's shutdown time is up; payload: its ref
#define S_TAG_RETRY "brg.sup.retry" // decide for the pending children
#define S_TAG_NAME "brg.sup.name"   // a wait for a name is up; payload: the child's order
//  From a nested supervisor to its parent supervisor: my children are up.
#define S_TAG_READY "brg.sup.ready"
#define S_READY_WAIT_MS (24 * 3600 * 1000)        // sync_init: an init that never ends
#define S_TAG_UP "brg.sup.up"                     // to report_to: every child is up
#define S_TAG_START_FAILED "brg.sup.start_failed" // to report_to: id, code

typedef enum { S_STARTING, S_RUNNING, S_RESTARTING, S_SHUTTING_DOWN, S_DONE } s_phase_t;

typedef enum { S_DEAD, S_ALIVE, S_STOPPING } s_state_t;

//  s_start's answer "the child waits for its name" (besides BRG_OK,
//  BRG_CHILD_IGNORE and the negative codes).
#define S_WAITING 2

//  A child spec, copied.
typedef struct {
    char *id;                 // owned
    char *name;               // owned, or NULL
    brg_child_start_fn start; // the user's start function
    void *arg;                // its argument (not owned)
    brg_restart_t restart;    // restart type
    int shutdown_ms;          // > 0, BRG_SHUTDOWN_BRUTAL or BRG_SHUTDOWN_INFINITY (resolved)
    brg_child_type_t type;    // worker or supervisor
} s_spec_t;

//  A terminate request that waits for its child's exit.
typedef struct s_waiter {
    struct s_waiter *next;
    brg_msg_t *request; // owned: a brg_msg_dup of the request
} s_waiter_t;

//  One child, running or not.
typedef struct s_child {
    struct s_child *prev, *next; // start order
    const s_spec_t *spec;        // the supervisor's copy
    brg_msg_t *args;             // dynamic: the start request (owned); static: NULL
    brg_ref_t ref;               // the running incarnation, or BRG_REF_NONE
    brg_ref_t last_ref;          // the last incarnation that ran (found while restarting)
    uint64_t order;              // position in start order (static: the spec's index)
    uint64_t restarts;           // times started again
    uint64_t stop_mon;           // STOPPING: the monitor on it, or 0
    brg_timer_id_t kill_timer;   // armed while STOPPING with a finite shutdown, else 0
    uint64_t name_mon;           // name_wait: the monitor on the name's holder
    brg_timer_id_t name_timer;   // name_wait: the bound of the wait, or 0
    s_waiter_t *waiters;         // terminate requests to answer when it has exited
    s_spec_t *own_spec;          // added at run time: its spec (owned), else NULL
    uint8_t state;               // s_state_t
    uint8_t pending_kind;        // brg_exit_kind_t the retry decides with
    bool pending;                // waiting for the retry message
    bool name_wait;              // waiting for its name's holder to end
    bool terminating;            // stopped on request: not restarted when it exits
    bool started;                // started once: a further start is a restart
    bool is_sup;                 // the running incarnation is a nested supervisor
} s_child_t;

//  Running children by ref: open addressing, linear probing, no tombstones.
typedef struct {
    s_child_t **slots; // capacity entries, NULL = empty
    uint32_t capacity; // a power of two, or 0
    uint32_t count;
} s_map_t;

//  The supervisor's state: owned by its actor, touched only on its thread.
typedef struct {
    brg_system_t *sys;       // the system it lives in
    brg_ref_t parent;        // the linked parent, or BRG_REF_NONE for a root
    brg_strategy_t strategy; // restart strategy
    int period_ms;           // intensity period
    s_spec_t *specs;         // copied specs
    size_t n_specs;          // their number
    s_child_t *head, *tail;  // children in start order
    s_map_t running;         // ALIVE and STOPPING children by ref
    uint64_t n_children;     // records in the list
    uint64_t n_running;      // ALIVE + STOPPING
    uint64_t n_stopping;     // STOPPING
    uint64_t next_order;     // order of the next record
    uint64_t *ring;          // times of the last ring_cap restarts
    uint32_t ring_cap;       // intensity + 1
    uint32_t ring_len;       // times in the ring
    uint32_t ring_next;      // where the next time goes
    uint64_t restarts;       // children started again, in total
    uint64_t exits;          // child exits seen
    s_phase_t phase;         // see the design notes
    uint64_t group_from;     // RESTARTING: the group is the children of order >= this
    bool group_stopped;      // RESTARTING: the group is down; starting it from cursor
    s_child_t *cursor;       // STARTING, RESTARTING: the next child to start
    s_child_t *awaiting;     // a nested supervisor whose ready message we wait for,
                             //   or a child that waits for its name
    brg_ref_t spawned_sup;   // a supervisor our current start function spawned
    brg_exit_reason_t final; // SHUTTING_DOWN, DONE: the reason to exit with
    bool retry_posted;       // a retry message is on its way
    bool report_ready;       // started by a supervisor: send it S_TAG_READY once up
    bool sync_init;          // wait for each child's init before the next (opts.sync_start)
    uint64_t await_seq;      // the brg_ask_ready under way for `awaiting`, by number
    brg_ref_t report_to;     // brg_supervisor_spawn_sync's inbox, until it is told
} s_sup_t;

//  The supervisor whose start function runs on this thread now, if any: lets
//  a supervisor spawned by it know that its parent is a supervisor, which
//  waits for its S_TAG_READY before it starts the next child.
static _Thread_local s_sup_t *s_starting;

//  ---------------------------------------------------------------------------
//  The map of running children

static uint32_t
s_hash(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return (uint32_t)id;
}

//  Make room for one more entry, so that the next s_map_put cannot fail.
static int
s_map_reserve(s_map_t *self)
{
    if ((uint64_t)(self->count + 1) * 4 <= (uint64_t)self->capacity * 3)
        return BRG_OK;
    uint32_t capacity = self->capacity ? self->capacity * 2 : 16;
    s_child_t **slots = calloc(capacity, sizeof(*slots));
    if (!slots)
        return BRG_ENOMEM;
    for (uint32_t i = 0; i < self->capacity; i++) {
        s_child_t *c = self->slots[i];
        if (!c)
            continue;
        uint32_t j = s_hash(c->ref.id) & (capacity - 1);
        while (slots[j])
            j = (j + 1) & (capacity - 1);
        slots[j] = c;
    }
    free(self->slots);
    self->slots = slots;
    self->capacity = capacity;
    return BRG_OK;
}

static void
s_map_put(s_map_t *self, s_child_t *c)
{
    uint32_t mask = self->capacity - 1;
    uint32_t j = s_hash(c->ref.id) & mask;
    while (self->slots[j])
        j = (j + 1) & mask;
    self->slots[j] = c;
    self->count++;
}

//  The slot holding ref's child, or UINT32_MAX.
static uint32_t
s_map_find(const s_map_t *self, brg_ref_t ref)
{
    if (!self->count || brg_ref_is_none(ref))
        return UINT32_MAX;
    uint32_t mask = self->capacity - 1;
    for (uint32_t j = s_hash(ref.id) & mask; self->slots[j]; j = (j + 1) & mask)
        if (brg_ref_eq(self->slots[j]->ref, ref))
            return j;
    return UINT32_MAX;
}

static s_child_t *
s_map_get(const s_map_t *self, brg_ref_t ref)
{
    uint32_t j = s_map_find(self, ref);
    return j == UINT32_MAX ? NULL : self->slots[j];
}

//  Remove ref's entry. Backward-shift deletion keeps probe chains whole.
static void
s_map_del(s_map_t *self, brg_ref_t ref)
{
    uint32_t j = s_map_find(self, ref);
    if (j == UINT32_MAX)
        return;
    uint32_t mask = self->capacity - 1;
    uint32_t hole = j;
    for (uint32_t k = (j + 1) & mask; self->slots[k]; k = (k + 1) & mask) {
        uint32_t home = s_hash(self->slots[k]->ref.id) & mask;
        // Move k into the hole unless its home lies in (hole, k], cyclically.
        bool in_range = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (!in_range) {
            self->slots[hole] = self->slots[k];
            hole = k;
        }
    }
    self->slots[hole] = NULL;
    self->count--;
}

//  ---------------------------------------------------------------------------
//  Specs

static char *
s_strdup(const char *text)
{
    size_t len = strlen(text) + 1;
    char *copy = malloc(len);
    if (copy)
        memcpy(copy, text, len);
    return copy;
}

//  Copy a checked spec into *to, its strings included, with the default
//  shutdown resolved by type. BRG_ENOMEM leaves *to to s_spec_clear.
static int
s_spec_copy(s_spec_t *to, const brg_child_spec_t *from)
{
    to->id = s_strdup(from->id);
    to->name = from->name ? s_strdup(from->name) : NULL;
    to->start = from->start;
    to->arg = from->arg;
    to->restart = from->restart;
    to->type = from->type;
    to->shutdown_ms = from->shutdown_ms;
    if (to->shutdown_ms == BRG_SHUTDOWN_DEFAULT) // OTP: by type
        to->shutdown_ms =
            to->type == BRG_CHILD_SUPERVISOR ? BRG_SHUTDOWN_INFINITY : BRG_SHUTDOWN_WORKER_DEFAULT;
    return !to->id || (from->name && !to->name) ? BRG_ENOMEM : BRG_OK;
}

static void
s_spec_clear(s_spec_t *spec)
{
    free(spec->id);
    free(spec->name);
}

//  Free a spec of its own (added at run time); NULL is fine.
static void
s_spec_free(s_spec_t *spec)
{
    if (!spec)
        return;
    s_spec_clear(spec);
    free(spec);
}

//  Specs on their way to a supervisor (brg_supervisor_add_child). A message
//  must not carry pointers: it may come from anywhere, another node
//  included, and a spec holds a start function and its arg. So the caller
//  parks a copy here under a fresh token and sends the token; the
//  supervisor claims the copy by token and its own ref, and a forged or
//  stale token finds nothing. The caller withdraws the copy if the
//  supervisor never claimed it (the ask failed or timed out).
typedef struct s_parked {
    struct s_parked *next;
    uint64_t token;
    brg_ref_t sup;  // the supervisor it is meant for
    s_spec_t *spec; // owned
} s_parked_t;

static pthread_mutex_t s_parked_lock = PTHREAD_MUTEX_INITIALIZER;
static s_parked_t *s_parked;     // s_parked_lock
static uint64_t s_parked_tokens; // s_parked_lock: the last token handed out

//  Park spec for sup. Returns its token, or 0 if out of memory.
static uint64_t
s_park(brg_ref_t sup, const brg_child_spec_t *spec)
{
    s_parked_t *p = calloc(1, sizeof(*p));
    s_spec_t *copy = calloc(1, sizeof(*copy));
    if (!p || !copy || s_spec_copy(copy, spec) != BRG_OK) {
        free(p);
        s_spec_free(copy);
        return 0;
    }
    p->sup = sup;
    p->spec = copy;
    pthread_mutex_lock(&s_parked_lock);
    p->token = ++s_parked_tokens;
    p->next = s_parked;
    s_parked = p;
    pthread_mutex_unlock(&s_parked_lock);
    return p->token;
}

//  Take the spec parked under token for sup, or NULL. The caller owns it.
static s_spec_t *
s_unpark(uint64_t token, brg_ref_t sup)
{
    s_spec_t *spec = NULL;
    pthread_mutex_lock(&s_parked_lock);
    for (s_parked_t **pp = &s_parked; *pp; pp = &(*pp)->next) {
        s_parked_t *p = *pp;
        if (p->token == token && brg_ref_eq(p->sup, sup)) {
            *pp = p->next;
            spec = p->spec;
            free(p);
            break;
        }
    }
    pthread_mutex_unlock(&s_parked_lock);
    return spec;
}

//  ---------------------------------------------------------------------------
//  Child records

static s_child_t *
s_child_add(s_sup_t *self, const s_spec_t *spec, brg_msg_t *args)
{
    s_child_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->spec = spec;
    c->args = args;
    c->order = self->next_order++;
    c->state = S_DEAD;
    c->prev = self->tail;
    if (self->tail)
        self->tail->next = c;
    else
        self->head = c;
    self->tail = c;
    self->n_children++;
    return c;
}

//  Answer and free terminate requests: the child has exited (or is gone).
static void
s_answer_waiters(brg_ctx_t *ctx, s_waiter_t *w)
{
    while (w) {
        s_waiter_t *next = w->next;
        brg_msg_t *ok = brg_msg_new(BRG_SUP_TAG_OK);
        if (ok)
            brg_reply_to(ctx, w->request, &ok);
        else
            brg_reply_error_to(ctx, w->request, BRG_ENOMEM);
        brg_msg_destroy(&w->request);
        free(w);
        w = next;
    }
}

//  Stop waiting for c's name (c->name_wait).
static void
s_unwait(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c)
{
    if (!c->name_wait)
        return;
    brg_demonitor(ctx, c->name_mon); // BRG_ENOTFOUND if its DOWN came: fine
    if (c->name_timer)
        brg_timer_cancel(self->sys, c->name_timer);
    c->name_mon = 0;
    c->name_timer = 0;
    c->name_wait = false;
}

//  Forget a child that does not run. Terminate requests waiting on it are
//  answered: it is gone.
static void
s_child_remove(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c)
{
    assert(c->state == S_DEAD);
    s_unwait(self, ctx, c);
    s_answer_waiters(ctx, c->waiters);
    if (self->cursor == c)
        self->cursor = c->next;
    if (self->awaiting == c)
        self->awaiting = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        self->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        self->tail = c->prev;
    brg_msg_destroy(&c->args);
    s_spec_free(c->own_spec);
    free(c);
    self->n_children--;
}

//  ---------------------------------------------------------------------------
//  Creation and destruction of the state

static void
s_sup_destroy(void *state)
{
    s_sup_t *self = state;
    if (!self)
        return;
    s_child_t *c = self->head;
    while (c) {
        s_child_t *next = c->next;
        if (c->kill_timer)
            brg_timer_cancel(self->sys, c->kill_timer);
        if (c->name_timer)
            brg_timer_cancel(self->sys, c->name_timer);
        // Unanswered terminate requests: their askers get BRG_ENOACTOR or time out.
        for (s_waiter_t *w = c->waiters, *wn; w; w = wn) {
            wn = w->next;
            brg_msg_destroy(&w->request);
            free(w);
        }
        brg_msg_destroy(&c->args);
        s_spec_free(c->own_spec);
        free(c);
        c = next;
    }
    for (size_t i = 0; i < self->n_specs; i++)
        s_spec_clear(&self->specs[i]);
    free(self->specs);
    free(self->running.slots);
    free(self->ring);
    free(self);
}

//  One spec's own fields are in range.
static bool
s_spec_ok(const brg_child_spec_t *spec)
{
    if (!spec->id || spec->id[0] == '\0' || strlen(spec->id) > BRG_CHILD_ID_MAX || !spec->start)
        return false;
    if (spec->restart < BRG_RESTART_PERMANENT || spec->restart > BRG_RESTART_TEMPORARY)
        return false;
    if (spec->shutdown_ms < BRG_SHUTDOWN_DEFAULT)
        return false;
    if (spec->type < BRG_CHILD_WORKER || spec->type > BRG_CHILD_SUPERVISOR)
        return false;
    if (spec->name && (spec->name[0] == '\0' || strlen(spec->name) > BRG_NAME_MAX))
        return false;
    return true;
}

static bool
s_spec_valid(const brg_supervisor_opts_t *opts, size_t i)
{
    const brg_child_spec_t *spec = &opts->children[i];
    if (!s_spec_ok(spec))
        return false;
    for (size_t j = 0; j < i; j++)
        if (strcmp(opts->children[j].id, spec->id) == 0)
            return false;
    return true;
}

static int
s_opts_check(const brg_supervisor_opts_t *opts)
{
    if (opts->strategy < BRG_STRATEGY_ONE_FOR_ONE || opts->strategy > BRG_STRATEGY_DYNAMIC)
        return BRG_EINVAL;
    if (opts->intensity < 0 || opts->intensity > BRG_SUPERVISOR_INTENSITY_MAX ||
        opts->period_ms <= 0)
        return BRG_EINVAL;
    if ((opts->n_children > 0 && !opts->children) || opts->n_children > BRG_SUPERVISOR_CHILDREN_MAX)
        return BRG_EINVAL;
    if (opts->strategy == BRG_STRATEGY_DYNAMIC && (opts->n_children != 1 || opts->children[0].name))
        return BRG_EINVAL;
    for (size_t i = 0; i < opts->n_children; i++)
        if (!s_spec_valid(opts, i))
            return BRG_EINVAL;
    return BRG_OK;
}

//  A new state from checked options: copies the specs and, for a static
//  supervisor, makes one (not yet started) record per spec.
static s_sup_t *
s_sup_new(brg_system_t *sys, const brg_supervisor_opts_t *opts, brg_ref_t parent)
{
    s_sup_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->sys = sys;
    self->parent = parent;
    self->report_to = BRG_REF_NONE;
    self->sync_init = opts->sync_start;
    self->strategy = opts->strategy;
    self->period_ms = opts->period_ms;
    self->ring_cap = (uint32_t)opts->intensity + 1;
    self->ring = calloc(self->ring_cap, sizeof(*self->ring));
    self->specs = calloc(opts->n_children ? opts->n_children : 1, sizeof(*self->specs));
    if (!self->ring || !self->specs) {
        s_sup_destroy(self);
        return NULL;
    }
    for (size_t i = 0; i < opts->n_children; i++) {
        const brg_child_spec_t *from = &opts->children[i];
        s_spec_t *to = &self->specs[i];
        self->n_specs = i + 1; // so destroy frees what was copied so far
        if (s_spec_copy(to, from) != BRG_OK) {
            s_sup_destroy(self);
            return NULL;
        }
        if (opts->strategy != BRG_STRATEGY_DYNAMIC && !s_child_add(self, to, NULL)) {
            s_sup_destroy(self);
            return NULL;
        }
    }
    return self;
}

//  ---------------------------------------------------------------------------
//  Decisions

//  A report line (brigade/log.h, category "supervisor", about the supervisor
//  sup): "child '<id>' [(<ref>)] <what>[: <reason>]". reason may be NULL.
static void
s_report(brg_system_t *sys, brg_ref_t sup, brg_log_level_t level, const char *id, brg_ref_t child,
         const brg_exit_reason_t *reason, const char *what)
{
    if (!brg_log_enabled(sys, level))
        return;
    char ref[BRG_REF_STRLEN + 3] = "";
    if (!brg_ref_is_none(child)) {
        ref[0] = '(';
        brg_ref_format(child, ref + 1, BRG_REF_STRLEN);
        strcat(ref, ") ");
    }
    if (!reason) {
        brg_system_log(sys, level, "supervisor", sup, "child '%s' %s%s", id, ref, what);
        return;
    }
    char code[32] = "";
    if (reason->code && strcmp(brg_err_name(reason->code), "BRG_EUNKNOWN") == 0)
        snprintf(code, sizeof(code), " code %d", reason->code); // a code of the user's own
    else if (reason->code)
        snprintf(code, sizeof(code), " %s", brg_err_name(reason->code));
    // A failure without a text of its own carries its code's name as text.
    bool text = reason->text[0] != '\0' && strcmp(reason->text, brg_err_name(reason->code)) != 0;
    brg_system_log(sys, level, "supervisor", sup, "child '%s' %s%s: %s%s%s%s%s", id, ref, what,
                   brg_exit_kind_name(reason->kind), code, text ? " \"" : "",
                   text ? reason->text : "", text ? "\"" : "");
}

//  Record a restart now. False if it is one too many: more than intensity
//  restarts within period_ms.
static bool
s_restart_allowed(s_sup_t *self)
{
    // The system's clock: virtual in deterministic mode, so tests control it.
    uint64_t now = brg_system_now_ms(self->sys);
    self->ring[self->ring_next] = now;
    self->ring_next = (self->ring_next + 1) % self->ring_cap;
    if (self->ring_len < self->ring_cap)
        self->ring_len++;
    if (self->ring_len < self->ring_cap)
        return true;
    // The ring is full: ring_next holds the oldest of the last ring_cap times.
    return now - self->ring[self->ring_next] > (uint64_t)self->period_ms;
}

static bool
s_wants_restart(brg_restart_t restart, brg_exit_kind_t kind)
{
    switch (restart) {
    case BRG_RESTART_PERMANENT:
        return true;
    case BRG_RESTART_TRANSIENT:
        return kind != BRG_EXIT_NORMAL && kind != BRG_EXIT_SHUTDOWN;
    case BRG_RESTART_TEMPORARY:
        break;
    }
    return false;
}

//  Stop: no more starts or restarts; s_advance stops the children and exits
//  with reason. The first reason stands.
static void
s_begin_shutdown(s_sup_t *self, brg_ctx_t *ctx, const brg_exit_reason_t *reason)
{
    if (self->phase == S_SHUTTING_DOWN || self->phase == S_DONE)
        return;
    self->phase = S_SHUTTING_DOWN;
    self->final = *reason;
    self->cursor = NULL;
    self->awaiting = NULL;
    for (s_child_t *c = self->head; c; c = c->next) {
        s_unwait(self, ctx, c);
        c->pending = false;
    }
}

static void
s_fail(s_sup_t *self, brg_ctx_t *ctx, int code, const char *text)
{
    brg_exit_reason_t reason = {BRG_EXIT_FAILED, code, ""};
    snprintf(reason.text, sizeof(reason.text), "%s", text);
    s_begin_shutdown(self, ctx, &reason);
}

//  Too many restarts within the period: give up. OTP's supervisor reports
//  reached_max_restart_intensity and exits with reason shutdown, so that a
//  parent whose spec for it is transient does not restart it.
static void
s_give_up(s_sup_t *self, brg_ctx_t *ctx)
{
    brg_exit_reason_t reason = {BRG_EXIT_SHUTDOWN, 0, "reached max restart intensity"};
    s_begin_shutdown(self, ctx, &reason);
}

//  Mark c (not running) for the retry message to decide, as if it had exited
//  with kind.
static void
s_pend(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, brg_exit_kind_t kind)
{
    c->pending = true;
    c->pending_kind = (uint8_t)kind;
    if (self->retry_posted)
        return;
    if (brg_send_tag(ctx, brg_self(ctx), S_TAG_RETRY) == BRG_OK)
        self->retry_posted = true;
    else
        s_fail(self, ctx, BRG_ENOMEM, "supervisor: cannot schedule a restart");
}

//  Bind the spec's name to a new incarnation.
static int
s_register(s_sup_t *self, const char *name, brg_ref_t ref)
{
    int rc = brg_register(self->sys, name, ref);
    if (rc == BRG_EEXIST) {
        brg_ref_t holder;
        if (brg_whereis(self->sys, name, &holder) == BRG_OK && brg_ref_eq(holder, ref))
            rc = BRG_OK; // the start function named it already
    } else if (rc == BRG_ENOACTOR) {
        rc = BRG_OK; // it died already: its EXIT is on the way (we are linked)
    }
    return rc;
}

//  How long a child waits for its name's holder to end (see the design
//  notes), or -1: no bound.
static int
s_name_wait_ms(const s_spec_t *spec)
{
    if (spec->shutdown_ms == BRG_SHUTDOWN_INFINITY)
        return -1;
    return spec->shutdown_ms == BRG_SHUTDOWN_BRUTAL ? BRG_SHUTDOWN_WORKER_DEFAULT
                                                    : spec->shutdown_ms;
}

//  c's name is held by `holder`: wait for its DOWN (sent after the name is
//  released), bounded by s_name_wait_ms. S_WAITING, or BRG_ENOMEM.
static int
s_wait_name(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, brg_ref_t holder)
{
    if (brg_monitor(ctx, holder, &c->name_mon) != BRG_OK)
        return BRG_ENOMEM;
    c->name_wait = true;
    int ms = s_name_wait_ms(c->spec);
    if (ms < 0)
        return S_WAITING;
    brg_msg_t *bound = brg_msg_new(S_TAG_NAME);
    if (bound && brg_msg_add_uint(bound, c->order) == BRG_OK &&
        brg_send_after(ctx, brg_self(ctx), &bound, ms, &c->name_timer) == BRG_OK)
        return S_WAITING;
    brg_msg_destroy(&bound);
    s_unwait(self, ctx, c);
    return BRG_ENOMEM;
}

//  Start c (not running) from its spec. BRG_OK: c runs, or died before the
//  link and is pending with noproc; *started (if not NULL) is the new actor
//  either way. BRG_CHILD_IGNORE: the start function started nothing.
//  S_WAITING (only if may_wait): its name is held; c waits (name_wait) and
//  nothing was started. Otherwise nothing runs: the start function's error,
//  or BRG_ENOMEM, or BRG_EEXIST (its name is taken).
static int
s_start(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, brg_ref_t *started, bool may_wait)
{
    assert(c->state == S_DEAD);
    c->pending = false;
    s_unwait(self, ctx, c);
    brg_ref_t holder;
    if (c->spec->name && brg_whereis(self->sys, c->spec->name, &holder) == BRG_OK)
        return may_wait ? s_wait_name(self, ctx, c, holder) : BRG_EEXIST;
    if (s_map_reserve(&self->running) != BRG_OK)
        return BRG_ENOMEM;
    brg_ref_t ref = BRG_REF_NONE;
    s_sup_t *outer = s_starting; // a start function may start a supervisor that starts...
    s_starting = self;
    self->spawned_sup = BRG_REF_NONE;
    int rc = c->spec->start(ctx, c->spec->arg, c->args, &ref);
    s_starting = outer;
    if (rc == BRG_CHILD_IGNORE)
        return BRG_CHILD_IGNORE;
    if (rc < 0)
        return rc;
    if (brg_ref_is_none(ref))
        return BRG_EINVAL; // the start function said OK but gave no child
    c->is_sup = brg_ref_eq(ref, self->spawned_sup);
    if (c->started) {
        c->restarts++;
        self->restarts++;
    }
    c->started = true;
    c->last_ref = ref;
    if (started)
        *started = ref;
    rc = brg_link(ctx, ref);
    if (rc == BRG_ENOACTOR) {
        // Gone before we could link: no EXIT will say why.
        self->exits++;
        s_pend(self, ctx, c, BRG_EXIT_NOPROC);
        return BRG_OK;
    }
    if (rc == BRG_OK && c->spec->name)
        rc = s_register(self, c->spec->name, ref);
    if (rc != BRG_OK) {
        // It must not run unwatched or under no name: unlink, so its end
        // sends us nothing, and kill it.
        brg_unlink(ctx, ref);
        brg_exit(self->sys, ref, BRG_EXIT_KILLED);
        return rc;
    }
    c->ref = ref;
    c->state = S_ALIVE;
    s_map_put(&self->running, c);
    self->n_running++;
    return BRG_OK;
}

//  Restart c (not running): start it again from its spec. A start that fails
//  leaves c restarting (pending: the retry decides again); one that waits for
//  c's name leaves it restarting until the name's holder ends; an ignored one
//  leaves c stopped, or forgets it (dynamic, temporary: c is freed). Returns
//  s_start's answer.
static int
s_restart(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c)
{
    int rc = s_start(self, ctx, c, NULL, true);
    if (rc == BRG_CHILD_IGNORE) {
        if (self->strategy == BRG_STRATEGY_DYNAMIC || c->spec->restart == BRG_RESTART_TEMPORARY)
            s_child_remove(self, ctx, c);
    } else if (rc < 0 && rc != BRG_ECLOSED) { // ECLOSED: the system is being destroyed
        brg_exit_reason_t why = {BRG_EXIT_FAILED, rc, ""};
        s_report(self->sys, brg_self(ctx), BRG_LOG_ERROR, c->spec->id, BRG_REF_NONE, &why,
                 "could not be restarted");
        s_pend(self, ctx, c, BRG_EXIT_FAILED);
    }
    return rc;
}

//  Restart the children of order >= from: stop them (s_advance), then start
//  them again. A start sequence in progress (init, or an earlier group
//  restart) is abandoned: the new group's start covers what it had left,
//  including members that wait for their names.
static void
s_group_restart(s_sup_t *self, brg_ctx_t *ctx, uint64_t from)
{
    self->phase = S_RESTARTING;
    self->group_from = from;
    self->group_stopped = false;
    self->cursor = NULL;
    self->awaiting = NULL;
    for (s_child_t *c = self->tail; c && c->order >= from; c = c->prev)
        s_unwait(self, ctx, c);
}

//  c (not running) has exited with kind: restart it, take a group along,
//  forget it, or escalate. Group restarts only change the phase here; the
//  stops and starts happen in s_advance.
static void
s_decide(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, brg_exit_kind_t kind)
{
    if (self->phase == S_SHUTTING_DOWN || self->phase == S_DONE)
        return;
    bool temporary = c->spec->restart == BRG_RESTART_TEMPORARY;
    if (c->terminating) {
        // Stopped on request: a dynamic or temporary child is forgotten, a
        // static one stays listed, stopped (OTP's terminate_child).
        c->terminating = false;
        if (temporary || self->strategy == BRG_STRATEGY_DYNAMIC)
            s_child_remove(self, ctx, c);
        return;
    }
    if (self->phase == S_RESTARTING && !self->group_stopped && c->order >= self->group_from) {
        if (temporary)
            s_child_remove(self, ctx, c);
        return; // the group is being stopped anyway: the restart takes it along
    }
    if (!s_wants_restart(c->spec->restart, kind)) {
        if (temporary || self->strategy == BRG_STRATEGY_DYNAMIC)
            s_child_remove(self, ctx, c);
        return; // a static transient child stays listed, not running
    }
    brg_exit_reason_t why = {kind, 0, ""};
    if (!s_restart_allowed(self)) {
        char what[96];
        snprintf(what, sizeof(what),
                 "exited, reached max restart intensity (%u in %d ms), giving up",
                 self->ring_cap - 1, self->period_ms);
        s_report(self->sys, brg_self(ctx), BRG_LOG_ERROR, c->spec->id, BRG_REF_NONE, &why, what);
        s_give_up(self, ctx);
        return;
    }
    s_report(self->sys, brg_self(ctx), BRG_LOG_NOTICE, c->spec->id, BRG_REF_NONE, &why,
             "exited, restarting");
    switch (self->strategy) {
    case BRG_STRATEGY_ONE_FOR_ONE:
    case BRG_STRATEGY_DYNAMIC:
        s_restart(self, ctx, c);
        break;
    case BRG_STRATEGY_ONE_FOR_ALL:
        s_group_restart(self, ctx, 0);
        break;
    case BRG_STRATEGY_REST_FOR_ONE:
        // While a group is still being stopped, an earlier child widens it.
        if (self->phase == S_RESTARTING && !self->group_stopped && self->group_from < c->order)
            s_group_restart(self, ctx, self->group_from);
        else
            s_group_restart(self, ctx, c->order);
        break;
    }
}

//  ---------------------------------------------------------------------------
//  Stopping children and moving the state machine

//  Ask c (ALIVE) to stop, with its spec's shutdown. Its EXIT or DOWN, which
//  ever comes first, ends the stop.
static void
s_stop(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c)
{
    assert(c->state == S_ALIVE);
    c->state = S_STOPPING;
    self->n_stopping++;
    // OTP's shutdown/2: monitor the child while it stops, so that one that
    // unlinked itself cannot make us wait for an EXIT that never comes. Only
    // out of memory fails; then the link's EXIT is all we have. (A child that
    // is gone when the MONITOR reaches it answers DOWN noproc; while we are
    // still linked to it, s_on_down waits for its EXIT, which has the reason.)
    if (brg_monitor(ctx, c->ref, &c->stop_mon) != BRG_OK)
        c->stop_mon = 0;
    int ms = c->spec->shutdown_ms;
    if (ms != BRG_SHUTDOWN_BRUTAL) {
        // BRG_ENOACTOR: it is dying already; its EXIT or DOWN comes all the same.
        brg_exit(self->sys, c->ref, BRG_EXIT_SHUTDOWN);
        if (ms == BRG_SHUTDOWN_INFINITY)
            return;
        brg_msg_t *kill = brg_msg_new(S_TAG_KILL);
        if (kill && brg_msg_add_ref(kill, c->ref) == BRG_OK &&
            brg_send_after(ctx, brg_self(ctx), &kill, ms, &c->kill_timer) == BRG_OK)
            return;
        brg_msg_destroy(&kill);
        c->kill_timer = 0; // no timer: kill it now rather than maybe wait forever
    }
    brg_exit(self->sys, c->ref, BRG_EXIT_KILLED);
}

//  The last ALIVE child of order >= from, in start order, or NULL.
static s_child_t *
s_last_alive(s_sup_t *self, uint64_t from)
{
    for (s_child_t *c = self->tail; c && c->order >= from; c = c->prev)
        if (c->state == S_ALIVE)
            return c;
    return NULL;
}

//  Exit with self->final (see the design notes).
static void
s_exit(s_sup_t *self, brg_ctx_t *ctx)
{
    self->phase = S_DONE;
    const brg_exit_reason_t *why = &self->final;
    if (why->kind == BRG_EXIT_NORMAL) {
        brg_stop(ctx);
        return;
    }
    if (why->kind == BRG_EXIT_FAILED) {
        brg_fail(ctx, why->code < 0 ? why->code : BRG_EFAILED, why->text);
        return;
    }
    brg_trap_exits(ctx, false);
    brg_exit_kind_t kind = why->kind == BRG_EXIT_KILLED ? BRG_EXIT_KILLED : BRG_EXIT_SHUTDOWN;
    if (brg_exit(self->sys, brg_self(ctx), kind) != BRG_OK)
        brg_fail(ctx, BRG_ENOMEM, "supervisor: cannot signal its own exit");
}

//  At init: c could not be started. The supervisor fails (OTP: it fails to
//  start), once the children already started are stopped.
static void
s_start_failed(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, int code)
{
    if (!brg_ref_is_none(self->report_to)) {
        brg_msg_t *m = brg_msg_new(S_TAG_START_FAILED);
        if (m && brg_msg_add_str(m, c->spec->id) == BRG_OK &&
            brg_msg_add_int(m, code < 0 ? code : BRG_EFAILED) == BRG_OK)
            brg_send(ctx, self->report_to, &m); // lost only if the caller gave up
        brg_msg_destroy(&m);
        self->report_to = BRG_REF_NONE;
    }
    brg_exit_reason_t reason = {BRG_EXIT_FAILED, code < 0 ? code : BRG_EFAILED, ""};
    snprintf(reason.text, sizeof(reason.text), "failed to start child %s", c->spec->id);
    s_begin_shutdown(self, ctx, &reason);
}

static void s_advance(s_sup_t *self, brg_ctx_t *ctx);

//  brg_ask_ready's answer for the child we wait for (sync_init): its init
//  has run, so the next child may start. A child that died instead sends
//  its EXIT too, which decides (a failed start at init); an init that never
//  ends is a failed start (BRG_ETIMEDOUT) after S_READY_WAIT_MS.
static int
s_on_child_ready(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    s_sup_t *self = brg_state(ctx);
    if (status == BRG_ECLOSED || !self->awaiting || self->await_seq != (uintptr_t)arg)
        return BRG_OK; // stopping, or a wait that is over (the child exited)
    if (status == BRG_OK) {
        self->awaiting = NULL;
    } else if (status == BRG_ETIMEDOUT) {
        s_child_t *c = self->awaiting;
        self->awaiting = NULL;
        if (self->phase == S_STARTING)
            s_start_failed(self, ctx, c, BRG_ETIMEDOUT);
    } else {
        return BRG_OK; // it died: its EXIT comes (we are linked) and decides
    }
    s_advance(self, ctx);
    return BRG_OK;
}

//  Start the children from the cursor on, in order (restart: a group
//  restart). False if it must wait for a nested supervisor's ready message
//  or for a child's name, or if the phase changed (a start failed at init).
static bool
s_start_run(s_sup_t *self, brg_ctx_t *ctx, bool restart)
{
    while (self->cursor) {
        s_child_t *c = self->cursor;
        self->cursor = c->next;
        if (c->state != S_DEAD)
            continue;
        bool temporary = c->spec->restart == BRG_RESTART_TEMPORARY;
        if (restart && temporary) {
            s_child_remove(self, ctx, c);
            continue;
        }
        int rc = restart ? s_restart(self, ctx, c) : s_start(self, ctx, c, NULL, true);
        if (rc == S_WAITING) {
            self->cursor = c; // started once its name is free (s_on_name_free)
            self->awaiting = c;
            return false;
        }
        if (rc == BRG_CHILD_IGNORE) {
            if (!restart && temporary) // s_restart has removed c if it had to
                s_child_remove(self, ctx, c);
            continue;
        }
        if (!restart && rc < 0)
            s_start_failed(self, ctx, c, rc);
        if (self->phase == S_SHUTTING_DOWN)
            return false;
        if (c->state == S_ALIVE && c->is_sup) {
            self->awaiting = c; // its children start before our next one
            return false;
        }
        if (c->state == S_ALIVE && self->sync_init && brg_system_is_local(self->sys, c->ref) &&
            brg_ask_ready(ctx, c->ref, S_READY_WAIT_MS, s_on_child_ready,
                          (void *)(uintptr_t)++self->await_seq) == BRG_OK) {
            self->awaiting = c; // its init runs before our next child starts
            return false;
        }
    }
    return true;
}

//  A start sequence is done. A supervisor started by a supervisor tells it.
static void
s_running(s_sup_t *self, brg_ctx_t *ctx)
{
    self->phase = S_RUNNING;
    self->group_stopped = false;
    if (!brg_ref_is_none(self->report_to)) {
        brg_send_tag(ctx, self->report_to, S_TAG_UP); // lost only if the caller gave up
        self->report_to = BRG_REF_NONE;
    }
    if (self->report_ready) {
        self->report_ready = false;
        brg_send_tag(ctx, self->parent, S_TAG_READY); // lost only if the parent is gone
    }
}

//  Move the state machine as far as it goes without waiting: each step either
//  waits (return) or changes the phase, and the loop goes on from there.
static void
s_advance(s_sup_t *self, brg_ctx_t *ctx)
{
    s_child_t *c;
    for (;;) {
        switch (self->phase) {
        case S_RUNNING:
        case S_DONE:
            return;
        case S_STARTING:
            if (self->awaiting)
                return;
            if (s_start_run(self, ctx, false))
                s_running(self, ctx);
            else if (self->phase == S_STARTING)
                return; // a nested supervisor is starting
            break;
        case S_RESTARTING:
            if (!self->group_stopped) {
                if (self->n_stopping > 0)
                    return;
                if ((c = s_last_alive(self, self->group_from)) != NULL) {
                    s_stop(self, ctx, c);
                    return;
                }
                // The group is down: start it again, in order.
                self->group_stopped = true;
                for (c = self->head; c && c->order < self->group_from; c = c->next) {
                }
                self->cursor = c;
            }
            if (self->awaiting)
                return;
            if (s_start_run(self, ctx, true))
                s_running(self, ctx);
            else if (self->phase == S_RESTARTING)
                return;
            break;
        case S_SHUTTING_DOWN:
            if (self->strategy == BRG_STRATEGY_DYNAMIC) {
                for (c = self->head; c; c = c->next)
                    if (c->state == S_ALIVE)
                        s_stop(self, ctx, c);
            } else if (self->n_stopping == 0 && (c = s_last_alive(self, 0)) != NULL) {
                s_stop(self, ctx, c);
            }
            if (self->n_running > 0)
                return;
            s_exit(self, ctx);
            return;
        }
    }
}

//  ---------------------------------------------------------------------------
//  Events

//  c's EXIT (or DOWN, if it unlinked itself) came: it does not run any more.
static void
s_child_exited(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, brg_exit_kind_t kind, int code)
{
    s_waiter_t *waiters = c->waiters; // answered once c is decided for
    c->waiters = NULL;
    s_map_del(&self->running, c->ref);
    if (c->state == S_STOPPING) {
        self->n_stopping--;
        if (c->kill_timer)
            brg_timer_cancel(self->sys, c->kill_timer);
        c->kill_timer = 0;
        if (c->stop_mon)
            brg_demonitor(ctx, c->stop_mon); // its DOWN, in flight, is dropped
        c->stop_mon = 0;
    }
    c->state = S_DEAD;
    c->ref = BRG_REF_NONE;
    self->n_running--;
    self->exits++;
    if (self->awaiting == c) {
        self->awaiting = NULL;
        if (self->phase == S_STARTING && !c->terminating) {
            s_start_failed(self, ctx, c, code); // a nested supervisor that did not come up
            s_answer_waiters(ctx, waiters);
            return;
        }
    }
    s_decide(self, ctx, c, kind);
    s_answer_waiters(ctx, waiters);
}

//  OTP's child_terminated and shutdown_error reports for c's end, whether
//  its EXIT or (while it stops) its DOWN told us; a kill after the shutdown
//  time was reported when it was sent.
static void
s_report_exit(s_sup_t *self, brg_ctx_t *ctx, const s_child_t *c, brg_ref_t from,
              const brg_exit_reason_t *reason)
{
    if (reason->kind == BRG_EXIT_NORMAL || reason->kind == BRG_EXIT_SHUTDOWN)
        return;
    if (c->state == S_ALIVE || reason->kind == BRG_EXIT_FAILED)
        s_report(self->sys, brg_self(ctx), BRG_LOG_ERROR, c->spec->id, from, reason,
                 c->state == S_ALIVE ? "terminated" : "failed while shutting down");
}

static void
s_on_exit(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    brg_exit_reason_t reason;
    if (brg_msg_read_exit(msg, &from, &reason) != BRG_OK)
        return;
    s_child_t *c = s_map_get(&self->running, from);
    if (c) {
        s_report_exit(self, ctx, c, from, &reason);
        s_child_exited(self, ctx, c, reason.kind, reason.code);
    } else if (brg_ref_is_none(from) || brg_ref_eq(from, self->parent))
        s_begin_shutdown(self, ctx, &reason);
    // else: a stale incarnation, or an actor that linked to us: ignored.
}

//  The name c waits for is free (its holder's DOWN came): start c.
static void
s_on_name_free(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c)
{
    s_unwait(self, ctx, c);
    if (self->awaiting == c) {
        self->awaiting = NULL; // s_advance starts it: it is the cursor
        return;
    }
    s_restart(self, ctx, c);
}

static void
s_on_down(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    uint64_t mon;
    brg_exit_reason_t reason;
    if (brg_msg_read_down(msg, &from, &mon, &reason) != BRG_OK)
        return;
    s_child_t *c = s_map_get(&self->running, from);
    if (c && c->state == S_STOPPING && c->stop_mon == mon && reason.kind == BRG_EXIT_NOPROC &&
        brg_is_linked(ctx, from)) {
        // Our shutdown signal (system lane) overtook the MONITOR (ordinary
        // lane) and the child was gone when the MONITOR reached it. Still
        // linked, so its EXIT, with the reason it really ended with, is
        // certain to come: that one ends the stop (and its report).
        c->stop_mon = 0;
        return;
    }
    if (c && c->state == S_STOPPING && c->stop_mon == mon) {
        // Before its EXIT, or instead of it (it unlinked itself). Unlinked
        // now, an EXIT still in flight is dropped by the runtime.
        c->stop_mon = 0;
        brg_unlink(ctx, from);
        s_report_exit(self, ctx, c, from, &reason);
        s_child_exited(self, ctx, c, reason.kind, reason.code);
        return;
    }
    for (c = self->head; c; c = c->next) {
        if (c->name_wait && c->name_mon == mon) {
            s_on_name_free(self, ctx, c);
            return;
        }
    }
    // else: a monitor we dropped (its DOWN was already on its way).
}

//  A child's shutdown time is up: kill it. The point where a child that
//  ignored its shutdown request is killed.
static void
s_on_kill_timer(s_sup_t *self, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t ref;
    if (brg_msg_read_ref(msg, &pos, &ref) != BRG_OK)
        return;
    s_child_t *c = s_map_get(&self->running, ref);
    if (!c || c->state != S_STOPPING)
        return; // it stopped in time
    c->kill_timer = 0;
    char what[64];
    snprintf(what, sizeof(what), "did not stop within %d ms; killed", c->spec->shutdown_ms);
    s_report(self->sys, brg_msg_sender(msg), BRG_LOG_ERROR, c->spec->id, ref, NULL, what);
    brg_exit(self->sys, ref, BRG_EXIT_KILLED);
}

//  A child waited for its name as long as it may: the holder is not going
//  away, and the start fails with BRG_EEXIST.
static void
s_on_name_timer(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    uint64_t order;
    if (brg_msg_read_uint(msg, &pos, &order) != BRG_OK)
        return;
    s_child_t *c = self->head;
    while (c && c->order != order)
        c = c->next;
    if (!c || !c->name_wait)
        return; // the name came free in time
    c->name_timer = 0;
    s_unwait(self, ctx, c);
    if (self->awaiting == c) {
        self->awaiting = NULL;
        self->cursor = c->next; // a start sequence goes on without it
        if (self->phase == S_STARTING) {
            s_start_failed(self, ctx, c, BRG_EEXIST);
            return;
        }
    }
    s_pend(self, ctx, c, BRG_EXIT_FAILED); // a failed restart: decided again
}

static void
s_on_ready(s_sup_t *self, const brg_msg_t *msg)
{
    if (self->awaiting && brg_ref_eq(brg_msg_sender(msg), self->awaiting->ref))
        self->awaiting = NULL; // s_advance goes on with the next child
}

static void
s_on_retry(s_sup_t *self, brg_ctx_t *ctx)
{
    self->retry_posted = false;
    s_child_t *next;
    for (s_child_t *c = self->head; c; c = next) {
        next = c->next; // s_decide may remove c, never another record
        if (!c->pending)
            continue;
        c->pending = false;
        s_decide(self, ctx, c, (brg_exit_kind_t)c->pending_kind);
    }
}

//  ---------------------------------------------------------------------------
//  Queries

static void
s_answer(brg_ctx_t *ctx, brg_msg_t **reply_p, int rc)
{
    if (rc == BRG_OK) {
        brg_reply(ctx, reply_p);
        return;
    }
    brg_msg_destroy(reply_p);
    brg_reply_error(ctx, rc); // BRG_EINVAL for a plain message: nobody to tell
}

static brg_child_state_t
s_child_state(const s_child_t *c)
{
    if (c->state != S_DEAD)
        return BRG_CHILD_RUNNING;
    return c->pending || c->name_wait ? BRG_CHILD_RESTARTING : BRG_CHILD_STOPPED;
}

static void
s_on_which(s_sup_t *self, brg_ctx_t *ctx)
{
    brg_msg_t *reply = brg_msg_new(BRG_SUP_TAG_WHICH);
    int rc = reply ? brg_msg_add_array(reply, (uint32_t)self->n_children) : BRG_ENOMEM;
    for (s_child_t *c = self->head; c && rc == BRG_OK; c = c->next) {
        rc = brg_msg_add_array(reply, 5);
        if (rc == BRG_OK)
            rc = brg_msg_add_str(reply, c->spec->id);
        if (rc == BRG_OK)
            rc = c->state == S_DEAD ? brg_msg_add_nil(reply) : brg_msg_add_ref(reply, c->ref);
        if (rc == BRG_OK)
            rc = brg_msg_add_uint(reply, c->restarts);
        if (rc == BRG_OK)
            rc = brg_msg_add_uint(reply, s_child_state(c));
        if (rc == BRG_OK)
            rc = brg_msg_add_uint(reply, c->spec->type);
    }
    s_answer(ctx, &reply, rc);
}

static void
s_on_count(s_sup_t *self, brg_ctx_t *ctx)
{
    uint64_t supervisors = 0;
    for (const s_child_t *c = self->head; c; c = c->next)
        supervisors += c->spec->type == BRG_CHILD_SUPERVISOR;
    brg_msg_t *reply = brg_msg_new(BRG_SUP_TAG_COUNT);
    int rc = reply ? brg_msg_add_uint(reply, self->n_children) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, self->n_running);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, self->restarts);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, self->exits);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, supervisors);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, self->n_children - supervisors);
    s_answer(ctx, &reply, rc);
}

//  Answer with BRG_SUP_TAG_STARTED and ref (nil for none: an ignored start).
static void
s_answer_started(brg_ctx_t *ctx, brg_ref_t ref)
{
    brg_msg_t *reply = brg_msg_new(BRG_SUP_TAG_STARTED);
    int rc = BRG_ENOMEM;
    if (reply)
        rc = brg_ref_is_none(ref) ? brg_msg_add_nil(reply) : brg_msg_add_ref(reply, ref);
    s_answer(ctx, &reply, rc);
}

static void
s_on_start(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    int rc = BRG_OK;
    if (self->strategy != BRG_STRATEGY_DYNAMIC)
        rc = BRG_EINVAL;
    else if (self->phase == S_SHUTTING_DOWN || self->phase == S_DONE)
        rc = BRG_ECLOSED;
    if (rc != BRG_OK) {
        s_answer(ctx, &reply, rc);
        return;
    }
    brg_msg_t *args = brg_msg_dup(msg);
    s_child_t *c = args ? s_child_add(self, &self->specs[0], args) : NULL;
    if (!c) {
        brg_msg_destroy(&args);
        s_answer(ctx, &reply, BRG_ENOMEM);
        return;
    }
    brg_ref_t ref = BRG_REF_NONE;
    rc = s_start(self, ctx, c, &ref, false); // dynamic children have no names: no wait
    if (rc != BRG_OK)
        s_child_remove(self, ctx, c); // failed, or ignored: OTP keeps no such child
    if (rc == BRG_OK || rc == BRG_CHILD_IGNORE)
        s_answer_started(ctx, ref);
    else
        s_answer(ctx, &reply, rc);
}

//  The static child with this id, or NULL.
static s_child_t *
s_find_id(s_sup_t *self, const char *id, size_t len)
{
    for (s_child_t *c = self->head; c; c = c->next)
        if (strlen(c->spec->id) == len && memcmp(c->spec->id, id, len) == 0)
            return c;
    return NULL;
}

//  Read a by-id request of a static supervisor: *c is the child, or the
//  error to answer (BRG_EINVAL for a dynamic supervisor or a request without
//  an id, BRG_ENOTFOUND).
static int
s_read_id(s_sup_t *self, const brg_msg_t *msg, s_child_t **c)
{
    size_t pos = 0, len;
    const char *id;
    if (self->strategy == BRG_STRATEGY_DYNAMIC || brg_msg_read_str(msg, &pos, &id, &len) != BRG_OK)
        return BRG_EINVAL;
    *c = s_find_id(self, id, len);
    return *c ? BRG_OK : BRG_ENOTFOUND;
}

//  A dynamic child by ref: running, or restarting with this as its last
//  incarnation (OTP finds a restarting child by the pid it had).
static s_child_t *
s_find_ref(s_sup_t *self, brg_ref_t ref)
{
    s_child_t *c = s_map_get(&self->running, ref);
    if (c)
        return c;
    for (c = self->head; c; c = c->next)
        if (s_child_state(c) == BRG_CHILD_RESTARTING && brg_ref_eq(c->last_ref, ref))
            return c;
    return NULL;
}

//  Stop c on request and answer once it has exited; a child not running is
//  answered at once (and stops being restarted).
static void
s_on_terminate(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    s_child_t *c = NULL;
    int rc;
    size_t pos = 0;
    brg_ref_t ref;
    if (self->strategy != BRG_STRATEGY_DYNAMIC) {
        // OTP: by id only; a ref names no static child.
        rc = brg_msg_peek(msg, 0) == BRG_TYPE_STR ? s_read_id(self, msg, &c) : BRG_ENOTFOUND;
    } else if (brg_msg_read_ref(msg, &pos, &ref) != BRG_OK) {
        rc = BRG_EINVAL; // an id, or nothing: a dynamic child is named by its ref
    } else if ((c = s_find_ref(self, ref)) != NULL) {
        rc = BRG_OK;
    } else {
        // Not a child: fine if it is dead already (OTP), else not ours.
        rc = brg_system_is_alive(self->sys, ref) ? BRG_ENOTFOUND : BRG_OK;
    }
    if (rc == BRG_OK && c && c->state != S_DEAD) {
        s_waiter_t *w = malloc(sizeof(*w));
        brg_msg_t *request = w ? brg_msg_dup(msg) : NULL;
        if (!request) {
            free(w);
            s_answer(ctx, &reply, BRG_ENOMEM);
            return;
        }
        w->request = request;
        w->next = c->waiters;
        c->waiters = w;
        c->terminating = true;
        if (c->state == S_ALIVE)
            s_stop(self, ctx, c);
        return; // answered by s_child_exited
    }
    if (rc == BRG_OK && c) {
        // Not running: it stops being restarted, and a dynamic or temporary
        // child is forgotten.
        c->pending = false;
        s_unwait(self, ctx, c);
        if (self->awaiting == c) {
            self->awaiting = NULL;
            self->cursor = c->next;
        }
        if (self->strategy == BRG_STRATEGY_DYNAMIC || c->spec->restart == BRG_RESTART_TEMPORARY)
            s_child_remove(self, ctx, c);
    }
    if (rc == BRG_OK && !(reply = brg_msg_new(BRG_SUP_TAG_OK)))
        rc = BRG_ENOMEM;
    s_answer(ctx, &reply, rc);
}

//  OTP's errors for a static child that must not be running.
static int
s_not_running(s_sup_t *self, const s_child_t *c)
{
    if (self->phase == S_SHUTTING_DOWN || self->phase == S_DONE)
        return BRG_ECLOSED;
    switch (s_child_state(c)) {
    case BRG_CHILD_RUNNING:
        return BRG_EEXIST;
    case BRG_CHILD_RESTARTING:
        return BRG_EBUSY;
    case BRG_CHILD_STOPPED:
        break;
    }
    return BRG_OK;
}

static void
s_on_restart_child(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    s_child_t *c = NULL;
    int rc = s_read_id(self, msg, &c);
    if (rc == BRG_OK)
        rc = s_not_running(self, c);
    brg_ref_t ref = BRG_REF_NONE;
    if (rc == BRG_OK)
        rc = s_start(self, ctx, c, &ref, false);
    if (rc == BRG_OK || rc == BRG_CHILD_IGNORE)
        s_answer_started(ctx, ref);
    else
        s_answer(ctx, &reply, rc);
}

static void
s_on_delete_child(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    s_child_t *c = NULL;
    int rc = s_read_id(self, msg, &c);
    if (rc == BRG_OK)
        rc = s_not_running(self, c);
    if (rc == BRG_OK) {
        s_child_remove(self, ctx, c);
        if (!(reply = brg_msg_new(BRG_SUP_TAG_OK)))
            rc = BRG_ENOMEM;
    }
    s_answer(ctx, &reply, rc);
}

//  OTP's start_child(Sup, ChildSpec) for a static supervisor: add the parked
//  spec as the last child and start it.
static void
s_on_add_child(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    size_t pos = 0;
    uint64_t token;
    s_spec_t *spec = NULL;
    int rc = BRG_OK;
    if (brg_msg_read_uint(msg, &pos, &token) != BRG_OK || !(spec = s_unpark(token, brg_self(ctx))))
        rc = BRG_ENOTFOUND; // a forged or stale token: nothing parked
    else if (self->strategy == BRG_STRATEGY_DYNAMIC)
        rc = BRG_EINVAL; // OTP: simple_one_for_one takes start arguments instead
    else if (self->phase == S_SHUTTING_DOWN || self->phase == S_DONE)
        rc = BRG_ECLOSED;
    else if (s_find_id(self, spec->id, strlen(spec->id)))
        rc = BRG_EEXIST; // OTP: already_started or already_present
    else if (self->n_children >= BRG_SUPERVISOR_CHILDREN_MAX)
        rc = BRG_EINVAL;
    s_child_t *c = rc == BRG_OK ? s_child_add(self, spec, NULL) : NULL;
    if (rc == BRG_OK && !c)
        rc = BRG_ENOMEM;
    if (rc != BRG_OK) {
        s_spec_free(spec);
        s_answer(ctx, &reply, rc);
        return;
    }
    c->own_spec = spec;
    brg_ref_t ref = BRG_REF_NONE;
    rc = s_start(self, ctx, c, &ref, false);
    // OTP: a failed start keeps nothing; an ignored one keeps the spec,
    // unless the child is temporary.
    if (rc != BRG_OK && (rc != BRG_CHILD_IGNORE || spec->restart == BRG_RESTART_TEMPORARY))
        s_child_remove(self, ctx, c);
    if (rc == BRG_OK || rc == BRG_CHILD_IGNORE)
        s_answer_started(ctx, ref);
    else
        s_answer(ctx, &reply, rc);
}

static void
s_on_get_childspec(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    size_t pos = 0, len;
    const char *id;
    const s_spec_t *spec = NULL;
    int rc = brg_msg_read_str(msg, &pos, &id, &len) == BRG_OK ? BRG_ENOTFOUND : BRG_EINVAL;
    if (rc == BRG_ENOTFOUND && self->strategy == BRG_STRATEGY_DYNAMIC) {
        if (strlen(self->specs[0].id) == len && memcmp(self->specs[0].id, id, len) == 0)
            spec = &self->specs[0];
    } else if (rc == BRG_ENOTFOUND) {
        s_child_t *c = s_find_id(self, id, len);
        spec = c ? c->spec : NULL;
    }
    if (spec) {
        reply = brg_msg_new(BRG_SUP_TAG_SPEC);
        rc = reply ? brg_msg_add_str(reply, spec->id) : BRG_ENOMEM;
        if (rc == BRG_OK)
            rc = spec->name ? brg_msg_add_str(reply, spec->name) : brg_msg_add_nil(reply);
        if (rc == BRG_OK)
            rc = brg_msg_add_uint(reply, spec->restart);
        if (rc == BRG_OK)
            rc = brg_msg_add_int(reply, spec->shutdown_ms);
        if (rc == BRG_OK)
            rc = brg_msg_add_uint(reply, spec->type);
    }
    s_answer(ctx, &reply, rc);
}

//  ---------------------------------------------------------------------------
//  The actor

static int
s_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_sup_t *self = brg_state(ctx);
    bool from_self = brg_ref_eq(brg_msg_sender(msg), brg_self(ctx));
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        if (self->phase != S_DONE)
            s_on_exit(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        if (self->phase != S_DONE)
            s_on_down(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_WHICH)) {
        s_on_which(self, ctx);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_COUNT)) {
        s_on_count(self, ctx);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_START)) {
        s_on_start(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_TERMINATE)) {
        s_on_terminate(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_RESTART)) {
        s_on_restart_child(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_DELETE)) {
        s_on_delete_child(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_SPEC)) {
        s_on_get_childspec(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_ADD)) {
        s_on_add_child(self, ctx, msg);
    } else if (from_self && brg_msg_is(msg, S_TAG_KILL)) {
        s_on_kill_timer(self, msg);
    } else if (from_self && brg_msg_is(msg, S_TAG_NAME)) {
        s_on_name_timer(self, ctx, msg);
    } else if (from_self && brg_msg_is(msg, S_TAG_RETRY)) {
        s_on_retry(self, ctx);
    } else if (brg_msg_is(msg, S_TAG_READY)) {
        s_on_ready(self, msg);
    } else {
        return BRG_UNHANDLED;
    }
    s_advance(self, ctx);
    return BRG_OK;
}

static int
s_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    s_sup_t *self = brg_state(ctx);
    brg_trap_exits(ctx, true);
    self->phase = S_STARTING;
    self->cursor = self->head;
    s_advance(self, ctx);
    return BRG_OK;
}

static int
s_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_supervisor_opts_t *opts, brg_ref_t report_to,
        brg_ref_t *sup)
{
    int rc = s_opts_check(opts);
    if (rc != BRG_OK)
        return rc;
    s_sup_t *self = s_sup_new(sys, opts, ctx ? brg_self(ctx) : BRG_REF_NONE);
    if (!self)
        return BRG_ENOMEM;
    self->report_to = report_to;
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = self;
    so.state_destroy = s_sup_destroy;
    so.init = s_init;
    so.name = opts->name;
    so.label = BRG_SUPERVISOR_LABEL;
    if (ctx) {
        so.flags = BRG_SPAWN_LINK;
        // Spawned by a supervisor's start function: report ready to it. Set
        // before the spawn: once spawned, self belongs to the new actor.
        bool nested = s_starting && brg_state(ctx) == s_starting;
        self->report_ready = nested;
        // A synchronous start is synchronous all the way down.
        if (nested && s_starting->sync_init)
            self->sync_init = true;
        brg_ref_t ref;
        rc = brg_spawn(ctx, s_behaviour, &so, &ref);
        if (rc == BRG_OK && nested)
            s_starting->spawned_sup = ref;
        if (rc == BRG_OK && sup)
            *sup = ref;
    } else {
        rc = brg_system_spawn(sys, s_behaviour, &so, sup);
    }
    if (rc != BRG_OK)
        s_sup_destroy(self); // on error the state is still ours
    return rc;
}

//  ---------------------------------------------------------------------------
//  Public API

void
brg_child_spec_init(brg_child_spec_t *spec)
{
    assert(spec);
    memset(spec, 0, sizeof(*spec));
    spec->restart = BRG_RESTART_PERMANENT;
    spec->shutdown_ms = BRG_SHUTDOWN_DEFAULT;
    spec->type = BRG_CHILD_WORKER;
}

void
brg_supervisor_opts_init(brg_supervisor_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
    opts->strategy = BRG_STRATEGY_ONE_FOR_ONE;
    opts->intensity = 1;
    opts->period_ms = 5000;
}

int
brg_supervisor_spawn(brg_ctx_t *ctx, const brg_supervisor_opts_t *opts, brg_ref_t *sup)
{
    assert(ctx);
    assert(opts);
    return s_spawn(brg_ctx_system(ctx), ctx, opts, BRG_REF_NONE, sup);
}

int
brg_supervisor_spawn_root(brg_system_t *sys, const brg_supervisor_opts_t *opts, brg_ref_t *sup)
{
    assert(sys);
    assert(opts);
    return s_spawn(sys, NULL, opts, BRG_REF_NONE, sup);
}

//  What brg_supervisor_spawn_sync waits for: the supervisor's up or
//  start-failed report, or its DOWN.
static bool
s_sync_match(const brg_msg_t *msg, void *arg)
{
    (void)arg;
    return brg_msg_is(msg, S_TAG_UP) || brg_msg_is(msg, S_TAG_START_FAILED) ||
           brg_msg_is(msg, BRG_TAG_DOWN);
}

int
brg_supervisor_spawn_sync(brg_system_t *sys, const brg_supervisor_opts_t *opts, int timeout_ms,
                          brg_ref_t *sup, brg_supervisor_start_error_t *error)
{
    assert(sys);
    assert(opts);
    brg_supervisor_start_error_t none;
    if (!error)
        error = &none;
    memset(error, 0, sizeof(*error));
    if (sup)
        *sup = BRG_REF_NONE;
    if (timeout_ms < 0)
        return BRG_EINVAL;
    // The inbox is the caller's reply box (and refuses a Brigade thread:
    // BRG_EDEADLK, as brg_system_ask does).
    brg_inbox_t *in = NULL;
    int rc = brg_inbox_new(sys, &in);
    if (rc != BRG_OK)
        return error->code = rc;
    brg_supervisor_opts_t o = *opts;
    o.sync_start = true;
    brg_ref_t ref;
    rc = s_spawn(sys, NULL, &o, brg_inbox_ref(in), &ref);
    uint64_t mon = 0;
    if (rc == BRG_OK)
        rc = brg_inbox_monitor(in, ref, &mon);
    brg_msg_t *m = NULL;
    if (rc == BRG_OK)
        rc = brg_inbox_receive_if(in, s_sync_match, NULL, timeout_ms, &m);
    if (rc == BRG_ETIMEDOUT) {
        // Not up in time: it is shut down (its children with it), as OTP's
        // start_link does after its timeout, and not waited for.
        brg_exit(sys, ref, BRG_EXIT_SHUTDOWN);
    } else if (rc == BRG_OK && brg_msg_is(m, S_TAG_UP)) {
        if (sup)
            *sup = ref;
    } else if (rc == BRG_OK) {
        rc = BRG_EFAILED;
        if (brg_msg_is(m, S_TAG_START_FAILED)) {
            size_t pos = 0;
            const char *id;
            size_t len;
            int64_t code;
            if (brg_msg_read_str(m, &pos, &id, &len) == BRG_OK &&
                brg_msg_read_int(m, &pos, &code) == BRG_OK) {
                snprintf(error->child_id, sizeof(error->child_id), "%.*s", (int)len, id);
                rc = (int)code;
            }
            // Returns once the supervisor is gone, its started children
            // stopped (waiting at most timeout_ms more for that).
            brg_msg_destroy(&m);
            brg_inbox_receive(in, BRG_TAG_DOWN, timeout_ms, &m);
        } else {
            brg_ref_t from;
            brg_exit_reason_t reason;
            if (brg_msg_read_down(m, &from, &mon, &reason) == BRG_OK && reason.code < 0)
                rc = reason.code;
        }
    }
    brg_msg_destroy(&m);
    brg_inbox_destroy(&in);
    if (rc != BRG_OK)
        error->code = rc;
    return rc;
}

int
brg_supervisor_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    assert(sup_ctx);
    assert(arg);
    (void)args;
    return brg_supervisor_spawn(sup_ctx, arg, child);
}

int
brg_supervisor_add_child(brg_system_t *sys, brg_ref_t sup, const brg_child_spec_t *spec,
                         int timeout_ms, brg_ref_t *child)
{
    assert(sys);
    assert(spec);
    if (!s_spec_ok(spec))
        return BRG_EINVAL;
    uint64_t token = s_park(sup, spec);
    brg_msg_t *req = token ? brg_msg_new(BRG_SUP_TAG_ADD) : NULL, *reply = NULL;
    int rc = req ? brg_msg_add_uint(req, token) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_system_ask(sys, sup, &req, timeout_ms, &reply);
    brg_msg_destroy(&req);
    // Not claimed (the ask failed before the supervisor saw it, or timed out
    // first): withdraw it. Claimed: the supervisor owns it.
    s_spec_free(token ? s_unpark(token, sup) : NULL);
    brg_ref_t ref;
    if (rc == BRG_OK && (rc = brg_supervisor_read_started(reply, &ref)) == BRG_OK && child)
        *child = ref;
    brg_msg_destroy(&reply);
    return rc;
}
