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

//  Read n unsigned integers from a reply tagged `tag` (the counters replies
//  of the ready-made actors). BRG_OK, BRG_ETYPE (another tag) or BRG_EBADMSG.
static inline int
brg__actors_read_uints(const brg_msg_t *reply, const char *tag, uint64_t *fields, size_t n)
{
    if (!brg_msg_is(reply, tag))
        return BRG_ETYPE;
    size_t pos = 0;
    for (size_t k = 0; k < n; k++) {
        int rc = brg_msg_read_uint(reply, &pos, &fields[k]);
        if (rc != BRG_OK)
            return rc == BRG_ENODATA ? BRG_EBADMSG : rc;
    }
    return BRG_OK;
}

//  Ask `to` with `request` (taken) from a thread that is not a worker and
//  hand the reply to read(reply, out). Returns brg_system_ask's error,
//  BRG_ENOMEM for a NULL request, or the reader's.
static inline int
brg__actors_ask_read(brg_system_t *sys, brg_ref_t to, brg_msg_t *request, int timeout_ms,
                     int (*read)(const brg_msg_t *, void *), void *out)
{
    if (!request)
        return BRG_ENOMEM;
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask(sys, to, &request, timeout_ms, &reply);
    if (rc == BRG_OK)
        rc = read(reply, out);
    brg_msg_destroy(&reply);
    return rc;
}

#endif
