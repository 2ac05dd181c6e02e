//  gather - scatter-gather: one request to N actors, every reply or the
//  deadline, whichever comes first.
//
//  brg_gather sends a copy of one request to each target as an ask and calls
//  done once, in the asking actor, when every part is settled: answered
//  (BRG_OK and the reply), answered with an error (the replier's
//  brg_reply_error status), dead (BRG_ENOACTOR) or silent until the deadline
//  (BRG_ETIMEDOUT). All parts share one deadline, so a failed or slow
//  participant never holds up the others' results for longer than
//  timeout_ms, and never stalls the asking actor: it keeps handling messages
//  while the gather is open.
//
//  The result is opaque; read it with the accessors below, by part index
//  (the index of the target in the array given to brg_gather).
//
//  By name: brg_gather_named and brg_system_gather_named take registered
//  names instead of refs, resolved (brg_whereis) when the requests go out;
//  an unknown name settles its part at once with BRG_ENOTFOUND (its target
//  is BRG_REF_NONE) and the other parts go on.
//
//  Cancel at the deadline: a part still open when the deadline passes is
//  settled BRG_ETIMEDOUT and its target is sent a cancel for its request
//  (BRG_TAG_CANCEL, brigade/cancel.h), so a worker that honours cancels
//  abandons the work instead of finishing it for nobody.
//
//  brg_system_gather is the same from a thread outside the system; it blocks.
#ifndef BRG_GATHER_H
#define BRG_GATHER_H

#include <stddef.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  The settled parts of one gather. Borrowed: valid until done returns.
typedef struct brg_gather_result brg_gather_result_t;

//  Called exactly once per successful brg_gather, on the asking actor's
//  thread, in its context (as a reply callback: brg_reply answers the reply
//  being handled, not an earlier request; use brg_reply_to for that). res and
//  the replies in it are borrowed until done returns; keep a reply with
//  brg_msg_dup. A negative return fails the asking actor, as a behaviour's
//  would.
typedef int (*brg_gather_fn)(brg_ctx_t *ctx, const brg_gather_result_t *res, void *arg);

//  Send a copy of *request_p to each of targets[0 .. n) as an ask, and call
//  done(ctx, res, arg) once all n parts are settled or timeout_ms (>= 0)
//  has passed, whichever comes first. targets is copied; the same ref may
//  appear twice (it gets two requests). Each target sees this actor as the
//  sender and answers with brg_reply or brg_reply_error; a late answer is a
//  counted dead letter (BRG_DEAD_LATE_REPLY).
//  Returns BRG_OK when at least one request went out: done will come. A
//  target that is known dead, or whose copy could not be made, is settled at
//  once with BRG_ENOACTOR or BRG_ENOMEM and reported in done like the
//  others. Errors (done never comes): BRG_EINVAL (n == 0), BRG_ENOMEM (no
//  memory for the record), BRG_ENOACTOR (no request could go out: every
//  target is dead).
//  Memory: the gather's record (with the replies received so far) is freed
//  after done returns. If the asking actor stops before that (also at system
//  destroy), done still runs once, while the actor stops, with the parts that
//  had not settled marked BRG_ECLOSED (see brg_reply_fn); release arg there.
//  Takes ownership of *request_p and sets it to NULL.
BRG_EXPORT int brg_gather(brg_ctx_t *ctx, const brg_ref_t *targets, size_t n, brg_msg_t **request_p,
                          int timeout_ms, brg_gather_fn done, void *arg);

//  brg_gather by registered names: names[i] is looked up when the requests
//  go out; an unknown (or NULL) name is part i's BRG_ENOTFOUND, settled at
//  once, not a failure of the gather. Errors as brg_gather; when no request
//  can go out at all (every name unknown or every target dead), the first
//  part's status (BRG_ENOTFOUND, BRG_ENOACTOR) and done never comes. names
//  and the strings are not kept after the call.
BRG_EXPORT int brg_gather_named(brg_ctx_t *ctx, const char *const *names, size_t n,
                                brg_msg_t **request_p, int timeout_ms, brg_gather_fn done,
                                void *arg);

//  The same from a thread outside the system, blocking. A short-lived helper
//  actor runs brg_gather for the caller, so every target gets its request at
//  once and all share one deadline; the helper copies the results out and
//  stops. On return statuses[i] is the status of part i and replies[i] its
//  reply (NULL unless statuses[i] is BRG_OK): Caller owns each returned
//  message and must destroy it. Returns the number of parts answered with
//  BRG_OK (>= 0), or: BRG_EINVAL (n == 0), BRG_ENOMEM, BRG_ECLOSED (the
//  system is shutting down), BRG_ETIMEDOUT (the helper did not finish within
//  timeout_ms plus a grace of BRG_GATHER_GRACE_MS: an overloaded system; the
//  arrays are then all BRG_ETIMEDOUT / NULL), BRG_EDEADLK (called on one of
//  the system's own threads, in every build: nothing is sent, the arrays are
//  all BRG_EDEADLK / NULL). Every target dead is not an
//  error: it returns 0 with every status BRG_ENOACTOR.
//  In deterministic mode it runs the system until idle and, if parts are
//  still open, moves virtual time forward by timeout_ms (brg_system_advance),
//  so the deadline passes at once.
//  Takes ownership of *request_p and sets it to NULL.
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once); blocks up to
//  timeout_ms plus the grace.
BRG_EXPORT int brg_system_gather(brg_system_t *sys, const brg_ref_t *targets, size_t n,
                                 brg_msg_t **request_p, int timeout_ms, int *statuses,
                                 brg_msg_t **replies);

//  brg_system_gather by registered names (as brg_gather_named): an unknown
//  name is statuses[i] = BRG_ENOTFOUND; every name unknown returns 0.
//  Thread: as brg_system_gather.
BRG_EXPORT int brg_system_gather_named(brg_system_t *sys, const char *const *names, size_t n,
                                       brg_msg_t **request_p, int timeout_ms, int *statuses,
                                       brg_msg_t **replies);

//  How long brg_system_gather waits past the deadline for its helper.
#define BRG_GATHER_GRACE_MS 1000

//  ---------------------------------------------------------------------------
//  Reading a result (inside done). i must be < brg_gather_result_count (assert).

//  The number of parts (n given to brg_gather).
BRG_EXPORT size_t brg_gather_result_count(const brg_gather_result_t *res);

//  The number of parts answered with BRG_OK.
BRG_EXPORT size_t brg_gather_result_ok_count(const brg_gather_result_t *res);

//  The target of part i.
BRG_EXPORT brg_ref_t brg_gather_result_target(const brg_gather_result_t *res, size_t i);

//  The status of part i: BRG_OK, BRG_ETIMEDOUT, BRG_ENOACTOR, BRG_ENOMEM,
//  BRG_ENOTFOUND (an unknown name) or the replier's error.
BRG_EXPORT int brg_gather_result_status(const brg_gather_result_t *res, size_t i);

//  The reply of part i, or NULL unless its status is BRG_OK.
//  Borrowed: valid until done returns.
BRG_EXPORT const brg_msg_t *brg_gather_result_reply(const brg_gather_result_t *res, size_t i);

#endif
