//  system - a Brigade node: worker threads, actors, timers, dead letters.
#ifndef BRG_SYSTEM_H
#define BRG_SYSTEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "log.h"
#include "msg.h"
#include "ref.h"
#include "trace.h"

typedef struct brg_system brg_system_t;

//  Why a message became a dead letter.
typedef enum {
    BRG_DEAD_NO_ACTOR = 1, // target dead, stale or unknown
    BRG_DEAD_STOPPED,      // left in the mailbox of an actor that stopped
    BRG_DEAD_LATE_REPLY,   // reply to an ask that had already timed out or been answered
    BRG_DEAD_UNHANDLED,    // the behaviour returned BRG_UNHANDLED for it
    BRG_DEAD_REMOTE,       // addressed to another node and no transport is plugged in
    BRG_DEAD_SHUTDOWN,     // sent while the system was being destroyed
    BRG_DEAD_REMOTE_BUSY,  // the other node's outbound queue was full (brg_send: BRG_EBUSY)
    BRG_DEAD_REMOTE_DOWN   // the other node is unknown or down (brg_send: BRG_ENETWORK)
} brg_dead_reason_t;

//  Called for every dead letter, on the thread that dropped it (a worker, the
//  timer thread or a caller's thread). msg is borrowed for the call. It must
//  not block and must not call brg_system_destroy.
typedef void (*brg_dead_letter_fn)(void *arg, brg_ref_t to, const brg_msg_t *msg,
                                   brg_dead_reason_t reason);

//  Configuration. Always start from brg_config_init(&cfg), which sets the
//  defaults, so fields added later get theirs.
typedef struct brg_config {
    int workers;          // worker threads; 0 = one per online CPU (default)
    int batch;            // messages an actor runs before it yields (default 64)
    int blocking_threads; // threads of the pool for blocking actors (default 4)
    uint32_t max_actors;  // live actors at most (default 64 Mi, hard max 2^31)
    //  Sender-side backpressure. When an actor's send finds the receiver's
    //  mailbox longer than mailbox_high_water messages, the sender finishes
    //  the behaviour call it is in and is then not run again until the
    //  receiver has drained to mailbox_high_water / 2 or died (or the
    //  sender is sent a stop or kill). A call on a worker thread that goes
    //  on sending to it is paced meanwhile: it waits at every 64th send
    //  while the receiver drains (brg_send, "Pacing"), so it adds at most
    //  2 x 64 messages over the mark, plus 64 per 100 us in which the
    //  receiver drains nothing. 0 = the default, 4096 (at least 2 x batch);
    //  negative = off (no suspension, no pacing). Not held back: sends from threads outside
    //  the system (brg_system_send, timers: they cannot be suspended and stay
    //  unbounded), an actor's sends to itself, sends to the reply box of a
    //  brg_system_ask, and an actor that has senders suspended on it (no
    //  cycle of suspended actors can form). So a mailbox holds at most
    //  mailbox_high_water + the sum, over the actors sending to it, of the
    //  messages each sends it in one behaviour call (128 for a paced one),
    //  plus those exempt sends (docs/ARCHITECTURE.md section 6,
    //  "Backpressure").
    int mailbox_high_water;
    //  Logging (brigade/log.h). Events at log_level or more severe go to
    //  log_fn(log_arg, event), or to stderr (brg_log_stderr) when log_fn is
    //  NULL. Default BRG_LOG_NOTICE: crash reports, supervisor reports,
    //  dead-letter summaries and the watchdog print; a negative log_level
    //  turns logging off.
    int log_level;
    brg_log_fn log_fn;
    void *log_arg;
    //  One log line (category "dead_letter", level notice) per dead letter
    //  instead of the rate-limited summary: for debugging (default false).
    bool log_dead_letters;
    brg_dead_letter_fn dead_letter_fn; // optional hook for every dead letter
    void *dead_letter_arg;             // passed to dead_letter_fn
    //  Watchdog: report a behaviour call (or init, or reply callback) that holds
    //  its thread longer than watchdog_ms (0 = off, the default). C cannot
    //  preempt a running function: the report comes while it runs, and with
    //  watchdog_fail the actor fails (reason failed, BRG_ETIMEDOUT) once the
    //  call returns. Reports are counted (stats.watchdog_reports) and logged
    //  (category "watchdog", level warning). A call's waits at its sends
    //  while their receiver drains (pacing, brg_send) count as part of it.
    int watchdog_ms;
    bool watchdog_fail;
    //  Deterministic test mode (default false): no threads at all. Every actor
    //  runs on the thread that calls brg_system_run_until_idle / step /
    //  advance, one message per turn, in FIFO order of becoming runnable; time
    //  is virtual and moves only with brg_system_advance. Blocking actors run
    //  the same way. For tests of supervision and timer logic.
    bool deterministic;
    //  Tracing (brigade/trace.h). On when trace_file or trace_hook is set,
    //  or when trace_file is NULL and the environment variable
    //  BRG_TRACE_FILE names a file; off by default. Ended spans are written
    //  as OTLP/JSON lines (one ExportTraceServiceRequest per line, appended)
    //  to trace_file and/or handed to trace_hook(trace_hook_arg, line) by
    //  an export thread of the system, every trace_flush_ms (0: 200) or
    //  sooner when 256 are waiting. At most trace_buffer spans wait (0: the
    //  default, 4096); a span ended while it is full is dropped and counted
    //  (brg_trace_stats). Resource attributes: service.name = trace_service
    //  (NULL: $OTEL_SERVICE_NAME, else "brigade"), service.instance.id and
    //  brg.node.id = the node UUID, brg.node.name = trace_node_name (when
    //  set). Strings are copied at brg_system_new.
    const char *trace_file;
    brg_trace_hook_fn trace_hook;
    void *trace_hook_arg;
    const char *trace_service;
    const char *trace_node_name;
    uint32_t trace_buffer;
    int trace_flush_ms;
} brg_config_t;

