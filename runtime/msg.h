//  msg - the message object and its per-thread free lists (internal view).
#ifndef BRG_RUNTIME_MSG_H
#define BRG_RUNTIME_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brigade/msg.h"

//  Bytes of payload stored inside the message itself; larger payloads move
//  to a heap buffer that travels with the message.
#define BRG__MSG_INLINE 64

//  The msgpack ext type of an actor address (brg_msg_add_ref, brg_msg_read_ref)
//  and the length of its body: node UUID (16 bytes) and id (8), big-endian.
#define BRG__MSG_EXT_REF 1
#define BRG__MSG_REF_BYTES 24

//  What a message is for the runtime. Users see only BRG__MSG_USER messages
//  (replies and idle timeouts are delivered as user messages too).
typedef enum {
    BRG__MSG_USER = 0,        // ordinary message (user lane)
    BRG__MSG_REPLY,           // reply to an ask: corr names the request (user lane)
    BRG__MSG_REPLY_ERROR,     // error reply: status holds the code (user lane)
    BRG__MSG_SYS_STOP,        // stop request (system lane)
    BRG__MSG_SYS_ASK_TIMEOUT, // an ask's deadline passed: corr names it (system lane)
    BRG__MSG_SYS_IDLE,        // idle-timeout check: corr = arming sequence (user lane)
    BRG__MSG_SYS_KILL,        // exit signal from brg_exit: status = brg_exit_kind_t (system lane)
    BRG__MSG_SYS_LINK,        // sender asks to be linked (user lane: ordered)
    BRG__MSG_SYS_UNLINK,      // sender removes its link (user lane)
    BRG__MSG_SYS_MONITOR,     // sender watches us with monitor id corr (user lane)
    BRG__MSG_SYS_DEMONITOR,   // sender drops monitor corr (user lane)
    BRG__MSG_SYS_EXIT,        // a linked actor exited; payload = reason (user lane: ordered)
    BRG__MSG_SYS_DOWN,        // a monitored actor exited; corr = monitor id (user lane)
    BRG__MSG_TIMER,           // a periodic timer's tick: corr = timer id, checked (user lane)
    BRG__MSG_SYS_READY        // brg_ask_ready: the runtime answers it once init has run (user lane)
} brg__msg_kind_t;

//  A message. Owned by exactly one party at a time: the builder, then the
//  mailbox it is queued in (next is the mailbox's link), then the worker that
//  runs the behaviour, which frees it afterwards.
struct brg_msg {
    _Atomic(struct brg_msg *) next; // mailbox link; written by the mailbox only
    brg_ref_t sender;               // sending actor, or BRG_REF_NONE
    uint64_t corr;                  // ask correlation id; 0 = not part of an ask
    uint8_t kind;                   // brg__msg_kind_t
    uint8_t tag_len;                // strlen(tag)
    uint8_t trace_flags;            // 0: no trace context; else BRG__TRACE_PRESENT | W3C flags
    uint8_t reserved;               // zero
    int32_t status;                 // error code of BRG__MSG_REPLY_ERROR
    uint32_t tag_hash;              // brg_tag_hash(tag)
    uint32_t size;                  // payload bytes used
    uint32_t cap;                   // payload bytes available at data
    uint8_t *data;                  // inline_data, or a heap buffer when cap > BRG__MSG_INLINE
    char tag[BRG_TAG_MAX + 1];      // NUL-terminated
    uint8_t inline_data[BRG__MSG_INLINE];
    //  The trace context (tracing.h), valid when trace_flags is not 0: the
    //  trace id (16 bytes) then the parent span id (8). Last, so that the
    //  hot fields keep their cache lines; read only when trace_flags says.
    uint8_t trace_ids[24];
};

//  Take a message from this thread's free list (or the shared pool, or
//  malloc), with every field reset: empty payload, no tag, sender none, kind
//  USER. Returns NULL if out of memory. Thread: any.
brg_msg_t *brg__msg_alloc(void);

//  Return a message to this thread's free list (a heap payload buffer larger
//  than a few KiB is freed). Thread: any.
void brg__msg_free(brg_msg_t *self);

