//  registry - the name table (internal view).
#ifndef BRG_RUNTIME_REGISTRY_H
#define BRG_RUNTIME_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "brigade/registry.h"

typedef struct brg__registry brg__registry_t;
typedef struct brg__actor brg__actor_t;

brg__registry_t *brg__registry_new(void);
void brg__registry_destroy(brg__registry_t **self_p);

//  A dying actor: close its mailbox (head = DEAD; returns the stack it held)
//  and remove its name, if it has one, in one step under the registry lock,
//  so that no brg_register can bind it again and whoever learns it is dead
//  finds its name free (registry.c). Thread: the dying actor's.
brg_msg_t *brg__registry_close(brg_system_t *sys, brg__actor_t *actor);

//  Copy the name of the live actor id into out (escaping nothing) and return
//  true, or return false if it has none. Thread: any (takes the lock).
bool brg__registry_name_of(brg_system_t *sys, uint64_t id, char out[BRG_NAME_MAX + 1]);

//  Spawn with a name: reserve it (BRG_OK, BRG_EEXIST, BRG_ENOMEM) before the
//  actor is published; then fill in the actor's ref, or cancel the reservation
//  if the spawn failed. A reserved name is not found by brg_whereis.
int brg__registry_reserve(brg_system_t *sys, const char *name);
void brg__registry_fill(brg_system_t *sys, const char *name, brg_ref_t ref);
void brg__registry_cancel(brg_system_t *sys, const char *name);

#endif
