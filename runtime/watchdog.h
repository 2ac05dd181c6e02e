//  watchdog - what each Brigade thread shows the watchdog of its current
//  behaviour call, and the scan that reports calls that hold their thread.
#ifndef BRG_RUNTIME_WATCHDOG_H
#define BRG_RUNTIME_WATCHDOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "brigade/system.h"

//  Watchdog hooks around one behaviour call on the running thread (no-ops
//  unless the watchdog is on). end returns true if the watchdog asked for
//  this call to fail the actor.
typedef struct {
    uint64_t since;       // this call's start (0: not watched)
    uint64_t outer_since; // the enclosing call's, restored at the end (help-along)
    uint64_t outer_actor;
} brg__watch_frame_t;
typedef struct brg__watch brg__watch_t;
//  The calling thread's watchdog slot, or NULL (watchdog off, or not a
//  Brigade thread). Written by its own thread only, when it starts.
//  initial-exec: one instruction instead of a __tls_get_addr call when the
//  runtime is a shared library (as the message cache in msg.c).
extern _Thread_local brg__watch_t *brg__watch_tls __attribute__((tls_model("initial-exec")));
brg__watch_frame_t brg__watch_begin_on(brg__watch_t *w, uint64_t actor_id);
bool brg__watch_end_on(brg__watch_t *w, brg__watch_frame_t frame);

//  Inline, so that with the watchdog off (most systems) a behaviour call
//  pays one TLS load and a test, not two calls and a returned struct.
static inline brg__watch_frame_t
brg__watch_begin(uint64_t actor_id)
{
    brg__watch_t *w = brg__watch_tls;
    if (__builtin_expect(w == NULL, 1))
        return (brg__watch_frame_t){0, 0, 0};
    return brg__watch_begin_on(w, actor_id);
}

static inline bool
brg__watch_end(brg__watch_frame_t frame)
{
    brg__watch_t *w = brg__watch_tls;
    if (__builtin_expect(w == NULL, 1))
        return false;
    return brg__watch_end_on(w, frame);
}

//  What the watchdog sees of one thread's current behaviour call. Each
//  worker and blocking-pool thread has one (worker.h).
struct brg__watch {
    _Atomic uint64_t since_ns; // start of the call in progress, 0 = none (owner writes)
    _Atomic uint64_t actor_id; // its actor (owner writes)
    _Atomic uint64_t fail_at;  // since_ns of a call the watchdog wants failed (timer thread writes)
    uint64_t reported;         // since_ns last reported (timer thread only)
};

//  Report the call in progress on w if it has run longer than limit (once
//  per call); with fail, ask for it to fail. Returns 1 if it reported, else
//  0. Thread: the timer thread (brg__sched_watchdog_scan).
uint32_t brg__watch_scan(brg_system_t *sys, brg__watch_t *w, uint64_t now, uint64_t limit,
                         bool fail);

#endif
