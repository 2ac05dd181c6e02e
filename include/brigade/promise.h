//  promise - deferred replies (CAF's response_promise): answer an ask later,
//  from another message or a reply callback, without a table of saved
//  requests.
//
//  Inside a behaviour, brg_promise_take makes a promise for the message
//  being handled. The behaviour returns without replying; later, from any
//  behaviour call or reply callback of the same actor, the promise is kept
//  exactly once: brg_promise_deliver (a reply) or brg_promise_fail (an
//  error status). Then it is freed. A promise may sit in the actor's state
//  as long as it likes.
//
//  A promise is never left hanging:
//  - dropped unkept (brg_promise_drop, while its actor lives): the asker is
//    answered at once with BRG_EBROKEN, so it never waits for its deadline;
//  - its actor stops (any reason) with the promise unkept: the asker is
//    answered BRG_ECLOSED while the actor stops, before its exit signals go
//    out. The promise object then stays valid (detached) until its holder
//    keeps or drops it: deliver and fail then answer BRG_ECLOSED and send
//    nothing; drop only frees it, so a state destructor may drop the
//    promises it holds.
//  For a plain message (not an ask) with a sender, deliver sends the reply
//  as a plain message to the sender; fail and drop send nothing.
//
//  Threads: every call runs on the owning actor's thread (its behaviour,
//  init, reply callbacks or state destructor). Promises are not shared
//  between actors (deliver with another actor's ctx is refused).
//  Hot path: nothing; a promise costs one brg_msg_dup and a small
//  allocation when taken, and one pointer check when its actor dies.
#ifndef BRG_PROMISE_H
#define BRG_PROMISE_H

#include <stdbool.h>

#include "actor.h"
#include "export.h"
#include "msg.h"

typedef struct brg_promise brg_promise_t;

//  Take a promise for the message being handled (ctx's current message).
//  On BRG_OK *promise_p holds it: Caller owns it and must keep it
//  (brg_promise_deliver / brg_promise_fail) or drop it (brg_promise_drop).
//  Errors: BRG_EINVAL (no current message: init or a reply callback; or
//  the message has no sender), BRG_ENOMEM. After taking it, do not also
//  brg_reply to the message: the promise's later reply would then be a
//  late-reply dead letter. Thread: the actor's, in a behaviour.
BRG_EXPORT int brg_promise_take(brg_ctx_t *ctx, brg_promise_t **promise_p);

//  Keep the promise with a reply: it goes to the request's sender, as the
//  answer to its ask if it was one (brg_reply_to). Takes ownership of
//  *reply_p and *promise_p and sets both to NULL, success or failure.
//  Returns what the send returned (BRG_OK, BRG_ENOACTOR: the asker is gone,
//  ...), BRG_ECLOSED when the promise's actor has stopped (already
//  answered BRG_ECLOSED; nothing sent), BRG_EINVAL when ctx is not the
//  promise's actor (nothing sent, the promise stays the caller's: *promise_p
//  is left unchanged). Thread: the promise's actor's.
BRG_EXPORT int brg_promise_deliver(brg_ctx_t *ctx, brg_promise_t **promise_p, brg_msg_t **reply_p);

//  Keep the promise with an error: the asker gets status (negative) and no
//  reply (brg_reply_error_to). For a plain message nothing is sent and
//  BRG_EINVAL returned. Frees the promise (sets *promise_p to NULL), except
//  for BRG_EINVAL because ctx is not its actor. BRG_ECLOSED as
//  brg_promise_deliver. Thread: the promise's actor's.
BRG_EXPORT int brg_promise_fail(brg_ctx_t *ctx, brg_promise_t **promise_p, int status);

//  Drop a promise: if it is still unkept and its actor lives, its asker is
//  answered BRG_EBROKEN at once. Frees it and sets *promise_p to NULL;
//  accepts a pointer to NULL. Thread: the promise's actor's (a behaviour,
//  a reply callback, or its state destructor).
BRG_EXPORT void brg_promise_drop(brg_promise_t **promise_p);

//  The request the promise answers (a copy of the message it was taken
//  for: tag, payload, sender), e.g. for brg_cancel_matches. Borrowed: valid
//  until the promise is kept or dropped. Thread: the promise's actor's.
BRG_EXPORT const brg_msg_t *brg_promise_request(const brg_promise_t *promise);

//  True while the promise's actor lives (the promise can still be kept).
//  Thread: the promise's actor's.
BRG_EXPORT bool brg_promise_is_live(const brg_promise_t *promise);

#endif
