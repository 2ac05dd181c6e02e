//  registry - local names for actors.
//
//  A name is a short string bound to one live actor of this system; an actor
//  has at most one name. The name is released when the actor stops, so a
//  restarted actor can take it again. Thread: every function, any thread.
#ifndef BRG_REGISTRY_H
#define BRG_REGISTRY_H

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  Longest name, in bytes, without the NUL.
#define BRG_NAME_MAX 63

//  Bind name to ref. Errors: BRG_EINVAL (empty or too long name, or ref not of
//  this node), BRG_EEXIST (name taken, or the actor already has a name),
//  BRG_ENOACTOR (ref not alive).
BRG_EXPORT int brg_register(brg_system_t *sys, const char *name, brg_ref_t ref);

//  Remove the binding. BRG_ENOTFOUND if there is none.
BRG_EXPORT int brg_unregister(brg_system_t *sys, const char *name);

//  Look a name up. BRG_OK and *ref set, or BRG_ENOTFOUND (*ref untouched).
BRG_EXPORT int brg_whereis(brg_system_t *sys, const char *name, brg_ref_t *ref);

//  Send to a registered name: from a behaviour (sender = this actor).
//  BRG_ENOTFOUND (message is then a dead letter) or as brg_send. Takes
//  ownership of *msg_p and sets it to NULL.
BRG_EXPORT int brg_send_named(brg_ctx_t *ctx, const char *name, brg_msg_t **msg_p);

#endif
