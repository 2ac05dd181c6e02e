//  actor - the actor object, its mailbox and the slot table of addresses
//
//  Design notes.
//
//  Mailbox. One atomic word, `head`, is both the mailbox and the run state:
//  NULL (idle), RUNNING (scheduled, nothing new), a stack of new messages
//  (pushed LIFO by producers with one CAS each), or DEAD (closed). A producer
//  that pushes onto NULL made the actor runnable and is the one that schedules
//  it, so an actor is in at most one run queue at a time without a separate
//  state machine. The running thread grabs the whole stack with one exchange
//  (leaving RUNNING), reverses it into private FIFO lists, and, when it has
//  run out of messages, CASes RUNNING back to NULL; if that CAS fails, new
//  messages arrived and it keeps the actor. Every state change is an RMW on
//  the same word, so no wake-up can be lost. Per-sender order holds because
//  the CAS order is a total order and reversal restores it.
//
//  System lane. Messages whose kind is a system kind (stop, kill, ask timeout)
//  go to a second private list, drained before any ordinary message at every
//  step. Grabbing happens at the start of every activation and whenever the
//  private lists run dry; so that a stop or kill pushed while the actor runs
//  does not wait behind the ordinary backlog already grabbed (up to a batch),
//  its producer also raises URGENT in `bp`, which the owner checks before each
//  message and answers with an early grab: the stop waits for at most the one
//  behaviour call in progress.
//
//
//  Send coalescing (docs/ARCHITECTURE.md §5). In a fan-in with senders on
//  both cores, every push moved the receiver's `head` line between cores
//  (a round trip of 60-470 ns, more than handling the message). A stack
//  push can push an already linked chain with the same one CAS (the
//  chain's oldest message points at the old top). So a worker keeps at
//  most one pending chain (brg__send_chain, thread-local: its worker only).
//  Of a run of plain sends (BRG__MSG_USER without a correlation id, by the
//  reference-free path) to one target within one behaviour call, the first
//  is pushed at once, as before, and the next ones are appended to the
//  chain with no atomic op. So a single send is never held (a call that
//  sends one message to each of several actors and then works for a long
//  time lets them run meanwhile, "Locality" in sched.c), and a flood pays
//  two CASes per chain. The chain is pushed (brg__send_flush_slow) when
//    - the thread pushes anything else (brg__actor_push flushes first: a
//      send to another target, a reply, an ask, a system-lane or urgent
//      message, link/monitor/exit signals, brg_actor_stop),
//    - it spawns, starts a timer or changes the registry (effects another
//      actor can observe and react to with a send of its own),
//    - the chain reaches BRG__SEND_CHAIN_MAX messages,
//    - a behaviour call (init, a message, the callbacks run by s_die)
//      ends, and before brg__actor_run starts (help-along nests a run
//      inside a send: the outer actor's chain goes out first),
//    - before every quiescent point (brg__sched_note_send's help point;
//      the worker loop's point and parking come after brg__actor_run).
//  The price: the second and later messages of a run wait for the end of
//  the run; a call that sends several messages to one actor and then
//  computes for long (or busy-waits for their effect: that deadlocks) lets
//  that actor see only the first until the call ends.
//  Invariants. (1) Per-sender FIFO and every causal order that held
//  before: a message waits only behind messages the same behaviour call
//  sent to the same target, and goes out before any other effect of the
//  sender another actor can see (the exception, a user's own side channel
//  such as a shared variable written in the same behaviour call, sees the
//  send at the end of that call). (2) Memory: at most BRG__SEND_CHAIN_MAX
//  messages held per worker (brg__send_chain_max reports the largest
//  chain pushed). (3) Latency: nothing is held past the end of the
//  behaviour call that sent it, so asks, replies and ping-pong see no
//  delay. (4) A chain whose target died meanwhile finds the mailbox DEAD:
//  each message becomes a counted dead letter (BRG_DEAD_STOPPED, as if it
//  had been pushed at once and left in the mailbox); the target's memory is still there, because
//  the chain, like a single reference-free send, never spans a quiescent point (below). (5) One CAS
//  per chain: the one that replaces NULL schedules the actor, exactly once, as for a single
//  message.
//
//  Backpressure (docs/ARCHITECTURE.md section 6; the table of suspended
//  senders is in sched.c). The mailbox's length must be known to senders
//  without an RMW per message, or ping-pong would pay for floods. So the
//  word `bp`, beside head on the first line, counts only the messages
//  pushed onto a non-empty stack (s_bp_count: a stack of k counts k - 1,
//  adjusted before each CAS attempt so the successful one leaves exactly
//  its share; a push onto NULL or RUNNING, every ping-pong send, adds
//  nothing), the owner subtracts a grabbed stack's share in s_grab (one RMW
//  per grab of two or more), and publishes its private lists' length in
//  bp_pub at every grab and batch end (a plain store; the lists only shrink
//  in between). So bp_pub + count + 1 is never below the length. A push
//  that finds the estimate over the high-water mark (s_bp_check) notes the
//  receiver's id (s_bp_note; not itself, not another system, not from a
//  thread running no activation); brg__actor_run then ends the activation
//  after that behaviour call and asks sched.c to suspend the actor
//  (s_bp_suspend). The owner hands its waiters back at a batch end at the
//  low-water mark (s_bp_batch_end), when it goes idle (s_go_idle: CAS head,
//  then a seq_cst look at bp, the Dekker pair with the registration's RMW
//  then look at head), and when it dies (CLOSED). The invariant: a mailbox
//  holds at most high-water + the sum over its senders of what each sends
//  it in one behaviour call, plus the exempt sends (its own, from outside
//  threads, from actors others wait for).
//
//  Thread ownership. Everything in the actor but `head`, `bp` and `bp_pub` belongs
//  to the thread running it: it took the actor from a run queue (acquire) and
//  hands it back through one (release). mode, sys and id never change after
//  spawn.
#include "runtime_internal.h"

//  The calling worker's pending chain (actor.h). Owner: the thread.
_Thread_local brg__send_chain_t brg__send_chain __attribute__((tls_model("initial-exec")));
#define s_chain brg__send_chain
static _Atomic uint32_t s_chain_max; // the longest chain pushed (test hook)

uint32_t
brg__send_chain_max(void)
{
    return atomic_load_explicit(&s_chain_max, memory_order_relaxed);
}

//  Backpressure (design notes): the activation the calling thread runs, and
//  the congested receiver its behaviour call sent to. Owner: the thread;
//  brg__actor_run sets running (target is 0 between activations);
//  help-along, which nests activations, saves and restores both around
//  them (brg__actor_bp_save). high is the high-water mark of the system
//  whose thread this is (brg__actor_bp_thread; UINT32_MAX: none, or off).
static _Thread_local brg__actor_t *s_bp_running __attribute__((tls_model("initial-exec")));
static _Thread_local uint64_t s_bp_target __attribute__((tls_model("initial-exec"))); // id, or 0
static _Thread_local uint32_t s_bp_high __attribute__((tls_model("initial-exec"))) = UINT32_MAX;

