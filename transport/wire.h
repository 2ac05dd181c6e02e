//  wire - protocol v1's codec: frames to bytes and bytes to frames (internal).
//
//  docs/PROTOCOL.md is the normative text; this is its C side. No ZeroMQ
//  here: a frame is a byte string (one ZeroMQ message part on the wire), so
//  the codec is unit-tested and fuzzed without sockets.
//
//  A frame is one msgpack array: [1, type, ...]. Types: HELLO [1,0,{hello}],
//  WELCOME [1,1,{hello}], BATCH [1,2,seq,env...], TICK [1,3,acked_seq],
//  BYE [1,5,text], ERROR [1,6,code,text]. An envelope is
//  [kind, to, from, corr, tag, arg...], its args byte for byte the runtime's
//  payload (so encoding a message is a memcpy); since 1.1 a kind with bit
//  0x80 has an ext map after the tag, [kind|0x80, to, from, corr, tag, ext,
//  arg...], whose "trace" is the message's trace context (sent only to a
//  peer whose HELLO or WELCOME said feature "trace").
//
//  Untrusted input. brg__wire_decode checks the whole frame before it
//  returns BRG_OK: every value complete and inside the bytes (depth <= 64),
//  the version, the type, every field's type and range, every envelope of a
//  BATCH (kind known, to/from/corr of the allowed types, tag 1..31 bytes
//  without NUL, each payload value nested at most BRG_MSG_DEPTH_MAX deep
//  (as a local payload), payload <= limits->max_payload, the arguments a
//  kind requires, from of LINK..DOWN a nonzero local id and of EXIT_SIGNAL
//  and STOP nil or a local id), the counts against the limits, and that
//  every str used as a name, tag, cluster, endpoint, HELLO key or feature
//  is well-formed UTF-8 (PROTOCOL.md section 19). It
//  allocates nothing and never reads
//  outside [data, data + len); a frame it accepts can then be walked with
//  brg__wire_next_env without further checks. So a bad envelope fails the
//  whole frame before anything of it is delivered.
//
//  Threads: all functions are pure (no globals); a wbuf or a decoded frame
//  belongs to one thread at a time.
#ifndef BRG_TRANSPORT_WIRE_H
#define BRG_TRANSPORT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brigade.h"

#define BRG__WIRE_VERSION 1
#define BRG__WIRE_MINOR 1       // 1.1: the envelope ext map (trace contexts)
#define BRG__WIRE_KIND_EXT 0x80 // an envelope kind with this bit has an ext map

//  Frame types.
typedef enum {
    BRG__FRAME_HELLO = 0,
    BRG__FRAME_WELCOME = 1,
    BRG__FRAME_BATCH = 2,
    BRG__FRAME_TICK = 3,
    BRG__FRAME_BYE = 5,
    BRG__FRAME_ERROR = 6
} brg__frame_type_t;

//  Envelope kinds on the wire (PROTOCOL.md "Kinds"). Not the runtime's
//  brg__msg_kind_t numbers: brg__wire_kind_of / brg__wire_msg_kind map them.
typedef enum {
    BRG__WK_SEND = 0,         // USER; a request when corr != 0
    BRG__WK_REPLY = 1,        // REPLY
    BRG__WK_REPLY_ERROR = 2,  // REPLY_ERROR; args [status]
    BRG__WK_LINK = 3,         // SYS_LINK
    BRG__WK_UNLINK = 4,       // SYS_UNLINK
    BRG__WK_MONITOR = 6,      // SYS_MONITOR; corr = monitor id
    BRG__WK_DEMONITOR = 7,    // SYS_DEMONITOR; corr = monitor id
    BRG__WK_EXIT = 8,         // SYS_EXIT; args [reason_kind, code, text]
    BRG__WK_DOWN = 9,         // SYS_DOWN; args [monitor, reason_kind, code, text]
    BRG__WK_EXIT_SIGNAL = 10, // SYS_KILL (brg_exit); args [reason_kind]
    BRG__WK_STOP = 11         // SYS_STOP (brg_actor_stop)
} brg__wire_kind_t;

//  ERROR frame codes.
typedef enum {
    BRG__WERR_VERSION = 1,
    BRG__WERR_SEQUENCE = 2,
    BRG__WERR_MALFORMED = 3,
    BRG__WERR_NOT_ALLOWED = 4,
    BRG__WERR_NO_SESSION = 5,
    BRG__WERR_BUSY = 6,
    BRG__WERR_SELF = 7
} brg__wire_error_t;

