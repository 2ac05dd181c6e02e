//  sched - worker threads, run queues, stealing, parking and the blocking pool
//  (the interface the rest of the runtime uses; the watchdog hooks are in
//  watchdog.h).
#ifndef BRG_RUNTIME_SCHED_H
#define BRG_RUNTIME_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "brigade/system.h"

typedef struct brg__sched brg__sched_t;
typedef struct brg__actor brg__actor_t;

//  The default high-water mark of a mailbox (cfg.mailbox_high_water = 0), at
//  least 2 x batch.
#define BRG__BP_HIGH_DEFAULT 4096

//  Start workers worker threads and blocking blocking-pool threads. Also
//  resolves sys->cfg.mailbox_high_water (0: the default; negative: -1, off),
//  before any thread reads it. Returns
//  NULL if a thread or the memory cannot be had (nothing is left running).
//  deterministic: start no thread at all; actors run in brg__sched_step.
brg__sched_t *brg__sched_new(brg_system_t *sys, int workers, int blocking, int batch,
                             bool deterministic);

//  Deterministic mode: run one message of the actor that waited longest.
//  Returns true if something ran. Thread: the system's creator.
bool brg__sched_step(brg__sched_t *self);

//  Watchdog scan, from the timer thread: report calls running longer than
//  limit_ns (once each); with fail, ask for them to fail. Returns the number
//  of new reports.
uint32_t brg__sched_watchdog_scan(brg__sched_t *self, uint64_t now_ns, uint64_t limit_ns,
                                  bool fail);

//  Stop and join every thread. Actors must all have ended. Thread: not a
//  thread of this scheduler.
void brg__sched_destroy(brg__sched_t **self_p);

//  Make an actor that just became runnable (its mailbox left the idle state
//  through us) run: on a worker of its system, in that worker's next-to-run
//  slot so a conversation stays on one thread; elsewhere, through the shared
//  inject queue, waking one parked worker. Blocking actors go to the pool.
//  Thread: any.
void brg__sched_schedule(brg__sched_t *self, brg__actor_t *actor);

//  brg__sched_schedule for n actors at once, linked by their next field
//  from head (each made runnable by the caller: brg__actor_push_deferred):
//  one round on the inject queue, in list order, and at most one worker
//  woken; blocking actors go to the pool. Thread: any (meant for threads
//  that are not workers: the transport's I/O thread).
void brg__sched_schedule_list(brg__sched_t *self, brg__actor_t *head, uint32_t n);

//  The system whose worker thread the caller is, or NULL. Written by each
//  worker thread for itself when it starts and stops.
extern _Thread_local brg_system_t *brg__worker_sys __attribute__((tls_model("initial-exec")));

//  True if the calling thread is a worker of sys: it may use actors found
//  in sys's slot table without a reference (mailbox.c, brg__actor_send; slots.c).
static inline bool
brg__sched_is_worker_of(const brg_system_t *sys)
{
    return brg__worker_sys == sys;
}

//  The actor died and its slot is DYING: call brg__actor_reclaim once no
//  worker can still be using it without a reference (at once without
//  workers): reclaim.c. Thread: any.
void brg__sched_retire(brg__sched_t *self, brg__actor_t *actor);

//  True if the shared limbo holds dead actors (a relaxed hint): reclaim.c.
//  Thread: any.
bool brg__reclaim_has_pending(brg__sched_t *self);

//  Reclaim what the shared limbo holds that every worker has passed (a
//  spawn that finds no free slot, before it grows the table): reclaim.c.
//  Returns false if it held nothing (then nothing was done). Thread: any;
//  takes limbo_lock and slot_lock, so the caller must hold neither.
bool brg__reclaim_pending(brg__sched_t *self);

//  Messages processed and the mailbox high-water mark, over all workers.
void brg__sched_stats(brg__sched_t *self, uint64_t *processed, uint64_t *hwm);

//  Fairness bound: a worker polls the inject queue (where outside sends and
//  timers make actors runnable) at least once every BRG__INJECT_EVERY
//  batches it runs, counting batches run nested by help-along.
#define BRG__INJECT_EVERY 32

//  In-call floods paced at help points (sched.c, "Pacing in-call floods"),
//  and the paces given up because the receiver did not drain for
//  BRG__STALL_NS, summed over the workers. Thread: any (relaxed).
void brg__sched_pace_stats(brg__sched_t *self, uint64_t *paces, uint64_t *stalls);

//  Test hook: the most batches any worker has run (nested help-along batches
//  included) between two of its polls of the inject queue. Thread: any.
uint32_t brg__sched_inject_gap_max(brg__sched_t *self);
//  Test hook: searches that ended while no other worker ran, and the time
//  budgets they had (ns), summed over the workers. Thread: any (relaxed).
void brg__sched_lone_spin(brg__sched_t *self, uint64_t *searches, uint64_t *spent_ns);

