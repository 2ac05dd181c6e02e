//  brigade - an actor framework for C. Users include this one header.
//
//  Threads. Unless a function says otherwise:
//  - functions taking a brg_ctx_t * run only inside that actor's behaviour
//    (or its init or reply callback), on the thread that called it;
//  - functions taking a brg_system_t * or a brg_ref_t are safe from any thread;
//  - no function called from a behaviour blocks the worker thread; the few
//    that block (brg_system_ask, brg_system_await_actors, brg_system_destroy)
//    return BRG_EDEADLK at once on a thread of their own system (worker,
//    blocking pool, timer thread), in every build;
//  - a send from a behaviour may run another actor's behaviour on the same
//    thread before it returns (help-along: every 64 sends), so a behaviour
//    must not hold a lock across a send that another behaviour takes;
//  - a behaviour call that goes on sending (a flood: from its 65th send on)
//    may wait at a send while the actor it sends to is over half of
//    cfg.mailbox_high_water and draining, or while that actor's own worker
//    floods it too; no such wait outlasts 100 us without the receiver
//    draining (pacing: brigade/actor.h, brg_send).
//
//  Ownership of messages: a call taking brg_msg_t ** always takes the message
//  and sets the caller's pointer to NULL, success or failure; what cannot be
//  delivered becomes a counted dead letter. See brigade/msg.h.
//
//  Errors: int results, BRG_OK (0) or a negative BRG_E... code; see
//  brigade/error.h. If a call that would later deliver a reply, timeout or
//  callback returns an error, that reply, timeout or callback never arrives.
#ifndef BRIGADE_H
#define BRIGADE_H

#include "brigade/actor.h"
#include "brigade/agent.h"
#include "brigade/cancel.h"
#include "brigade/error.h"
#include "brigade/export.h"
#include "brigade/gather.h"
#include "brigade/http.h"
#include "brigade/inbox.h"
#include "brigade/kind.h"
#include "brigade/limiter.h"
#include "brigade/link.h"
#include "brigade/log.h"
#include "brigade/model.h"
#include "brigade/msg.h"
#include "brigade/node.h"
#include "brigade/observe.h"
#include "brigade/proc.h"
#include "brigade/promise.h"
#include "brigade/ref.h"
#include "brigade/registry.h"
#include "brigade/router.h"
#include "brigade/supervisor.h"
#include "brigade/system.h"
#include "brigade/text.h"
#include "brigade/timer.h"
#include "brigade/tool.h"
#include "brigade/trace.h"
#include "brigade/version.h"

#endif
