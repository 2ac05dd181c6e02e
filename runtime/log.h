//  log - the log facility's per-system state and the runtime's own events
//  (internal view).
#ifndef BRG_RUNTIME_LOG_H
#define BRG_RUNTIME_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "brigade/log.h"
#include "brigade/system.h"

//  One dead-letter summary per this many nanoseconds at most.
#define BRG__LOG_DL_WINDOW_NS 1000000000u

//  Dead-letter reasons are 1..BRG_DEAD_REMOTE_DOWN; index 0 is unused.
#define BRG__LOG_DL_REASONS (BRG_DEAD_REMOTE_DOWN + 1)

//  The dead-letter summary's state, inside struct brg_system. See log.c.
typedef struct brg__log {
    _Atomic uint64_t dl_count[BRG__LOG_DL_REASONS]; // dead letters not yet in a summary
    _Atomic uint64_t dl_last_ns; // system clock of the last summary; 0 = none yet
    _Atomic bool dl_armed;       // counts wait for the timer thread's flush
} brg__log_t;

//  True if events of level pass the system's filter. Thread: any.
bool brg__log_on(const brg_system_t *sys, brg_log_level_t level);

//  Make an event and hand it to the system's hook (or stderr) if level passes
//  the filter. Thread: any.
void brg__log(brg_system_t *sys, brg_log_level_t level, const char *category, brg_ref_t actor,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void brg__logv(brg_system_t *sys, brg_log_level_t level, const char *category, brg_ref_t actor,
               const char *fmt, va_list args) __attribute__((format(printf, 5, 0)));

//  A dead letter was counted: log it one by one (cfg.log_dead_letters) or
//  add it to the summary, which is written by this call if its second is up,
//  else later by the timer thread. Thread: any.
void brg__log_dead_letter(brg_system_t *sys, brg_ref_t to, const brg_msg_t *msg,
                          brg_dead_reason_t reason);

//  When the timer thread must call brg__log_flush next (UINT64_MAX: no
//  summary is waiting). Thread: the timer thread, or the deterministic driver.
uint64_t brg__log_flush_deadline(brg_system_t *sys);

//  Write the waiting summary if its second is up at now_ns, or whatever the
//  time when force is true (system destroy). Thread: the timer thread, the
//  deterministic driver, or the destroying thread once no other thread runs.
void brg__log_flush(brg_system_t *sys, uint64_t now_ns, bool force);

#endif
