//  msg - messages: a short tag plus a msgpack payload.
//
//  A message is (tag, payload). The tag is a short string ("get",
//  "summarize") that behaviours dispatch on. The payload is a sequence of zero
//  or more msgpack values, the message's arguments, appended by the typed
//  builders below and read back, in order, with the typed readers. On the
//  wire a message is the msgpack array [tag, arg1, arg2, ...], so any
//  language with msgpack can build and read one.
//
//  Ownership (house rule R4):
//  - brg_msg_new, brg_msg_new_int, brg_msg_new_str and brg_msg_dup return a
//    message the caller owns: "Caller owns the returned message and must
//    destroy it." (or hand it to a call that takes it).
//  - brg_send, brg_reply, brg_ask and the timer calls take brg_msg_t **msg_p:
//    "Takes ownership of *msg_p and sets it to NULL.", always, success or
//    failure; what cannot be delivered goes to dead letters (counted).
//  - A behaviour's current message is const: "Borrowed: valid until the
//    behaviour returns." Keep a copy with brg_msg_dup.
//
//  Threads: a message is owned by one thread at a time and is not locked;
//  sending it hands it over. Allocation uses per-thread free lists, so
//  brg_msg_new and brg_msg_destroy are cheap on every thread.
#ifndef BRG_MSG_H
#define BRG_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "ref.h"

typedef struct brg_msg brg_msg_t;

//  Longest tag, in bytes, without the terminating NUL.
#define BRG_TAG_MAX 31

//  Largest payload a message may carry (bytes of msgpack). Builders that would
//  grow past it fail with BRG_EMSGSIZE and leave the message unchanged.
#define BRG_MSG_MAX (16u * 1024 * 1024)

//  The msgpack type of the next payload value (brg_msg_peek).
typedef enum {
    BRG_TYPE_NONE = 0, // no more values
    BRG_TYPE_NIL,
    BRG_TYPE_BOOL,
    BRG_TYPE_INT, // any msgpack integer (positive or negative)
    BRG_TYPE_FLOAT,
    BRG_TYPE_STR,
    BRG_TYPE_BIN,
    BRG_TYPE_ARRAY,
    BRG_TYPE_MAP,
    BRG_TYPE_EXT,
    BRG_TYPE_INVALID // malformed or truncated bytes
} brg_type_t;

//  Create a message with tag and an empty payload. Returns NULL if tag is NULL,
//  empty or longer than BRG_TAG_MAX, or if out of memory.
//  Caller owns the returned message and must destroy it.
BRG_EXPORT brg_msg_t *brg_msg_new(const char *tag);

//  Shorthands for the common small message: tag plus one integer or string.
//  Caller owns the returned message and must destroy it. NULL as brg_msg_new.
BRG_EXPORT brg_msg_t *brg_msg_new_int(const char *tag, int64_t value);
BRG_EXPORT brg_msg_t *brg_msg_new_str(const char *tag, const char *value);

//  Destroy the message and set *self_p to NULL. Accepts a pointer to NULL.
BRG_EXPORT void brg_msg_destroy(brg_msg_t **self_p);

//  Copy tag, payload, sender and the runtime's ask fields (so a copy of an
//  ask can still be answered with brg_reply_to). Sending the copy with
//  brg_send, brg_system_send or a timer makes it a plain message, no longer
//  part of the ask. Returns NULL if out of memory.
//  Caller owns the returned message and must destroy it.
BRG_EXPORT brg_msg_t *brg_msg_dup(const brg_msg_t *self);

//  ---------------------------------------------------------------------------
//  Builders: each appends one msgpack value to the payload. They return BRG_OK,
//  BRG_ENOMEM or BRG_EMSGSIZE; on error the payload is unchanged.
//  Arrays and maps: brg_msg_add_array(msg, n) opens an array of n elements,
//  which are the next n values added (a map: 2n values, key then value).

