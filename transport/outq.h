//  outq - the node's outbound queue: many threads hand items to the I/O
//  thread without a lock and without a syscall per item (internal).
//
//  An intrusive MPSC stack with a doorbell, the mailbox's design (ARCHITECTURE
//  section 5) with an eventfd instead of a run queue: head is NULL when the
//  consumer is idle (it sleeps, or is about to, in zmq_poll on the eventfd),
//  RUNNING while it works and nothing new came, else the stack of items
//  pushed since its last grab (newest first). The producer whose CAS replaces
//  NULL rings the eventfd; every other push is one CAS and nothing else.
//
//  Synchronization (X = caller must ensure mutual exclusion):
//                      push   grab   try_idle
//    push (any)          -      -       -
//    grab (consumer)     -      X       X
//    try_idle (consumer) -      X       X
//  Order: the pushes of one thread are grabbed in the order made; pushes of
//  different threads in the order their CASes succeeded (one word, so a
//  total order), which keeps per-sender FIFO when an actor moves between
//  workers (its pushes are ordered by the hand-off of the actor itself).
#ifndef BRG_TRANSPORT_OUTQ_H
#define BRG_TRANSPORT_OUTQ_H

#include <stdatomic.h>
#include <stdbool.h>

//  The link an item embeds (first member, or anywhere and container_of).
typedef struct brg__outq_node {
    struct brg__outq_node *next;
} brg__outq_node_t;

typedef struct brg__outq {
    _Atomic(brg__outq_node_t *) head; // NULL idle, RUNNING busy, or a stack
    int efd;                          // the doorbell (eventfd, non-blocking)
} brg__outq_t;

//  Initialise an idle queue with its eventfd. BRG_OK or BRG_ESYS.
int brg__outq_init(brg__outq_t *self);

//  Close the eventfd. The queue must be empty (items are the caller's).
void brg__outq_fini(brg__outq_t *self);

//  Push node; rings the doorbell if the consumer was idle. Thread: any.
void brg__outq_push(brg__outq_t *self, brg__outq_node_t *node);

//  Take everything pushed so far, oldest first (NULL if none), and mark the
//  consumer busy. Thread: the consumer.
brg__outq_node_t *brg__outq_grab(brg__outq_t *self);

//  Mark the consumer idle if nothing was pushed since the last grab, and
//  return true (the consumer may then sleep on the eventfd); false if items
//  are waiting (grab them). Thread: the consumer.
bool brg__outq_try_idle(brg__outq_t *self);

//  Consume pending rings of the doorbell (after the fd polled readable).
//  Thread: the consumer.
void brg__outq_drain_bell(brg__outq_t *self);

#endif