//  A block of BRG__MSG_BLOCK bytes (aligned as a message) from the same free
//  lists, for an internal record made on one thread and freed on another at
//  message rate: the transport's outbound queue entries, one per remote
//  send, which a worker makes and the node's I/O thread frees. malloc and
//  free there cost as much as the rest of the hand-off (TRANSPORT.md
//  section 14); the magazines carry the I/O thread's frees back to the
//  workers a batch at a time. The block is raw memory: brg__msg_block_free
//  makes it a message again. NULL if out of memory. Thread: any.
#define BRG__MSG_BLOCK sizeof(brg_msg_t)
void *brg__msg_block_alloc(void);
void brg__msg_block_free(void *block);

//  Make msg a plain message from sender: no ask correlation, kind USER.
//  Every send but brg_forward does this, so a copy of an ask (brg_msg_dup)
//  sent on can never carry someone else's ask id: an id travels only with
//  the ref of the actor that asked (brg_ask, brg_system_ask, brg_forward),
//  and a reply goes to that ref, so it can only match its asker's ask.
void brg__msg_make_plain(brg_msg_t *self, brg_ref_t sender);

//  Set the tag (length and hash included). Returns BRG_OK or BRG_EINVAL for an
//  empty or too long tag.
int brg__msg_set_tag(brg_msg_t *self, const char *tag, size_t len);

//  Free every message cached in the shared pool and in the calling thread's
//  free list. Called when the last system is destroyed, and at exit.
void brg__msg_pool_trim(void);

//  A big-endian 64-bit value at p (UUID halves, ref ids, msgpack uint64).
static inline uint64_t
brg__load_be64(const uint8_t *p)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = value << 8 | p[i];
    return value;
}

//  A ref from node UUID bytes (16, as uuid_t) and a local id.
static inline brg_ref_t
brg__ref_of_uuid(const uint8_t *uuid, uint64_t id)
{
    brg_ref_t ref = {brg__load_be64(uuid), brg__load_be64(uuid + 8), id};
    return ref;
}

//  A ref from the 24-byte body of its msgpack ext (BRG__MSG_EXT_REF).
static inline brg_ref_t
brg__ref_of_ext(const uint8_t *body)
{
    return brg__ref_of_uuid(body, brg__load_be64(body + 16));
}

//  Append len bytes that the caller has already checked to be whole msgpack
//  values (brg_msgpack_validate or brg__msgpack_skip): brg_msg_add_raw
//  without walking them again. The transport's inbound path uses it.
//  Returns BRG_OK, BRG_ENOMEM or BRG_EMSGSIZE (payload unchanged).
int brg__msg_append(brg_msg_t *self, const void *data, size_t len);

//  The bounds-checked msgpack cursor of msg_read.c, for the wire codec
//  (transport/wire.c), so that there is one msgpack decoder in the tree.
//  One decoded header: for scalars, strings, bins and exts the whole value;
//  for arrays and maps only the header (size), len being the element count.
typedef struct brg__mp_value {
    brg_type_t type;
    size_t size;         // bytes of the value; for arrays and maps the header only
    uint32_t len;        // STR, BIN, EXT: body bytes; ARRAY, MAP: element count
    bool neg;            // INT: negative, value in i; else value in u
    bool b;              // BOOL
    int8_t ext_type;     // EXT
    int64_t i;           // INT when neg
    uint64_t u;          // INT when !neg
    double f;            // FLOAT
    const uint8_t *body; // STR, BIN, EXT
} brg__mp_value_t;

//  Decode the value header at p, with avail bytes readable. Returns BRG_OK,
//  BRG_ENODATA if avail is 0, or BRG_EBADMSG if the bytes are reserved or
//  truncated, or a container claims more elements than bytes remain. Never
//  reads outside [p, p + avail).
int brg__msgpack_head(const uint8_t *p, size_t avail, brg__mp_value_t *value);

//  Skip one whole value at data[*pos] (everything nested in it, at most
//  BRG_MSG_DEPTH_MAX containers deep) and advance *pos past it. BRG_ENODATA
//  if *pos == len, else BRG_EBADMSG for malformed or too deep bytes.
int brg__msgpack_skip(const uint8_t *data, size_t len, size_t *pos);

#endif
