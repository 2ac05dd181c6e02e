//  system - the system object shared by the runtime's modules (internal view).
#ifndef BRG_RUNTIME_SYSTEM_H
#define BRG_RUNTIME_SYSTEM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "brigade/system.h"

#include "log.h"

typedef struct brg__sched brg__sched_t;
typedef struct brg__timers brg__timers_t;
typedef struct brg__registry brg__registry_t;
typedef struct brg__slot brg__slot_t;

//  Slots per chunk of the slot table (a power of two).
#define BRG__SLOT_CHUNK_BITS 12
#define BRG__SLOT_CHUNK (1u << BRG__SLOT_CHUNK_BITS)

struct brg__remote_ops;

struct brg_system {
    brg_config_t cfg;  // configuration as resolved at new (immutable)
    uint64_t node_hi;  // node UUID, bytes 0-7 big-endian (immutable)
    uint64_t node_lo;  // node UUID, bytes 8-15 big-endian (immutable)
    char node_str[37]; // node UUID as text (immutable)

    // Slot table (slots.c). chunks[] is allocated once; each chunk is
    // allocated on first use under slot_lock and published with release.
    _Atomic(brg__slot_t *) *chunks; // max_chunks entries
    uint32_t max_chunks;
    _Atomic uint32_t slot_limit; // slots handed out so far; lookups beyond are unknown
    pthread_mutex_t slot_lock;   // guards free_head and the chunk allocation
    uint32_t free_head;          // first free slot index + 1, 0 = none (slot_lock)

    brg__sched_t *sched;       // workers, run queues, blocking pool
    brg__timers_t *timers;     // timer thread and heap
    brg__registry_t *registry; // local names
    pthread_mutex_t kind_lock; // guards kinds (kind.c)
    struct brg__kind *kinds;   // registered kinds, newest first (kind.c)

    _Atomic bool closing; // destroy has begun: spawns fail, sends are dead letters

    // The transport (remote.c): set once by brg__system_set_remote_ops before
    // any remote traffic, then unchanged until ops->destroy has returned.
    _Atomic(const struct brg__remote_ops *) remote_ops; // NULL: no transport
    void *remote_arg;
    _Atomic bool remote_closed; // ops->shutdown has begun: remote sends are dead letters

    // Counters. Relaxed RMWs: they order nothing, they only count.
    _Atomic uint64_t actors_alive;
    _Atomic uint64_t actors_awaited; // alive and not BRG__MODE_HIDDEN: brg_system_await_actors
    _Atomic uint64_t actors_spawned;
    _Atomic uint64_t actors_stopped;
    _Atomic uint64_t actors_failed;
    _Atomic uint64_t dead_letters;
    _Atomic uint64_t aux_processed; // messages run outside workers (blocking pool)
    _Atomic uint64_t aux_hwm;       // mailbox high-water mark seen outside workers
    _Atomic uint64_t watchdog_reports;
    _Atomic uint64_t vclock_ns; // deterministic mode: virtual time (creator thread writes)

    brg__log_t log; // the dead-letter summary (log.c)

    // brg_system_asks under way: incremented when the waiter is published
    // (under slot_lock, so destroy, which sets closing under it, sees it),
    // decremented as the ask's last touch of the system. destroy waits for 0.
    _Atomic uint32_t asks_waiting;

    pthread_mutex_t await_lock; // with await_cond: brg_system_await_actors, asks_waiting
    pthread_cond_t await_cond;

    struct brg__tracer *tracer; // span exporter (trace.c); NULL: tracing off (immutable)
};

//  The one send path for every message and signal of the runtime: a local
//  actor's mailbox, the transport for another node (remote.c), or dead
//  letters. Takes ownership of *msg_p and sets it to NULL. Returns BRG_OK,
//  BRG_ENOACTOR (local target dead or unknown: a user message is a dead
//  letter, a runtime signal is freed and the caller decides), or for another
//  node what the transport answered, BRG_ENETWORK or BRG_EBUSY (then the
//  message was counted and whatever its sender is owed was sent: an error
//  reply for an ask, EXIT/DOWN noconnection for a LINK/MONITOR; see
//  brg__remote_dead_letter). Thread: any.
int brg__system_deliver(brg_system_t *sys, brg_ref_t to, brg_msg_t **msg_p);

//  Count, report and free an undeliverable message. If it was an ask, the
//  asker gets an error reply (BRG_ENOACTOR) when notify_asker is true.
void brg__dead_letter(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg, brg_dead_reason_t reason,
                      bool notify_asker);

//  brg__dead_letter with the error reply's status chosen: an ask (a request
//  with a sender) is answered with status (negative), or not at all for 0.
void brg__dead_letter_status(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg,
                             brg_dead_reason_t reason, int status);

//  Bookkeeping when an actor ends (wakes brg_system_await_actors at zero).
void brg__system_actor_ended(brg_system_t *sys, bool failed, bool awaited);

//  A brg_system_ask ends: its last touch of sys (wakes a destroy waiting for
//  the asks at zero). Thread: the asking thread.
void brg__system_ask_ended(brg_system_t *sys);

//  True when the calling thread is one of sys's own: a worker, a blocking-
//  pool thread, the timer thread, or the thread running a deterministic
//  step. A blocking call of sys made there would wait for itself.
bool brg__system_on_own_thread(brg_system_t *sys);

//  True when the calling thread created an inbox of sys that is still open
//  (inbox.c). Thread: any.
bool brg__inbox_open_here(brg_system_t *sys);

//  The system's clock: virtual in deterministic mode, CLOCK_MONOTONIC else.
uint64_t brg__system_now_ns(const brg_system_t *sys);

//  The ref for a local id of this system.
brg_ref_t brg__system_ref(const brg_system_t *sys, uint64_t id);

//  A message for another node (to's node is not ours and not none): to the
//  transport with name (NULL: to.id is the target), or, with no transport
//  or after its shutdown began, a dead letter answered as an unreachable
//  node's (BRG_ENETWORK). Takes msg. Returns as brg__system_deliver.
//  Thread: any. (remote.c)
int brg__remote_send(brg_system_t *sys, brg_ref_t to, const char *name, brg_msg_t *msg);

//  brg_system_destroy's two transport steps (remote.c): shutdown after every
//  actor has stopped, destroy after the threads are joined. No-ops without
//  a transport. Thread: the destroying thread.
//  Free the registered kinds (kind.c). Thread: brg_system_destroy, alone.
void brg__kinds_fini(brg_system_t *sys);

void brg__remote_shutdown(brg_system_t *sys);
void brg__remote_destroy(brg_system_t *sys);

#endif
