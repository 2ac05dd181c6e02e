//  outq - the node's outbound queue (MPSC stack with an eventfd doorbell).
//
//  Design notes.
//  The I/O thread must learn about new outbound messages without a worker
//  paying a syscall per message, and must be able to sleep in zmq_poll.
//  zmq_poll can watch a plain fd, so the doorbell is an eventfd that only
//  the idle -> busy transition rings: head == NULL says "the consumer may be
//  asleep", so the producer that moves it away from NULL writes the fd, and
//  the consumer only goes back to NULL (try_idle) with a CAS from RUNNING,
//  which fails if anything was pushed since its grab. So a push is never
//  left unseen: either the consumer's CAS fails (it grabs again) or the
//  push saw NULL (it rang, the poll wakes). Spurious rings are harmless.
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "brigade/error.h"
#include "outq.h"

#define S_RUNNING ((brg__outq_node_t *)(uintptr_t)1)

int
brg__outq_init(brg__outq_t *self)
{
    atomic_init(&self->head, NULL);
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return self->efd < 0 ? BRG_ESYS : BRG_OK;
}

void
brg__outq_fini(brg__outq_t *self)
{
    if (self->efd >= 0)
        close(self->efd);
    self->efd = -1;
}

void
brg__outq_push(brg__outq_t *self, brg__outq_node_t *node)
{
    // Relaxed load: only a guess for the CAS, which checks it.
    brg__outq_node_t *old = atomic_load_explicit(&self->head, memory_order_relaxed);
    do {
        node->next = old;
        // Release: publishes the item (and the message it carries) before it
        // is reachable; pairs with the acquire exchange in brg__outq_grab.
    } while (!atomic_compare_exchange_weak_explicit(&self->head, &old, node, memory_order_release,
                                                    memory_order_relaxed));
    if (old == NULL) {
        uint64_t one = 1;
        // The only failure that matters is none: EAGAIN means the counter is
        // at its maximum, so the fd is readable anyway.
        ssize_t rc = write(self->efd, &one, sizeof one);
        (void)rc;
    }
}

brg__outq_node_t *
brg__outq_grab(brg__outq_t *self)
{
    // Acquire: sees every item's contents; pairs with the release CAS of
    // brg__outq_push. Release: nothing to publish, but the CAS in try_idle
    // compares against this RUNNING value.
    brg__outq_node_t *top = atomic_exchange_explicit(&self->head, S_RUNNING, memory_order_acq_rel);
    brg__outq_node_t *fifo = NULL;
    while (top != NULL && top != S_RUNNING) {
        brg__outq_node_t *next = top->next;
        top->next = fifo;
        fifo = top;
        top = next;
    }
    return fifo;
}

bool
brg__outq_try_idle(brg__outq_t *self)
{
    brg__outq_node_t *expect = S_RUNNING;
    // Relaxed: going idle publishes nothing; a failed CAS means a push came,
    // which the next grab's acquire exchange picks up.
    return atomic_compare_exchange_strong_explicit(&self->head, &expect, NULL, memory_order_relaxed,
                                                   memory_order_relaxed);
}

void
brg__outq_drain_bell(brg__outq_t *self)
{
    uint64_t n;
    while (read(self->efd, &n, sizeof n) == (ssize_t)sizeof n)
        ;
}
