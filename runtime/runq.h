//  runq - a worker's local run queue: a bounded FIFO ring of runnable actors;
//  the owner pushes and pops, other workers steal half.
#ifndef BRG_RUNTIME_RUNQ_H
#define BRG_RUNTIME_RUNQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

//  Synchronization (X = caller must ensure mutual exclusion):
//                  push    pop     steal_into   len
//    push (owner)   X       X         -          -
//    pop (owner)    X       X         -          -
//    steal (any)    -       -         -          -
//  (steal_one is a steal of one entry: the same row as steal_into.)
//  push and pop run only on the owning worker; any worker may steal at any
//  time. Head is advanced by CAS (owner pop and thieves compete for it);
//  tail is written only by the owner.

#define BRG__RUNQ_CAP 256u

typedef struct brg__actor brg__actor_t;

typedef struct brg__runq {
    _Atomic uint32_t head; // next slot to pop/steal; CAS by owner and thieves
    char pad0[60];         // keep head and tail on separate cache lines
    _Atomic uint32_t tail; // next slot to fill; stored by the owner only
    char pad1[60];
    _Atomic(brg__actor_t *) buf[BRG__RUNQ_CAP]; // ring; entries read by thieves, hence atomic
} brg__runq_t;

void brg__runq_init(brg__runq_t *self);

//  Append actor. Returns false (and changes nothing) when the ring is full;
//  the caller then moves work to the shared inject queue. Thread: owner.
bool brg__runq_push(brg__runq_t *self, brg__actor_t *actor);

//  Remove and return the oldest actor, or NULL. Thread: owner.
brg__actor_t *brg__runq_pop(brg__runq_t *self);

//  Move up to half of victim's actors into self (which must be empty) and
//  return one of them to run now, or NULL if victim was empty.
//  Thread: self's owner; victim is another worker's queue.
brg__actor_t *brg__runq_steal_into(brg__runq_t *self, brg__runq_t *victim);

//  Take the oldest actor of victim's queue, or NULL if it is empty (help-along
//  takes one actor to run nested, without moving half of a ring).
//  Thread: any worker but victim's owner.
brg__actor_t *brg__runq_steal_one(brg__runq_t *victim);

//  Pop up to max actors into out[] for the inject queue when the ring is
//  full; returns how many. Thread: owner.
uint32_t brg__runq_pop_batch(brg__runq_t *self, brg__actor_t **out, uint32_t max);

//  Approximate number of queued actors (exact for the owner). Thread: any.
uint32_t brg__runq_len(brg__runq_t *self);

#endif