BRG_EXPORT int brg_msg_add_nil(brg_msg_t *self);
BRG_EXPORT int brg_msg_add_bool(brg_msg_t *self, bool value);
BRG_EXPORT int brg_msg_add_int(brg_msg_t *self, int64_t value);
BRG_EXPORT int brg_msg_add_uint(brg_msg_t *self, uint64_t value);
BRG_EXPORT int brg_msg_add_double(brg_msg_t *self, double value);
//  A NUL-terminated UTF-8 string (str is not validated as UTF-8).
BRG_EXPORT int brg_msg_add_str(brg_msg_t *self, const char *str);
//  len bytes of str as a msgpack string (may contain NULs).
BRG_EXPORT int brg_msg_add_strn(brg_msg_t *self, const char *str, size_t len);
BRG_EXPORT int brg_msg_add_bin(brg_msg_t *self, const void *data, size_t len);
BRG_EXPORT int brg_msg_add_array(brg_msg_t *self, uint32_t count);
BRG_EXPORT int brg_msg_add_map(brg_msg_t *self, uint32_t count);
//  An actor address, encoded as msgpack ext type 1 (24 bytes, big-endian).
BRG_EXPORT int brg_msg_add_ref(brg_msg_t *self, brg_ref_t ref);
//  Append already-encoded msgpack bytes: one or more complete values. The
//  bytes are validated first; BRG_EBADMSG if they are not whole msgpack values.
//  len 0 appends nothing.
BRG_EXPORT int brg_msg_add_raw(brg_msg_t *self, const void *data, size_t len);

//  ---------------------------------------------------------------------------
//  Readers. A cursor is a size_t offset into the payload that the caller keeps,
//  starting at 0; each read consumes one value and advances it. On any error
//  the cursor and *out are unchanged, so a caller can try another type:
//    BRG_ENODATA  no more values;
//    BRG_ETYPE    the next value has another type;
//    BRG_ERANGE   an integer does not fit the requested type;
//    BRG_EBADMSG  the bytes are malformed or truncated.
//  Reading never crashes on a payload of the wrong shape, whatever its origin.
//  Strings and binaries are returned as pointers into the payload: borrowed,
//  valid as long as the message, and not NUL-terminated.

//  The type of the value at *pos, without consuming it.
BRG_EXPORT brg_type_t brg_msg_peek(const brg_msg_t *self, size_t pos);
BRG_EXPORT int brg_msg_read_nil(const brg_msg_t *self, size_t *pos);
BRG_EXPORT int brg_msg_read_bool(const brg_msg_t *self, size_t *pos, bool *out);
BRG_EXPORT int brg_msg_read_int(const brg_msg_t *self, size_t *pos, int64_t *out);
BRG_EXPORT int brg_msg_read_uint(const brg_msg_t *self, size_t *pos, uint64_t *out);
//  Accepts msgpack float32, float64 and integers (converted).
BRG_EXPORT int brg_msg_read_double(const brg_msg_t *self, size_t *pos, double *out);
BRG_EXPORT int brg_msg_read_str(const brg_msg_t *self, size_t *pos, const char **str, size_t *len);
BRG_EXPORT int brg_msg_read_bin(const brg_msg_t *self, size_t *pos, const void **data, size_t *len);
//  Reads an array header: the next *count values are its elements.
BRG_EXPORT int brg_msg_read_array(const brg_msg_t *self, size_t *pos, uint32_t *count);
//  Reads a map header: the next 2 * *count values are its keys and values.
BRG_EXPORT int brg_msg_read_map(const brg_msg_t *self, size_t *pos, uint32_t *count);
BRG_EXPORT int brg_msg_read_ref(const brg_msg_t *self, size_t *pos, brg_ref_t *out);
//  Skip one whole value (with everything nested in it). BRG_EBADMSG if it
//  nests deeper than BRG_MSG_DEPTH_MAX.
BRG_EXPORT int brg_msg_skip(const brg_msg_t *self, size_t *pos);
//  Copy a string value into buf as a NUL-terminated C string. BRG_EMSGSIZE if
//  it does not fit in len bytes (cursor unchanged).
BRG_EXPORT int brg_msg_read_str_copy(const brg_msg_t *self, size_t *pos, char *buf, size_t len);

//  ---------------------------------------------------------------------------
//  Accessors.

//  The tag, NUL-terminated. Borrowed: valid as long as the message.
BRG_EXPORT const char *brg_msg_tag(const brg_msg_t *self);

