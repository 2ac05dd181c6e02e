//  sched - scheduling: where a runnable actor goes, the workers' loop, the
//  inject queue, the LIFO slot, help-along and stealing
//
//  Design notes.
//
//  Where a runnable actor goes. An actor becomes runnable when a push takes
//  its mailbox out of idle (mailbox.c); that producer calls brg__sched_schedule
//  exactly once. On a worker thread of the same system the actor goes into
//  the worker's next-to-run slot (the "LIFO slot" of Go and Tokio): the
//  conversation stays on the thread that already has its data in cache, and
//  no other thread is woken, because waking a parked thread here costs tens
//  of microseconds and a cache-line transfer between cores 60-350 ns, more
//  than a whole local message. Whatever was in the slot moves to the worker's
//  FIFO ring, which other workers may steal from. From any other thread (the
//  main thread, the timer thread, the blocking pool) the actor goes into the
//  shared inject queue and one parked worker is woken.
//
//  Two guards keep the LIFO slot from starving others: a worker runs at most
//  BRG__LIFO_STREAK actors in a row from it before it takes from the ring, and
//  an actor that sends more than BRG__LIFO_SENDS messages in one activation
//  (a producer flooding a consumer) has the slot's occupant moved to the ring
//  (where help-along runs it, or a worker takes it if it stalls there).
//
//  Fairness. An actor runs at most `batch` messages, then goes to the back of
//  the ring. Outside work (sends from other threads, timers, which fire from
//  the timer thread) enters through the inject queue, and the bound is:
//  every worker polls the inject queue at least once every
//  BRG__INJECT_EVERY batches it starts, counting the batches help-along runs
//  nested inside a send. Each batch start is counted (s_count_batch) and
//  every place that starts one (s_next_local, the drain loop in s_run,
//  s_help) polls first when the count is due; an actor taken from the queue
//  runs next (nested, in s_help, unless its init has not run: then it goes
//  to the ring). The test hook brg__sched_inject_gap_max reports the largest
//  count seen. Help-along used to count its nested actors' sends towards
//  the next help, so every send of a flooding actor helped again and one
//  activation ran thousands of nested batches without a poll.
//
//  Memory under floods (backlog-proportional share). An actor that yields
//  with Q messages still queued runs up to Q / batch + 1 batches the next
//  time it is picked (s_run), one batch at a time, stopping early when the
//  inject queue is due and not empty. So a consumer drains, each time it
//  runs, what it had when it last yielded: its backlog after a run is at
//  most what arrived while it waited. With plain round-robin it got one
//  batch per round while each of its producers added one, and the backlog
//  grew without bound. On one worker that is a bound (one round's output);
//  with several, producers on other workers keep running while it drains,
//  so the backlog is bounded only while one worker drains faster than the
//  others produce: the hard bound is backpressure (next).
//
//  Pacing in-call floods. Backpressure suspends a sender only after the
//  behaviour call that found its receiver congested, and a call that floods
//  in one long loop (a fan-in sender, a driver handing out work) runs on
//  meanwhile. Help-along drains the receiver when it waits in the sender's
//  own ring, but with senders on two workers the receiver lives on one of
//  them: in fanin8 its backlog reached 700,000 messages (each then a cache
//  miss), most messages were written on one core and read on the other,
//  and two workers ran 2-4 times slower than one (docs/PERFORMANCE.md). So
//  from the second help point of one behaviour call on (brg__sched_note_send:
//  every BRG__HELP_EVERY sends; a call that sent only a message or two is
//  left to backpressure), a flood waits there, for the receiver of its run
//  of sends (the send chain's target) or the congested receiver
//  backpressure noted:
//    - for its turn, when the receiver's home (the worker that last ran it,
//      actor.h) is another worker whose running call floods the same
//      receiver (that worker's `feeding`, published at its help points and
//      cleared after each batch it runs): there the receiver reads messages
//      written on its own core, and ours would cross. For BRG__STALL_NS at
//      most; then the level alone holds it back;
//    - for the level, while the receiver's backlog estimate is over its
//      low-water mark (mailbox_high_water / 2), until it has not dropped
//      for BRG__STALL_NS.
//  While it waits, the worker moves its LIFO slot's occupant to its ring
//  (it is often the receiver: left in the slot, nobody ran it until the
//  call ended) and runs help-along: its ring (the receiver, if it waits
//  there), the inject queue whenever something waits in it (the fairness
//  bound counts these batches as any), a stalled worker's ring; and it
//  passes a quiescent point at every look. Not waited for: a receiver that
//  never ran (its init may have to run first, and help-along does not run
//  one nested), a reply box, a blocking actor, the sender itself; nothing
//  when backpressure is off, for an actor others are suspended on (it must
//  return and drain for them) or for a dying one. Calls that help-along
//  runs nested are not paced (one level, as help).
//  Invariants. (1) Memory: a receiver fed by floods on workers holds at
//  most high-water + two help intervals (2 x BRG__HELP_EVERY) per flooding
//  call + one interval per wait given up because it did not drain (each
//  counted: brg__sched_pace_stats; stats.send_pauses counts the waits),
//  plus what nested calls send it. (2) No deadlock: every wait ends within
//  BRG__STALL_NS of the receiver's last drain, and a turn after
//  BRG__STALL_NS, whatever the other actors do (once the nested runs of its
//  help-along have returned). (3) Progress: a flood kept from its turn
//  still sends a help interval per BRG__STALL_NS; its receiver's own worker
//  never waits for a turn. A wait on the level lasts while the receiver
//  drains: the flood goes at the receiver's pace. The price: a send may
//  wait while its receiver is congested (spent on queued work when there
//  is some); the watchdog counts the wait as part of the behaviour call.
//
//  Locality before parallelism. Most messages cost tens of nanoseconds to
//  handle, less than moving an actor's mailbox and messages to another core
//  (a cache-line round trip is 60-350 ns on the 2-vCPU VM, microseconds when
//  the host deschedules a vCPU). Stealing at once, as Go and Tokio do, made
//  two workers several times slower than one on fan-in and fork-join: the
//  idle worker took the consumers (or a second producer) of a busy one, and
//  every message then crossed cores. So work is left where it is while its
//  owner is getting to it: a worker with nothing to run, or helping along,
//  steals from a ring only if its owner has neither started a batch nor
//  reached a help-along point (its `progress` counter) for BRG__STALL_NS,
//  or the ring is half full (s_stalled); a ring that empties starts a new
//  wait. It takes
//  from the inject queue at once only if no other worker is running actors,
//  else only once nobody has taken from it for BRG__STALL_NS (s_inject_idle);
//  busy workers poll it from help-along whenever it is not empty. Help-along
//  runs whether or not a worker is idle (one batch when one is, so a slow
//  nested actor does not hold up the outer one while an idle worker could
//  take it). Work that does stall (a long behaviour call, a descheduled
//  worker) is still taken within BRG__STALL_NS: parallelism for work that
//  costs more than the move.
//
//  Elsewhere: parking and waking workers (the searcher and sleeper counts,
//  exactly one wake-up) are in park.c, the reclamation of dead actors at
//  the workers' quiescent points in reclaim.c, the blocking pool in pool.c,
//  the table of senders suspended by backpressure in backpressure.c,
//  the watchdog's slots in watchdog.c; the structs they share with this
//  file are in worker.h.
//
//  Threads and ownership. Each worker owns its ring's push/pop side, its LIFO
//  slot and its counters' writes, and writes its `feeding` (others read it,
//  relaxed: a hint); an actor's `home` is written by whoever runs it and
//  read by any (relaxed: a hint; a stale one costs one wait of at most
//  BRG__STALL_NS, or a help interval that crosses cores). inject_lock guards the inject queue,
//  idle_lock the idle stack, each worker's park_lock its notified flag,
//  pool_lock the blocking pool's queue. Lock order: idle_lock before a
//  worker's park_lock; no other lock is held while taking another.
#include "runtime_internal.h"