brg__actor_bp_frame_t
brg__actor_bp_save(void)
{
    return (brg__actor_bp_frame_t){s_bp_running, s_bp_target};
}

void
brg__actor_bp_restore(brg__actor_bp_frame_t frame)
{
    s_bp_running = frame.running;
    s_bp_target = frame.target;
}

void
brg__actor_bp_thread(const brg_system_t *sys)
{
    int high = sys ? sys->cfg.mailbox_high_water : -1;
    s_bp_high = high > 0 ? (uint32_t)high : UINT32_MAX;
    s_bp_running = NULL;
}

//  A push found actor's mailbox over the running activation's high-water
//  mark: remember the receiver, by id (the pointer may not outlive a
//  quiescent point), for brg__actor_run to suspend on after the call.
//  Sends to itself never hold an actor back, nor sends to another system,
//  nor those of a thread that runs no activation (it cannot be suspended).
__attribute__((noinline, cold)) static void
s_bp_note(brg__actor_t *actor)
{
    brg__actor_t *running = s_bp_running;
    if (running == NULL || actor == running || actor->sys != running->sys)
        return;
    s_bp_target = actor->id;
    // Raise our own URGENT: the check brg__actor_run makes before every
    // message anyway, so that the activation ends after this call without a
    // look at s_bp_target per message. s_bp_suspend takes it down again.
    atomic_fetch_or_explicit(&running->bp, BRG__BP_URGENT, memory_order_relaxed);
}

//  A stack of messages (not NULL, RUNNING or DEAD).
static inline bool
s_is_stack(const brg_msg_t *top)
{
    return (uintptr_t)top > (uintptr_t)BRG__MB_DEAD;
}

//  The count of a push of n messages whose CAS is about to replace old
//  (design notes, "Backpressure"): onto a stack it adds n, onto an empty
//  mailbox n - 1 (its oldest is the new stack's bottom). *added is what this
//  push has added so far; adjusted before each CAS, so when one succeeds the
//  word holds exactly this push's share, and a push onto an idle or running
//  mailbox with nothing new (every ping-pong send) costs no RMW.
static inline void
s_bp_count(brg__actor_t *actor, const brg_msg_t *old, uint32_t n, uint32_t *added)
{
    uint32_t want = s_is_stack(old) ? n : n - 1;
    if (__builtin_expect(want == *added, 1))
        return;
    // Relaxed: a count; the flags' RMWs on the same word order what must be.
    atomic_fetch_add_explicit(&actor->bp, (want - *added) << BRG__BP_SHIFT, // modular
                              memory_order_relaxed);
    *added = want;
}

//  After a push of n messages onto old (not NULL): note the receiver if its
//  mailbox is now over the running activation's high-water mark. The owner's
//  published backlog bounds its private lists (it only shrinks them between
//  publications), and the count + 1 the stack (our share is in it: added
//  before our CAS), so the estimate is never below the mailbox's length.
//  Relaxed loads of the line our CAS just took.
static inline void
s_bp_check(brg__actor_t *actor, const brg_msg_t *old, uint32_t n)
{
    uint32_t stack = n;
    if (s_is_stack(old))
        stack = BRG__BP_COUNT(atomic_load_explicit(&actor->bp, memory_order_relaxed)) + 1;
    uint64_t est = (uint64_t)atomic_load_explicit(&actor->bp_pub, memory_order_relaxed) + stack;
    if (__builtin_expect(est > s_bp_high, 0))
        s_bp_note(actor);
}