//  Limits a decoder enforces (all checked before anything is used).
typedef struct brg__wire_limits {
    size_t max_frame;       // bytes of one frame (also ZMQ_MAXMSGSIZE); default 16 MiB + 64 KiB
    uint32_t max_envelopes; // envelopes in one BATCH; default 65535
    size_t max_payload;     // payload bytes of one envelope; default 16 MiB
} brg__wire_limits_t;

void brg__wire_limits_default(brg__wire_limits_t *limits);

#define BRG__WIRE_NAME_MAX 63  // node, cluster and actor names, in bytes
#define BRG__WIRE_EP_MAX 255   // an endpoint
#define BRG__WIRE_PEERS_MAX 64 // peers listed in one WELCOME
#define BRG__WIRE_TEXT_MAX 255 // BYE and ERROR texts (longer ones are cut)

//  A peer known to the sender of a WELCOME (gossip for the mesh).
typedef struct brg__wire_peer {
    uint8_t node[16];
    char ep[BRG__WIRE_EP_MAX + 1];
    char name[BRG__WIRE_NAME_MAX + 1];
} brg__wire_peer_t;

//  HELLO and WELCOME. Unknown keys are ignored; a missing required key
//  (node, sess, role, name, cluster) is malformed.
typedef struct brg__hello {
    uint8_t node[16];                     // sender's node UUID
    uint64_t sess;                        // random session id of this connection
    bool client;                          // role "client" (else "node")
    char name[BRG__WIRE_NAME_MAX + 1];    // human name of the node or client
    char cluster[BRG__WIRE_NAME_MAX + 1]; // cluster; a mismatch is refused
    char ep[BRG__WIRE_EP_MAX + 1];        // endpoint to connect back to; "" = nil
    uint32_t minor;                       // protocol minor version (0)
    uint64_t max_frame;                   // largest frame the sender accepts (0 = default)
    uint32_t tick_ms;                     // sender's tick interval (0 = default)
    uint32_t timeout_ms;                  // sender's silence timeout (0 = default)
    bool probe;      // feature "probe" (HELLO): do not displace a live session of the sender
    bool standby;    // feature "standby" (WELCOME): refused probe, a session is up already
    bool trace;      // feature "trace" (either): the sender reads envelopes with an ext map
                     // (kind bit 0x80, PROTOCOL.md section 6): send it trace contexts
    uint32_t npeers; // WELCOME only
    brg__wire_peer_t peers[BRG__WIRE_PEERS_MAX];
} brg__hello_t;

//  An envelope of a decoded BATCH. Pointers borrow the frame's bytes.
typedef struct brg__env {
    uint8_t kind;        // brg__wire_kind_t
    bool to_is_name;     // to = name (to_name, to_name_len) ...
    uint64_t to_id;      // ... or a local id on the receiving node
    const char *to_name; // not NUL-terminated
    size_t to_name_len;  // 1..BRG__WIRE_NAME_MAX
    bool has_to_node;    // `to` was an ext ref: to_node is its node UUID
    brg_ref_t to_ref;    // (the receiver checks it names itself)
    uint8_t from_form;   // 0 nil, 1 local id on the sender's node, 2 full ref
    uint64_t from_id;    // form 1
    brg_ref_t from_ref;  // form 2
    uint64_t corr;       // 0 = not part of an ask
    const char *tag;     // 1..BRG_TAG_MAX bytes, not NUL-terminated
    size_t tag_len;
    const uint8_t *args; // the payload: zero or more msgpack values
    size_t args_len;
    int32_t status; // REPLY_ERROR: the status; EXIT_SIGNAL: the reason kind
    //  The ext map's "trace" (kind bit 0x80): W3C flags and the 24 id bytes
    //  (trace id, span id), borrowed from the frame. trace_ids NULL: none.
    uint8_t trace_flags;
    const uint8_t *trace_ids;
} brg__env_t;

//  A decoded frame. For a BATCH, walk its envelopes with brg__wire_next_env.
typedef struct brg__frame {
    brg__frame_type_t type;
    brg__hello_t hello;                // HELLO, WELCOME
    uint64_t seq;                      // BATCH: sequence number; TICK: acked sequence
    uint32_t count;                    // BATCH: envelopes
    int code;                          // ERROR
    char text[BRG__WIRE_TEXT_MAX + 1]; // BYE, ERROR
    const uint8_t *data;               // the frame's bytes (the caller's), any type
    size_t len;                        // (the receiver counts them: bytes_in)
    //  The caller's store for a BATCH's envelopes (may be NULL, 0): the
    //  decoder checks every envelope once and keeps the first envs_cap of
    //  them here, so that brg__wire_next_env hands those out without reading
    //  them again; the rest it reads again from the bytes. brg__wire_decode
    //  never allocates, resizes or frees it: the owner of the frame does
    //  (a session grows it to the batches it receives, wire.c design notes).
    //  Zero a frame (or set these two) before its first decode.
    brg__env_t *envs;
    uint32_t envs_cap;
    // private: the walk over a BATCH
    uint32_t stored; // envelopes kept in envs (min(count, envs_cap))
    size_t pos;      // where envelope `stored` starts
    uint32_t next;
} brg__frame_t;

