//  observe - what an operator sees of a running system: one line per live
//  actor (its ref, registered name, label, mailbox length, messages
//  handled, run state), as Erlang's observer and recon show processes.
//  brgctl reads it through the node service (docs/OPERATIONS.md).
#ifndef BRG_OBSERVE_H
#define BRG_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "ref.h"
#include "registry.h"
#include "system.h"

#define BRG_LABEL_MAX 31 // bytes of brg_spawn_opts_t.label that are shown

//  Where an actor stands at the moment it was looked at.
typedef enum {
    BRG_ACTOR_WAITING = 0,   // idle: its mailbox is empty and it is not scheduled
    BRG_ACTOR_RUNNABLE = 1,  // scheduled or running: it has messages to handle
    BRG_ACTOR_SUSPENDED = 2, // held back by backpressure on a congested receiver
    BRG_ACTOR_EXITING = 3    // dead: its mailbox is closed, its slot not yet reclaimed
} brg_actor_state_t;

//  One actor (a plain value).
typedef struct brg_actor_info {
    brg_ref_t ref;
    char name[BRG_NAME_MAX + 1];   // registered name, "" if none
    char label[BRG_LABEL_MAX + 1]; // brg_spawn_opts_t.label, "" if none
    uint32_t mailbox;              // messages queued (approximate, see below)
    uint64_t processed;            // messages handled so far (system messages included)
    brg_actor_state_t state;
    bool blocking; // runs on the blocking pool (BRG_SPAWN_BLOCKING)
    bool hidden;   // the runtime's own (a node's service actor)
} brg_actor_info_t;

//  A snapshot of the live actors of sys, in slot order: writes at most max
//  entries to out and returns how many actors it saw (so a result > max
//  says the array was too small). It allocates nothing. The reply boxes of brg_system_ask are not
//  actors and are left out. Each actor is read under a counted slot reference (slots.h), so a
//  concurrent exit never frees it while it is read, and a concurrent spawn
//  or exit only decides whether that actor is in the snapshot. The fields
//  of one actor are read one by one without stopping it: mailbox and
//  state are a recent view, not an atomic one (mailbox counts what was
//  pushed since its owner last took its messages plus what its owner last
//  published as still queued). Cost: one pass over the slot table, one
//  lock of the registry per actor. Thread: any.
BRG_EXPORT int brg_system_actors(brg_system_t *sys, brg_actor_info_t *out, size_t max);

//  "waiting", "runnable", "suspended", "exiting" (or "unknown").
BRG_EXPORT const char *brg_actor_state_name(brg_actor_state_t state);

#endif
