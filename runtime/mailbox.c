//  mailbox - an actor's mailbox and run state in one word: push, send
//  coalescing, the system lane, URGENT and backpressure's count
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
//    - a behaviour call (init, a message, the callbacks run by actor.c's s_die)
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
//  senders is in backpressure.c). The mailbox's length must be known to senders
//  without an RMW per message, or ping-pong would pay for floods. So the
//  word `bp`, beside head on the first line, counts only the messages
//  pushed onto a non-empty stack (s_bp_count: a stack of k counts k - 1,
//  adjusted before each CAS attempt so the successful one leaves exactly
//  its share; a push onto NULL or RUNNING, every ping-pong send, adds
//  nothing), the owner subtracts a grabbed stack's share in brg__mailbox_grab (one RMW
//  per grab of two or more), and publishes its private lists' length in
//  bp_pub at every grab and batch end (a plain store; the lists only shrink
//  in between). So bp_pub + count + 1 is never below the length. A push
//  that finds the estimate over the high-water mark (s_bp_check) notes the
//  receiver's id (s_bp_note; not itself, not another system, not from a
//  thread running no activation); brg__actor_run then ends the activation
//  after that behaviour call and asks backpressure.c to suspend the actor
//  (brg__mailbox_bp_suspend). The owner hands its waiters back at a batch end at the
//  low-water mark (brg__mailbox_bp_batch_end), when it goes idle (brg__mailbox_go_idle: CAS head,
//  then a seq_cst look at bp, the Dekker pair with the registration's RMW
//  then look at head), and when it dies (CLOSED). The invariant: a mailbox
//  holds at most high-water + the sum over its senders of what each sends
//  it in one behaviour call, plus the exempt sends (its own, from outside
//  threads, from actors others wait for).
//
//  Ownership. Producers (any thread) write `head` (CAS) and `bp` (RMW); the
//  owner (the thread running the actor) grabs `head`, owns the private lists
//  and writes `bp_pub`. The owner's side is static inline in mailbox.h
//  (brg__mailbox_grab, _pop, _take_urgent, _bp_batch_end, _go_idle), because
//  brg__actor_run calls it per message.
#include "runtime_internal.h"

//  The calling worker's pending chain (mailbox.h). Owner: the thread.
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
_Thread_local brg__actor_t *brg__bp_running __attribute__((tls_model("initial-exec")));
_Thread_local uint64_t brg__bp_target __attribute__((tls_model("initial-exec"))); // id, or 0
static _Thread_local uint32_t s_bp_high __attribute__((tls_model("initial-exec"))) = UINT32_MAX;

brg__actor_bp_frame_t
brg__actor_bp_save(void)
{
    return (brg__actor_bp_frame_t){brg__bp_running, brg__bp_target};
}

void
brg__actor_bp_restore(brg__actor_bp_frame_t frame)
{
    brg__bp_running = frame.running;
    brg__bp_target = frame.target;
}

void
brg__actor_bp_thread(const brg_system_t *sys)
{
    int high = sys ? sys->cfg.mailbox_high_water : -1;
    s_bp_high = high > 0 ? (uint32_t)high : UINT32_MAX;
    brg__bp_running = NULL;
}

//  A push found actor's mailbox over the running activation's high-water
//  mark: remember the receiver, by id (the pointer may not outlive a
//  quiescent point), for brg__actor_run to suspend on after the call.
//  Sends to itself never hold an actor back, nor sends to another system,
//  nor those of a thread that runs no activation (it cannot be suspended).
__attribute__((noinline, cold)) static void
s_bp_note(brg__actor_t *actor)
{
    brg__actor_t *running = brg__bp_running;
    // A dying actor's last sends (error replies to its queued asks, its
    // callbacks', its state destructor's) hold back nobody: it will never
    // be suspended, and a target left behind would suspend the next actor
    // its thread runs.
    if (running == NULL || actor == running || actor->sys != running->sys ||
        (running->flags & BRG__ACTOR_DEAD))
        return;
    brg__bp_target = actor->id;
    // Raise our own URGENT: the check brg__actor_run makes before every
    // message anyway, so that the activation ends after this call without a
    // look at brg__bp_target per message. brg__mailbox_bp_suspend takes it down again.
    atomic_fetch_or_explicit(&running->bp, BRG__BP_URGENT, memory_order_relaxed);
}

void
brg__mailbox_note_gate(brg_system_t *sys, uint32_t gate)
{
    brg__actor_t *running = brg__bp_running;
    if (running == NULL || running->sys != sys || brg__bp_target != 0 ||
        (running->flags & BRG__ACTOR_DEAD))
        return; // one target per call: the first congestion it met; none for the dying (s_bp_note)
    brg__bp_target = BRG__BP_GATE_KEY(gate);
    atomic_fetch_or_explicit(&running->bp, BRG__BP_URGENT, memory_order_relaxed);
}

//  A stack of messages (not NULL, RUNNING or DEAD).
static inline bool
s_is_stack(const brg_msg_t *top)
{
    return (uintptr_t)top > (uintptr_t)BRG__MB_DEAD;
}

