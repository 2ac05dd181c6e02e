//  inbox - an address owned by an outside thread (main(), a test, a C
//  callback's thread): send, ask and receive without writing a helper actor.
//  As CAF's scoped_actor or Akka's Inbox.
//
//  An inbox is a real address of its system: actors (local, or on other
//  nodes through the transport) send to its ref, reply to its asks, link to
//  it and monitor it. Its owner thread takes the messages out with
//  brg_inbox_receive (oldest first, optionally only those with a tag or
//  matching a predicate: the others stay queued, in order, for a later
//  receive, as Erlang's selective receive).
//
//  Threads. An inbox belongs to the thread that created it: every brg_inbox_
//  call on it runs on that thread, never two at once. That thread must not
//  be one of the system's own (a worker, blocking-pool or timer thread, a
//  deterministic step): brg_inbox_new, brg_inbox_ask and brg_inbox_receive
//  return BRG_EDEADLK there at once, in every build, as brg_system_ask does.
//
//  Links and monitors. An inbox always traps exits: an EXIT from a linked
//  actor, and an exit signal sent to the inbox (brg_exit, killed included:
//  an inbox cannot be killed, since no actor runs behind it), arrive as
//  BRG_TAG_EXIT messages (brg_msg_read_exit). A monitor it holds delivers
//  one BRG_TAG_DOWN message (brg_msg_read_down). Whoever links to or
//  monitors the inbox gets EXIT / DOWN with reason normal when it is
//  destroyed.
//
//  Lifetime. Destroy every inbox before its system: brg_system_destroy on
//  a thread that still holds an open inbox of that system returns
//  BRG_EBUSY and does nothing. An inbox of another thread makes destroy
//  wait until that thread destroys it; meanwhile its blocked receive or
//  ask returns BRG_ECLOSED at once (as do later ones), so the owner can
//  clean up. Messages still queued when the inbox is destroyed become
//  counted dead letters (BRG_DEAD_STOPPED); an ask among them is answered
//  with BRG_ENOACTOR at once.
//
//  Deterministic mode (cfg.deterministic): brg_inbox_ask and
//  brg_inbox_receive run the system until idle and then answer at once
//  (virtual time does not move; BRG_ETIMEDOUT if nothing came by then), as
//  brg_system_ask does.
//
//  Hot path: an inbox adds nothing to brg_send or to the mailbox; a send to
//  an inbox costs what a send to an idle actor costs, plus a mutex and a
//  condition-variable signal when it wakes a thread blocked in receive.
#ifndef BRG_INBOX_H
#define BRG_INBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

typedef struct brg_inbox brg_inbox_t;

//  Selective receive: true for a message to take now. msg is Borrowed for
//  the call; the function must not call brg_inbox_ functions on the inbox.
typedef bool (*brg_inbox_match_fn)(const brg_msg_t *msg, void *arg);

//  Create an inbox of sys into *inbox_p. Errors: BRG_EDEADLK (on one of
//  sys's own threads), BRG_ECLOSED (sys is being destroyed), BRG_ENOMEM,
//  BRG_EBUSY (max_actors reached). Caller owns the inbox and must destroy
//  it with brg_inbox_destroy before destroying sys. Thread: any thread that
//  is not one of sys's own; it becomes the inbox's owner.
BRG_EXPORT int brg_inbox_new(brg_system_t *sys, brg_inbox_t **inbox_p);

//  Close the inbox: whoever links to or monitors it gets EXIT / DOWN
//  normal, the monitors it holds are removed, queued messages become dead
//  letters (an ask among them is answered BRG_ENOACTOR), its ref is dead
//  from now on. Frees it and sets *self_p to NULL; accepts a pointer to
//  NULL. Thread: the owner.
BRG_EXPORT void brg_inbox_destroy(brg_inbox_t **self_p);

//  The inbox's address: give it to actors, put it in messages, send it to
//  other nodes. Thread: any (the value never changes).
BRG_EXPORT brg_ref_t brg_inbox_ref(const brg_inbox_t *self);

