//  watchdog - calls that hold their thread too long
//
//  Design notes.
//
//  Each worker and blocking-pool thread has a slot (brg__watch_t) that it
//  writes around every behaviour call: the call's start time and its actor.
//  The timer thread scans the slots (brg__sched_watchdog_scan, every
//  cfg.watchdog_ms) and reports a call that has run longer than the limit,
//  once per call; with cfg.watchdog_fail it also asks for the call to fail
//  by storing its start time in fail_at, which the running thread compares
//  when the call returns, so a late request can never fail a later call.
//  Every access is relaxed: the watchdog only needs to see the values
//  eventually, and a report from a stale pair names an actor that was busy
//  a moment ago. A call nested by help-along saves the outer call's slot
//  and restores it at its end, so the outer call stays watched. With the
//  watchdog off the slot pointer is NULL and a behaviour call pays one TLS
//  load and a test (the inline brg__watch_begin/end of watchdog.h).
#include "runtime_internal.h"

//  The calling thread's watchdog slot, set only when the watchdog is on
//  (declared in watchdog.h, where the inline brg__watch_begin/end test it).
_Thread_local brg__watch_t *brg__watch_tls __attribute__((tls_model("initial-exec")));

brg__watch_frame_t
brg__watch_begin_on(brg__watch_t *w, uint64_t actor_id)
{
    brg__watch_frame_t frame;
    // A call nested by help-along saves the outer call's slot and restores it
    // in brg__watch_end, so the outer call stays watched.
    frame.outer_since = atomic_load_explicit(&w->since_ns, memory_order_relaxed);
    frame.outer_actor = atomic_load_explicit(&w->actor_id, memory_order_relaxed);
    frame.since = brg__now_ns();
    // Relaxed: the watchdog only needs to see these eventually; a report
    // from a stale pair names an actor that was busy a moment ago.
    atomic_store_explicit(&w->actor_id, actor_id, memory_order_relaxed);
    atomic_store_explicit(&w->since_ns, frame.since, memory_order_relaxed);
    return frame;
}

bool
brg__watch_end_on(brg__watch_t *w, brg__watch_frame_t frame)
{
    atomic_store_explicit(&w->actor_id, frame.outer_actor, memory_order_relaxed);
    atomic_store_explicit(&w->since_ns, frame.outer_since, memory_order_relaxed);
    // The request names the call by its start time, so a late request can
    // never fail a later call.
    return atomic_load_explicit(&w->fail_at, memory_order_relaxed) == frame.since;
}

uint32_t
brg__watch_scan(brg_system_t *sys, brg__watch_t *w, uint64_t now, uint64_t limit, bool fail)
{
    uint64_t since = atomic_load_explicit(&w->since_ns, memory_order_relaxed);
    if (since == 0 || now < since || now - since < limit || w->reported == since)
        return 0;
    w->reported = since;
    if (fail)
        atomic_store_explicit(&w->fail_at, since, memory_order_relaxed);
    brg_ref_t actor =
        brg__system_ref(sys, atomic_load_explicit(&w->actor_id, memory_order_relaxed));
    brg__log(sys, BRG_LOG_WARNING, "watchdog", actor, "has held its thread for %llu ms%s",
             (unsigned long long)((now - since) / 1000000u), fail ? " (it will fail)" : "");
    return 1;
}
