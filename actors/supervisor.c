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
//  Names. The runtime releases a dying actor's name before it sends its
//  EXIT, and a child is only started again after the EXIT of its previous
//  incarnation was handled, so the name is always free when the new
//  incarnation registers it; a name held by some other actor makes the start
//  fail (the new child is killed, unlinked first).
//
//  The state machine. A behaviour must not block, so every sequence that
//  waits is a phase in s_sup_t, moved on by events:
//
//    phase          waits for                       then
//    STARTING       the ready message of a nested   RUNNING once every child is
//      (init)       supervisor it has just started  started, in order
//    RUNNING        nothing (one_for_one and        RESTARTING on a group restart,
//                   dynamic restart at once)        SHUTTING_DOWN on a request or
//                                                   too many restarts
//    RESTARTING     first the EXIT of the group     RUNNING, once every member
//                   member it is stopping, then     (order >= group_from) is stopped
//                   ready messages, as STARTING     and started again in order
//    SHUTTING_DOWN  the EXITs of the children       DONE, once no child runs
//                   it is stopping
//    DONE           nothing                         the actor exits with `final`
//
//  Every event handler ends with s_advance(), which moves the machine as far
//  as it can without waiting. A static supervisor stops its children one at
//  a time in reverse start order; stopping one is brg_exit(shutdown) plus a
//  kill timer (brg_send_after to itself, carrying the child's ref, so a timer
//  that fires after the EXIT finds no STOPPING child and is ignored), then
//  brg_exit(killed); brutal kill skips to the last step. A dynamic supervisor
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
//  that died before it could be linked, is marked pending, and the
//  supervisor sends itself one retry message; the retry applies the restart
//  decision as if the child had exited (reason failed, or noproc). So a child
//  that cannot start uses up restart intensity and escalates, without
//  recursion, and other messages are served in between. At init a failed
//  start instead shuts the supervisor down (OTP: the supervisor fails to
//  start).
//
//  Intensity. The times (brg_system_now_ms) of the last intensity + 1
//  restarts are kept in a ring; the restart that finds the oldest of them
//  within period_ms is one too many.
//
//  Exit. Once no child runs, the supervisor exits with `final`: brg_stop for
//  normal, brg_fail for failed; for shutdown or killed it stops trapping and
//  sends itself that exit signal, the only way the public API has to end an
//  actor with that reason. Messages handled in DONE change nothing.
#include "actors_internal.h"

//  Internal messages the supervisor sends itself (accepted only from itself).
#define S_TAG_KILL "brg.sup.kill"   // a child's shutdown time is up; payload: its ref
#define S_TAG_RETRY "brg.sup.retry" // decide for the pending children
//  From a nested supervisor to its parent supervisor: my children are up.
#define S_TAG_READY "brg.sup.ready"

typedef enum { S_STARTING, S_RUNNING, S_RESTARTING, S_SHUTTING_DOWN, S_DONE } s_phase_t;

typedef enum { S_DEAD, S_ALIVE, S_STOPPING } s_state_t;

//  A child spec, copied.
typedef struct {
    char *id;                 // owned
    char *name;               // owned, or NULL
    brg_child_start_fn start; // the user's start function
    void *arg;                // its argument (not owned)
    brg_restart_t restart;    // restart type
    int shutdown_ms;          // > 0, BRG_SHUTDOWN_BRUTAL or BRG_SHUTDOWN_INFINITY
} s_spec_t;

//  One child, running or not.
typedef struct s_child {
    struct s_child *prev, *next; // start order
    const s_spec_t *spec;        // the supervisor's copy
    brg_msg_t *args;             // dynamic: the start request (owned); static: NULL
    brg_ref_t ref;               // the running incarnation, or BRG_REF_NONE
    uint64_t order;              // position in start order (static: the spec's index)
    uint64_t restarts;           // times started again
    brg_timer_id_t kill_timer;   // armed while STOPPING with a finite shutdown, else 0
    uint8_t state;               // s_state_t
    uint8_t pending_kind;        // brg_exit_kind_t the retry decides with
    bool pending;                // waiting for the retry message
    bool terminating;            // dynamic: stopped on request; forget it when it exits
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
    s_child_t *awaiting;     // a nested supervisor whose ready message we wait for
    brg_ref_t spawned_sup;   // a supervisor our current start function spawned
    brg_exit_reason_t final; // SHUTTING_DOWN, DONE: the reason to exit with
    bool retry_posted;       // a retry message is on its way
    bool report_ready;       // started by a supervisor: send it S_TAG_READY once up
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

//  Forget a child that does not run.
static void
s_child_remove(s_sup_t *self, s_child_t *c)
{
    assert(c->state == S_DEAD);
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
        brg_msg_destroy(&c->args);
        free(c);
        c = next;
    }
    for (size_t i = 0; i < self->n_specs; i++) {
        free(self->specs[i].id);
        free(self->specs[i].name);
    }
    free(self->specs);
    free(self->running.slots);
    free(self->ring);
    free(self);
}