brg__actor_t *
brg__mailbox_pace_peek(brg_system_t *sys, uint64_t id, uint64_t *level)
{
    brg__actor_t *running = brg__bp_running;
    // A dying actor's last calls (its callbacks, error replies) are not
    // paced, as they are not held back (s_bp_note).
    if (id == 0 || BRG__BP_IS_GATE(id) || running == NULL || s_bp_high == UINT32_MAX ||
        (running->flags & BRG__ACTOR_DEAD))
        return NULL;
    // Others are suspended on the running actor: it must end its call and
    // drain for them (no cycle of waits, as in brg__bp_suspend). Relaxed: a
    // hint; a WAITERS set just after this look costs them one pace's wait.
    if (atomic_load_explicit(&running->bp, memory_order_relaxed) & BRG__BP_WAITERS)
        return NULL;
    brg__slot_t *slot = brg__slots_peek(sys, id);
    if (!slot)
        return NULL; // dead (or gone): nothing to wait for
    brg__actor_t *receiver = brg__slot_actor(slot);
    // A reply box is drained by its own thread, a blocking actor by the
    // pool's, at the pace of what they block on: never wait for them here.
    if (receiver == running || (receiver->mode & (BRG__MODE_WAITER | BRG__MODE_BLOCKING)))
        return NULL;
    // Relaxed loads, as s_bp_check's.
    brg_msg_t *head = atomic_load_explicit(&receiver->head, memory_order_relaxed);
    if (head == NULL || head == BRG__MB_DEAD)
        return NULL;
    *level = brg__mailbox_estimate(receiver, head,
                                   atomic_load_explicit(&receiver->bp, memory_order_relaxed));
    return receiver;
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

//  brg__actor_send from a thread that is not a worker of sys: a counted
//  reference around the push. Out of line, so that the worker's path below
//  does not pay for the inlined acquire and release (callgrind, pingpong:
//  five instructions per worker send when they shared one function).
__attribute__((noinline)) static int
s_send_counted(brg_system_t *sys, uint64_t id, brg_msg_t *msg)
{
    brg__actor_t *actor = brg__actor_acquire(sys, id);
    if (!actor)
        return BRG_ENOACTOR;
    int rc = brg__actor_push(actor, msg);
    brg__actor_release(sys, id);
    return rc;
}

int
brg__actor_send(brg_system_t *sys, uint64_t id, brg_msg_t *msg)
{
    if (!brg__sched_is_worker_of(sys))
        return s_send_counted(sys, id, msg);
    // A worker of sys: no reference (slots.c, design notes). From this load
    // to the end of the push, this worker passes no quiescent point, so an
    // actor we find LIVE here is not reclaimed under us.
    brg__slot_t *slot = brg__slots_peek(sys, id);
    if (!slot)
        return BRG_ENOACTOR;
    brg__actor_t *actor = brg__slot_actor(slot);
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
        s_chain.to_id = id;
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
        // acq_rel CAS to NULL in brg__mailbox_go_idle, and the run queue passes it
        // on to the next runner, which reads flags before its own grab.
    } while (!atomic_compare_exchange_weak_explicit(&actor->head, &old, msg, memory_order_acq_rel,
                                                    memory_order_relaxed));
    *old_p = old;
    return true;
}

//  A stop or kill was pushed to an actor that is running (or queued, or
//  suspended) and may hold a grabbed backlog: have it grab again before its
//  next message. Release: the push happens before the owner's grab; pairs
//  with the acquire RMW in brg__mailbox_take_urgent. In the word's total order with
//  brg__bp_suspend's RMW: it sees URGENT and does not suspend, or we
//  see SUSPENDED and hand the actor back to run the stop.
__attribute__((noinline, cold)) static void
s_push_urgent(brg__actor_t *actor)
{
    uint32_t prev = atomic_fetch_or_explicit(&actor->bp, BRG__BP_URGENT, memory_order_acq_rel);
    if (prev & BRG__BP_SUSPENDED)
        brg__bp_resume(actor->sys->sched, actor);
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
uint32_t
brg__mailbox_take_stack(brg__actor_t *actor, brg_msg_t *top)
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

//  Suspend the running actor on the congested receiver its last behaviour
//  call sent to (s_bp). Returns true if it is suspended: no longer ours.
bool
brg__mailbox_go_idle_counted(brg__actor_t *actor)
{
    return brg__mailbox_go_idle_as(actor, true);
}

__attribute__((noinline, cold)) bool
brg__mailbox_bp_suspend(brg__actor_t *actor)
{
    brg_system_t *sys = actor->sys;
    uint64_t id = brg__bp_target;
    brg__bp_target = 0;
    // Our URGENT may be up (s_bp_note's, or a stop's): take it down, with
    // a grab, and stay if the system lane has anything (a stop or kill runs
    // now, not after the receiver drains). A stop pushed after this meets
    // brg__bp_suspend's RMW on our word (s_push_urgent).
    if (brg__mailbox_take_urgent(actor))
        brg__mailbox_grab(actor);
    if (actor->sys_head)
        return false;
    // Senders may register on us while we wait: they read this.
    atomic_store_explicit(&actor->bp_pub, actor->queued, memory_order_relaxed);
    if (BRG__BP_IS_GATE(id))
        return brg__remote_gate_suspend(sys, actor, BRG__BP_GATE_OF(id));
    // A counted reference: the receiver may have died since the send.
    brg__actor_t *receiver = brg__actor_acquire(sys, id);
    if (!receiver)
        return false;
    bool suspended = brg__bp_suspend(actor->sys->sched, actor, receiver);
    brg__actor_release(sys, id);
    return suspended;
}
