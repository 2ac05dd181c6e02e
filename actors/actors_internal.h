//  actors_internal - the private umbrella of actors/: the public API and the
//  system headers the folder's sources use. actors/ is built on the public
//  API only; it never includes runtime/ headers.
#ifndef BRG_ACTORS_ACTORS_INTERNAL_H
#define BRG_ACTORS_ACTORS_INTERNAL_H

#include <brigade.h>

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Spawn a ready-made actor (router, limiter) that owns `state`: linked to the
//  calling actor when ctx is not NULL, so it ends with its parent, else as a
//  root of sys. On error the state was never handed over: it is destroyed
//  here. Returns as brg_spawn.
static inline int
brg__actors_spawn(brg_system_t *sys, brg_ctx_t *ctx, brg_behaviour_fn fn, void *state,
                  brg_state_destroy_fn destroy, brg_init_fn init, const char *name, brg_ref_t *ref)
{
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = state;
    so.state_destroy = destroy;
    so.init = init;
    so.name = name;
    int rc;
    if (ctx) {
        so.flags = BRG_SPAWN_LINK;
        rc = brg_spawn(ctx, fn, &so, ref);
    } else {
        rc = brg_system_spawn(sys, fn, &so, ref);
    }
    if (rc != BRG_OK)
        destroy(state);
    return rc;
}

#endif