static bool
s_spec_valid(const brg_supervisor_opts_t *opts, size_t i)
{
    const brg_child_spec_t *spec = &opts->children[i];
    if (!spec->id || spec->id[0] == '\0' || strlen(spec->id) > BRG_CHILD_ID_MAX || !spec->start)
        return false;
    if (spec->restart < BRG_RESTART_PERMANENT || spec->restart > BRG_RESTART_TEMPORARY)
        return false;
    if (spec->shutdown_ms < BRG_SHUTDOWN_INFINITY)
        return false;
    if (spec->name && (spec->name[0] == '\0' || strlen(spec->name) > BRG_NAME_MAX))
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

static char *
s_strdup(const char *text)
{
    size_t len = strlen(text) + 1;
    char *copy = malloc(len);
    if (copy)
        memcpy(copy, text, len);
    return copy;
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
        to->id = s_strdup(from->id);
        to->name = from->name ? s_strdup(from->name) : NULL;
        to->start = from->start;
        to->arg = from->arg;
        to->restart = from->restart;
        to->shutdown_ms = from->shutdown_ms;
        if (!to->id || (from->name && !to->name)) {
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
                   brg_exit_kind_name(reason->kind), code, text ? " \"" : "", reason->text,
                   text ? "\"" : "");
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

static void
s_begin_shutdown(s_sup_t *self, const brg_exit_reason_t *reason)
{
    if (self->phase == S_SHUTTING_DOWN || self->phase == S_DONE)
        return; // the first reason stands
    self->phase = S_SHUTTING_DOWN;
    self->final = *reason;
    self->cursor = NULL;
    self->awaiting = NULL;
}

static void
s_fail(s_sup_t *self, int code, const char *text)
{
    brg_exit_reason_t reason = {BRG_EXIT_FAILED, code, ""};
    snprintf(reason.text, sizeof(reason.text), "%s", text);
    s_begin_shutdown(self, &reason);
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
        s_fail(self, BRG_ENOMEM, "supervisor: cannot schedule a restart");
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

//  Start c (not running) from its spec. BRG_OK: c runs, or died before the
//  link and is pending with noproc; *started (if not NULL) is the new actor
//  either way. Otherwise nothing runs: the start function's error, or
//  BRG_ENOMEM, or BRG_EEXIST (its name is taken).
static int
s_start(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, brg_ref_t *started)
{
    assert(c->state == S_DEAD);
    c->pending = false;
    if (s_map_reserve(&self->running) != BRG_OK)
        return BRG_ENOMEM;
    brg_ref_t ref = BRG_REF_NONE;
    s_sup_t *outer = s_starting; // a start function may start a supervisor that starts...
    s_starting = self;
    self->spawned_sup = BRG_REF_NONE;
    int rc = c->spec->start(ctx, c->spec->arg, c->args, &ref);
    s_starting = outer;
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

static void
s_restart(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c)
{
    int rc = s_start(self, ctx, c, NULL);
    if (rc == BRG_ECLOSED)
        return; // the system is being destroyed: nothing to restart into
    if (rc < 0) {
        brg_exit_reason_t why = {BRG_EXIT_FAILED, rc, ""};
        s_report(self->sys, brg_self(ctx), BRG_LOG_ERROR, c->spec->id, BRG_REF_NONE, &why,
                 "could not be restarted");
        s_pend(self, ctx, c, BRG_EXIT_FAILED);
    }
}

//  Restart the children of order >= from: stop them (s_advance), then start
//  them again. A start sequence in progress (init, or an earlier group
//  restart) is abandoned: the new group's start covers what it had left.
static void
s_group_restart(s_sup_t *self, uint64_t from)
{
    self->phase = S_RESTARTING;
    self->group_from = from;
    self->group_stopped = false;
    self->cursor = NULL;
    self->awaiting = NULL;
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
        s_child_remove(self, c);
        return;
    }
    if (self->phase == S_RESTARTING && !self->group_stopped && c->order >= self->group_from) {
        if (temporary)
            s_child_remove(self, c);
        return; // the group is being stopped anyway: the restart takes it along
    }
    if (!s_wants_restart(c->spec->restart, kind)) {
        if (temporary || self->strategy == BRG_STRATEGY_DYNAMIC)
            s_child_remove(self, c);
        return; // a static transient child stays listed, not running
    }
    brg_exit_reason_t why = {kind, 0, ""};
    if (!s_restart_allowed(self)) {
        char what[96];
        snprintf(what, sizeof(what),
                 "exited, reached max restart intensity (%u in %d ms), giving up",
                 self->ring_cap - 1, self->period_ms);
        s_report(self->sys, brg_self(ctx), BRG_LOG_ERROR, c->spec->id, BRG_REF_NONE, &why, what);
        s_fail(self, BRG_EFAILED, "reached max restart intensity");
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
        s_group_restart(self, 0);
        break;
    case BRG_STRATEGY_REST_FOR_ONE:
        // While a group is still being stopped, an earlier child widens it.
        if (self->phase == S_RESTARTING && !self->group_stopped && self->group_from < c->order)
            s_group_restart(self, self->group_from);
        else
            s_group_restart(self, c->order);
        break;
    }
}

//  ---------------------------------------------------------------------------
//  Stopping children and moving the state machine

//  Ask c (ALIVE) to stop, with its spec's shutdown. Its EXIT ends the stop.
static void
s_stop(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c)
{
    assert(c->state == S_ALIVE);
    c->state = S_STOPPING;
    self->n_stopping++;
    int ms = c->spec->shutdown_ms;
    if (ms != BRG_SHUTDOWN_BRUTAL) {
        // BRG_ENOACTOR: it is dying already; its EXIT comes all the same.
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
s_start_failed(s_sup_t *self, s_child_t *c, int code)
{
    brg_exit_reason_t reason = {BRG_EXIT_FAILED, code < 0 ? code : BRG_EFAILED, ""};
    snprintf(reason.text, sizeof(reason.text), "failed to start child %s", c->spec->id);
    s_begin_shutdown(self, &reason);
}

//  Start the children from the cursor on, in order (restart: a group
//  restart). False if it must wait for a nested supervisor's ready message,
//  or if the phase changed (a start failed at init).
static bool
s_start_run(s_sup_t *self, brg_ctx_t *ctx, bool restart)
{
    while (self->cursor) {
        s_child_t *c = self->cursor;
        self->cursor = c->next;
        if (c->state != S_DEAD)
            continue;
        if (restart && c->spec->restart == BRG_RESTART_TEMPORARY) {
            s_child_remove(self, c);
            continue;
        }
        if (restart) {
            s_restart(self, ctx, c);
        } else {
            int rc = s_start(self, ctx, c, NULL);
            if (rc < 0)
                s_start_failed(self, c, rc);
        }
        if (self->phase == S_SHUTTING_DOWN)
            return false;
        if (c->state == S_ALIVE && c->is_sup) {
            self->awaiting = c; // its children start before our next one
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

//  c's EXIT came: it does not run any more.
static void
s_child_exited(s_sup_t *self, brg_ctx_t *ctx, s_child_t *c, brg_exit_kind_t kind, int code)
{
    s_map_del(&self->running, c->ref);
    if (c->state == S_STOPPING) {
        self->n_stopping--;
        if (c->kill_timer)
            brg_timer_cancel(self->sys, c->kill_timer);
        c->kill_timer = 0;
    }
    c->state = S_DEAD;
    c->ref = BRG_REF_NONE;
    self->n_running--;
    self->exits++;
    if (self->awaiting == c) {
        self->awaiting = NULL;
        if (self->phase == S_STARTING) {
            s_start_failed(self, c, code); // a nested supervisor that did not come up
            return;
        }
    }
    s_decide(self, ctx, c, kind);
}

static void
s_on_exit(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    brg_exit_reason_t reason;
    if (brg_msg_read_exit(msg, &from, &reason) != BRG_OK)
        return;
    s_child_t *c = s_map_get(&self->running, from);
    // OTP's child_terminated and shutdown_error reports; a kill after the
    // shutdown time was reported when it was sent.
    if (c && reason.kind != BRG_EXIT_NORMAL && reason.kind != BRG_EXIT_SHUTDOWN &&
        (c->state == S_ALIVE || reason.kind == BRG_EXIT_FAILED))
        s_report(self->sys, brg_self(ctx), BRG_LOG_ERROR, c->spec->id, from, &reason,
                 c->state == S_ALIVE ? "terminated" : "failed while shutting down");
    if (c)
        s_child_exited(self, ctx, c, reason.kind, reason.code);
    else if (brg_ref_is_none(from) || brg_ref_eq(from, self->parent))
        s_begin_shutdown(self, &reason);
    // else: a stale incarnation, or an actor that linked to us: ignored.
}

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

static void
s_on_which(s_sup_t *self, brg_ctx_t *ctx)
{
    brg_msg_t *reply = brg_msg_new(BRG_SUP_TAG_WHICH);
    int rc = reply ? brg_msg_add_array(reply, (uint32_t)self->n_children) : BRG_ENOMEM;
    for (s_child_t *c = self->head; c && rc == BRG_OK; c = c->next) {
        rc = brg_msg_add_array(reply, 3);
        if (rc == BRG_OK)
            rc = brg_msg_add_str(reply, c->spec->id);
        if (rc == BRG_OK)
            rc = c->state == S_DEAD ? brg_msg_add_nil(reply) : brg_msg_add_ref(reply, c->ref);
        if (rc == BRG_OK)
            rc = brg_msg_add_uint(reply, c->restarts);
    }
    s_answer(ctx, &reply, rc);
}

static void
s_on_count(s_sup_t *self, brg_ctx_t *ctx)
{
    brg_msg_t *reply = brg_msg_new(BRG_SUP_TAG_COUNT);
    int rc = reply ? brg_msg_add_uint(reply, self->n_children) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, self->n_running);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, self->restarts);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(reply, self->exits);
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
    rc = s_start(self, ctx, c, &ref);
    if (rc != BRG_OK) {
        s_child_remove(self, c);
    } else {
        reply = brg_msg_new(BRG_SUP_TAG_STARTED);
        rc = reply ? brg_msg_add_ref(reply, ref) : BRG_ENOMEM;
    }
    s_answer(ctx, &reply, rc);
}

static void
s_on_terminate(s_sup_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *reply = NULL;
    size_t pos = 0;
    brg_ref_t ref;
    s_child_t *c = NULL;
    int rc = BRG_OK;
    if (self->strategy != BRG_STRATEGY_DYNAMIC || brg_msg_read_ref(msg, &pos, &ref) != BRG_OK)
        rc = BRG_EINVAL;
    else if (!(c = s_map_get(&self->running, ref)) || c->terminating)
        rc = BRG_ENOTFOUND;
    if (rc == BRG_OK) {
        c->terminating = true;
        if (c->state == S_ALIVE)
            s_stop(self, ctx, c);
        reply = brg_msg_new(BRG_SUP_TAG_OK);
        if (!reply)
            rc = BRG_ENOMEM;
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
    } else if (brg_msg_is(msg, BRG_SUP_TAG_WHICH)) {
        s_on_which(self, ctx);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_COUNT)) {
        s_on_count(self, ctx);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_START)) {
        s_on_start(self, ctx, msg);
    } else if (brg_msg_is(msg, BRG_SUP_TAG_TERMINATE)) {
        s_on_terminate(self, ctx, msg);
    } else if (from_self && brg_msg_is(msg, S_TAG_KILL)) {
        s_on_kill_timer(self, msg);
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
s_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_supervisor_opts_t *opts, brg_ref_t *sup)
{
    int rc = s_opts_check(opts);
    if (rc != BRG_OK)
        return rc;
    s_sup_t *self = s_sup_new(sys, opts, ctx ? brg_self(ctx) : BRG_REF_NONE);
    if (!self)
        return BRG_ENOMEM;
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = self;
    so.state_destroy = s_sup_destroy;
    so.init = s_init;
    so.name = opts->name;
    if (ctx) {
        so.flags = BRG_SPAWN_LINK;
        // Spawned by a supervisor's start function: report ready to it. Set
        // before the spawn: once spawned, self belongs to the new actor.
        bool nested = s_starting && brg_state(ctx) == s_starting;
        self->report_ready = nested;
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
    return s_spawn(brg_ctx_system(ctx), ctx, opts, sup);
}

int
brg_supervisor_spawn_root(brg_system_t *sys, const brg_supervisor_opts_t *opts, brg_ref_t *sup)
{
    assert(sys);
    assert(opts);
    return s_spawn(sys, NULL, opts, sup);
}

int
brg_supervisor_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    assert(sup_ctx);
    assert(arg);
    (void)args;
    return brg_supervisor_spawn(sup_ctx, arg, child);
}
