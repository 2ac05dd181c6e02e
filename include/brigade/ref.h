//  ref - actor addresses: a value, copied freely, checked on every use.
#ifndef BRG_REF_H
#define BRG_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "export.h"

//  An actor address: the 128-bit UUID of the node (system) that hosts the actor
//  plus a local id. The local id packs a slot index (low 32 bits) and the
//  slot's generation (high 32 bits), so a lookup is one array index and an
//  address of a dead actor never reaches the slot's next occupant.
//  Refs are plain values: copy, compare and store them freely; they may outlive
//  the actor. Sending to a stale ref is not an error of the caller: the message
//  goes to dead letters (counted). Users never need to read the fields.
typedef struct brg_ref {
    uint64_t node_hi; // first 8 bytes of the node UUID, big-endian
    uint64_t node_lo; // last 8 bytes of the node UUID, big-endian
    uint64_t id;      // generation << 32 | slot; 0 means "no actor"
} brg_ref_t;

//  The null ref: "no actor" (sender of a message sent from outside any actor).
#define BRG_REF_NONE ((brg_ref_t){0, 0, 0})

//  Room for brg_ref_format's text, with the terminating NUL.
#define BRG_REF_STRLEN 64

//  True when ref is BRG_REF_NONE.
BRG_EXPORT bool brg_ref_is_none(brg_ref_t ref);

//  True when a and b name the same actor.
BRG_EXPORT bool brg_ref_eq(brg_ref_t a, brg_ref_t b);

//  Write "<node-uuid>/<slot>.<generation>" into buf (at most len bytes, NUL-
//  terminated). Returns the length written, or BRG_EINVAL if buf is too small
//  (use BRG_REF_STRLEN).
BRG_EXPORT int brg_ref_format(brg_ref_t ref, char *buf, size_t len);

//  Parse text written by brg_ref_format. Returns BRG_OK or BRG_EINVAL (and
//  leaves *ref untouched).
BRG_EXPORT int brg_ref_parse(const char *text, brg_ref_t *ref);

#endif