//  Counters, a consistent-enough snapshot (each counter read atomically on its
//  own; they are not read as one transaction).
typedef struct brg_stats {
    uint64_t actors_alive;       // spawned and not yet stopped
    uint64_t actors_spawned;     // since the system started
    uint64_t actors_stopped;     // normal stops and failures
    uint64_t actors_failed;      // stopped with a failure reason
    uint64_t messages_processed; // messages run, the runtime's own (stop, deadlines) included
    uint64_t dead_letters;       // messages dropped, every reason
    uint64_t mailbox_hwm;        // longest mailbox seen by any actor
    uint64_t timers_active;      // timers armed and not yet fired or cancelled
    uint64_t watchdog_reports;   // behaviour calls reported by the watchdog
    uint32_t workers;            // worker threads
    uint32_t blocking_threads;   // blocking-pool threads
    uint64_t send_pauses;        // waits of paced floods (brg_send, "Pacing")
} brg_stats_t;

//  Fill cfg with the defaults.
BRG_EXPORT void brg_config_init(brg_config_t *cfg);

//  Start a system: create the node UUID, start the worker threads, the timer
//  thread and the blocking pool. cfg may be NULL for the defaults. Returns a
//  running system, or NULL on invalid configuration or out of resources.
//  Thread: any thread that is not a Brigade worker.
BRG_EXPORT brg_system_t *brg_system_new(const brg_config_t *cfg);

//  Stop every actor (each one's state destructor runs on a Brigade thread),
//  drop undelivered messages to dead letters, join every thread and free
//  everything; then set *self_p to NULL. Accepts a pointer to NULL. Actors
//  still running a behaviour are let finish it first. Messages sent during
//  destroy are dead letters. A brg_system_ask blocked in another thread
//  returns BRG_ECLOSED, and destroy waits until it has returned.
//  An inbox (brigade/inbox.h) of another thread is woken (its receive and
//  ask answer BRG_ECLOSED) and destroy waits until its owner destroys it.
//  Returns BRG_OK, or BRG_EDEADLK when called on one of this system's own
//  threads (a behaviour, init, reply callback, or the dead-letter hook on the
//  timer thread), or BRG_EBUSY when the calling thread still holds an open
//  inbox of this system: then nothing is done and *self_p is unchanged. The
//  checks hold in every build, NDEBUG or not.
//  Thread: any thread that is not one of this system's own.
BRG_EXPORT int brg_system_destroy(brg_system_t **self_p);

//  Whether the calling thread is one of sys's own: a worker, a blocking-pool
//  thread, the timer thread, or a deterministic step. Blocking calls built
//  outside the runtime check it to answer BRG_EDEADLK, as the runtime's own
//  do, instead of holding the thread. Thread: any.
BRG_EXPORT bool brg_system_is_own_thread(brg_system_t *sys);

//  Block until no actor is alive, or timeout_ms passes (negative: forever,
//  the one call where a negative timeout means that). Actors the runtime
//  runs for itself (a node's service actor, brigade/node.h) are not waited
//  for, as CAF's await_all_actors_done skips hidden actors; they are
//  counted in brg_stats_t.actors_alive and stopped by brg_system_destroy. Returns BRG_OK or
//  BRG_ETIMEDOUT; BRG_EDEADLK at once, in every build, on one of this
//  system's own threads (workers, blocking pool, timer thread, a
//  deterministic step). In deterministic mode it runs the system until idle
//  and then answers at once (time does not move).
//  Thread: any thread that is not one of this system's own; blocks.
BRG_EXPORT int brg_system_await_actors(brg_system_t *self, int timeout_ms);