//  Send msg to `to` from the inbox (the receiver sees the inbox's ref as
//  sender, so its brg_reply comes back to this inbox). Errors as
//  brg_system_send. Never held back by backpressure. Takes ownership of
//  *msg_p and sets it to NULL. Thread: the owner.
BRG_EXPORT int brg_inbox_send(brg_inbox_t *self, brg_ref_t to, brg_msg_t **msg_p);

//  Ask from the inbox: send msg to `to` and wait up to timeout_ms (>= 0)
//  for its reply. Messages that arrive meanwhile stay queued for
//  brg_inbox_receive. On BRG_OK *reply_p holds the reply (sender = the
//  replier): Caller owns the returned message and must destroy it. Errors
//  as brg_system_ask: BRG_ETIMEDOUT (a later reply is a counted
//  late-reply dead letter), BRG_ENOACTOR, BRG_ENETWORK, BRG_EBUSY, the
//  replier's brg_reply_error status, BRG_ECLOSED (sys is being destroyed),
//  BRG_EINVAL (timeout_ms < 0), BRG_EDEADLK (on one of sys's own threads;
//  nothing sent). Takes ownership of *msg_p and sets it to NULL.
//  Thread: the owner; blocks up to timeout_ms.
BRG_EXPORT int brg_inbox_ask(brg_inbox_t *self, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms,
                             brg_msg_t **reply_p);

//  Take the oldest queued message whose tag is `tag` (NULL: any message),
//  waiting up to timeout_ms for one to come: 0 only looks, a negative
//  timeout waits without a deadline (until a message or destroy). On BRG_OK
//  *msg_p holds it: Caller owns the returned message and must destroy it.
//  It keeps its sender, and an ask made of the inbox can be answered with
//  brg_inbox_reply_to. Errors: BRG_ETIMEDOUT (nothing matching came),
//  BRG_ECLOSED (sys is being destroyed and nothing matching is queued),
//  BRG_EDEADLK (on one of sys's own threads). Thread: the owner; blocks.
BRG_EXPORT int brg_inbox_receive(brg_inbox_t *self, const char *tag, int timeout_ms,
                                 brg_msg_t **msg_p);

//  brg_inbox_receive with a predicate: the oldest queued message for which
//  match(msg, arg) is true. Each message is shown to match once per call.
BRG_EXPORT int brg_inbox_receive_if(brg_inbox_t *self, brg_inbox_match_fn match, void *arg,
                                    int timeout_ms, brg_msg_t **msg_p);

//  How many messages are queued in the inbox, not yet received (never
//  blocks). Thread: the owner.
BRG_EXPORT uint32_t brg_inbox_queued(brg_inbox_t *self);

//  Answer request, a message this inbox received (an ask made of it, or a
//  plain message with a sender), as brg_reply_to does for an actor. Takes
//  ownership of *msg_p and sets it to NULL; request stays the caller's.
//  BRG_ENOACTOR if request has no sender. Thread: the owner.
BRG_EXPORT int brg_inbox_reply_to(brg_inbox_t *self, const brg_msg_t *request, brg_msg_t **msg_p);

//  Answer a received ask with an error (negative status), as
//  brg_reply_error_to. BRG_EINVAL if request was not an ask. Thread: the owner.
BRG_EXPORT int brg_inbox_reply_error_to(brg_inbox_t *self, const brg_msg_t *request, int status);

//  Monitor target from the inbox: exactly one BRG_TAG_DOWN message comes,
//  as for brg_monitor. Thread: the owner.
BRG_EXPORT int brg_inbox_monitor(brg_inbox_t *self, brg_ref_t target, uint64_t *monitor);

//  Stop monitoring, as brg_demonitor. Thread: the owner.
BRG_EXPORT int brg_inbox_demonitor(brg_inbox_t *self, uint64_t monitor);

//  Link the inbox and `other`, as brg_link; the inbox traps exits, so
//  other's exit arrives as a BRG_TAG_EXIT message. Thread: the owner.
BRG_EXPORT int brg_inbox_link(brg_inbox_t *self, brg_ref_t other);

//  Remove the link, as brg_unlink. Thread: the owner.
BRG_EXPORT int brg_inbox_unlink(brg_inbox_t *self, brg_ref_t other);

#endif