#define BRG__LIFO_STREAK 8
#define BRG__LIFO_SENDS 64
#define BRG__SPIN_NS 50000u
#define BRG__LONE_SPIN_MIN_NS 2000u // the shortest search while no other worker runs
#define BRG__PAUSE_MAX 1024u        // most pauses between two looks of a searching worker
#define BRG__STALL_NS 100000u       // work another worker has not touched this long may be taken
#define BRG__PACE_SPIN 32u          // pauses between a pacing sender's first two looks

//  The worker the calling thread is, or NULL; and the system whose thread it is
//  (workers and blocking pool).
static _Thread_local brg__worker_t *s_worker;

//  The calling worker runs actor: it is the actor's home now (actor.h;
//  "Pacing in-call floods"). Relaxed: a hint; stored only when it changes,
//  so an actor that stays on one worker never has its line written for it.
//  With more than 255 workers, workers share home values: a hint still
//  (s_pace_need then may wait for, or skip, a turn it should not: bounded).
static inline void
s_note_home(brg__worker_t *w, brg__actor_t *actor)
{
    uint8_t home = (uint8_t)(w->index % 255u + 1u);
    if (atomic_load_explicit(&actor->home, memory_order_relaxed) != home)
        atomic_store_explicit(&actor->home, home, memory_order_relaxed);
}
static _Thread_local brg_system_t *s_thread_sys;
//  The system whose worker the calling thread is, or NULL (see sched.h).
_Thread_local brg_system_t *brg__worker_sys __attribute__((tls_model("initial-exec")));

//  ---------------------------------------------------------------------------
//  Inject queue

//  This worker is getting to its ring: it starts a batch, or reaches a
//  help-along point (it looks at the ring every BRG__HELP_EVERY sends).
static inline void
s_progress(brg__worker_t *w)
{
    // Relaxed: a progress hint for thieves (s_stalled), it orders nothing.
    atomic_store_explicit(&w->progress, ++w->batches, memory_order_relaxed);
}

static void
s_count_batch(brg__worker_t *w)
{
    w->since_inject++;
    if (w->since_inject > atomic_load_explicit(&w->gap_max, memory_order_relaxed))
        atomic_store_explicit(&w->gap_max, w->since_inject, memory_order_relaxed);
    s_progress(w);
}

static void
s_inject_push(brg__sched_t *self, brg__actor_t **actors, uint32_t n)
{
    pthread_mutex_lock(&self->inject_lock);
    for (uint32_t i = 0; i < n; i++) {
        actors[i]->next = NULL;
        if (self->inject_tail)
            self->inject_tail->next = actors[i];
        else
            self->inject_head = actors[i];
        self->inject_tail = actors[i];
    }
    // Relaxed: the hint is re-checked under the lock by every consumer.
    atomic_store_explicit(&self->inject_len,
                          atomic_load_explicit(&self->inject_len, memory_order_relaxed) + n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&self->inject_lock);
}

