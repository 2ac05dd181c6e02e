//  promise - deferred replies (brigade/promise.h)
//
//  Design notes.
//  A promise is a brg_msg_dup of the request (it keeps sender and corr,
//  which is all brg_reply_to needs) plus its owner actor, on a doubly
//  linked list hung from the owner's ext (ext->promises). Every operation
//  runs on the owner's thread, so the list needs no lock. When the owner
//  dies, s_die (actor.c) calls brg__promises_on_death before the exit
//  signals go out: each unkept promise's asker gets BRG_ECLOSED and the
//  promise is detached (owner NULL), so a later deliver, fail or drop by
//  whoever still holds it (often the state destructor, which runs after)
//  sends nothing. Nothing here touches the send path: a promise's reply is
//  an ordinary brg_reply_to.
#include "runtime_internal.h"

#include "brigade/promise.h"

struct brg_promise {
    brg_msg_t *request;  // the saved request (sender, corr, payload)
    brg__actor_t *owner; // NULL once its actor died (detached)
    brg_promise_t *prev; // the owner's list of unkept promises
    brg_promise_t *next;
};

static void
s_unlink(brg_promise_t *p)
{
    if (!p->owner)
        return;
    if (p->prev)
        p->prev->next = p->next;
    else
        p->owner->ext->promises = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void
s_free(brg_promise_t *p)
{
    s_unlink(p);
    brg_msg_destroy(&p->request);
    free(p);
}

void
brg__promises_on_death(brg__actor_t *actor)
{
    brg_ctx_t ctx = {.actor = actor, .msg = NULL};
    brg_promise_t *p = actor->ext->promises;
    actor->ext->promises = NULL;
    while (p) {
        brg_promise_t *next = p->next;
        p->prev = p->next = NULL;
        p->owner = NULL;
        if (p->request->corr)
            brg_reply_error_to(&ctx, p->request, BRG_ECLOSED);
        p = next;
    }
}

int
brg_promise_take(brg_ctx_t *ctx, brg_promise_t **promise_p)
{
    assert(ctx);
    assert(promise_p);
    *promise_p = NULL;
    // In a reply callback the current message is the reply: not a request.
    if (!ctx->msg || ctx->msg->kind != BRG__MSG_USER || brg_ref_is_none(ctx->msg->sender))
        return BRG_EINVAL;
    brg__actor_ext_t *ext = brg__actor_ext(ctx->actor);
    brg_promise_t *p = calloc(1, sizeof(*p));
    if (!ext || !p || !(p->request = brg_msg_dup(ctx->msg))) {
        free(p);
        return BRG_ENOMEM;
    }
    p->owner = ctx->actor;
    p->next = ext->promises;
    if (p->next)
        p->next->prev = p;
    ext->promises = p;
    *promise_p = p;
    return BRG_OK;
}

int
brg_promise_deliver(brg_ctx_t *ctx, brg_promise_t **promise_p, brg_msg_t **reply_p)
{
    assert(ctx);
    assert(promise_p && *promise_p);
    assert(reply_p && *reply_p);
    brg_promise_t *p = *promise_p;
    if (p->owner && p->owner != ctx->actor) {
        brg_msg_destroy(reply_p);
        return BRG_EINVAL;
    }
    *promise_p = NULL;
    int rc;
    if (!p->owner) {
        brg_msg_destroy(reply_p);
        rc = BRG_ECLOSED;
    } else {
        rc = brg_reply_to(ctx, p->request, reply_p);
    }
    s_free(p);
    return rc;
}

int
brg_promise_fail(brg_ctx_t *ctx, brg_promise_t **promise_p, int status)
{
    assert(ctx);
    assert(promise_p && *promise_p);
    assert(status < 0);
    brg_promise_t *p = *promise_p;
    if (p->owner && p->owner != ctx->actor)
        return BRG_EINVAL;
    *promise_p = NULL;
    int rc = p->owner ? brg_reply_error_to(ctx, p->request, status) : BRG_ECLOSED;
    s_free(p);
    return rc;
}

void
brg_promise_drop(brg_promise_t **promise_p)
{
    assert(promise_p);
    brg_promise_t *p = *promise_p;
    if (!p)
        return;
    *promise_p = NULL;
    if (p->owner && p->request->corr) {
        // The answer belongs to the request's trace, as brg_reply_to's would.
        brg_ctx_t ctx = {
            .actor = p->owner, .msg = p->request, .trace_flags = p->request->trace_flags};
        brg_reply_error_to(&ctx, p->request, BRG_EBROKEN);
    }
    s_free(p);
}

bool
brg_promise_is_live(const brg_promise_t *promise)
{
    assert(promise);
    return promise->owner != NULL;
}

const brg_msg_t *
brg_promise_request(const brg_promise_t *promise)
{
    assert(promise);
    return promise->request;
}
