//  timer - the timer thread and its heap (internal view).
#ifndef BRG_RUNTIME_TIMER_H
#define BRG_RUNTIME_TIMER_H

#include <stdint.h>

#include "brigade/timer.h"

typedef struct brg__timers brg__timers_t;

//  Start the timer thread. Returns NULL if out of resources.
brg__timers_t *brg__timers_new(brg_system_t *sys);

//  Stop the thread; free armed timers and their messages (not sent).
void brg__timers_destroy(brg__timers_t **self_p);

//  Arm a timer that sends *msg_p to `to` after delay_ns, then every period_ns
//  if period_ns > 0. Takes ownership of *msg_p and sets it to NULL (on error
//  it is freed, not sent). Returns BRG_OK, BRG_ENOMEM or BRG_ECLOSED. Thread: any.
int brg__timers_start(brg__timers_t *self, brg_ref_t to, brg_msg_t **msg_p, uint64_t delay_ns,
                      uint64_t period_ns, brg_timer_id_t *id);

//  Cancel; BRG_OK or BRG_ENOTFOUND. Thread: any.
int brg__timers_cancel(brg__timers_t *self, brg_timer_id_t id);

//  Timers armed now. Thread: any.
uint64_t brg__timers_active(brg__timers_t *self);

#endif