//  Note a mailbox length seen by the running actor (for the high-water mark).
//  Thread: the thread running the actor.
void brg__sched_note_queued(brg_system_t *sys, uint32_t queued);

//  Count n messages run by the calling thread in sys's messages_processed,
//  before the actor leaves its hands: a dying actor's messages must be
//  counted before it is counted stopped, and an activation's before the next
//  one, perhaps on another thread, can end in death (brg__actor_run).
//  Thread: the thread running an actor of sys.
void brg__sched_count_processed(brg_system_t *sys, uint32_t n);

//  Note that the running actor has sent a message (LIFO slot heuristic).
//  Thread: any; a no-op outside the scheduler's workers.
void brg__sched_note_send(void);

//  True when the calling thread is a worker or blocking-pool thread of sys.
bool brg__sched_on_thread_of(brg_system_t *sys);

//  The park hook: a transport's I/O loop run by worker 0 in place of its
//  sleep (TRANSPORT.md section 14, docs/ARCHITECTURE.md "I/O on a worker").
//  With a hook installed, worker 0 does not wait on its condition variable
//  when it parks: it calls turn, and when turn says it may sleep, it calls
//  wait, which blocks in the transport's poll on its sockets and on the
//  worker's wake-up eventfd (brg__park_unpark writes it). So a message from
//  the network reaches its actor on the thread that read it, and that
//  actor's reply leaves from the same thread, without a hand-off between
//  threads in either direction. While worker 0 runs actors, it calls turn
//  (may_sleep false) between activations, every BRG__HOOK_EVERY of them,
//  and before it starts searching for work.
//  Threads. Both functions run on worker 0's thread only, never nested in an
//  actor's behaviour call, and never at the same time (so the transport may
//  keep its sockets owned by that thread: hook_lock hands them over with the
//  full barrier ZeroMQ asks for when a socket moves between threads).
//  turn runs with the worker online (it may deliver messages: actors it
//  makes runnable run on worker 0 next); wait runs offline (it must not touch
//  actors). turn returns true if it did work (call it again before
//  sleeping); false if wait may be called, with *deadline_ns (brg__now_ns
//  clock, 0: none) the latest time for the next turn; *moved: the messages
//  it took from senders or delivered. wait returns true if wake_fd was
//  readable (the scheduler drains it).
//  Heavy I/O. A turn that moved BRG__HOOK_HEAVY messages or more makes
//  worker 0 I/O-bound: it hands its runnable actors to the other workers
//  (its ring, stealable at once, and a wake-up) and turns again instead of
//  running them, as long as turns stay heavy, running one activation of
//  its own at least every BRG__HOOK_STREAK turns. A stream then has its
//  sockets served on one core and its actors run on the other, as with a
//  dedicated I/O thread; a request and its reply (light turns) stay on
//  worker 0.
typedef struct brg__park_hook {
    bool (*turn)(void *arg, bool may_sleep, uint64_t *deadline_ns, uint32_t *moved);
    bool (*wait)(void *arg, int wake_fd, uint64_t deadline_ns);
    void *arg;
} brg__park_hook_t;

//  Between activations, worker 0 calls a hook's turn at least once every
//  this many activations while it runs actors.
#define BRG__HOOK_EVERY 64
#define BRG__HOOK_HEAVY 256
#define BRG__HOOK_STREAK 16

//  A message for another node is being queued by the calling thread: if
//  it is worker 0 with a park hook, its next turn comes right after the
//  running activation (the reply of a request/reply leaves at once; a
//  stream is seen to be heavy after one activation). Thread: any.
void brg__sched_note_remote_send(brg__sched_t *self);

//  Install hook (it must outlive its removal). BRG_EINVAL without worker
//  threads (deterministic mode), BRG_EEXIST if one is installed, BRG_ENOMEM
//  without an eventfd. Thread: any but worker 0.
int brg__sched_set_park_hook(brg__sched_t *self, const brg__park_hook_t *hook);

//  Remove the hook: returns once worker 0 is out of turn and wait for
//  good. Thread: any but worker 0.
void brg__sched_clear_park_hook(brg__sched_t *self);

//  Run fn(arg) under the hook's lock if nobody holds it and a hook is
//  installed: the transport's own thread serving the sockets while worker 0
//  runs actors (a long behaviour call there must not stop the node's I/O).
//  Worker 0 holds the lock while it turns or waits in the hook, so fn never
//  runs beside it, and the lock's hand-over is the barrier that moves the
//  sockets. Returns true if fn ran. Thread: any but a worker.
bool brg__sched_park_hook_try(brg__sched_t *self, void (*fn)(void *arg), void *arg);

//  The number of worker and blocking-pool threads.
uint32_t brg__sched_workers(const brg__sched_t *self);
uint32_t brg__sched_blocking(const brg__sched_t *self);

#endif
