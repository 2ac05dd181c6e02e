//  link - links, monitors and exit signals (internal view: the hooks the
//  actor lifecycle calls).
#ifndef BRG_RUNTIME_LINK_H
#define BRG_RUNTIME_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "brigade/link.h"

typedef struct brg__links brg__links_t;
typedef struct brg__actor brg__actor_t;

//  What brg__link_handle decided.
enum {
    BRG__LINK_HANDLED = 0, // bookkeeping done; free the message
    BRG__LINK_DELIVER = 1, // hand the message to the behaviour as BRG_TAG_EXIT/BRG_TAG_DOWN
    BRG__LINK_DIE = 2      // the actor exits with *die
};

//  True for the internal kinds link.c handles (kill, link, unlink, monitor,
//  demonitor, exit, down).
bool brg__link_is_signal(const brg_msg_t *msg);

//  Apply one link signal to the running actor. Thread: the actor's.
int brg__link_handle(brg__actor_t *actor, brg_msg_t *msg, brg_exit_reason_t *die);

//  The actor is dying with reason: send EXIT to links, DOWN to watchers,
//  DEMONITOR to targets; free the sets. Thread: the actor's.
void brg__link_on_death(brg__actor_t *actor, const brg_exit_reason_t *reason);

//  A message found in a dead actor's mailbox: if it is a link signal, answer
//  it (noproc) and free it, returning true. Thread: the dying actor's.
bool brg__link_on_drain(brg__actor_t *actor, brg_msg_t *msg);

//  BRG_SPAWN_LINK / BRG_SPAWN_MONITOR bookkeeping on both ends, before the
//  child can run (its id is already set). Thread: the parent's.
int brg__link_spawned(brg__actor_t *parent, brg__actor_t *child, unsigned flags, uint64_t *monitor);

//  Answer a LINK or MONITOR request (msg) that will never reach target: an
//  EXIT (LINK) or DOWN (MONITOR, with its monitor id) from target, reason
//  kind (noproc, noconnection), to msg's sender. Returns false, doing
//  nothing, for any other kind. msg stays the caller's. Thread: any.
bool brg__link_answer(brg_system_t *sys, brg_ref_t target, const brg_msg_t *msg,
                      brg_exit_kind_t kind);

//  A link signal as the runtime builds it: EXIT (reason), DOWN (corr = the
//  monitor id, reason), LINK, UNLINK, MONITOR, DEMONITOR (corr, no reason)
//  from `from`. Returns NULL if out of memory. Thread: any.
brg_msg_t *brg__link_signal(int kind, brg_ref_t from, uint64_t corr,
                            const brg_exit_reason_t *reason);

//  Remote spawn (kind.c): wire a child spawned for `parent`, an actor of
//  another node, before the child can run: parent among its links (and a
//  LINK from the child to parent sent now) and/or (mon, parent) among its
//  watchers. Thread: the spawner, while the child is held (BRG__MODE_HOLD).
int brg__link_prewire(brg__actor_t *child, brg_ref_t parent, bool link, uint64_t mon);

void brg__links_free(brg__links_t **self_p);

//  Fill a reason (text may be NULL; it is truncated to BRG_EXIT_TEXT_MAX).
void brg__exit_reason_set(brg_exit_reason_t *reason, brg_exit_kind_t kind, int code,
                          const char *text);

#endif
