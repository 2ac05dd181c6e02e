//  timer - delayed and periodic messages.
//
//  Timers are kept by one timer thread per system (a binary heap); when one
//  fires, its message is sent like any other. If the target is dead when a
//  timer fires, the message is a dead letter and a periodic timer cancels
//  itself.
#ifndef BRG_TIMER_H
#define BRG_TIMER_H

#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  A timer handle: a value, safe to keep after the timer fired; 0 is no timer.
typedef uint64_t brg_timer_id_t;

//  Send msg to `to` after delay_ms (>= 0), with this actor as the sender. On
//  BRG_OK *id (if not NULL) can cancel it. Takes ownership of *msg_p and sets
//  it to NULL.
BRG_EXPORT int brg_send_after(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int delay_ms,
                              brg_timer_id_t *id);

//  Send a copy of msg to `to` every period_ms (> 0), the first after
//  period_ms, until cancelled or the target dies. Takes ownership of *msg_p
//  and sets it to NULL.
BRG_EXPORT int brg_send_every(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int period_ms,
                              brg_timer_id_t *id);

//  The same from outside any actor (sender BRG_REF_NONE); period_ms 0 means
//  once. Thread: any. Takes ownership of *msg_p and sets it to NULL.
BRG_EXPORT int brg_system_send_after(brg_system_t *sys, brg_ref_t to, brg_msg_t **msg_p,
                                     int delay_ms, int period_ms, brg_timer_id_t *id);

//  Cancel a timer. Returns BRG_OK if it was armed (its message will not be
//  sent, or, if periodic, not again), BRG_ENOTFOUND if it already fired (one-
//  shot), was cancelled, or never existed. Thread: any.
BRG_EXPORT int brg_timer_cancel(brg_system_t *sys, brg_timer_id_t id);

#endif
