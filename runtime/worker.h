//  worker - the scheduler's state shared by its files (sched.c, park.c,
//  reclaim.c, pool.c): a worker thread and the scheduler object. Private to
//  the scheduler: the rest of the runtime uses sched.h.
#ifndef BRG_RUNTIME_WORKER_H
#define BRG_RUNTIME_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "actor.h"
#include "runq.h"
#include "sched.h"
#include "watchdog.h"

#define BRG__QS_OFFLINE UINT64_MAX // a worker's qs while it sleeps or after it left (reclaim.c)
#define BRG__BP_BUCKETS 64         // buckets of suspended senders (a power of two)

//  Threads and ownership: see sched.c's design notes (each worker owns its
//  ring's push/pop side, its LIFO slot and its counters' writes; the locks
//  and their order are listed there).
typedef struct brg__worker {
    brg__runq_t runq;         // stealable FIFO (first: it is cache-line aligned inside)
    brg__sched_t *sched;      // immutable
    uint32_t index;           // immutable
    brg__actor_t *lifo;       // next to run; owner only, never stolen
    uint32_t lifo_streak;     // actors run from lifo in a row (owner)
    uint32_t sends;           // sends by the running actor while lifo is full (owner)
    uint32_t since_inject;    // batches started since this worker last polled inject (owner)
    _Atomic uint32_t gap_max; // the largest since_inject seen (owner writes; stats read)
    bool searching;           // counted in idle_state (owner)
    bool helping;             // running a queued actor inside a send (owner)
    uint32_t help_tick;       // sends since the last help check (owner)
    // Pacing in-call floods (sched.c): the send chain's call count at our
    // last help point, to tell a call's second help point (owner).
    uint32_t pace_calls;
    _Atomic uint64_t paces;          // waits begun at help points (owner writes; stats read)
    _Atomic uint64_t pace_stalls;    // waits given up: the receiver did not drain (owner writes)
    uint64_t rng;                    // victim choice (owner)
    uint32_t *seen_head;             // per victim: its progress at our last look (owner)
    uint64_t *seen_at;               // per victim: when that value was first seen (owner)
    uint32_t seen_inject;            // inject_taken at our last look (owner)
    uint64_t seen_inject_at;         // when that value was first seen (owner)
    uint32_t lone_spin_ns;           // search budget while no other worker runs (owner; sched.c)
    bool took_injected;              // this search's actor came from the inject queue (owner)
    _Atomic uint64_t lone_searches;  // searches made on that budget (owner writes; test hook)
    _Atomic uint64_t lone_budget_ns; // the sum of their budgets (owner writes; test hook)
    uint64_t processed_local;        // messages run (owner), published in processed
    uint64_t hwm_local;              // longest mailbox seen (owner), published in hwm
    _Atomic uint64_t processed;      // written by owner only (relaxed store), read by stats
    _Atomic uint64_t hwm;            // written by owner only (relaxed store), read by stats
    pthread_t thread;
    pthread_mutex_t park_lock;
    pthread_cond_t park_cond;
    bool notified;         // park_lock: woken by s_notify or shutdown
    bool hook_waiting;     // park_lock: in the park hook's wait (wake it through wake_fd)
    bool in_hook;          // running the park hook's turn (owner)
    uint32_t hook_tick;    // activations since the last hook turn (owner)
    bool remote_sent;      // sent to another node since the last hook turn (owner)
    uint32_t io_streak;    // heavy turns in a row without running an actor (owner)
    _Atomic bool io_bound; // worker 0's last turn was heavy (owner writes; thieves read, relaxed)
    int wake_fd;         // worker 0 with a park hook: its eventfd (immutable while hooked), else -1
    brg__watch_t watch;  // this thread's watchdog slot
    _Atomic uint64_t qs; // epoch at the last quiescent point, or BRG__QS_OFFLINE (owner writes)
    uint64_t qs_local;   // the value last stored in qs (owner)
    brg__actor_t *limbo; // actors retired here, oldest first, linked by next (owner)
    brg__actor_t *limbo_end; // its last entry (owner)
    uint32_t limbo_n;        // entries in limbo (owner)
    uint32_t batches;        // batch starts and help points, the value last in progress (owner)
    // Batches started, for thieves deciding whether this worker stalls
    // (s_stalled). Its own line: thieves read it while the owner writes it.
    _Alignas(64) _Atomic uint32_t progress;
    // Pacing in-call floods (sched.c): the actor (id) the running call's
    // last run of sends went to, at its last help point; 0 after the batch.
    // Owner writes (when it changes), pacing workers read it (relaxed: a
    // hint). Here, away from the fields the owner writes per send.
    _Atomic uint64_t feeding;
} brg__worker_t;