//  Take one actor to run and move up to half the rest (bounded by the ring's
//  room) into the worker's ring.
static brg__actor_t *
s_inject_take(brg__sched_t *self, brg__worker_t *w)
{
    if (w)
        w->since_inject = 0;
    if (atomic_load_explicit(&self->inject_len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&self->inject_lock);
    uint32_t len = atomic_load_explicit(&self->inject_len, memory_order_relaxed);
    brg__actor_t *first = self->inject_head;
    uint32_t taken = 0;
    if (first) {
        self->inject_head = first->next;
        taken = 1;
        uint32_t extra = w ? (len - 1) / 2 : 0;
        uint32_t room = w ? BRG__RUNQ_CAP - brg__runq_len(&w->runq) : 0;
        if (extra > room)
            extra = room;
        while (extra-- > 0 && self->inject_head) {
            brg__actor_t *a = self->inject_head;
            self->inject_head = a->next;
            brg__runq_push(&w->runq, a);
            taken++;
        }
        if (!self->inject_head)
            self->inject_tail = NULL;
        atomic_store_explicit(&self->inject_len, len - taken, memory_order_relaxed);
        atomic_store_explicit(&self->inject_taken,
                              atomic_load_explicit(&self->inject_taken, memory_order_relaxed) +
                                  taken,
                              memory_order_relaxed);
    }
    pthread_mutex_unlock(&self->inject_lock);
    return first;
}

//  True if this worker is due to poll the inject queue and something waits
//  there. Due and empty counts as a poll (the queue was looked at).
static bool
s_inject_waiting(brg__worker_t *w)
{
    if (w->since_inject < BRG__INJECT_EVERY)
        return false;
    if (atomic_load_explicit(&w->sched->inject_len, memory_order_relaxed) != 0)
        return true;
    w->since_inject = 0;
    return false;
}

//  True if this worker should poll the inject queue from help-along: the
//  bound is due, or something waits there.
static inline bool
s_inject_pending(brg__worker_t *w)
{
    return w->since_inject >= BRG__INJECT_EVERY ||
           atomic_load_explicit(&w->sched->inject_len, memory_order_relaxed) != 0;
}

//  The inject queue seen from a worker with nothing of its own to run. If no
//  other worker is running actors, take at once. Otherwise take only if
//  nobody has taken from it for BRG__STALL_NS: the busy workers poll it on
//  the fairness bound, and an actor started here would run beside theirs,
//  often feeding the same consumer ("Locality" in the design notes).
//  now: the caller's clock reading, or 0.
static brg__actor_t *
s_inject_idle(brg__worker_t *w, uint64_t now)
{
    brg__sched_t *self = w->sched;
    if (atomic_load_explicit(&self->inject_len, memory_order_relaxed) == 0) {
        w->seen_inject_at = 0; // empty: the next entry starts a new wait
        return NULL;
    }
    // Relaxed: hints; a wrong guess costs a delay of at most BRG__STALL_NS.
    uint64_t st = atomic_load_explicit(&self->idle_state, memory_order_relaxed);
    uint32_t idle = BRG__IDLE_SEARCHING(st) + BRG__IDLE_SLEEPING(st) + (w->searching ? 0 : 1);
    if (idle < self->n) {
        uint32_t taken = atomic_load_explicit(&self->inject_taken, memory_order_relaxed);
        if (!now)
            now = brg__now_ns();
        if (taken != w->seen_inject || w->seen_inject_at == 0) {
            w->seen_inject = taken; // someone takes from it: leave it to them for now
            w->seen_inject_at = now;
            return NULL;
        }
        if (now - w->seen_inject_at < BRG__STALL_NS)
            return NULL;
    }
    brg__actor_t *a = s_inject_take(self, w);
    w->took_injected = a != NULL; // for the ramp-up (park.h)
    return a;
}

//  The actor died and its slot is DYING: reclamation (reclaim.c) needs to
//  know whether the calling thread is one of our workers, which only this
//  file knows (s_worker).
void
brg__sched_retire(brg__sched_t *self, brg__actor_t *actor)
{
    brg__worker_t *w = s_worker;
    brg__reclaim_retire(self, w && w->sched == self ? w : NULL, actor);
}

//  ---------------------------------------------------------------------------
//  Running

static void
s_push_local(brg__worker_t *w, brg__actor_t *actor)
{
    if (brg__runq_push(&w->runq, actor))
        return;
    // Ring full: move half of it, and the actor, to the inject queue.
    brg__actor_t *batch[BRG__RUNQ_CAP / 2 + 1];
    uint32_t n = brg__runq_pop_batch(&w->runq, batch, BRG__RUNQ_CAP / 2);
    batch[n++] = actor;
    s_inject_push(w->sched, batch, n);
}

void
brg__sched_schedule(brg__sched_t *self, brg__actor_t *actor)
{
    if (self->deterministic) {
        s_inject_push(self, &actor, 1); // one FIFO: the order is the schedule
        return;
    }
    if (actor->mode & BRG__MODE_BLOCKING) {
        brg__pool_push(self, actor);
        return;
    }
    brg__worker_t *w = s_worker;
    if (w && w->sched == self) {
        brg__actor_t *prev = w->lifo;
        w->lifo = actor;
        w->sends = 0;
        if (prev) {
            s_push_local(w, prev);
            brg__park_notify(self);
        }
        return;
    }
    s_inject_push(self, &actor, 1);
    brg__park_notify(self);
}

//  Hand a suspended actor back: on a worker of ours, to the back of our ring
//  (the caller runs the receiver, so the sender runs beside it, its messages
//  written on the core that reads them); elsewhere, as any newly runnable actor.
void
brg__sched_hand_back(brg__sched_t *self, brg__actor_t *actor)
{
    brg__worker_t *w = s_worker;
    if (w && w->sched == self && !(actor->mode & BRG__MODE_BLOCKING)) {
        s_push_local(w, actor);
        if (brg__runq_len(&w->runq) > 1 || w->lifo)
            brg__park_notify(self); // as s_run: more runnable actors than we can run now
        return;
    }
    brg__sched_schedule(self, actor);
}

//  Append the chain first..last (linked by next, last->next NULL) to a
//  queue given by its head and tail. Caller holds the queue's lock.
static void
s_queue_append(brg__actor_t **head, brg__actor_t **tail, brg__actor_t *first, brg__actor_t *last)
{
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

void
brg__sched_schedule_list(brg__sched_t *self, brg__actor_t *head, uint32_t n)
{
    // Split the list, keeping its order: the workers' share, the pool's.
    brg__actor_t *first = NULL, *last = NULL, *pfirst = NULL, *plast = NULL;
    uint32_t nw = 0;
    for (brg__actor_t *a = head, *next; a; a = next) {
        next = a->next;
        a->next = NULL;
        bool pool = (a->mode & BRG__MODE_BLOCKING) && !self->deterministic;
        s_queue_append(pool ? &pfirst : &first, pool ? &plast : &last, a, a);
        nw += !pool;
    }
    assert(nw <= n);
    if (pfirst) {
        brg__pool_push_list(self, pfirst, plast);
    }
    if (!first)
        return;
    brg__worker_t *w = s_worker;
    if (w && w->sched == self && w->in_hook) {
        // Worker 0 delivering from its park hook's turn (park.c): the actors
        // run here, on the thread that read their messages, the first next
        // (the LIFO slot), the rest from our ring, where the usual wake-up
        // lets another worker help when there is more than one.
        for (brg__actor_t *a = first, *next; a; a = next) {
            next = a->next;
            a->next = NULL;
            if (!w->lifo)
                w->lifo = a;
            else
                s_push_local(w, a);
        }
        if (brg__runq_len(&w->runq) > 0)
            brg__park_notify(self);
        return;
    }
    // One round on the inject queue for the whole list, and one wake-up at
    // most: the woken worker takes half of what waits (s_inject_take) and,
    // finding work as the last searcher, wakes the next (design notes,
    // Parking). The fairness bound is untouched: these actors are ordinary
    // inject-queue entries, polled every BRG__INJECT_EVERY batches.
    pthread_mutex_lock(&self->inject_lock);
    s_queue_append(&self->inject_head, &self->inject_tail, first, last);
    // Relaxed: the hint is re-checked under the lock by every consumer.
    atomic_store_explicit(&self->inject_len,
                          atomic_load_explicit(&self->inject_len, memory_order_relaxed) + nw,
                          memory_order_relaxed);
    pthread_mutex_unlock(&self->inject_lock);
    if (!self->deterministic)
        brg__park_notify(self);
}

#define BRG__HELP_EVERY 64
#define BRG__HELP_STEAL_TRIES 4

static bool s_stalled(brg__worker_t *w, uint32_t v, uint64_t now);

//  The actor help-along runs: the oldest one in our ring whose init has run;
//  failing that, one taken from the ring of another worker that has stalled
//  (s_stalled: the rule of idle workers' steals). Actors whose init has
//  not run (a first activation may be a flood itself; in a fan-in the other
//  senders wait ahead of the consumer) go to the tail of our ring, in their
//  order: a stolen one simply moves to us, as in any steal. A busy worker's
//  ring is left to it: taking its actors moved a fan-in's consumer from core
//  to core at every help point, so that every message crossed cores, while
//  the sender on the other worker went on filling the consumer's mailbox
//  (that sender is paced now: "Pacing in-call floods").
static brg__actor_t *
s_help_pick(brg__worker_t *w)
{
    for (uint32_t n = brg__runq_len(&w->runq); n > 0; n--) {
        brg__actor_t *a = brg__runq_pop(&w->runq);
        if (!a)
            break;
        if (!(a->flags & BRG__ACTOR_INIT))
            return a;
        s_push_local(w, a);
    }
    brg__sched_t *self = w->sched;
    uint64_t now = 0;
    for (uint32_t i = 1; i < self->n; i++) {
        uint32_t vi = (w->index + i) % self->n;
        brg__worker_t *v = &self->workers[vi];
        // Relaxed: a hint (the steal's CAS decides), so that a look at an
        // empty ring reads no clock.
        if (atomic_load_explicit(&v->runq.tail, memory_order_relaxed) ==
            atomic_load_explicit(&v->runq.head, memory_order_relaxed))
            continue;
        if (!now)
            now = brg__now_ns();
        if (!s_stalled(w, vi, now))
            continue;
        for (int tries = 0; tries < BRG__HELP_STEAL_TRIES; tries++) {
            brg__actor_t *a = brg__runq_steal_one(&v->runq);
            if (!a)
                break;
            if (!(a->flags & BRG__ACTOR_INIT))
                return a;
            s_push_local(w, a);
        }
    }
    return NULL;
}

#define BRG__HELP_BATCHES 16

//  Help-along. A behaviour that sends in a long loop (a fan-in sender, a
//  fork-join driver) holds its worker for the whole loop; when every other
//  worker is busy too, the actors it feeds wait in this worker's ring while
//  their mailboxes grow without bound (a receiver living on another worker
//  is paced for instead: "Pacing in-call floods"). So every BRG__HELP_EVERY sends of the
//  outer actor, the sender's thread runs one queued actor (s_help_pick) for
//  up to BRG__HELP_BATCHES batches (one if a worker is idle: it may take
//  the actor instead, see "Locality") right here, nested inside the send,
//  one batch at a time (each counted for the fairness bound). The limit must let the helper
//  drain what the other workers' senders add meanwhile: with 4 batches the
//  consumer of fanin2/fanin8 fell behind (every help used all 256 messages),
//  its backlog reached 0.3-2.5 M messages, and each then cost two cache
//  misses and often a malloc; with 16 the backlog stays in the thousands and
//  fanin runs ~1.7x faster (docs/PERFORMANCE.md).
//  This is safe: the nested actor came out of a run queue (ours, or a
//  stalled worker's by a steal's CAS), so we own it, and it is not the running actor
//  (a running actor is in no queue). Nesting is one
//  level deep (helping), actors whose init has not run are not helped (a first
//  activation may be a flood itself), and the LIFO slot and send count of the
//  outer activation are restored afterwards. A user-visible consequence,
//  documented in brigade.h: a send may run another actor's behaviour on the
//  same thread before it returns.
//  The inject queue's poll inside help-along (the fairness bound counts
//  nested batches too): the actor to run nested, or NULL. An actor whose init
//  has not run is not run nested (see s_help_pick); it goes to our ring.
static brg__actor_t *
s_help_poll(brg__worker_t *w)
{
    brg__actor_t *a = s_inject_take(w->sched, w);
    if (a && (a->flags & BRG__ACTOR_INIT)) {
        s_push_local(w, a);
        a = NULL;
    }
    return a;
}

__attribute__((noinline, cold)) static void
s_help(brg__worker_t *w)
{
    // With a worker idle, help one batch only: a long nested run would hold
    // up the outer activation while that worker could take the actor (it
    // steals from a ring whose owner stalls, s_stalled).
    uint64_t st = atomic_load_explicit(&w->sched->idle_state, memory_order_relaxed);
    int budget =
        BRG__IDLE_SEARCHING(st) != 0 || BRG__IDLE_SLEEPING(st) != 0 ? 1 : BRG__HELP_BATCHES;
    // Outside work is polled here whenever there is some, not only when the
    // bound is due: a busy worker takes it before an idle one would (the
    // idle one waits for BRG__STALL_NS, s_inject_idle).
    brg__actor_t *actor = s_inject_pending(w) ? s_help_poll(w) : NULL;
    if (!actor)
        actor = s_help_pick(w);
    if (!actor)
        return;
    brg__actor_t *lifo = w->lifo;
    uint32_t sends = w->sends;
    brg__actor_bp_frame_t bp = brg__actor_bp_save();         // the outer call's (backpressure)
    brg__actor_bp_restore((brg__actor_bp_frame_t){NULL, 0}); // nested runs start afresh
    w->lifo = NULL;
    w->helping = true;
    // One batch at a time, so every nested batch is counted and the inject
    // queue is polled between them when due (the fairness bound).
    for (int left = budget; actor && left > 0; left--) {
        if (s_inject_pending(w)) {
            brg__actor_t *injected = s_help_poll(w);
            if (injected) {
                s_push_local(w, actor);
                actor = injected;
            }
        }
        s_count_batch(w);
        s_note_home(w, actor);
        if (!brg__actor_run(actor, w->sched->batch))
            actor = NULL; // idle (or dead): no longer ours
    }
    w->helping = false;
    if (actor)
        s_push_local(w, actor);
    if (w->lifo)
        s_push_local(w, w->lifo);
    w->lifo = lifo;
    w->sends = sends;
    brg__actor_bp_restore(bp);
}

//  Pacing (design notes): why a flood waits at a help point.
enum { S_PACE_NONE, S_PACE_LEVEL, S_PACE_TURN };

//  What the running call's flood into the receiver id must wait for, if
//  anything: its turn (the receiver's home is another worker, whose running
//  call floods it too), or its level (over low). *level: its backlog
//  estimate. turns: whether a turn may still be waited for.
static int
s_pace_need(brg__worker_t *w, uint64_t id, uint64_t low, bool turns, uint64_t *level)
{
    brg__actor_t *receiver = brg__mailbox_pace_peek(w->sched->sys, id, level);
    if (!receiver)
        return S_PACE_NONE;
    // Relaxed: a hint. A stale one costs a wait of at most BRG__STALL_NS,
    // or a chain that crosses cores.
    uint32_t home = atomic_load_explicit(&receiver->home, memory_order_relaxed);
    if (home == 0)
        return S_PACE_NONE; // it never ran: it may have an init to run first (design notes)
    if (turns) {
        if (home != w->index % 255u + 1u && home - 1 < w->sched->n &&
            atomic_load_explicit(&w->sched->workers[home - 1].feeding, memory_order_relaxed) == id)
            return S_PACE_TURN;
    }
    return *level > low ? S_PACE_LEVEL : S_PACE_NONE;
}

//  Pace the running call's flood into the receiver id (design notes,
//  "Pacing in-call floods"): wait while s_pace_need says so, running our
//  queued actors and outside work meanwhile; a turn for BRG__STALL_NS at
//  most, a level until the receiver has not drained for BRG__STALL_NS.
__attribute__((noinline, cold)) static void
s_pace(brg__worker_t *w, uint64_t id)
{
    uint64_t low = (uint64_t)w->sched->sys->cfg.mailbox_high_water / 2;
    uint64_t level;
    bool turns = true;
    int need = s_pace_need(w, id, low, turns, &level);
    if (need == S_PACE_NONE)
        return;
    // Relaxed: counters, written by this thread only (stats, test hooks).
    atomic_store_explicit(&w->paces, atomic_load_explicit(&w->paces, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    // The LIFO slot's occupant (often the receiver: our push made it
    // runnable) to the ring, where help-along runs it and a stalled
    // worker's thieves may take it; left in the slot, nobody would run it
    // until this call ends.
    if (w->lifo) {
        s_push_local(w, w->lifo);
        w->lifo = NULL;
    }
    uint64_t start = brg__now_ns(), since = start, best = level;
    uint32_t spin = BRG__PACE_SPIN;
    for (;;) {
        // Our ring (the receiver itself, if it waits there), outside work
        // when there is some (s_help polls the inject queue and counts its
        // batches for the fairness bound), a stalled worker's ring.
        s_help(w);
        // A quiescent point, as the help point's: the nested runs pushed
        // their chains, and we hold no actor pointer across it (the
        // receiver is looked up again below), so a long wait does not hold
        // up reclamation.
        brg__reclaim_quiescent(w);
        // Backing off: every look reads the receiver's lines, which its
        // worker and the other senders write.
        for (uint32_t i = 0; i < spin; i++)
            brg__cpu_relax();
        if (spin < BRG__PAUSE_MAX)
            spin *= 2;
        need = s_pace_need(w, id, low, turns, &level);
        if (need == S_PACE_NONE)
            return;
        uint64_t now = brg__now_ns();
        if (need == S_PACE_TURN) {
            if (now - start >= BRG__STALL_NS)
                turns = false; // our turn now: the level alone holds us from the next look
            since = now;       // the wait on the level starts after the turn's
            best = level;
            continue;
        }
        if (level < best) {
            best = level;
            since = now;
        } else if (now - since >= BRG__STALL_NS) {
            atomic_store_explicit(&w->pace_stalls,
                                  atomic_load_explicit(&w->pace_stalls, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            return; // not draining: do not wait for it (design notes)
        }
    }
}

void
brg__sched_note_send(void)
{
    brg__worker_t *w = s_worker;
    if (!w)
        return;
    if (__builtin_expect(++w->help_tick >= BRG__HELP_EVERY, 0) && !w->helping) {
        // Pacing ("Pacing in-call floods"). The receiver of the call's run
        // of sends, published for the other workers' pacing (relaxed store:
        // a hint; the id, not read through the actor, whose line its
        // worker writes per message). A call is paced from its second help
        // point on (the call count unchanged since our last one: it sent
        // BRG__HELP_EVERY more messages); a call that sent a message or two
        // here is left to backpressure, which suspends it when it returns.
        uint64_t feeding = brg__send_chain.to ? brg__send_chain.to_id : 0;
        if (atomic_load_explicit(&w->feeding, memory_order_relaxed) != feeding)
            atomic_store_explicit(&w->feeding, feeding, memory_order_relaxed);
        uint64_t target =
            brg__bp_target != 0 && !BRG__BP_IS_GATE(brg__bp_target) ? brg__bp_target : feeding;
        bool pace = target != 0 && brg__send_chain.calls == w->pace_calls;
        // Called before the send's delivery, so a quiescent point: a long
        // flood must not hold up reclamation for its whole activation. The
        // pending chain holds a reference-free actor pointer: out first, and
        // its target forgotten, so that no address compared after the
        // quiescent point can belong to a reclaimed actor's successor. Not
        // brg__send_call_end: the call goes on.
        brg__send_flush();
        brg__send_chain.to = NULL;
        brg__reclaim_quiescent(w);
        s_progress(w);
        s_help(w);
        if (pace)
            s_pace(w, target);
        // After the nested runs (they end calls of their own): the outer
        // call's next help point finds the count unchanged.
        w->pace_calls = brg__send_chain.calls;
        // After the help: the nested actors' sends do not count towards the
        // next one, or every send of the outer actor would help again.
        w->help_tick = 0;
    }
    if (!w->lifo || ++w->sends < BRG__LIFO_SENDS)
        return;
    // The running actor floods the one in the slot: let another worker run it.
    w->sends = 0;
    brg__actor_t *actor = w->lifo;
    w->lifo = NULL;
    s_push_local(w, actor);
    brg__park_notify(w->sched);
}

void
brg__sched_note_queued(brg_system_t *sys, uint32_t queued)
{
    brg__worker_t *w = s_worker;
    if (w && w->sched->sys == sys) {
        if (queued > w->hwm_local) {
            w->hwm_local = queued;
            atomic_store_explicit(&w->hwm, queued, memory_order_relaxed);
        }
        return;
    }
    uint64_t cur = atomic_load_explicit(&sys->aux_hwm, memory_order_relaxed);
    while (queued > cur &&
           !atomic_compare_exchange_weak_explicit(&sys->aux_hwm, &cur, queued, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

void
brg__sched_count_processed(brg_system_t *sys, uint32_t n)
{
    brg__worker_t *w = s_worker;
    if (w && w->sched->sys == sys) {
        w->processed_local += n;
        // Relaxed: program order puts this store before the hand-over of
        // the actor (the acq_rel CAS to idle, a run queue's release) or its
        // death's acq_rel decrement of actors_alive, so a thread whose
        // acquire load sees that decrement (brg_system_await_actors),
        // directly or through later activations, reads this count.
        atomic_store_explicit(&w->processed, w->processed_local, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&sys->aux_processed, n, memory_order_relaxed);
}

static brg__actor_t *
s_next_local(brg__worker_t *w)
{
    brg__sched_t *self = w->sched;
    if (w->lifo) {
        brg__actor_t *a = w->lifo;
        w->lifo = NULL;
        if (w->lifo_streak++ < BRG__LIFO_STREAK && w->since_inject < BRG__INJECT_EVERY)
            return a;
        s_push_local(w, a); // let the ring's older actors (or the inject queue) run first
    }
    w->lifo_streak = 0;
    if (w->since_inject >= BRG__INJECT_EVERY) {
        brg__actor_t *a = s_inject_take(self, w);
        if (a)
            return a;
    }
    brg__actor_t *a = brg__runq_pop(&w->runq);
    if (a)
        return a;
    return s_inject_idle(w, 0);
}

//  True if victim's ring has work and its owner has stalled: it has started
//  no batch and reached no help-along point (its progress counter) for
//  BRG__STALL_NS while we looked, or its ring is half full. A worker busy
//  with short batches is left its ring even while one actor's long drain
//  keeps the ring waiting: the waiting actors are often that actor's own
//  producers, and running them beside it would only make it fall behind.
//  Thread: the thief (w).
static bool
s_stalled(brg__worker_t *w, uint32_t v, uint64_t now)
{
    brg__worker_t *victim = &w->sched->workers[v];
    // Relaxed: hints; the steal's own CAS decides what is taken.
    uint32_t head = atomic_load_explicit(&victim->runq.head, memory_order_relaxed);
    uint32_t len = atomic_load_explicit(&victim->runq.tail, memory_order_relaxed) - head;
    if (len == 0 || len > BRG__RUNQ_CAP) {
        w->seen_at[v] = 0; // empty: the next entry starts a new wait
        return false;
    }
    if (atomic_load_explicit(&victim->io_bound, memory_order_relaxed))
        return true; // worker 0 serving heavy I/O left these to us (sched.h)
    uint32_t progress = atomic_load_explicit(&victim->progress, memory_order_relaxed);
    if (progress != w->seen_head[v] || w->seen_at[v] == 0) {
        w->seen_head[v] = progress; // it moved: the owner is running batches
        w->seen_at[v] = now;
        return len >= BRG__RUNQ_CAP / 2;
    }
    return now - w->seen_at[v] >= BRG__STALL_NS || len >= BRG__RUNQ_CAP / 2;
}

static brg__actor_t *
s_steal(brg__worker_t *w, uint64_t now)
{
    brg__sched_t *self = w->sched;
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    uint32_t start = (uint32_t)(w->rng % self->n);
    for (uint32_t i = 0; i < self->n; i++) {
        uint32_t v = (start + i) % self->n;
        if (v == w->index || !s_stalled(w, v, now))
            continue;
        brg__actor_t *a = brg__runq_steal_into(&w->runq, &self->workers[v].runq);
        if (a)
            return a;
    }
    return s_inject_idle(w, now);
}

//  Count a search that ended while no other worker ran, and the lone
//  budget it had (the test hook brg__sched_lone_spin reads them).
static void
s_lone_note(brg__worker_t *w, uint64_t budget_ns)
{
    atomic_store_explicit(&w->lone_searches,
                          atomic_load_explicit(&w->lone_searches, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&w->lone_budget_ns,
                          atomic_load_explicit(&w->lone_budget_ns, memory_order_relaxed) +
                              budget_ns,
                          memory_order_relaxed);
}

static brg__actor_t *
s_search(brg__worker_t *w)
{
    brg__sched_t *self = w->sched;
    if (!w->searching) {
        // At most half the workers search at once (at least one), as in Go:
        // more would only burn CPU contending for the same queues.
        // Still look once, so work seen by brg__park's re-check is not left
        // behind while this worker spins between parking and searching.
        uint64_t state = atomic_load_explicit(&self->idle_state, memory_order_relaxed);
        if (BRG__IDLE_SEARCHING(state) > 0 && 2 * BRG__IDLE_SEARCHING(state) >= self->n)
            return s_steal(w, brg__now_ns());
        w->searching = true;
        atomic_fetch_add_explicit(&self->idle_state, BRG__IDLE_ONE_SEARCHING, memory_order_acq_rel);
    }
    // How long to look before parking. While another worker runs, the full
    // BRG__SPIN_NS: it may make stealable work any moment (fan-in, fork-join).
    // While none runs, only outside threads (the inject queue: a node's I/O
    // thread, timers, brg_system_send) can bring work, and they wake a parked
    // worker anyway; spinning then only pays when that work comes in bursts.
    // So the lone budget adapts, as glibc's adaptive mutexes do: halved (down
    // to BRG__LONE_SPIN_MIN_NS) by a search that found nothing, doubled (up to
    // BRG__SPIN_NS) by one that found work. Measured reason (PERFORMANCE.md,
    // "Remote round trips"): a request/reply over a node had each side's
    // worker spin 50 us on a core the I/O threads needed, after every message.
    // The bound kept: a worker never spins longer than BRG__SPIN_NS per search;
    // idle_state is only read (relaxed: a stale count costs one budget choice).
    uint64_t start = brg__now_ns(), now = start;
    // Worker 0 with a park hook takes one look only while lone: what comes
    // to it then comes from its sockets, which a spin does not watch and
    // its park's poll does (and an unpark reaches that poll too).
    bool hooked = w->index == 0 && atomic_load_explicit(&self->hook_on, memory_order_relaxed);
    uint32_t pause = 32;
    bool lone = false;
    w->took_injected = false;
    do {
        uint64_t st = atomic_load_explicit(&self->idle_state, memory_order_relaxed);
        // We are one of the searchers: the rest of the workers not idle run.
        lone = BRG__IDLE_SEARCHING(st) + BRG__IDLE_SLEEPING(st) >= self->n;
        brg__actor_t *a = s_steal(w, now);
        if (a) {
            if (lone) {
                s_lone_note(w, w->lone_spin_ns);
                w->lone_spin_ns =
                    w->lone_spin_ns * 2 > BRG__SPIN_NS ? BRG__SPIN_NS : w->lone_spin_ns * 2;
            }
            brg__park_stop_searching(w, true);
            return a;
        }
        // Back off: each look reads the other rings' head and tail lines,
        // which their owners must then fetch back to push or pop.
        for (uint32_t i = 0; i < pause; i++)
            brg__cpu_relax();
        if (pause < BRG__PAUSE_MAX)
            pause *= 2;
        now = brg__now_ns();
    } while (!atomic_load_explicit(&self->shutdown, memory_order_relaxed) &&
             now - start < (lone ? (hooked ? 0 : w->lone_spin_ns) : BRG__SPIN_NS));
    if (lone) {
        s_lone_note(w, w->lone_spin_ns);
        w->lone_spin_ns = w->lone_spin_ns / 2 < BRG__LONE_SPIN_MIN_NS ? BRG__LONE_SPIN_MIN_NS
                                                                      : w->lone_spin_ns / 2;
    }
    return NULL;
}

static void
s_run(brg__worker_t *w, brg__actor_t *actor)
{
    // Backlog-proportional share: an actor that last yielded with Q messages
    // still queued (its private backlog, owner field: the actor is ours now)
    // runs up to Q / batch + 1 batches, one at a time, each counted for the
    // fairness bound, and stops early if outside work is due.
    int batch = w->sched->batch;
    uint32_t batches = actor->queued / (uint32_t)batch + 1;
    bool again;
    s_note_home(w, actor);
    do {
        w->sends = 0;
        s_count_batch(w);
        again = brg__actor_run(actor, batch);
        // The batch is over: no call of ours floods anyone (pacing).
        // Relaxed: a hint.
        if (atomic_load_explicit(&w->feeding, memory_order_relaxed) != 0)
            atomic_store_explicit(&w->feeding, 0, memory_order_relaxed);
    } while (again && --batches > 0 && !s_inject_waiting(w));
    if (again) {
        s_push_local(w, actor);
        if (brg__runq_len(&w->runq) > 1 || w->lifo)
            brg__park_notify(w->sched); // more runnable actors than this worker can run now
    }
}

//  Worker 0 with a park hook, between activations: one turn of the
//  transport's I/O loop (park.c, "The park hook"), so sockets are read and
//  written while it runs actors. Thread: worker 0, online, no actor running.
void
brg__sched_note_remote_send(brg__sched_t *self)
{
    brg__worker_t *w = s_worker;
    if (w && w->sched == self)
        w->remote_sent = true;
}

static void
s_hook_turn(brg__worker_t *w)
{
    brg__sched_t *self = w->sched;
    w->hook_tick = 0;
    w->remote_sent = false;
    pthread_mutex_lock(&self->hook_lock);
    const brg__park_hook_t *h = self->hook;
    if (h && atomic_load_explicit(&self->hook_on, memory_order_relaxed)) {
        uint64_t deadline;
        brg__park_hook_turn(w, h, false, &deadline);
    }
    pthread_mutex_unlock(&self->hook_lock);
}

//  Worker 0 is I/O-bound (sched.h, "Heavy I/O"): its runnable actors go to
//  its ring, where s_stalled lets any worker take them at once, and one is
//  woken for them. True if it should turn again instead of running an actor.
static bool
s_hook_shed(brg__worker_t *w)
{
    if (w->io_streak++ >= BRG__HOOK_STREAK) {
        w->io_streak = 0;
        return false; // its own actors get an activation now and then
    }
    if (w->lifo) {
        s_push_local(w, w->lifo);
        w->lifo = NULL;
    }
    if (brg__runq_len(&w->runq) > 0)
        brg__park_notify(w->sched);
    return true;
}

static void *
s_worker_main(void *arg)
{
    brg__worker_t *w = arg;
    brg__sched_t *self = w->sched;
    // Named for top -H, perf and gdb (15 bytes at most).
    char name[16];
    snprintf(name, sizeof name, "brg-worker-%u", (unsigned)(w - self->workers) % 1000u);
    pthread_setname_np(pthread_self(), name);
    s_worker = w;
    s_thread_sys = self->sys;
    brg__worker_sys = self->sys;
    brg__actor_bp_thread(self->sys);
    if (self->sys->cfg.watchdog_ms > 0)
        brg__watch_tls = &w->watch;
    brg__reclaim_online(w);
    while (!atomic_load_explicit(&self->shutdown, memory_order_relaxed)) {
        brg__reclaim_quiescent(w); // between activations
        // Relaxed: a hint; the turn takes hook_lock (s_hook_turn).
        bool hooked = w->index == 0 && atomic_load_explicit(&self->hook_on, memory_order_relaxed);
        if (hooked) {
            // io_bound is ours (written by our turns): relaxed reads of our own stores.
            if (atomic_load_explicit(&w->io_bound, memory_order_relaxed) || w->remote_sent ||
                ++w->hook_tick >= BRG__HOOK_EVERY)
                s_hook_turn(w); // the I/O bound while busy (sched.h, BRG__HOOK_EVERY)
            if (!atomic_load_explicit(&w->io_bound, memory_order_relaxed))
                w->io_streak = 0;
            else if (s_hook_shed(w))
                continue;
        }
        brg__actor_t *a = s_next_local(w);
        if (!a && hooked) {
            s_hook_turn(w); // send what we queued, read what came, before a search
            a = s_next_local(w);
        }
        if (!a) {
            if (w->limbo)
                brg__reclaim_worker(w); // nothing to run: a good moment
            a = s_search(w);
        }
        if (a) {
            brg__park_stop_searching(w, true);
            s_run(w, a);
        } else {
            brg__park(w);
        }
    }
    brg__park_stop_searching(w, false);
    // Leaving: hand what we retired to the shared limbo (destroy frees it).
    brg__reclaim_offline(w);
    brg__worker_sys = NULL;
    brg__reclaim_hand_over(w);
    return NULL;
}

void
brg__sched_thread_enter(brg_system_t *sys)
{
    s_thread_sys = sys;
}

//  ---------------------------------------------------------------------------
//  Lifecycle

static void
s_stop_threads(brg__sched_t *self, uint32_t workers_started, uint32_t pool_started)
{
    atomic_store_explicit(&self->shutdown, true, memory_order_seq_cst);
    for (uint32_t i = 0; i < workers_started; i++)
        brg__park_unpark(&self->workers[i]);
    for (uint32_t i = 0; i < workers_started; i++)
        pthread_join(self->workers[i].thread, NULL);
    brg__pool_stop(self, pool_started);
}

static void
s_free(brg__sched_t *self)
{
    for (uint32_t i = 0; i < self->n; i++) {
        if (self->workers[i].wake_fd >= 0)
            close(self->workers[i].wake_fd);
        pthread_mutex_destroy(&self->workers[i].park_lock);
        pthread_cond_destroy(&self->workers[i].park_cond);
        free(self->workers[i].seen_head);
        free(self->workers[i].seen_at);
    }
    // Every thread is gone: what is still in limbo has no reader left.
    while (self->limbo) {
        brg__actor_t *a = self->limbo;
        self->limbo = a->next;
        brg__actor_reclaim_final(self->sys, a);
    }
    pthread_mutex_destroy(&self->limbo_lock);
    pthread_mutex_destroy(&self->bp_lock);
    pthread_mutex_destroy(&self->inject_lock);
    pthread_mutex_destroy(&self->idle_lock);
    pthread_mutex_destroy(&self->hook_lock);
    pthread_mutex_destroy(&self->pool_lock);
    pthread_cond_destroy(&self->pool_cond);
    free(self->workers);
    free(self->idle);
    free(self->pool);
    free(self->pool_watch);
    free(self);
}

brg__sched_t *
brg__sched_new(brg_system_t *sys, int workers, int blocking, int batch, bool deterministic)
{
    assert(sys);
    assert(workers > 0 && blocking >= 0 && batch > 0);
    brg__sched_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->sys = sys;
    self->deterministic = deterministic;
    self->n = deterministic ? 0 : (uint32_t)workers;
    self->batch = deterministic ? 1 : batch;
    self->n_pool = deterministic ? 0 : (uint32_t)blocking;
    // aligned_alloc: the rings' head and tail sit on separate cache lines.
    size_t size = ((sizeof(brg__worker_t) * (self->n ? self->n : 1) + 63) / 64) * 64;
    self->workers = aligned_alloc(64, size);
    self->idle = calloc(self->n ? self->n : 1, sizeof(*self->idle));
    self->pool = calloc(self->n_pool ? self->n_pool : 1, sizeof(*self->pool));
    self->pool_watch = calloc(self->n_pool ? self->n_pool : 1, sizeof(*self->pool_watch));
    pthread_mutex_init(&self->limbo_lock, NULL);
    pthread_mutex_init(&self->bp_lock, NULL);
    atomic_init(&self->bp_n, 0);
    atomic_init(&self->bp_total, 0);
    // Resolved here, before any thread reads it (mailbox.c reads it per
    // thread, mailbox.h per batch end): 0 is the default, at least 2 batches; negative is off.
    int high = sys->cfg.mailbox_high_water;
    if (high == 0)
        high = batch > BRG__BP_HIGH_DEFAULT / 2 ? (batch > INT_MAX / 2 ? INT_MAX : 2 * batch)
                                                : BRG__BP_HIGH_DEFAULT;
    sys->cfg.mailbox_high_water = high < 0 ? -1 : high;
    atomic_init(&self->epoch, 0);
    atomic_init(&self->limbo_n, 0);
    atomic_init(&self->inject_taken, 0);
    pthread_mutex_init(&self->inject_lock, NULL);
    pthread_mutex_init(&self->idle_lock, NULL);
    pthread_mutex_init(&self->hook_lock, NULL);
    pthread_mutex_init(&self->pool_lock, NULL);
    pthread_cond_init(&self->pool_cond, NULL);
    if (!self->workers || !self->idle || !self->pool || !self->pool_watch) {
        self->n = 0;
        s_free(self);
        return NULL;
    }
    memset(self->workers, 0, size);
    for (uint32_t i = 0; i < self->n; i++) {
        brg__worker_t *w = &self->workers[i];
        brg__runq_init(&w->runq);
        w->sched = self;
        w->index = i;
        w->rng = 0x9e3779b97f4a7c15ull * (i + 1);
        w->lone_spin_ns = BRG__SPIN_NS;
        w->wake_fd = -1;
        atomic_init(&w->qs, BRG__QS_OFFLINE); // until its thread starts (brg__reclaim_online)
        w->qs_local = BRG__QS_OFFLINE;
        pthread_mutex_init(&w->park_lock, NULL);
        pthread_cond_init(&w->park_cond, NULL);
        w->seen_head = calloc(self->n, sizeof(*w->seen_head));
        w->seen_at = calloc(self->n, sizeof(*w->seen_at));
        if (!w->seen_head || !w->seen_at) {
            self->n = i + 1; // s_free frees what the first i + 1 workers hold
            s_free(self);
            return NULL;
        }
    }
    uint32_t started = 0, pool_started = 0;
    for (; started < self->n; started++)
        if (pthread_create(&self->workers[started].thread, NULL, s_worker_main,
                           &self->workers[started]) != 0)
            break;
    if (started == self->n)
        pool_started = brg__pool_start(self);
    if (started < self->n || pool_started < self->n_pool) {
        s_stop_threads(self, started, pool_started);
        s_free(self);
        return NULL;
    }
    return self;
}

void
brg__sched_destroy(brg__sched_t **self_p)
{
    assert(self_p);
    brg__sched_t *self = *self_p;
    if (!self)
        return;
    s_stop_threads(self, self->n, self->n_pool);
    s_free(self);
    *self_p = NULL;
}

void
brg__sched_stats(brg__sched_t *self, uint64_t *processed, uint64_t *hwm)
{
    uint64_t p = 0, h = 0;
    for (uint32_t i = 0; i < self->n; i++) {
        p += atomic_load_explicit(&self->workers[i].processed, memory_order_relaxed);
        uint64_t wh = atomic_load_explicit(&self->workers[i].hwm, memory_order_relaxed);
        if (wh > h)
            h = wh;
    }
    *processed = p;
    *hwm = h;
}

void
brg__sched_pace_stats(brg__sched_t *self, uint64_t *paces, uint64_t *stalls)
{
    *paces = *stalls = 0;
    for (uint32_t i = 0; i < self->n; i++) {
        *paces += atomic_load_explicit(&self->workers[i].paces, memory_order_relaxed);
        *stalls += atomic_load_explicit(&self->workers[i].pace_stalls, memory_order_relaxed);
    }
}

uint32_t
brg__sched_inject_gap_max(brg__sched_t *self)
{
    uint32_t max = 0;
    for (uint32_t i = 0; i < self->n; i++) {
        uint32_t g = atomic_load_explicit(&self->workers[i].gap_max, memory_order_relaxed);
        if (g > max)
            max = g;
    }
    return max;
}

void
brg__sched_lone_spin(brg__sched_t *self, uint64_t *searches, uint64_t *spent_ns)
{
    uint64_t n = 0, ns = 0;
    for (uint32_t i = 0; i < self->n; i++) {
        n += atomic_load_explicit(&self->workers[i].lone_searches, memory_order_relaxed);
        ns += atomic_load_explicit(&self->workers[i].lone_budget_ns, memory_order_relaxed);
    }
    *searches = n;
    *spent_ns = ns;
}

bool
brg__sched_on_thread_of(brg_system_t *sys)
{
    return s_thread_sys == sys;
}

bool
brg__sched_step(brg__sched_t *self)
{
    assert(self->deterministic);
    brg__actor_t *a = s_inject_take(self, NULL);
    if (!a)
        return false;
    // While a behaviour runs, the calling thread counts as the system's own
    // (brg_system_ask from inside a behaviour is then the caller bug it is).
    brg_system_t *prev = s_thread_sys;
    s_thread_sys = self->sys;
    brg__actor_bp_thread(self->sys);
    if (brg__actor_run(a, 1))
        s_inject_push(self, &a, 1);
    brg__actor_bp_thread(NULL); // the caller's own sends are not an actor's
    s_thread_sys = prev;
    return true;
}

uint32_t
brg__sched_watchdog_scan(brg__sched_t *self, uint64_t now_ns, uint64_t limit_ns, bool fail)
{
    uint32_t reports = 0;
    for (uint32_t i = 0; i < self->n; i++)
        reports += brg__watch_scan(self->sys, &self->workers[i].watch, now_ns, limit_ns, fail);
    for (uint32_t i = 0; i < self->n_pool; i++)
        reports += brg__watch_scan(self->sys, &self->pool_watch[i], now_ns, limit_ns, fail);
    return reports;
}

uint32_t
brg__sched_workers(const brg__sched_t *self)
{
    return self->n;
}

uint32_t
brg__sched_blocking(const brg__sched_t *self)
{
    return self->n_pool;
}
