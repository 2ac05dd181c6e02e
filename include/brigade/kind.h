//  kind - behaviours registered by name ("kinds"), spawned by that name,
//  here or (with BRG_KIND_REMOTE) from another node.
//
//  A kind is what a node agrees to run: a behaviour, its init, the size and
//  destructor of its state, its spawn flags. Another node never sends code
//  or a function pointer, only the kind's name and init arguments (a
//  msgpack payload), so it can only start what this node registered and
//  marked remote-spawnable (brg_spawn_remote, brigade/node.h;
//  docs/PROTOCOL.md section 20).
//
//  Kinds are registered once per system and stay until the system is
//  destroyed: there is no unregister (a name that could change meaning
//  under a peer's request would make a request mean something else).
#ifndef BRG_KIND_H
#define BRG_KIND_H

#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  Longest kind name, in bytes (a kind name travels like an actor name).
#define BRG_KIND_NAME_MAX 63

//  A kind's first activation: args is the init message (its payload is the
//  spawner's arguments; an empty payload when none were given).
//  Borrowed: valid until init returns. A negative return fails the actor
//  (reason failed, that code) as a behaviour's would: whoever the spawn
//  linked or monitored gets its EXIT or DOWN. Thread: as a behaviour.
typedef int (*brg_kind_init_fn)(brg_ctx_t *ctx, const brg_msg_t *args);

//  Kind flags.
enum {
    //  Other nodes may spawn this kind (brg_spawn_remote). Without it a
    //  remote request is refused with BRG_EPERM.
    BRG_KIND_REMOTE = 1u << 0,
};

//  What a kind is. Start from brg_kind_init(&kind). The registry copies it.
typedef struct brg_kind {
    brg_behaviour_fn behaviour;         // required
    brg_kind_init_fn init;              // optional first activation
    size_t state_size;                  // > 0: zeroed state of this size per actor
    brg_state_destroy_fn state_destroy; // optional, called on the state when it stops
    unsigned spawn_flags;               // BRG_SPAWN_BLOCKING, BRG_SPAWN_FAIL_UNHANDLED only
    unsigned flags;                     // BRG_KIND_...
} brg_kind_t;

BRG_EXPORT void brg_kind_init(brg_kind_t *kind);

//  Register kind under name (1..BRG_KIND_NAME_MAX bytes). Returns BRG_OK,
//  BRG_EEXIST (the name is registered), BRG_EINVAL (bad name, no
//  behaviour, spawn_flags other than BLOCKING / FAIL_UNHANDLED, unknown
//  flags), BRG_ENOMEM. On error nothing is registered. Thread: any.
BRG_EXPORT int brg_kind_register(brg_system_t *sys, const char *name, const brg_kind_t *kind);

//  Whether name is a registered kind, and its flags (flags may be NULL).
//  Thread: any.
BRG_EXPORT bool brg_kind_lookup(brg_system_t *sys, const char *name, unsigned *flags);

//  Options of a spawn by kind. Start from brg_kind_spawn_opts_init(&opts);
//  NULL options mean none.
typedef struct brg_kind_spawn_opts {
    unsigned flags;    // BRG_SPAWN_LINK, BRG_SPAWN_MONITOR (from an actor only)
    const char *name;  // register the child under this name at spawn
    uint64_t *monitor; // with BRG_SPAWN_MONITOR: receives the monitor id
} brg_kind_spawn_opts_t;

BRG_EXPORT void brg_kind_spawn_opts_init(brg_kind_spawn_opts_t *opts);

//  Spawn an actor of kind `kind` from inside a behaviour, as brg_spawn
//  would with the kind's behaviour, state and flags; BRG_SPAWN_LINK and
//  BRG_SPAWN_MONITOR in opts are set up atomically with the spawn. args:
//  the init arguments (its payload is copied; its tag is ignored), or NULL
//  for none. The child's label (brigade/observe.h, brgctl actors) is the
//  kind's name, here and when spawned from another node. On BRG_OK *ref
//  (if not NULL) is the child. Errors:
//  BRG_ENOTFOUND (no such kind), BRG_EINVAL (bad opts->flags), and those of
//  brg_spawn. On error nothing is spawned.
BRG_EXPORT int brg_spawn_kind(brg_ctx_t *ctx, const char *kind, const brg_msg_t *args,
                              const brg_kind_spawn_opts_t *opts, brg_ref_t *ref);

//  Spawn by kind from any thread (no link or monitor: BRG_EINVAL if opts
//  asks for one). Thread: any.
BRG_EXPORT int brg_system_spawn_kind(brg_system_t *sys, const char *kind, const brg_msg_t *args,
                                     const char *name, brg_ref_t *ref);

#endif