//  True when the message's tag equals tag. Compares a precomputed hash and the
//  length before the bytes, so dispatching on it is cheap.
BRG_EXPORT bool brg_msg_is(const brg_msg_t *self, const char *tag);

//  The tag's 32-bit FNV-1a hash, computed once when the tag is set. Equal tags
//  have equal hashes; brg_tag_hash(s) computes the same function of a string,
//  so a behaviour can precompute the hashes of the tags it handles.
BRG_EXPORT uint32_t brg_msg_tag_hash(const brg_msg_t *self);
BRG_EXPORT uint32_t brg_tag_hash(const char *tag);

//  A tag whose hash and length were computed once, for dispatch in hot
//  behaviours: brg_msg_is hashes its string argument on every call,
//  brg_msg_is_tag compares the precomputed hash and length, then the bytes.
//    if (brg_msg_is_tag(msg, BRG_TAG("add"))) ...
//  Value type; str is borrowed and must outlive the brg_tag_t (a string
//  literal, as BRG_TAG requires, always does). A tag that is empty or longer
//  than BRG_TAG_MAX gets len = BRG_TAG_MAX + 1 and matches no message.
typedef struct brg_tag {
    const char *str; // the tag text, NUL-terminated (borrowed)
    uint32_t hash;   // brg_tag_hash(str) (for a valid tag)
    uint32_t len;    // strlen(str), or BRG_TAG_MAX + 1 if invalid
} brg_tag_t;

//  Hash and measure tag once. tag must not be NULL. Thread: any.
BRG_EXPORT brg_tag_t brg_tag(const char *tag);

//  True when the message's tag equals tag (the same answer as brg_msg_is on
//  tag.str, without hashing it again).
BRG_EXPORT bool brg_msg_is_tag(const brg_msg_t *self, brg_tag_t tag);

//  BRG_TAG("lit"): the brg_tag_t of a string literal, computed on the first
//  use at each place it is written and cached there (a static per call site;
//  threads that race on the first use compute the same value, stored
//  atomically). Without GCC/Clang extensions it computes brg_tag each time.
#if defined(__GNUC__) || defined(__clang__)
#define BRG_TAG(lit)                                                                               \
    (__extension__({                                                                               \
        static uint64_t brg_tag_cache_;                                                            \
        brg__tag_cached(&brg_tag_cache_, "" lit "");                                               \
    }))

//  Internal to BRG_TAG: the cache holds hash << 32 | 1 << 31 | len (0: empty).
static inline brg_tag_t
brg__tag_cached(uint64_t *cache, const char *lit)
{
    uint64_t v = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (__builtin_expect(v == 0, 0)) {
        brg_tag_t t = brg_tag(lit);
        v = ((uint64_t)t.hash << 32) | (1u << 31) | t.len;
        __atomic_store_n(cache, v, __ATOMIC_RELAXED);
    }
    brg_tag_t t = {lit, (uint32_t)(v >> 32), (uint32_t)v & 0xffu};
    return t;
}
#else
#define BRG_TAG(lit) brg_tag("" lit "")
#endif

//  The sender: the actor whose behaviour sent it, or BRG_REF_NONE if it was
//  sent from outside any actor.
BRG_EXPORT brg_ref_t brg_msg_sender(const brg_msg_t *self);

//  The encoded payload (the msgpack values, without the tag) and its size.
//  Borrowed: valid until the message is changed or destroyed.
BRG_EXPORT const uint8_t *brg_msg_data(const brg_msg_t *self);
BRG_EXPORT size_t brg_msg_size(const brg_msg_t *self);

//  Number of complete values in the payload, or BRG_EBADMSG.
BRG_EXPORT int brg_msg_count(const brg_msg_t *self);

//  Validate bytes as a sequence of complete msgpack values, nested at most
//  BRG_MSG_DEPTH_MAX deep. Returns the number of values or BRG_EBADMSG.
//  For untrusted input (the network); never reads outside [data, data + len).
#define BRG_MSG_DEPTH_MAX 64
BRG_EXPORT int brg_msgpack_validate(const void *data, size_t len);

#endif
