//  kinds - the behaviours brigade-node can start from its config file, by
//  kind name: one small table of built-in kinds (kinds.c); any other kind
//  comes from a plugin, through the runtime's registry (brigade/kind.h).
#ifndef BRG_BRIGADE_NODE_KINDS_H
#define BRG_BRIGADE_NODE_KINDS_H

#include <brigade.h>
#include <stddef.h>
#include <stdint.h>

//  The type of one argument a kind takes from the config file's "args".
typedef enum { BRG__ARG_INT = 1, BRG__ARG_BOOL = 2, BRG__ARG_STRING = 3 } brg__arg_type_t;

//  One argument: its key in "args", its type, and for an int the range.
typedef struct brg__kind_arg {
    const char *key;
    brg__arg_type_t type;
    int64_t min, max;
} brg__kind_arg_t;

//  A kind. Its actor is spawned with behaviour, state_size and flags, and
//  init (if not NULL) gets the child's arguments as init_arg: a
//  const brg_msg_t * whose payload is one msgpack map of the keys given in
//  the config (validated against args), the shape a dynamic child's start
//  arguments have.
typedef struct brg__kind {
    const char *name;            // the config's "kind"
    const char *about;           // one line for --help and errors
    brg_behaviour_fn behaviour;  // required
    size_t state_size;           // zeroed state, or 0
    unsigned flags;              // BRG_SPAWN_... (BRG_SPAWN_LINK is added)
    brg_init_fn init;            // optional; init_arg is the args message
    const brg__kind_arg_t *args; // accepted arguments, ended by {NULL}
} brg__kind_t;

//  A child of the config's tree that runs a kind: the supervisor's spec
//  arg for brg__kind_start. args is owned by the launcher's config and
//  outlives the supervisors.
typedef struct brg__kind_child {
    const brg__kind_t *kind; // a built-in kind, or NULL for
    const char *plugin_kind; // the name of a kind a plugin registers
    brg_msg_t *args;
} brg__kind_child_t;

//  The start function (brg_child_start_fn) of every kind child: arg is a
//  brg__kind_child_t *. Spawns the kind linked to the supervisor.
int brg__kind_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child);

//  The kind called name, or NULL.
const brg__kind_t *brg__kind_find(const char *name);

//  The i-th kind of the table, or NULL past the end (for listings).
const brg__kind_t *brg__kind_at(size_t i);

//  Read the int (or bool) argument `key` of an args message, made as the
//  comment on brg__kind_t says; *out keeps its value when key is absent.
//  BRG_OK, or BRG_EBADMSG / BRG_ETYPE for a malformed message.
int brg__kind_arg_int(const brg_msg_t *args, const char *key, int64_t *out);
int brg__kind_arg_bool(const brg_msg_t *args, const char *key, bool *out);

#endif
