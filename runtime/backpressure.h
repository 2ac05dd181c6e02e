//  backpressure - the table of senders suspended on congested receivers
//  (internal view; the senders' side is in mailbox.h).
#ifndef BRG_RUNTIME_BACKPRESSURE_H
#define BRG_RUNTIME_BACKPRESSURE_H

#include <stdbool.h>
#include <stdint.h>

#include "actor.h"
#include "sched.h"

//  Backpressure (backpressure.c design notes; mailbox.c, "Backpressure"). The
//  suspended senders of every receiver sit in one table under the bp lock.
//
//  Suspend sender on receiver, whose mailbox was found over the high-water
//  mark: it is left out of every run queue until brg__bp_wake or
//  brg__bp_resume hands it back. Refused (false, sender still ours) if
//  the receiver has drained to the low-water mark, died, is a brg_system_ask
//  reply box, or if sender has suspended senders of its own or a stop or kill
//  pending. true: the sender is no longer ours; the caller must not touch it.
//  Thread: the one running sender, after its behaviour call; receiver held
//  by a reference.
bool brg__bp_suspend(brg__sched_t *self, brg__actor_t *sender, brg__actor_t *receiver);

//  Suspend sender on a transport's gate (remote.h, "Busy peers"): under
//  the bp lock, wait(arg, gate) records a waiter on the gate and says
//  whether it is still congested; refused (false, sender still ours) if it
//  is not, if others wait for sender, or with a stop or kill pending.
//  Handed back by brg__bp_wake_id(BRG__BP_GATE_KEY(gate)) or brg__bp_resume.
//  Thread: the one running sender, after its behaviour call.
bool brg__bp_suspend_gate(brg__sched_t *self, brg__actor_t *sender, uint32_t gate,
                          bool (*wait)(void *arg, uint32_t gate), void *arg);

//  brg__bp_suspend_gate with the system's transport (remote.c): refused
//  without one, without ops->gate_wait, or once its shutdown has begun.
bool brg__remote_gate_suspend(brg_system_t *sys, brg__actor_t *actor, uint32_t gate);

//  Hand back every sender suspended on receiver, to the back of the calling
//  worker's ring (the receiver's worker: the senders run beside it).
//  Thread: the one running receiver (it drained to the low-water mark, or died).
void brg__bp_wake(brg__sched_t *self, brg__actor_t *receiver);

//  The same for a receiver that just went idle (no longer the caller's: its
//  memory is not touched, its WAITERS flag stays for its next owner).
//  Thread: any.
void brg__bp_wake_id(brg__sched_t *self, uint64_t receiver_id);

//  Hand back actor if it is suspended (a stop or kill was pushed to it).
//  Thread: any holding a reference to actor.
void brg__bp_resume(brg__sched_t *self, brg__actor_t *actor);

//  Test hooks: suspensions so far, and senders suspended now. Thread: any.
uint64_t brg__bp_suspensions(brg__sched_t *self);
uint32_t brg__bp_suspended(brg__sched_t *self);

#endif