//  Decode and fully validate one frame. Returns BRG_OK, or BRG_EPROTO with
//  *werr set to the ERROR code to answer (BRG__WERR_VERSION for a version
//  other than 1, BRG__WERR_MALFORMED for everything else, including a frame
//  over limits->max_frame).
int brg__wire_decode(const void *data, size_t len, const brg__wire_limits_t *limits,
                     brg__frame_t *frame, int *werr);

//  The next envelope of a decoded BATCH: BRG_OK, or BRG_ENODATA after the
//  last one.
int brg__wire_next_env(brg__frame_t *frame, brg__env_t *env);

//  A message from an envelope, for delivery on this node: kind, tag, corr,
//  status, payload; sender = peer_node + from_id (form 1), from_ref (form
//  2) or none. Returns NULL if out of memory.
brg_msg_t *brg__wire_env_to_msg(const brg__env_t *env, brg_ref_t peer_node);

//  A growable output buffer. Free with brg__wbuf_free; reuse with
//  brg__wbuf_reset (keeps the memory).
typedef struct brg__wbuf {
    uint8_t *data;
    size_t size;
    size_t cap;
    size_t batch_at;     // private: where the open BATCH's array32 header is
    uint32_t batch_envs; // private: envelopes added to it
    bool trace;          // the peer said feature "trace": envelopes of messages with a
                         // trace context carry it (the ext map); else never an ext map
} brg__wbuf_t;

void brg__wbuf_reset(brg__wbuf_t *self);
void brg__wbuf_free(brg__wbuf_t *self);

//  Append one whole frame. Return BRG_OK, BRG_ENOMEM, or for a HELLO the
//  decoder would refuse (name or cluster empty, a name, cluster or
//  endpoint that is not UTF-8, npeers over the maximum)
//  BRG_EINVAL; on error the buffer is as before the call. Every frame the
//  encoder writes, the decoder accepts.
int brg__wire_encode_hello(brg__wbuf_t *out, brg__frame_type_t type, const brg__hello_t *hello);
int brg__wire_encode_tick(brg__wbuf_t *out, uint64_t acked_seq);
int brg__wire_encode_bye(brg__wbuf_t *out, const char *text);
int brg__wire_encode_error(brg__wbuf_t *out, int code, const char *text);

//  A BATCH: begin (writes [1, 2, seq and a fixed-size array32 header),
//  add envelopes, end (patches the count). One BATCH per buffer at a time.
int brg__wire_batch_begin(brg__wbuf_t *out, uint64_t seq);
//  Append the envelope of msg for `to` (a ref on the receiving node, or,
//  with to_name != NULL, that name there). self_node is the sending node:
//  a sender on it is written as its local id, a sender elsewhere as a full
//  ref, none as nil. BRG_EINVAL if msg's kind never leaves a node, or the
//  envelope would be refused by the decoder (to_name empty, longer than
//  BRG__WIRE_NAME_MAX or not UTF-8, a tag that is not UTF-8, a payload nested too deep, a control
//  kind whose sender is not an actor of self_node, a reply without corr, EXIT/DOWN payloads not as
//  link.c builds them): that message fails alone instead of the peer ending the session.
//  BRG_EMSGSIZE if the BATCH already holds 65535 envelopes. On error the buffer is unchanged.
int brg__wire_batch_add(brg__wbuf_t *out, brg_ref_t self_node, brg_ref_t to, const char *to_name,
                        const brg_msg_t *msg);
int brg__wire_batch_end(brg__wbuf_t *out);

//  Wire kind of a runtime message kind (brg__msg_kind_t), or -1 for kinds
//  that never leave a node (ask timeouts, idle checks, timer ticks).
int brg__wire_kind_of(int msg_kind);
//  Runtime message kind of a wire kind, or -1 if unknown.
int brg__wire_msg_kind(int wire_kind);
//  True for the control kinds (LINK..STOP): never dropped for space, and
//  their `from` must be a plain local id of the sending node.
bool brg__wire_kind_is_control(int wire_kind);

#endif
