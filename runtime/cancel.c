//  cancel - the cancel message of a given-up ask (brigade/cancel.h)
//
//  Design notes. A cancel is a plain user message; nothing in the send path
//  or the mailbox knows about it. brg_cancel_matches compares the cancel's
//  sender and id with the request's sender and ask correlation id (corr),
//  which a brg_msg_dup keeps. brg_cancel_pending runs on the actor's own
//  thread inside a behaviour: it grabs what producers pushed since the
//  activation last looked into the private FIFO (brg__mailbox_grab, the
//  step the activation loop itself makes between messages, so the order of
//  messages is unchanged) and walks the FIFO without taking anything out.
#include "runtime_internal.h"

#include "brigade/cancel.h"

int
brg_cancel(brg_ctx_t *ctx, brg_ref_t to, uint64_t ask_id)
{
    assert(ctx);
    if (ask_id == 0)
        return BRG_EINVAL;
    brg_msg_t *msg = brg_msg_new(BRG_TAG_CANCEL);
    if (!msg || brg_msg_add_uint(msg, ask_id) != BRG_OK) {
        brg_msg_destroy(&msg);
        return BRG_ENOMEM;
    }
    return brg_send(ctx, to, &msg);
}

//  The id a cancel carries, or 0 if msg is not a cancel.
static uint64_t
s_cancel_id(const brg_msg_t *msg)
{
    if (!brg_msg_is(msg, BRG_TAG_CANCEL))
        return 0;
    size_t pos = 0;
    uint64_t id = 0;
    if (brg_msg_read_uint(msg, &pos, &id) != BRG_OK)
        return 0;
    return id;
}

bool
brg_msg_is_cancel(const brg_msg_t *msg)
{
    assert(msg);
    return s_cancel_id(msg) != 0;
}

bool
brg_cancel_matches(const brg_msg_t *cancel, const brg_msg_t *request)
{
    assert(cancel && request);
    uint64_t id = s_cancel_id(cancel);
    return id != 0 && request->corr == id && !brg_ref_is_none(request->sender) &&
           brg_ref_eq(cancel->sender, request->sender);
}

bool
brg_cancel_pending(brg_ctx_t *ctx, const brg_msg_t *request)
{
    assert(ctx && request);
    brg__actor_t *actor = ctx->actor;
    if (!request->corr || (actor->mode & BRG__MODE_WAITER))
        return false;
    brg__mailbox_grab(actor);
    for (brg_msg_t *m = actor->user_head; m;
         m = atomic_load_explicit(&m->next, memory_order_relaxed))
        if (m->kind == BRG__MSG_USER && brg_cancel_matches(m, request))
            return true;
    return false;
}