struct brg__sched {
    brg_system_t *sys;      // immutable
    brg__worker_t *workers; // n entries, immutable array
    uint32_t n;
    int batch;

    pthread_mutex_t inject_lock; // guards inject_head/tail
    brg__actor_t *inject_head;
    brg__actor_t *inject_tail;
    _Atomic uint32_t inject_len;   // written under inject_lock; read without it as a hint
    _Atomic uint32_t inject_taken; // actors taken so far: under inject_lock; a progress hint

    pthread_mutex_t idle_lock; // guards idle[] and n_idle
    uint32_t *idle;            // stack of parked worker indexes
    uint32_t n_idle;
    _Atomic uint64_t idle_state; // searching << 32 | sleeping (see the design notes)
    _Atomic uint64_t unparks;    // workers woken from sleep (relaxed; test hook, park.c)
    _Atomic bool shutdown;

    //  The park hook (sched.h): hook_on is read by worker 0 between
    //  activations (relaxed) and when it parks (acquire, then hook under
    //  hook_lock); hook_lock is held by worker 0 while it calls the hook and
    //  by brg__sched_clear_park_hook to wait for it. Lock order: hook_lock
    //  before idle_lock and park_lock.
    _Atomic bool hook_on;
    pthread_mutex_t hook_lock;
    const brg__park_hook_t *hook; // hook_lock

    pthread_t *pool; // blocking-pool threads
    uint32_t n_pool;
    pthread_mutex_t pool_lock; // guards pool_head/tail and pool_shutdown
    pthread_cond_t pool_cond;
    brg__actor_t *pool_head;
    brg__actor_t *pool_tail;
    bool pool_shutdown;
    brg__watch_t *pool_watch; // one watchdog slot per pool thread
    bool deterministic;       // no threads: brg__sched_step runs actors

    _Alignas(64) _Atomic uint64_t epoch; // retirements so far (see Reclamation)
    pthread_mutex_t limbo_lock;          // guards limbo, limbo_end
    brg__actor_t *limbo;                 // actors retired off the workers, oldest first
    brg__actor_t *limbo_end;
    _Atomic uint32_t limbo_n; // entries in limbo: written under limbo_lock, read as a hint

    // Backpressure (design notes): suspended senders, hashed by the id of
    // the receiver they wait for, linked through ext->bp_next.
    pthread_mutex_t bp_lock;                  // guards bp_bucket, bp_n, and every ext->bp_*
    brg__actor_t *bp_bucket[BRG__BP_BUCKETS]; // bp_lock
    _Atomic uint32_t bp_n;                    // senders suspended now: under bp_lock; a stat
    _Atomic uint64_t bp_total;                // suspensions so far: under bp_lock; a stat
};

//  Mark the calling thread as one of sys's own (brg__sched_on_thread_of):
//  done by each worker and pool thread when it starts. Thread: the caller.
void brg__sched_thread_enter(brg_system_t *sys);

//  Hand a suspended actor back (backpressure.c): on a worker of self, to
//  the back of its ring; elsewhere, as any newly runnable actor.
//  Thread: any.
void brg__sched_hand_back(brg__sched_t *self, brg__actor_t *actor);

#endif
