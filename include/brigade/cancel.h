//  cancel - telling the actor asked that its asker has given up, so slow
//  work (a model call, a long computation) is abandoned, not just ignored.
//
//  The protocol. A cancel is an ordinary plain message, tag
//  BRG_TAG_CANCEL, from the asker (its sender) to the actor it asked, whose
//  payload is the ask's id (an unsigned integer). An ask is named by its
//  asker's ref and that id, so a cancel can only ever match the request it
//  was meant for, also across nodes. It is advisory: the asker has already
//  stopped waiting (its callback ran with BRG_ETIMEDOUT), and whatever the
//  target answers afterwards is a counted late-reply dead letter.
//
//  Who sends cancels: brg_gather for each part still open when its deadline
//  passes, the limiter for a request to its target that passed
//  request_timeout_ms (and, asked to cancel a request of a caller, it drops
//  the request if still queued or passes the cancel on to its target if
//  sent), the router (a round-robin router forwards a caller's cancel to
//  every live worker; a least-busy one cancels its own ask to the worker,
//  also when request_timeout_ms passes), and any actor that asked with
//  brg_ask_id and calls brg_cancel.
//
//  What a worker does to honour it (a worker that ignores cancels is still
//  correct, only wasteful; unhandled, a cancel is a dead letter like any
//  other message):
//  - keep the request it works on (brg_msg_dup, or a promise,
//    brigade/promise.h) and handle BRG_TAG_CANCEL: when
//    brg_cancel_matches(cancel, request), stop the work (cancel its own
//    asks downstream with brg_cancel, drop the promise or the saved copy)
//    and do not reply;
//  - a worker that runs one long step per message (a blocking actor making
//    an HTTP call in chunks, a loop) checks between steps with
//    brg_cancel_pending(ctx, request), which looks into its mailbox without
//    taking anything out.
#ifndef BRG_CANCEL_H
#define BRG_CANCEL_H

#include <stdbool.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"

//  The tag of a cancel; payload: the ask's id (uint).
#define BRG_TAG_CANCEL "brg.cancel"

//  brg_ask, also giving the ask's id in *ask_id (on BRG_OK; 0 otherwise),
//  for a later brg_cancel. Everything else as brg_ask.
BRG_EXPORT int brg_ask_id(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms,
                          brg_reply_fn fn, void *arg, uint64_t *ask_id);

//  Tell `to` that this actor's ask ask_id is given up: sends the cancel
//  message (from this actor). Errors as brg_send, BRG_EINVAL for ask_id 0.
//  Sending it does not end the ask: its callback still runs once, as always.
BRG_EXPORT int brg_cancel(brg_ctx_t *ctx, brg_ref_t to, uint64_t ask_id);

//  True when msg is a cancel (BRG_TAG_CANCEL with an id).
BRG_EXPORT bool brg_msg_is_cancel(const brg_msg_t *msg);

//  True when cancel is a cancel of request: a message this actor received
//  (the current one, a brg_msg_dup of it, or a promise's, see
//  brg_promise_request) that was an ask from cancel's sender with the
//  cancelled id. Thread: any.
BRG_EXPORT bool brg_cancel_matches(const brg_msg_t *cancel, const brg_msg_t *request);

//  True when a cancel of request is waiting in this actor's mailbox: for a
//  behaviour in the middle of long work, between steps. Takes nothing out
//  (the cancel is still handled as a message later); it costs a walk over
//  the queued messages, so call it between steps, not per byte.
//  Thread: the actor's, in a behaviour.
BRG_EXPORT bool brg_cancel_pending(brg_ctx_t *ctx, const brg_msg_t *request);

#endif