void
brg__send_flush_slow(void)
{
    brg__send_chain_t c = s_chain;
    s_chain.n = 0; // first: a dead letter hook below may send again
    uint32_t max = atomic_load_explicit(&s_chain_max, memory_order_relaxed);
    while (c.n > max && !atomic_compare_exchange_weak_explicit(
                            &s_chain_max, &max, c.n, memory_order_relaxed, memory_order_relaxed)) {
    }
    brg__actor_t *actor = c.to;
    uint32_t added = 0; // backpressure count (s_bp_count)
    brg_msg_t *old = atomic_load_explicit(&actor->head, memory_order_relaxed);
    do {
        if (old == BRG__MB_DEAD) {
            // Closed meanwhile: each message is a dead letter. The sends
            // returned BRG_OK while the actor lived, so these count as left
            // in its mailbox when it stopped (BRG_DEAD_STOPPED), as they
            // would had each been pushed at once. The actor's memory is
            // still there (no quiescent point since the sends). Oldest first.
            // A failed CAS may have linked oldest to the stack it saw:
            // the chain ends at oldest.
            atomic_store_explicit(&c.oldest->next, NULL, memory_order_relaxed);
            brg_msg_t *rev = NULL;
            for (brg_msg_t *m = c.top, *next; m; m = next) {
                next = atomic_load_explicit(&m->next, memory_order_relaxed);
                atomic_store_explicit(&m->next, rev, memory_order_relaxed);
                rev = m;
            }
            brg_ref_t to = brg__actor_ref(actor);
            for (brg_msg_t *m = rev, *next; m; m = next) {
                next = atomic_load_explicit(&m->next, memory_order_relaxed);
                atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
                brg__dead_letter(actor->sys, to, m, BRG_DEAD_STOPPED, false);
            }
            return;
        }
        atomic_store_explicit(&c.oldest->next, old, memory_order_relaxed);
        s_bp_count(actor, old, c.n, &added);
        brg__debug_yield(); // race window: another producer or the owner moves head
        // Acq_rel, as in brg__actor_push: release publishes the whole chain
        // (written by this thread before the CAS) to the owner's acquire
        // exchange; acquire, for a push onto NULL, sees the actor's private
        // state as its last runner left it.
    } while (!atomic_compare_exchange_weak_explicit(&actor->head, &old, c.top, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (old == NULL) {
        // We moved the mailbox out of idle: the actor is ours to schedule.
        if (actor->mode & BRG__MODE_WAITER)
            brg__waiter_wake(actor->ext->waiter);
        else
            brg__sched_schedule(actor->sys->sched, actor);
    } else {
        s_bp_check(actor, old, c.n);
    }
}

int
brg__actor_send(brg_system_t *sys, uint64_t id, brg_msg_t *msg)
{
    if (!brg__sched_is_worker_of(sys)) {
        brg__actor_t *actor = brg__actor_acquire(sys, id);
        if (!actor)
            return BRG_ENOACTOR;
        int rc = brg__actor_push(actor, msg);
        brg__actor_release(sys, id);
        return rc;
    }
    // A worker of sys: no reference (slots.c, design notes). From this load
    // to the end of the push, this worker passes no quiescent point, so an
    // actor we find LIVE here is not reclaimed under us.
    brg__actor_t *actor = brg__slots_peek(sys, id);
    if (!actor)
        return BRG_ENOACTOR;
    brg__debug_yield(); // race window: the actor dies and is retired meanwhile
    if (msg->kind != BRG__MSG_USER || msg->corr != 0)
        return brg__actor_push(actor, msg); // flushes the chain first
    // A plain send (design notes, "Send coalescing"). The first one of a
    // run to one target goes out at once; the next ones join the chain.
    // Held across no quiescent point, like the push above: the chain is
    // flushed before this worker passes one.
    if (s_chain.to != actor) {
        brg__send_flush();
        int rc = brg__actor_push(actor, msg);
        // Only compared: a later send looks its target up again. A push that
        // failed (the mailbox closed) starts no run, so every later send to
        // that target fails the same way, at once, with the same reason.
        s_chain.to = rc == BRG_OK ? actor : NULL;
        return rc;
    }
    if (s_chain.n >= BRG__SEND_CHAIN_MAX)
        brg__send_flush();
    if (s_chain.n == 0) {
        s_chain.oldest = msg;
        atomic_store_explicit(&msg->next, NULL, memory_order_relaxed);
    } else {
        atomic_store_explicit(&msg->next, s_chain.top, memory_order_relaxed);
    }
    s_chain.top = msg;
    s_chain.n++;
    return BRG_OK;
}

brg_ref_t
brg__actor_ref(const brg__actor_t *actor)
{
    return brg__system_ref(actor->sys, actor->id);
}

void
brg__actor_fail_later(brg__actor_t *actor)
{
    actor->flags |= BRG__ACTOR_FAILING | BRG__ACTOR_STOPPING;
}

brg__actor_ext_t *
brg__actor_ext(brg__actor_t *actor)
{
    if (!actor->ext)
        actor->ext = calloc(1, sizeof(*actor->ext));
    return actor->ext;
}

//  The push loop, counting for backpressure (s_bp_count). *old: the head
//  value last seen; on success, the one replaced. Returns false if the
//  mailbox is closed (msg untouched).
__attribute__((noinline)) static bool
s_push_counted(brg__actor_t *actor, brg_msg_t *msg, brg_msg_t **old_p)
{
    uint32_t added = 0;
    brg_msg_t *old = *old_p;
    do {
        if (old == BRG__MB_DEAD)
            return false; // closed: what we counted no longer matters
        atomic_store_explicit(&msg->next, old, memory_order_relaxed);
        s_bp_count(actor, old, 1, &added);
        brg__debug_yield(); // race window: another producer or the owner moves head
        // Acq_rel. Release: publishes the message's contents (and, through
        // the release sequence, the older stack below it) to the owner's
        // acquire exchange. Acquire: a push onto NULL takes the actor out of
        // idle and schedules it, so it must see the actor's private state
        // (flags, lists) as its last runner left it; pairs with the owner's
        // acq_rel CAS to NULL in brg__actor_run, and the run queue passes it
        // on to the next runner, which reads flags before its own grab.
    } while (!atomic_compare_exchange_weak_explicit(&actor->head, &old, msg, memory_order_acq_rel,
                                                    memory_order_relaxed));
    *old_p = old;
    return true;
}

//  A stop or kill was pushed to an actor that is running (or queued, or
//  suspended) and may hold a grabbed backlog: have it grab again before its
//  next message. Release: the push happens before the owner's grab; pairs
//  with the acquire RMW in s_take_urgent. In the word's total order with
//  brg__sched_bp_suspend's RMW: it sees URGENT and does not suspend, or we
//  see SUSPENDED and hand the actor back to run the stop.
__attribute__((noinline, cold)) static void
s_push_urgent(brg__actor_t *actor)
{
    uint32_t prev = atomic_fetch_or_explicit(&actor->bp, BRG__BP_URGENT, memory_order_acq_rel);
    if (prev & BRG__BP_SUSPENDED)
        brg__sched_bp_resume(actor->sys->sched, actor);
}

//  The push itself (both entry points below); *runnable: it took the
//  mailbox out of idle. Inline, so the local send path pays no extra call.
static inline int
s_push(brg__actor_t *actor, brg_msg_t *msg, bool *runnable)
{
    *runnable = false;
    // Read before the push: afterwards the message belongs to the owner.
    bool urgent = msg->kind == BRG__MSG_SYS_STOP || msg->kind == BRG__MSG_SYS_KILL;
    brg__send_flush(); // the sender's earlier plain sends go first
    brg_msg_t *old = atomic_load_explicit(&actor->head, memory_order_relaxed);
    // An idle or running mailbox with nothing new (every ping-pong send) is
    // pushed here without a count; a stack, or a lost race, takes the loop.
    if (old == NULL || old == BRG__MB_RUNNING) {
        atomic_store_explicit(&msg->next, old, memory_order_relaxed);
        brg__debug_yield(); // race window: another producer or the owner moves head
        // Acq_rel, as in s_push_counted.
        if (atomic_compare_exchange_weak_explicit(&actor->head, &old, msg, memory_order_acq_rel,
                                                  memory_order_relaxed))
            goto pushed;
    }
    if (!s_push_counted(actor, msg, &old))
        return BRG_ENOACTOR;
pushed:
    if (urgent && old != NULL)
        s_push_urgent(actor);
    if (old == NULL)
        *runnable = true; // we moved the mailbox out of idle: ours to schedule
    else
        s_bp_check(actor, old, 1);
    return BRG_OK;
}

int
brg__actor_push(brg__actor_t *actor, brg_msg_t *msg)
{
    bool runnable;
    int rc = s_push(actor, msg, &runnable);
    if (runnable) {
        // We moved the mailbox out of idle: the actor is ours to schedule.
        if (actor->mode & BRG__MODE_WAITER)
            brg__waiter_wake(actor->ext->waiter);
        else
            brg__sched_schedule(actor->sys->sched, actor);
    }
    return rc;
}

int
brg__actor_push_deferred(brg__actor_t *actor, brg_msg_t *msg, bool *runnable)
{
    return s_push(actor, msg, runnable);
}

static bool
s_is_system_kind(const brg_msg_t *msg)
{
    return msg->kind == BRG__MSG_SYS_STOP || msg->kind == BRG__MSG_SYS_ASK_TIMEOUT ||
           msg->kind == BRG__MSG_SYS_KILL;
}

//  Move a stack taken from head (newest first, ending at NULL or RUNNING)
//  into the private FIFO lists, restoring send order. Returns how many.
static uint32_t
s_take_stack(brg__actor_t *actor, brg_msg_t *top)
{
    brg_msg_t *user_first = NULL, *user_last = NULL, *sys_first = NULL, *sys_last = NULL;
    uint32_t n = 0;
    while (top != NULL && top != BRG__MB_RUNNING) {
        brg_msg_t *next = atomic_load_explicit(&top->next, memory_order_relaxed);
        if (s_is_system_kind(top)) {
            atomic_store_explicit(&top->next, sys_first, memory_order_relaxed);
            if (!sys_first)
                sys_last = top;
            sys_first = top;
        } else {
            atomic_store_explicit(&top->next, user_first, memory_order_relaxed);
            if (!user_first)
                user_last = top;
            user_first = top;
        }
        n++;
        top = next;
    }
    if (user_first) {
        if (actor->user_tail)
            atomic_store_explicit(&actor->user_tail->next, user_first, memory_order_relaxed);
        else
            actor->user_head = user_first;
        actor->user_tail = user_last;
    }
    if (sys_first) {
        if (actor->sys_tail)
            atomic_store_explicit(&actor->sys_tail->next, sys_first, memory_order_relaxed);
        else
            actor->sys_head = sys_first;
        actor->sys_tail = sys_last;
    }
    actor->queued += n;
    return n;
}

//  Take whatever was pushed since the last grab. Returns true if anything was.
static inline bool
s_grab(brg__actor_t *actor)
{
    // Relaxed pre-check: skips the RMW when nothing is new; a push racing
    // with it is seen by the CAS to NULL before the actor goes idle.
    if (atomic_load_explicit(&actor->head, memory_order_relaxed) == BRG__MB_RUNNING)
        return false;
    // Acquire: pairs with the producers' release CAS, making the messages'
    // contents visible.
    brg_msg_t *top = atomic_exchange_explicit(&actor->head, BRG__MB_RUNNING, memory_order_acquire);
    uint32_t n = s_take_stack(actor, top);
    // Backpressure: the stack's count (n - 1, s_bp_count) leaves the word,
    // and the private lists' length is published, both while the line is
    // ours from the exchange. Relaxed: a count, and a bound senders read.
    if (n > 1)
        atomic_fetch_sub_explicit(&actor->bp, (n - 1) << BRG__BP_SHIFT, memory_order_relaxed);
    atomic_store_explicit(&actor->bp_pub, actor->queued, memory_order_relaxed);
    brg__sched_note_queued(actor->sys, actor->queued);
    return true;
}

static brg_msg_t *
s_pop(brg_msg_t **head, brg_msg_t **tail)
{
    brg_msg_t *msg = *head;
    if (msg) {
        *head = atomic_load_explicit(&msg->next, memory_order_relaxed);
        if (!*head)
            *tail = NULL;
        atomic_store_explicit(&msg->next, NULL, memory_order_relaxed);
    }
    return msg;
}

//  Everything left in the private lists becomes a dead letter; an ask among
//  them gets an error reply, so its asker learns at once.
static void
s_drain_dead(brg__actor_t *actor)
{
    brg_ref_t self = brg__actor_ref(actor);
    brg_msg_t *msg;
    while ((msg = s_pop(&actor->sys_head, &actor->sys_tail)) != NULL)
        brg__msg_free(msg); // internal messages (stop, kill, ask timeouts): nothing to report
    while ((msg = s_pop(&actor->user_head, &actor->user_tail)) != NULL) {
        if (msg->kind == BRG__MSG_SYS_IDLE || !brg__timers_tick_is_live(actor->sys->timers, msg))
            brg__msg_free(msg);
        else if (!brg__link_on_drain(actor, msg)) // link/monitor requests get noproc
            brg__dead_letter(actor->sys, self, msg, BRG_DEAD_STOPPED, true);
    }
    actor->queued = 0;
}

//  The crash report (log category "crash"): one line naming the reason's code
//  and text and where the actor was, `where`. Only for an actor that failed
//  by itself; exits caused by exit signals are the signal sender's story,
//  and normal or shutdown exits are not errors (as in Erlang/OTP).
static void
s_crash_report(brg__actor_t *actor, const brg_exit_reason_t *reason, const char *where)
{
    if (!brg__log_on(actor->sys, BRG_LOG_ERROR))
        return;
    const char *err = brg_err_name(reason->code);
    // A failure without a text of its own carries its code's name as text.
    bool text = reason->text[0] && strcmp(reason->text, err) != 0;
    char code[32];
    const char *name = err;
    if (strcmp(err, "BRG_EUNKNOWN") == 0) { // a code of the user's own
        snprintf(code, sizeof(code), "code %d", reason->code);
        name = code;
    }
    brg__log(actor->sys, BRG_LOG_ERROR, "crash", brg__actor_ref(actor), "failed: %s%s%s%s; %s",
             name, text ? " \"" : "", text ? reason->text : "", text ? "\"" : "", where);
}

//  The actor ends: close the mailbox, release the name, drop the backlog,
//  destroy the state, free the slot. The actor is gone when this returns.
//  crash_where: for an actor that failed by itself, where (its crash report
//  says); NULL otherwise.
static void
s_die(brg__actor_t *actor, const brg_exit_reason_t *reason, const char *crash_where)
{
    brg_system_t *sys = actor->sys;
    bool failed = reason->kind == BRG_EXIT_FAILED || reason->kind == BRG_EXIT_KILLED;
    s_bp_target = 0; // a dead actor waits for nobody
    // Before the name is released, so that the report can name the actor.
    if (crash_where && reason->kind == BRG_EXIT_FAILED)
        s_crash_report(actor, reason, crash_where);
    actor->flags |= BRG__ACTOR_DEAD;
    // Close the mailbox and release the name as one step, before any EXIT or
    // DOWN is sent: whoever learns of this death, by a signal or by a failed
    // send, link or monitor, finds the name free (registry.c).
    s_take_stack(actor, brg__registry_close(sys, actor));
    s_drain_dead(actor);
    // Senders suspended on us go back to work (their next sends to us fail);
    // CLOSED keeps new ones from waiting (brg__sched_bp_suspend's RMW).
    if (atomic_fetch_or_explicit(&actor->bp, BRG__BP_CLOSED, memory_order_acq_rel) &
        BRG__BP_WAITERS)
        brg__sched_bp_wake(sys->sched, actor);
    // The pending asks' callbacks run (BRG_ECLOSED) before the exit signals
    // go out, as an OTP terminate/2 runs before the process exits: a link,
    // monitor or BRG_SPAWN_LINK child made in a callback is signalled below
    // with the others. New asks from these callbacks fail at once (brg_ask
    // sees BRG__ACTOR_DEAD), so nothing recurses and nothing outlives us.
    if (actor->ext)
        brg__ask_map_destroy(&actor->ext->asks, actor);
    brg__link_on_death(actor, reason);
    if (actor->ext && actor->ext->idle_timer)
        brg__timers_cancel(sys->timers, actor->ext->idle_timer);
    if (actor->state_destroy && actor->state)
        actor->state_destroy(actor->state);
    actor->state = NULL;
    brg__system_actor_ended(sys, failed, !(actor->mode & BRG__MODE_HIDDEN));
    brg__slots_retire(sys, actor);
}

//  Arm (or re-arm) the idle timer for the deadline last_active + idle_ms.
static void
s_idle_arm(brg__actor_t *actor)
{
    brg__actor_ext_t *ext = actor->ext;
    uint64_t now = brg__system_now_ns(actor->sys);
    uint64_t deadline = ext->last_active_ns + (uint64_t)ext->idle_ms * 1000000u;
    brg_msg_t *msg = brg__msg_alloc();
    if (!msg)
        return; // out of memory: the idle timeout is skipped, not the actor
    brg__msg_set_tag(msg, BRG_TAG_IDLE, sizeof(BRG_TAG_IDLE) - 1);
    msg->kind = BRG__MSG_SYS_IDLE;
    msg->corr = ++ext->idle_seq;
    brg_timer_id_t id = 0;
    if (brg__timers_start(actor->sys->timers, brg__actor_ref(actor), &msg,
                          deadline > now ? deadline - now : 0, 0, &id) == BRG_OK) {
        ext->idle_timer = id;
        actor->flags |= BRG__ACTOR_IDLE_ARMED;
    }
}

//  The idle timer fired. Returns true if the behaviour should see it.
static bool
s_idle_due(brg__actor_t *actor, const brg_msg_t *msg)
{
    brg__actor_ext_t *ext = actor->ext;
    if (!ext || ext->idle_ms <= 0 || msg->corr != ext->idle_seq)
        return false; // stale: the timeout was changed or re-armed since
    actor->flags &= (uint16_t)~BRG__ACTOR_IDLE_ARMED;
    ext->idle_timer = 0;
    uint64_t now = brg__system_now_ns(actor->sys);
    if (now - ext->last_active_ns + 1000000u < (uint64_t)ext->idle_ms * 1000000u)
        return false; // there was activity since: re-armed when the actor idles
    ext->last_active_ns = now;
    return true;
}

//  Why an actor that stopped itself is ending: a brg_fail reason, a generic
//  failure (a reply callback failed), or normal.
static void
s_own_reason(brg__actor_t *actor, brg_exit_reason_t *reason)
{
    if (!(actor->flags & BRG__ACTOR_FAILING))
        brg__exit_reason_set(reason, BRG_EXIT_NORMAL, 0, NULL);
    else if (actor->ext && actor->ext->fail_reason)
        *reason = *actor->ext->fail_reason;
    else
        brg__exit_reason_set(reason, BRG_EXIT_FAILED, BRG_EFAILED, "reply callback failed");
}

static void
s_rc_reason(int rc, brg_exit_reason_t *reason)
{
    brg__exit_reason_set(reason, BRG_EXIT_FAILED, rc, brg_err_name(rc));
}

//  The watchdog caught this call holding its thread too long (cfg.watchdog_fail).
static void
s_watchdog_fail(brg__actor_t *actor)
{
    brg__actor_ext_t *ext = brg__actor_ext(actor);
    if (ext && !ext->fail_reason)
        ext->fail_reason = malloc(sizeof(*ext->fail_reason));
    if (ext && ext->fail_reason)
        brg__exit_reason_set(ext->fail_reason, BRG_EXIT_FAILED, BRG_ETIMEDOUT,
                             "watchdog: behaviour held its thread too long");
    brg__actor_fail_later(actor);
}

//  Run one message. Returns true if the actor must die, with *reason; then
//  *own says whether the actor failed by itself (not by an exit signal or a
//  stop) and tag holds the message's tag, for the crash report.
static bool
s_handle(brg__actor_t *actor, brg_msg_t *msg, brg_exit_reason_t *reason, bool *own,
         char tag[BRG_TAG_MAX + 1])
{
    brg_ctx_t ctx = {actor, msg};
    int rc = BRG_OK;
    *own = false;
    tag[0] = '\0';
    if (brg__link_is_signal(msg)) {
        switch (brg__link_handle(actor, msg, reason)) {
        case BRG__LINK_DIE:
            brg__msg_free(msg);
            return true;
        case BRG__LINK_DELIVER:
            msg->kind = BRG__MSG_USER; // shown to the behaviour as EXIT / DOWN
            msg->corr = 0;
            break;
        default:
            brg__msg_free(msg);
            return false;
        }
    }
    // The message is freed at the end, not in the cases below, so that a
    // death can still report its tag; a case that hands it on sets it NULL.
    switch ((brg__msg_kind_t)msg->kind) {
    case BRG__MSG_SYS_STOP:
        brg__msg_free(msg);
        brg__exit_reason_set(reason, BRG_EXIT_NORMAL, 0, NULL);
        return true;
    case BRG__MSG_SYS_ASK_TIMEOUT:
        ctx.msg = NULL;
        brg__ask_on_timeout(&ctx, msg->corr);
        break;
    case BRG__MSG_REPLY:
    case BRG__MSG_REPLY_ERROR: {
        bool handled = false;
        brg__ask_on_reply(&ctx, msg, &handled);
        if (!handled) {
            brg__dead_letter(actor->sys, brg__actor_ref(actor), msg, BRG_DEAD_LATE_REPLY, false);
            msg = NULL;
        }
        break;
    }
    case BRG__MSG_SYS_IDLE:
    case BRG__MSG_TIMER:
        // A stale idle check, or a tick of a periodic timer cancelled after
        // it was sent (brg_timer_cancel's promise): not a message any more.
        if (msg->kind == BRG__MSG_SYS_IDLE ? !s_idle_due(actor, msg)
                                           : !brg__timers_tick_is_live(actor->sys->timers, msg))
            break;
        msg->kind = BRG__MSG_USER;
        msg->corr = 0;
        /* fall through */
    case BRG__MSG_USER: {
        brg__watch_frame_t watch = brg__watch_begin(actor->id);
        rc = actor->fn(&ctx, msg);
        if (brg__watch_end(watch))
            s_watchdog_fail(actor);
        if (rc != BRG_UNHANDLED)
            break;
        memcpy(tag, msg->tag, (size_t)msg->tag_len + 1);
        if (actor->mode & BRG__MODE_FAIL_UNHANDLED) {
            // The policy says an unexpected message is a bug in the protocol:
            // fail (the message is still reported as a dead letter).
            char text[BRG_EXIT_TEXT_MAX + 1];
            snprintf(text, sizeof(text), "unhandled message '%s'", msg->tag);
            brg__exit_reason_set(reason, BRG_EXIT_FAILED, BRG_EPROTO, text);
            brg__dead_letter(actor->sys, brg__actor_ref(actor), msg, BRG_DEAD_UNHANDLED, true);
            *own = true;
            return true;
        }
        brg__dead_letter(actor->sys, brg__actor_ref(actor), msg, BRG_DEAD_UNHANDLED, true);
        msg = NULL; // its tag is in tag already, should brg_fail have been called
        break;
    }
    case BRG__MSG_SYS_KILL:
    case BRG__MSG_SYS_LINK:
    case BRG__MSG_SYS_UNLINK:
    case BRG__MSG_SYS_MONITOR:
    case BRG__MSG_SYS_DEMONITOR:
    case BRG__MSG_SYS_EXIT:
    case BRG__MSG_SYS_DOWN:
        brg__panic("link signal kind %d escaped brg__link_handle", msg->kind);
    }
    bool die = true;
    if (rc < 0 && !(actor->flags & BRG__ACTOR_FAILING))
        s_rc_reason(rc, reason);
    else if (actor->flags & BRG__ACTOR_STOPPING)
        s_own_reason(actor, reason);
    else
        die = false;
    if (msg) {
        if (die)
            memcpy(tag, msg->tag, (size_t)msg->tag_len + 1);
        brg__msg_free(msg);
    }
    *own = die;
    return die;
}

//  True (and the flag cleared) if a stop or kill was pushed since we last
//  looked. The relaxed pre-check keeps the common case to one plain load.
static bool
s_take_urgent(brg__actor_t *actor)
{
    // Acquire: pairs with the release store in brg__actor_push, so the grab
    // that follows sees the urgent message.
    return (atomic_load_explicit(&actor->bp, memory_order_relaxed) & BRG__BP_URGENT) &&
           (atomic_fetch_and_explicit(&actor->bp, ~BRG__BP_URGENT, memory_order_acquire) &
            BRG__BP_URGENT);
}

//  The end of a batch that leaves messages queued (the actor is still ours,
//  and runs again): publish what is left, and
//  hand back the senders suspended on us once we are at the low-water mark.
//  The relaxed load is the fast path; going idle checks again with the
//  ordering that makes sure no sender is left waiting (s_bp_idle).
static inline void
s_bp_batch_end(brg__actor_t *actor)
{
    atomic_store_explicit(&actor->bp_pub, actor->queued, memory_order_relaxed);
    uint32_t w = atomic_load_explicit(&actor->bp, memory_order_relaxed);
    if (__builtin_expect((w & BRG__BP_WAITERS) != 0, 0) &&
        (uint64_t)actor->queued + BRG__BP_COUNT(w) <=
            (uint32_t)actor->sys->cfg.mailbox_high_water / 2)
        brg__sched_bp_wake(actor->sys->sched, actor);
}

//  Suspend the running actor on the congested receiver its last behaviour
//  call sent to (s_bp). Returns true if it is suspended: no longer ours.
__attribute__((noinline, cold)) static bool
s_bp_suspend(brg__actor_t *actor)
{
    brg_system_t *sys = actor->sys;
    uint64_t id = s_bp_target;
    s_bp_target = 0;
    // Our URGENT may be up (s_bp_note's, or a stop's): take it down, with
    // a grab, and stay if the system lane has anything (a stop or kill runs
    // now, not after the receiver drains). A stop pushed after this meets
    // brg__sched_bp_suspend's RMW on our word (s_push_urgent).
    if (s_take_urgent(actor))
        s_grab(actor);
    if (actor->sys_head)
        return false;
    // Senders may register on us while we wait: they read this.
    atomic_store_explicit(&actor->bp_pub, actor->queued, memory_order_relaxed);
    // A counted reference: the receiver may have died since the send.
    brg__actor_t *receiver = brg__actor_acquire(sys, id);
    if (!receiver)
        return false;
    bool suspended = brg__sched_bp_suspend(actor->sys->sched, actor, receiver);
    brg__actor_release(sys, id);
    return suspended;
}

//  The mailbox is empty: RUNNING -> NULL. Returns false if messages arrived
//  meanwhile (the actor is still ours), true if it is idle (no longer ours).
static bool
s_go_idle(brg__actor_t *actor)
{
    atomic_store_explicit(&actor->bp_pub, 0, memory_order_relaxed); // nothing queued
    // A blocking-pool thread passes no quiescent point: without a counted
    // reference the actor could be run, die and be freed elsewhere before
    // our look at bp below. Workers need none (a reference-free reader
    // until their next quiescent point); deterministic steps take one too.
    bool counted = actor->mode & BRG__MODE_BLOCKING;
    if (counted && !brg__actor_acquire(actor->sys, actor->id))
        brg__panic("running actor %llx is not live", (unsigned long long)actor->id);
    brg_msg_t *expected = BRG__MB_RUNNING;
    // Seq_cst (acq_rel and more): release hands the actor's private state to
    // whichever thread schedules it next (that producer's CAS reads NULL and
    // acquires); on failure, new messages arrived and we keep running it.
    // Seq_cst for the Dekker pair with brg__sched_bp_suspend: we write head
    // and then read bp, it writes bp (WAITERS) and then reads head; so
    // either it sees us idle (and does not suspend) or we see WAITERS here.
    bool idle = atomic_compare_exchange_strong_explicit(&actor->head, &expected, NULL,
                                                        memory_order_seq_cst, memory_order_acquire);
    if (idle && (atomic_load_explicit(&actor->bp, memory_order_seq_cst) & BRG__BP_WAITERS))
        brg__sched_bp_wake_id(actor->sys->sched, actor->id); // not ours: by id only
    if (counted)
        brg__actor_release(actor->sys, actor->id); // immutable fields, still held
    return idle;
}

static inline bool s_activation(brg__actor_t *actor, int batch) __attribute__((always_inline));

bool
brg__actor_run(brg__actor_t *actor, int batch)
{
    // Help-along runs us nested inside another actor's send: its chain goes
    // out before anything of ours (design notes, "Send coalescing"), and
    // counts towards its own backpressure, not ours.
    brg__send_call_end();
    // Our activation's frame. s_bp_target is 0 here: every activation ends
    // with it 0 (s_bp_suspend, s_die), and help-along clears it (after
    // saving the outer call's, brg__actor_bp_save) before its nested runs.
    s_bp_running = actor;
    return s_activation(actor, batch);
}

static inline bool
s_activation(brg__actor_t *actor, int batch)
{
    brg_exit_reason_t reason;
    if (actor->flags & BRG__ACTOR_INIT) {
        actor->flags &= (uint16_t)~BRG__ACTOR_INIT;
        brg_ctx_t ctx = {actor, NULL};
        brg__watch_frame_t watch = brg__watch_begin(actor->id);
        int rc = actor->ext->init(&ctx, actor->ext->init_arg);
        brg__send_call_end();
        if (brg__watch_end(watch))
            s_watchdog_fail(actor);
        if (rc < 0 || (actor->flags & BRG__ACTOR_STOPPING)) {
            if (rc < 0 && !(actor->flags & BRG__ACTOR_FAILING))
                s_rc_reason(rc, &reason);
            else
                s_own_reason(actor, &reason);
            s_die(actor, &reason, "in init");
            brg__send_call_end(); // what s_die's callbacks sent
            return false;
        }
    }
    // New messages first, so the system lane sees a stop that came in since
    // the last activation before any of the grabbed backlog runs.
    s_grab(actor);
    int n = 0;
    int user = 0;
    while (n < batch) {
        if (s_take_urgent(actor)) {
            // A call that sent to a congested receiver ends the activation
            // (s_bp_note raised URGENT; s_bp_suspend grabs).
            if (s_bp_target != 0)
                break;
            s_grab(actor);
        }
        brg_msg_t *msg = s_pop(&actor->sys_head, &actor->sys_tail);
        if (!msg) {
            msg = s_pop(&actor->user_head, &actor->user_tail);
            if (!msg) {
                if (!s_grab(actor))
                    break;
                continue;
            }
            if (msg->kind != BRG__MSG_SYS_IDLE)
                user++; // the idle check itself is not activity
        }
        actor->queued--;
        n++;
        bool own;
        char tag[BRG_TAG_MAX + 1];
        bool dies = s_handle(actor, msg, &reason, &own, tag);
        brg__send_call_end();
        if (dies) {
            // Counted before s_die counts the actor stopped, so whoever sees
            // it stopped (brg_system_await_actors) sees its messages too.
            brg__sched_count_processed(actor->sys, (uint32_t)n);
            char where[BRG_TAG_MAX + 32];
            if (own)
                snprintf(where, sizeof(where), "last message '%s'", tag);
            s_die(actor, &reason, own ? where : NULL);
            brg__send_call_end(); // what s_die's callbacks sent
            return false;
        }
    }
    // Counted while the actor is still ours: the next activation may run on
    // another thread and end in death right after we hand it over, and
    // that death must not be seen before these messages are.
    brg__sched_count_processed(actor->sys, (uint32_t)n);
    if (actor->ext && actor->ext->idle_ms > 0 && user > 0)
        actor->ext->last_active_ns = brg__system_now_ns(actor->sys);
    if (s_bp_target != 0 && s_bp_suspend(actor))
        return false; // suspended: handed back when the receiver drains or dies
    if (actor->user_head || actor->sys_head) {
        s_bp_batch_end(actor);
        return true; // batch used up: yield to the others
    }
    if (actor->ext && actor->ext->idle_ms > 0 && !(actor->flags & BRG__ACTOR_IDLE_ARMED))
        s_idle_arm(actor); // before going idle: afterwards the actor is not ours
    return !s_go_idle(actor);
}

int
brg__actor_spawn(brg_system_t *sys, brg__actor_t *parent, brg_behaviour_fn fn,
                 const brg_spawn_opts_t *opts, uint16_t mode, brg_ref_t *ref,
                 brg__actor_t **actor_out)
{
    // The child may send to the targets of our pending chain: ours go first.
    brg__send_flush();
    brg_spawn_opts_t none;
    if (!opts) {
        brg_spawn_opts_init(&none);
        opts = &none;
    }
    unsigned link_flags = opts->flags & (BRG_SPAWN_LINK | BRG_SPAWN_MONITOR);
    if (link_flags && !parent)
        return BRG_EINVAL;
    if (opts->name && (opts->name[0] == '\0' || strlen(opts->name) > BRG_NAME_MAX))
        return BRG_EINVAL;
    // Without a pool thread a blocking actor would never run, and destroy
    // would wait for it forever. (Deterministic mode runs it like any other.)
    if ((opts->flags & BRG_SPAWN_BLOCKING) && sys->cfg.blocking_threads == 0 &&
        !sys->cfg.deterministic)
        return BRG_EINVAL;
    size_t base = (sizeof(brg__actor_t) + 15u) & ~(size_t)15u;
    // A state_size near SIZE_MAX would wrap the sum into a small block that
    // the memset below overruns: refuse it (the only size added here).
    if (opts->state_size > SIZE_MAX - base)
        return BRG_EINVAL;
    brg__actor_t *actor = malloc(base + opts->state_size);
    if (!actor)
        return BRG_ENOMEM;
    memset(actor, 0, sizeof(*actor));
    actor->fn = fn;
    actor->sys = sys;
    actor->mode = mode | ((opts->flags & BRG_SPAWN_BLOCKING) ? BRG__MODE_BLOCKING : 0) |
                  ((opts->flags & BRG_SPAWN_FAIL_UNHANDLED) ? BRG__MODE_FAIL_UNHANDLED : 0);
    actor->state_destroy = opts->state_destroy;
    if (opts->state_size > 0) {
        actor->state = (char *)actor + base;
        memset(actor->state, 0, opts->state_size);
    } else {
        actor->state = opts->state;
    }
    if (opts->init || (mode & BRG__MODE_WAITER)) {
        if (!brg__actor_ext(actor)) {
            free(actor);
            return BRG_ENOMEM;
        }
        actor->ext->init = opts->init;
        actor->ext->init_arg = opts->init_arg;
    }
    if (mode & BRG__MODE_WAITER) {
        brg__waiter_t *w = calloc(1, sizeof(*w));
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (!w || pthread_mutex_init(&w->lock, NULL) != 0 ||
            pthread_cond_init(&w->cond, &attr) != 0) {
            pthread_condattr_destroy(&attr);
            free(w);
            free(actor->ext);
            free(actor);
            return BRG_ENOMEM;
        }
        pthread_condattr_destroy(&attr);
        actor->ext->waiter = w;
    }
    // An actor with init runs at once: it starts RUNNING (scheduled) and is
    // queued below; others start idle and run on their first message.
    if (opts->init) {
        actor->flags |= BRG__ACTOR_INIT;
        atomic_init(&actor->head, BRG__MB_RUNNING);
    } else {
        atomic_init(&actor->head, NULL);
    }
    atomic_init(&actor->bp, 0);
    // The name is reserved before the actor exists, so a taken name fails the
    // spawn before anything is published, and filled in once it has an id.
    int rc;
    if (opts->name && (rc = brg__registry_reserve(sys, opts->name)) != BRG_OK) {
        free(actor->ext);
        free(actor);
        return rc;
    }
    bool counted = !(mode & BRG__MODE_WAITER);
    if (brg__slots_publish(sys, actor, counted, parent, link_flags, opts->monitor, &rc) == 0) {
        if (opts->name)
            brg__registry_cancel(sys, opts->name);
        if (actor->ext && actor->ext->waiter) {
            pthread_mutex_destroy(&actor->ext->waiter->lock);
            pthread_cond_destroy(&actor->ext->waiter->cond);
            free(actor->ext->waiter);
        }
        if (actor->ext)
            brg__links_free(&actor->ext->links);
        free(actor->ext);
        free(actor);
        return rc;
    }
    brg_ref_t self = brg__actor_ref(actor);
    // Nobody but us has the new ref yet, so nothing can make the actor die
    // between its publication and this fill, with one exception: a
    // brg_system_destroy that started meanwhile stops every published actor.
    // Then the fill may bind the name to an actor already gone; harmless, as
    // the registry is about to be destroyed with the system.
    if (opts->name)
        brg__registry_fill(sys, opts->name, self);
    if (ref)
        *ref = self;
    if (actor_out)
        *actor_out = actor;
    if (opts->init)
        brg__sched_schedule(sys->sched, actor);
    return BRG_OK;
}

void
brg__actor_retire_waiter(brg__actor_t *actor)
{
    brg_msg_t *top = atomic_exchange_explicit(&actor->head, BRG__MB_DEAD, memory_order_acquire);
    s_take_stack(actor, top);
    brg_msg_t *msg;
    while ((msg = s_pop(&actor->user_head, &actor->user_tail)) != NULL)
        brg__waiter_drop(actor, msg);
    while ((msg = s_pop(&actor->sys_head, &actor->sys_tail)) != NULL)
        brg__waiter_drop(actor, msg);
    // No sender is ever suspended on a reply box (brg__sched_bp_suspend);
    // closed all the same, as any mailbox that dies.
    if (atomic_fetch_or_explicit(&actor->bp, BRG__BP_CLOSED, memory_order_acq_rel) &
        BRG__BP_WAITERS)
        brg__sched_bp_wake(actor->sys->sched, actor);
    brg__slots_retire(actor->sys, actor);
}

//  Wake the thread blocked on waiter w for good: it answers BRG_ECLOSED.
static void
s_waiter_close(brg__waiter_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->closed = true;
    w->ready = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

uint32_t
brg__actor_stop_all(brg_system_t *sys)
{
    uint32_t limit = brg__slots_close(sys);
    // Two passes: the blocked brg_system_asks are released first, so they
    // answer BRG_ECLOSED rather than whatever their target's stop causes.
    uint32_t asked = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t idx = 0; idx < limit; idx++) {
            uint64_t id = brg__slots_live_id(sys, idx);
            if (id == 0)
                continue;
            brg__actor_t *actor = brg__actor_acquire(sys, id);
            if (!actor)
                continue;
            bool waiter = actor->mode & BRG__MODE_WAITER;
            if (pass == 0 && waiter) {
                s_waiter_close(actor->ext->waiter);
            } else if (pass == 1 && !waiter) {
                brg_msg_t *stop = brg__msg_alloc();
                if (!stop)
                    brg__panic("out of memory while stopping actors");
                brg__msg_set_tag(stop, "brg.stop", 8);
                stop->kind = BRG__MSG_SYS_STOP;
                if (brg__actor_push(actor, stop) == BRG_OK)
                    asked++;
                else
                    brg__msg_free(stop);
            }
            brg__actor_release(sys, id);
        }
    }
    return asked;
}

//  ---------------------------------------------------------------------------
//  Public API

void
brg_spawn_opts_init(brg_spawn_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
}

int
brg_spawn(brg_ctx_t *ctx, brg_behaviour_fn fn, const brg_spawn_opts_t *opts, brg_ref_t *ref)
{
    assert(ctx);
    assert(fn);
    return brg__actor_spawn(ctx->actor->sys, ctx->actor, fn, opts, 0, ref, NULL);
}

int
brg_system_spawn(brg_system_t *sys, brg_behaviour_fn fn, const brg_spawn_opts_t *opts,
                 brg_ref_t *ref)
{
    assert(sys);
    assert(fn);
    return brg__actor_spawn(sys, NULL, fn, opts, 0, ref, NULL);
}

brg_ref_t
brg_self(const brg_ctx_t *ctx)
{
    assert(ctx);
    return brg__actor_ref(ctx->actor);
}

void *
brg_state(const brg_ctx_t *ctx)
{
    assert(ctx);
    return ctx->actor->state;
}

brg_system_t *
brg_ctx_system(const brg_ctx_t *ctx)
{
    assert(ctx);
    return ctx->actor->sys;
}

int
brg_send(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    brg__msg_make_plain(*msg_p, brg__actor_ref(ctx->actor));
    brg__sched_note_send();
    return brg__system_deliver(ctx->actor->sys, to, msg_p);
}

//  brg_msg_new already validates the tag; it gives NULL both for a bad tag
//  and for no memory, and the shorthands promise BRG_EINVAL for the first.
//  So the tag is looked at again only on that failure path, never per send.
static int
s_new_failed(const char *tag)
{
    bool ok = tag && tag[0] != '\0' && strnlen(tag, BRG_TAG_MAX + 1) <= BRG_TAG_MAX;
    return ok ? BRG_ENOMEM : BRG_EINVAL;
}

//  Send a message made by one of the brg_msg_new shorthands (NULL: failed).
static int
s_send_new(brg_ctx_t *ctx, brg_ref_t to, const char *tag, brg_msg_t *msg)
{
    if (!msg)
        return s_new_failed(tag);
    return brg_send(ctx, to, &msg);
}

int
brg_send_tag(brg_ctx_t *ctx, brg_ref_t to, const char *tag)
{
    return s_send_new(ctx, to, tag, brg_msg_new(tag));
}

int
brg_send_int(brg_ctx_t *ctx, brg_ref_t to, const char *tag, int64_t value)
{
    return s_send_new(ctx, to, tag, brg_msg_new_int(tag, value));
}

int
brg_send_str(brg_ctx_t *ctx, brg_ref_t to, const char *tag, const char *value)
{
    assert(value);
    return s_send_new(ctx, to, tag, brg_msg_new_str(tag, value));
}

void
brg_become(brg_ctx_t *ctx, brg_behaviour_fn fn)
{
    assert(ctx);
    assert(fn);
    ctx->actor->fn = fn;
}

void
brg_stop(brg_ctx_t *ctx)
{
    assert(ctx);
    ctx->actor->flags |= BRG__ACTOR_STOPPING;
}

int
brg_actor_stop(brg_system_t *sys, brg_ref_t ref)
{
    assert(sys);
    if (brg_system_is_local(sys, ref)) {
        // A waiter (brg_system_ask's reply box) has no behaviour to stop.
        brg__actor_t *actor = brg__actor_acquire(sys, ref.id);
        bool waiter = actor && (actor->mode & BRG__MODE_WAITER);
        if (actor)
            brg__actor_release(sys, ref.id);
        if (!actor || waiter)
            return BRG_ENOACTOR;
    }
    brg_msg_t *stop = brg__msg_alloc();
    if (!stop)
        return BRG_ENOMEM;
    brg__msg_set_tag(stop, "brg.stop", 8);
    stop->kind = BRG__MSG_SYS_STOP;
    // The one send path: a local mailbox, or the transport for another node.
    return brg__system_deliver(sys, ref, &stop);
}

int
brg_set_idle_timeout(brg_ctx_t *ctx, int timeout_ms)
{
    assert(ctx);
    if (timeout_ms < 0)
        return BRG_EINVAL; // the same answer in every build; nothing changes
    brg__actor_t *actor = ctx->actor;
    if (timeout_ms == 0 && !actor->ext)
        return BRG_OK;
    brg__actor_ext_t *ext = brg__actor_ext(actor);
    if (!ext)
        return BRG_ENOMEM;
    if (ext->idle_timer)
        brg__timers_cancel(actor->sys->timers, ext->idle_timer);
    ext->idle_timer = 0;
    ext->idle_seq++; // a timer already in flight is now stale
    actor->flags &= (uint16_t)~BRG__ACTOR_IDLE_ARMED;
    ext->idle_ms = timeout_ms;
    ext->last_active_ns = brg__system_now_ns(actor->sys);
    return BRG_OK;
}
