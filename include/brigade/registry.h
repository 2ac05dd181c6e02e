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

//  Names on any node: `node` is a node ref (id 0; brg_node_find, or the node
//  part of any ref with id set to 0); this node's own works too. The name is
//  resolved on that node when the message arrives: an unknown name is a dead
//  letter there, and an ask gets BRG_ENOACTOR from it. Without a transport a
//  remote name is a dead letter BRG_DEAD_REMOTE here. Same ownership,
//  threads and errors as brg_send, brg_ask and brg_system_ask (a name of
//  this node that is not registered: BRG_ENOACTOR at once, a dead letter),
//  plus BRG_EINVAL for a NULL, empty or too long name (nothing sent); the
//  reply's sender is the named actor's ref.
BRG_EXPORT int brg_send_named_at(brg_ctx_t *ctx, brg_ref_t node, const char *name,
                                 brg_msg_t **msg_p);
BRG_EXPORT int brg_ask_named_at(brg_ctx_t *ctx, brg_ref_t node, const char *name, brg_msg_t **msg_p,
                                int timeout_ms, brg_reply_fn fn, void *arg);
BRG_EXPORT int brg_system_ask_named_at(brg_system_t *sys, brg_ref_t node, const char *name,
                                       brg_msg_t **msg_p, int timeout_ms, brg_msg_t **reply_p);

#endif
