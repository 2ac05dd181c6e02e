//  pool - the blocking pool's threads and queue (private to the scheduler's
//  files; see pool.c's design notes). Its fields are in struct brg__sched
//  (worker.h): pool, n_pool, pool_lock, pool_cond, pool_head, pool_tail,
//  pool_shutdown, pool_watch.
#ifndef BRG_RUNTIME_POOL_H
#define BRG_RUNTIME_POOL_H

#include <stdint.h>

#include "worker.h"

//  Queue a runnable blocking actor at the tail and wake one pool thread.
//  Thread: any (brg__sched_schedule).
void brg__pool_push(brg__sched_t *self, brg__actor_t *actor);

//  Queue the chain first..last (linked by next, last->next NULL), in order,
//  and wake every pool thread. Thread: any (brg__sched_schedule_list).
void brg__pool_push_list(brg__sched_t *self, brg__actor_t *first, brg__actor_t *last);

//  Start self->n_pool threads. Returns how many started (fewer if a thread
//  or its argument could not be had). Thread: brg__sched_new's.
uint32_t brg__pool_start(brg__sched_t *self);

//  Tell the pool threads to leave once the queue is empty (at destroy it
//  is), and join the first `started` of them. Thread: not a pool thread.
void brg__pool_stop(brg__sched_t *self, uint32_t started);

#endif