//  Read the counters into *stats.
BRG_EXPORT void brg_system_stats(brg_system_t *self, brg_stats_t *stats);

//  The node's UUID as text (36 characters and a NUL into out[37]).
BRG_EXPORT void brg_system_node(brg_system_t *self, char out[37]);

//  True when ref names an actor of this node (not whether it is alive).
BRG_EXPORT bool brg_system_is_local(brg_system_t *self, brg_ref_t ref);

//  True when ref names a live actor of this node. A snapshot: the answer can be
//  stale by the time the caller acts on it.
BRG_EXPORT bool brg_system_is_alive(brg_system_t *self, brg_ref_t ref);

//  Send msg from outside any actor (sender BRG_REF_NONE), as a plain message:
//  a copy of an ask (brg_msg_dup) sent this way is no longer part of that
//  ask, so its answer can never reach the original asker. Returns BRG_OK when
//  the message was queued, BRG_ENOACTOR when the target is dead or unknown
//  (the message is then a dead letter), and for another node's actor
//  BRG_ENETWORK or BRG_EBUSY as brg_send. Takes ownership of *msg_p and sets
//  it to NULL. Never held back by backpressure (cfg.mailbox_high_water): a
//  thread cannot be suspended between messages, so a mailbox fed from
//  outside faster than it drains grows without bound; pace such a feed with
//  brg_system_ask (one reply per request) or a limiter.
BRG_EXPORT int brg_system_send(brg_system_t *self, brg_ref_t to, brg_msg_t **msg_p);

//  Ask from outside the system: send msg to `to` and wait up to timeout_ms
//  (>= 0) for its reply (brg_reply). On BRG_OK *reply_p holds the reply:
//  Caller owns the returned message and must destroy it. Errors:
//  BRG_ETIMEDOUT (a reply that comes later is a counted dead letter),
//  BRG_ENOACTOR (target dead, or it stopped before replying), BRG_ENETWORK /
//  BRG_EBUSY (target on another node that cannot be reached, or whose
//  outbound queue is full, or that was lost while waiting), the negative
//  status the replier gave to brg_reply_error, BRG_ECLOSED (the system is
//  being destroyed: before the ask, or while it waited), BRG_ENOMEM /
//  BRG_EBUSY (the reply box could not be made), BRG_EINVAL (timeout_ms < 0;
//  nothing sent), BRG_EDEADLK (called on one of this system's own threads;
//  nothing sent; checked in every build). The callee sees the waiting call
//  as the sender: a link or monitor it makes on that ref gets EXIT / DOWN
//  with reason noproc, as for any dead actor. Takes ownership of *msg_p and
//  sets it to NULL. In deterministic mode it runs the system until idle and
//  then answers at once: BRG_ETIMEDOUT if no reply came by then.
//  Thread: any thread that is not one of this system's own (not a worker,
//  blocking-pool or timer thread); blocks up to timeout_ms.
BRG_EXPORT int brg_system_ask(brg_system_t *self, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms,
                              brg_msg_t **reply_p);

//  ---------------------------------------------------------------------------
//  Deterministic test mode (cfg.deterministic). Calling these on a threaded
//  system is a caller bug (assert).
//  Thread: only the thread that created the system.

//  Run one message (or one init) of the actor that has waited longest.
//  Returns 1 if something ran, 0 if the system is idle.
BRG_EXPORT int brg_system_step(brg_system_t *self);

//  Run until no actor has anything to do (timers not yet due do not count).
//  Returns the number of steps run.
BRG_EXPORT int brg_system_run_until_idle(brg_system_t *self);

//  Move virtual time forward by ms: timers fire in deadline order, each at its
//  own virtual time, with the system run until idle after each. Returns the
//  number of steps run, or BRG_EINVAL (nothing done) for ms < 0.
BRG_EXPORT int brg_system_advance(brg_system_t *self, int ms);

//  True when the system runs in the deterministic test mode (cfg.deterministic).
//  Thread: any.
BRG_EXPORT bool brg_system_is_deterministic(brg_system_t *self);

//  The system's clock in milliseconds: virtual time in deterministic mode,
//  CLOCK_MONOTONIC otherwise.
BRG_EXPORT uint64_t brg_system_now_ms(brg_system_t *self);

#endif
