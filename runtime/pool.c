//  pool - the blocking pool: a fixed set of threads that run the actors
//  spawned with BRG_SPAWN_BLOCKING
//
//  Design notes.
//
//  A behaviour that blocks (a slow system call, a library that waits) would
//  hold a worker and every actor queued behind it. Actors spawned with
//  BRG_SPAWN_BLOCKING are therefore scheduled here instead (brg__sched_schedule
//  sends them to brg__pool_push): a fixed pool of cfg.blocking_threads
//  threads with one FIFO under pool_lock, which also guards pool_shutdown.
//  The pool is bounded: with all its threads busy, further blocking actors
//  wait in its queue. A pool thread takes one actor, runs one batch of it,
//  and puts it back at the tail if it still has messages, so blocking
//  actors share the pool round-robin. No other lock is held while pool_lock
//  is taken, and none is taken under it.
//
//  A pool thread is not a worker: it passes no quiescent point, so it uses
//  other actors only through counted references (brg__actor_send), it takes
//  one around its actor's return to idle (brg__mailbox_go_idle), and what it
//  retires goes to the shared limbo (reclaim.c). It counts as the system's
//  own thread (brg__sched_on_thread_of), runs activations for backpressure
//  (brg__actor_bp_thread) and has its own watchdog slot.
#include "runtime_internal.h"

void
brg__pool_push(brg__sched_t *self, brg__actor_t *actor)
{
    pthread_mutex_lock(&self->pool_lock);
    actor->next = NULL;
    if (self->pool_tail)
        self->pool_tail->next = actor;
    else
        self->pool_head = actor;
    self->pool_tail = actor;
    pthread_cond_signal(&self->pool_cond);
    pthread_mutex_unlock(&self->pool_lock);
}

void
brg__pool_push_list(brg__sched_t *self, brg__actor_t *first, brg__actor_t *last)
{
    // Blocking actors are rare; each pool thread takes one at a time.
    pthread_mutex_lock(&self->pool_lock);
    if (self->pool_tail)
        self->pool_tail->next = first;
    else
        self->pool_head = first;
    self->pool_tail = last;
    pthread_cond_broadcast(&self->pool_cond);
    pthread_mutex_unlock(&self->pool_lock);
}

typedef struct {
    brg__sched_t *sched;
    brg__watch_t *watch;
} s_pool_arg_t;

static void *
s_pool_main(void *arg)
{
    s_pool_arg_t *pa = arg;
    brg__sched_t *self = pa->sched;
    pthread_setname_np(pthread_self(), "brg-blocking");
    brg__sched_thread_enter(self->sys);
    brg__actor_bp_thread(self->sys);
    if (self->sys->cfg.watchdog_ms > 0)
        brg__watch_tls = pa->watch;
    free(pa);
    for (;;) {
        pthread_mutex_lock(&self->pool_lock);
        while (!self->pool_head && !self->pool_shutdown)
            pthread_cond_wait(&self->pool_cond, &self->pool_lock);
        brg__actor_t *a = self->pool_head;
        if (!a) {
            pthread_mutex_unlock(&self->pool_lock);
            break;
        }
        self->pool_head = a->next;
        if (!self->pool_head)
            self->pool_tail = NULL;
        pthread_mutex_unlock(&self->pool_lock);
        if (brg__actor_run(a, self->batch))
            brg__sched_schedule(self, a); // back of the pool's queue
    }
    return NULL;
}

uint32_t
brg__pool_start(brg__sched_t *self)
{
    uint32_t pool_started = 0;
    for (; pool_started < self->n_pool; pool_started++) {
        s_pool_arg_t *pa = malloc(sizeof(*pa));
        if (!pa)
            break;
        pa->sched = self;
        pa->watch = &self->pool_watch[pool_started];
        if (pthread_create(&self->pool[pool_started], NULL, s_pool_main, pa) != 0) {
            free(pa);
            break;
        }
    }
    return pool_started;
}

void
brg__pool_stop(brg__sched_t *self, uint32_t started)
{
    pthread_mutex_lock(&self->pool_lock);
    self->pool_shutdown = true;
    pthread_cond_broadcast(&self->pool_cond);
    pthread_mutex_unlock(&self->pool_lock);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(self->pool[i], NULL);
}
