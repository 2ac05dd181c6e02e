//  timer - the timer thread and its heap (internal view).
#ifndef BRG_RUNTIME_TIMER_H
#define BRG_RUNTIME_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "brigade/timer.h"

typedef struct brg__timers brg__timers_t;

//  Start the timer thread (none when threaded is false: deterministic mode,
//  where brg__timers_fire_due drives it). Returns NULL if out of resources.
brg__timers_t *brg__timers_new(brg_system_t *sys, bool threaded);

//  Wake the timer thread to look again at what it waits for (a dead-letter
//  summary to flush, log.c). No-op in deterministic mode. Thread: any that
//  does not hold the timer lock (the timer thread sends outside it); takes
//  the lock briefly.
void brg__timers_kick(brg__timers_t *self);

//  Deterministic mode: the earliest deadline (UINT64_MAX if none), and fire
//  every timer due at or before now_ns, in deadline order. Returns how many
//  fired. Thread: the system's creator.
uint64_t brg__timers_next_deadline(brg__timers_t *self);
uint32_t brg__timers_fire_due(brg__timers_t *self, uint64_t now_ns);

//  Stop the thread; free armed timers and their messages (not sent).
void brg__timers_destroy(brg__timers_t **self_p);

//  Arm a timer that sends *msg_p to `to` after delay_ns, then every period_ns
//  if period_ns > 0. Takes ownership of *msg_p and sets it to NULL (on error
//  it is freed, not sent). Returns BRG_OK, BRG_ENOMEM or BRG_ECLOSED. Thread: any.
int brg__timers_start(brg__timers_t *self, brg_ref_t to, brg_msg_t **msg_p, uint64_t delay_ns,
                      uint64_t period_ns, brg_timer_id_t *id);

//  Cancel; BRG_OK or BRG_ENOTFOUND. Thread: any.
int brg__timers_cancel(brg__timers_t *self, brg_timer_id_t id);

//  False if msg is a tick (BRG__MSG_TIMER) of a periodic timer cancelled
//  since it was sent: the target drops it. True for any other message.
//  Thread: any (the target's, before its behaviour sees msg).
bool brg__timers_tick_is_live(brg__timers_t *self, const brg_msg_t *msg);

//  True when the calling thread is this timer thread. Thread: any.
bool brg__timers_on_own_thread(const brg__timers_t *self);

//  Timers armed now. Thread: any.
uint64_t brg__timers_active(brg__timers_t *self);

#endif
