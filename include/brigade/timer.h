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

//  Delays and periods out of range (negative; a period of 0 for
//  brg_send_every) are refused with BRG_EINVAL in every build: the message is
//  freed, no timer is armed. A timer's message is a plain message (a copy of
//  an ask sent this way is no longer part of the ask).

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

//  Cancel a timer. Returns BRG_OK if it was armed, BRG_ENOTFOUND if it
//  already fired (one-shot), was cancelled, or never existed.
//  After BRG_OK, no message of the timer starts to be handled: a one-shot's
//  message is not sent; a periodic timer's ticks already sent (on their way,
//  or waiting in the target's mailbox) are dropped when the target comes to
//  them, before its behaviour sees them. Called from the target's own
//  behaviour, that means no tick ever reaches the behaviour again. Called
//  from another thread (or actor), a tick whose handling had already begun
//  when cancel returned finishes; none starts after.
//  Thread: any.
BRG_EXPORT int brg_timer_cancel(brg_system_t *sys, brg_timer_id_t id);

#endif
