//  park - parking and waking workers: searchers, sleepers, exactly one wake-up
//
//  Design notes.
//
//  Parking (Go's scheduler protocol, simplified). A worker that runs out of
//  work becomes a searcher: it looks for stalled work (above) for about
//  BRG__SPIN_NS, backing off between looks, then parks on its own condition
//  variable. Wake-ups are "exactly one": brg__park_notify wakes a sleeper only if no
//  worker is searching, and claims the right to wake by moving the searcher
//  count from 0 to 1 (the woken worker starts as a searcher). A searcher that
//  finds work and was the last searcher wakes another, so parallelism ramps
//  up one worker at a time.
//  No wake-up is lost. The searcher and sleeper counts share one atomic word,
//  `idle_state`. A submitter publishes its work, issues a seq_cst fence and
//  loads the word; a worker about to sleep changes the word with an RMW,
//  issues a seq_cst fence and re-reads every queue. Of the two fences one
//  precedes the other in the single total order S: if the worker's comes
//  first, the submitter's load sees its RMW (it is asleep: wake it); if the
//  submitter's does, the worker's re-check sees the work (C11 7.17.3p6).
//  The submitter used to read the word with an RMW (acq_rel fetch_add of 0),
//  which gave the same guarantee but pulled the word's line to every
//  notifier's core; the fence costs a local drain of the store buffer and
//  the line stays shared while nobody sleeps. (ThreadSanitizer does not model
//  fences; no data is published through this pairing, only the decision to
//  wake, and the run queues carry their own release/acquire.)
//
//  Ramping up. The last searcher that finds work wakes another worker, as
//  Go's scheduler does. For an actor it took from the inject queue, only if
//  more work is visible after it stopped searching (brg__park_ramp): a
//  single injected message (a reply from another node, a timer) used to
//  wake a second worker that found nothing, spun and parked again, on a
//  core the message's own path needed. Work taken from another worker's
//  ring still wakes one unconditionally: gating that too let the
//  two-worker flood test's sink backlog pass its bound now and then
//  (test_sched, 3 runs of 30; the cause was not found), so it is not gated. No
//  wake-up is lost by the check: a submitter that published work while we
//  were still counted as searching skipped its own wake-up because of us;
//  our RMW (searching - 1), the seq_cst fence and the re-check of the queues
//  form the same Dekker pair as parking does, so either the submitter saw
//  searching drop to 0 (and wakes a sleeper itself) or our re-check sees its
//  work (and we wake one).
//
//  The park hook (sched.h). A transport may give worker 0 its I/O loop to
//  run in place of sleeping: turn (online: it may deliver) and wait
//  (offline: it blocks in the transport's poll on its sockets and on
//  worker 0's eventfd, wake_fd). Worker 0 parks as any worker: on the idle
//  stack, counted as sleeping, after the same Dekker re-check; then, while
//  the hook is installed and nobody notified it, it alternates turn and
//  wait (s_park_hook). No wake-up is lost: it sets hook_waiting under
//  park_lock after checking notified, and brg__park_unpark, which sets
//  notified under that lock, writes wake_fd when it saw hook_waiting and
//  signals the condition otherwise; eventfd keeps a write made before the
//  poll. A turn that made work for worker 0 (its LIFO slot or any queue)
//  takes it off the idle stack (s_unlist) and back to running, not
//  searching; if a notifier popped it first, its unpark comes and the loop
//  sees notified. hook_lock is held by worker 0 for the whole of
//  s_park_hook and for each turn between activations (sched.c
//  s_hook_turn); brg__sched_clear_park_hook clears hook_on (the loop's
//  exit condition), writes wake_fd and takes the lock, so it returns once
//  worker 0 is out for good. brg__sched_park_hook_try lets the transport's
//  own thread take a turn under the lock when worker 0 does not hold it
//  (worker 0 busy running actors): the sockets are used by one thread at a
//  time, handed over by the lock. A turn runs outside any activation: an
//  empty backpressure frame (its sends hold back no actor) and its
//  coalesced sends pushed when it returns (brg__park_hook_turn).
//
//  Locks: idle_lock guards the idle stack, each worker's park_lock its
//  notified flag; idle_lock is taken before a worker's park_lock, never the
//  other way round; hook_lock is taken before both.
#include "runtime_internal.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void
s_wake_fd_write(int fd)
{
    uint64_t one = 1;
    // Only EAGAIN (the counter is full: a wake-up is pending anyway) or
    // EINTR can fail it.
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void
s_wake_fd_drain(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

//  Wake worker w from its condition variable (a notifier chose it, or
//  shutdown). Thread: any.
void
brg__park_unpark(brg__worker_t *w)
{
    atomic_fetch_add_explicit(&w->sched->unparks, 1, memory_order_relaxed); // a count only
    pthread_mutex_lock(&w->park_lock);
    w->notified = true;
    bool in_wait = w->hook_waiting;
    pthread_mutex_unlock(&w->park_lock);
    // Signalled after the unlock: signalled under it, the woken worker ran
    // at once into the mutex we still held and slept again until our unlock,
    // two wake-ups per unpark (perf sched on a remote round trip). Safe: the
    // worker waits in a loop on `notified`, which it reads under the lock,
    // and park_cond lives as long as the system. A worker in the park hook's
    // wait (park.c, "The park hook") polls its eventfd instead: the write
    // makes the poll return; wake_fd lives as long as the system too.
    if (in_wait)
        s_wake_fd_write(w->wake_fd);
    else
        pthread_cond_signal(&w->park_cond);
}

//  The two sides of the Dekker pair (design notes, "No wake-up is lost").
//  ThreadSanitizer does not support fences (GCC rejects them with
//  -fsanitize=thread), so a TSan build keeps the submitter's acq_rel RMW on
//  idle_state, which orders the same way (RMWs on one word are totally
//  ordered) at the price of moving the word's line; the sleeper's RMW is
//  there in both builds.
#ifdef BRG__TSAN
#define S_FENCE_SEQ_CST() ((void)0)
#else
#define S_FENCE_SEQ_CST() atomic_thread_fence(memory_order_seq_cst)
#endif

//  Submitter's side: after publishing work, the idle state it must act on.
static inline uint64_t
s_idle_state_after_publish(brg__sched_t *self)
{
#ifdef BRG__TSAN
    return atomic_fetch_add_explicit(&self->idle_state, 0, memory_order_acq_rel);
#else
    S_FENCE_SEQ_CST();
    return atomic_load_explicit(&self->idle_state, memory_order_relaxed);
#endif
}

//  New stealable or injected work exists: wake one parked worker if nobody is
//  already looking for work.
void
brg__park_notify(brg__sched_t *self)
{
    // Seq_cst fence, then a plain load: our work, published before the
    // fence, is ordered against a parking worker's RMW + fence + re-check
    // (design notes). No RMW here: when nobody sleeps (the busy case) the
    // word's line stays shared instead of moving to every notifier.
    uint64_t w = s_idle_state_after_publish(self);
    for (;;) {
        if (BRG__IDLE_SEARCHING(w) != 0 || BRG__IDLE_SLEEPING(w) == 0)
            return;
        // Claim the wake-up: searching 0 -> 1 on behalf of the worker we wake.
        if (atomic_compare_exchange_weak_explicit(&self->idle_state, &w,
                                                  w + BRG__IDLE_ONE_SEARCHING, memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    pthread_mutex_lock(&self->idle_lock);
    if (self->n_idle == 0) {
        // It re-checked and left the stack by itself meanwhile.
        pthread_mutex_unlock(&self->idle_lock);
        atomic_fetch_sub_explicit(&self->idle_state, BRG__IDLE_ONE_SEARCHING, memory_order_acq_rel);
        return;
    }
    brg__worker_t *worker = &self->workers[self->idle[--self->n_idle]];
    atomic_fetch_sub_explicit(&self->idle_state, 1, memory_order_acq_rel);
    brg__park_unpark(worker); // idle_lock before park_lock: the documented order
    pthread_mutex_unlock(&self->idle_lock);
}

static bool
s_any_work(brg__sched_t *self)
{
    if (atomic_load_explicit(&self->inject_len, memory_order_relaxed) != 0)
        return true;
    for (uint32_t i = 0; i < self->n; i++)
        if (brg__runq_len(&self->workers[i].runq) != 0)
            return true;
    return false;
}

void
brg__park_ramp(brg__sched_t *self)
{
    S_FENCE_SEQ_CST(); // pairs with the submitter's (design notes, "Ramping up")
    if (s_any_work(self))
        brg__park_notify(self);
}

//  Take worker w off the idle stack, where it put itself to park. False if
//  it is not there: a notifier popped it and is waking it.
static bool
s_unlist(brg__worker_t *w)
{
    brg__sched_t *self = w->sched;
    pthread_mutex_lock(&self->idle_lock);
    for (uint32_t i = 0; i < self->n_idle; i++) {
        if (self->idle[i] == w->index) {
            self->idle[i] = self->idle[--self->n_idle];
            atomic_fetch_sub_explicit(&self->idle_state, 1, memory_order_acq_rel);
            pthread_mutex_unlock(&self->idle_lock);
            return true;
        }
    }
    pthread_mutex_unlock(&self->idle_lock);
    return false;
}

bool
brg__park_hook_turn(brg__worker_t *w, const brg__park_hook_t *h, bool may_sleep,
                    uint64_t *deadline_ns)
{
    // A turn runs no activation: its sends are nobody's, so backpressure
    // must not charge them to the actor that ran last on this thread
    // (brg__bp_running stays set between activations). Charged to it, a
    // flood delivered to a congested receiver suspended the last receiver
    // that ran, waiting for another one (test_node's stress case, under
    // TSan: two receivers suspended for good).
    brg__actor_bp_frame_t frame = brg__actor_bp_save();
    brg__actor_bp_restore((brg__actor_bp_frame_t){NULL, 0});
    uint32_t moved = 0;
    w->in_hook = true;
    bool busy = h->turn(h->arg, may_sleep, deadline_ns, &moved);
    brg__send_call_end(); // a turn is a call: its coalesced sends go out now
    w->in_hook = false;
    brg__actor_bp_restore(frame);
    brg__park_note_moved(w, moved);
    return busy;
}

//  Worker 0 parks in the hook (design notes, "The park hook"): offline on
//  entry and on return. Returns true if w took itself off the idle stack
//  because a turn made work for it; false when notified (or the hook went
//  away: the caller's loop decides).
static bool
s_park_hook(brg__worker_t *w)
{
    brg__sched_t *self = w->sched;
    bool left = false;
    pthread_mutex_lock(&self->hook_lock);
    for (const brg__park_hook_t *h;
         (h = self->hook) != NULL && atomic_load_explicit(&self->hook_on, memory_order_relaxed);) {
        // (hook_on false: brg__sched_clear_park_hook waits for hook_lock.)
        brg__reclaim_online(w); // turn may deliver: it uses actors
        uint64_t deadline = 0;
        bool busy = brg__park_hook_turn(w, h, true, &deadline);
        brg__reclaim_offline(w);
        if (w->lifo || s_any_work(self)) {
            // What the turn delivered runs here, on the thread that read it
            // (its actors went to our LIFO slot and ring: sched.c); nobody
            // was woken for them unless more than one became runnable.
            if (s_unlist(w)) {
                left = true;
                break;
            }
            // A notifier popped us meanwhile: its unpark sets notified.
        }
        pthread_mutex_lock(&w->park_lock);
        if (w->notified) {
            pthread_mutex_unlock(&w->park_lock);
            break;
        }
        if (busy) {
            pthread_mutex_unlock(&w->park_lock);
            continue;
        }
        w->hook_waiting = true; // from here brg__park_unpark writes wake_fd
        pthread_mutex_unlock(&w->park_lock);
        bool rang = h->wait(h->arg, w->wake_fd, deadline);
        pthread_mutex_lock(&w->park_lock);
        w->hook_waiting = false;
        pthread_mutex_unlock(&w->park_lock);
        if (rang)
            s_wake_fd_drain(w->wake_fd);
    }
    pthread_mutex_unlock(&self->hook_lock);
    return left;
}

void
brg__park(brg__worker_t *w)
{
    brg__sched_t *self = w->sched;
    pthread_mutex_lock(&self->idle_lock);
    self->idle[self->n_idle++] = w->index;
    // One acq_rel RMW: sleeping + 1, and searching - 1 if we were searching.
    // The queue re-check below must come after it (design notes).
    uint64_t delta = 1;
    if (w->searching)
        delta -= BRG__IDLE_ONE_SEARCHING; // modular: adds 2^64 - 2^32 + 1
    w->searching = false;
    atomic_fetch_add_explicit(&self->idle_state, delta, memory_order_acq_rel);
    pthread_mutex_unlock(&self->idle_lock);
    // Seq_cst fence between our RMW and the re-check: pairs with the fence
    // in brg__park_notify (design notes).
    S_FENCE_SEQ_CST();
    if (s_any_work(self) || atomic_load_explicit(&self->shutdown, memory_order_relaxed)) {
        if (s_unlist(w))
            return; // back to searching
        // Not in the stack: a notifier popped us and is waking us; wait for it.
    }
    // Asleep, this worker holds no actor: it must not hold up reclamation,
    // and what it retired must stay reachable (brg__reclaim_hand_over).
    brg__reclaim_worker(w);
    brg__reclaim_hand_over(w);
    brg__reclaim_offline(w);
    pthread_mutex_lock(&w->park_lock);
    while (!w->notified) {
        // Worker 0 with a park hook sleeps in the hook's wait instead; it
        // comes back here when the hook is removed (and waits on the
        // condition, which brg__sched_set_park_hook signals to move it in).
        if (w->index == 0 && atomic_load_explicit(&self->hook_on, memory_order_acquire) &&
            !atomic_load_explicit(&self->shutdown, memory_order_relaxed)) {
            pthread_mutex_unlock(&w->park_lock);
            if (s_park_hook(w)) {
                brg__reclaim_online(w);
                return; // off the idle stack, not searching: its LIFO slot is next
            }
            pthread_mutex_lock(&w->park_lock);
            if (!w->notified && atomic_load_explicit(&self->hook_on, memory_order_acquire))
                continue; // a stale turn (popped, notified soon): back into the hook
            if (w->notified)
                break;
        }
        pthread_cond_wait(&w->park_cond, &w->park_lock);
    }
    w->notified = false;
    pthread_mutex_unlock(&w->park_lock);
    brg__reclaim_online(w);
    // The notifier counted us as searching (shutdown wakes do not; the loop
    // then exits without searching).
    if (!atomic_load_explicit(&self->shutdown, memory_order_relaxed))
        w->searching = true;
}

int
brg__sched_set_park_hook(brg__sched_t *self, const brg__park_hook_t *hook)
{
    if (self->n == 0)
        return BRG_EINVAL;
    brg__worker_t *w = &self->workers[0];
    // Checked before hook_lock, which worker 0 holds while it waits in an
    // installed hook (set and clear come from one thread, the transport's).
    if (atomic_load_explicit(&self->hook_on, memory_order_relaxed))
        return BRG_EEXIST;
    pthread_mutex_lock(&self->hook_lock);
    if (self->hook != NULL) {
        pthread_mutex_unlock(&self->hook_lock);
        return BRG_EEXIST;
    }
    if (w->wake_fd < 0) {
        // Made once, kept until the scheduler is destroyed: brg__park_unpark
        // may write it after the hook is gone.
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) {
            pthread_mutex_unlock(&self->hook_lock);
            return BRG_ENOMEM;
        }
        pthread_mutex_lock(&w->park_lock);
        w->wake_fd = fd; // read by unparkers under park_lock (hook_waiting)
        pthread_mutex_unlock(&w->park_lock);
    }
    self->hook = hook;
    // Release: with hook_lock, what the installer made (the transport's
    // sockets) is visible to worker 0 when it takes the hook.
    atomic_store_explicit(&self->hook_on, true, memory_order_release);
    pthread_mutex_unlock(&self->hook_lock);
    // Worker 0 may sleep on its condition: move it into the hook.
    pthread_mutex_lock(&w->park_lock);
    pthread_mutex_unlock(&w->park_lock);
    pthread_cond_signal(&w->park_cond);
    return BRG_OK;
}

void
brg__sched_clear_park_hook(brg__sched_t *self)
{
    if (self->n == 0)
        return;
    brg__worker_t *w = &self->workers[0];
    atomic_store_explicit(&self->hook_on, false, memory_order_release);
    // Make a wait return, then wait for the hook's user to let go of it:
    // after hook_lock, worker 0 never calls it again (it reads hook under
    // the lock), and what it did to the sockets is visible to us.
    pthread_mutex_lock(&w->park_lock);
    int fd = w->wake_fd;
    pthread_mutex_unlock(&w->park_lock);
    if (fd >= 0)
        s_wake_fd_write(fd);
    pthread_mutex_lock(&self->hook_lock);
    self->hook = NULL;
    // No turn runs now or later: nothing sets it again.
    atomic_store_explicit(&w->io_bound, false, memory_order_relaxed);
    pthread_mutex_unlock(&self->hook_lock);
}

bool
brg__sched_park_hook_try(brg__sched_t *self, void (*fn)(void *arg), void *arg)
{
    if (self->n == 0 || pthread_mutex_trylock(&self->hook_lock) != 0)
        return false;
    bool ran = self->hook != NULL && atomic_load_explicit(&self->hook_on, memory_order_relaxed);
    if (ran)
        fn(arg);
    pthread_mutex_unlock(&self->hook_lock);
    return ran;
}
