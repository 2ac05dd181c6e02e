//  wire - protocol v1's codec (docs/PROTOCOL.md is the normative text).
//
//  Design notes.
//
//  Decoding reads untrusted bytes with the runtime's bounds-checked msgpack
//  cursor (brg__msgpack_head for one header, brg__msgpack_skip for a whole
//  value; runtime/msg_read.c), so there is one msgpack decoder in the tree.
//  The frame's skeleton (the top array, HELLO's map, each envelope's first
//  five fields) is read header by header here; everything a peer may choose
//  freely (payload arguments, values of unknown HELLO keys) is skipped with
//  the cursor's depth-limited walk. The depth limit applies to each of those
//  values on its own, as for a local payload: a payload that is valid on one
//  node is valid on the wire, whatever the envelope around it adds.
//
//  One function, s_env, reads and checks an envelope. brg__wire_decode runs
//  it over every envelope of a BATCH before it returns (a frame is accepted
//  or refused whole, so nothing of a malformed frame is ever delivered), and
//  keeps what it read in the caller's envelope store (frame->envs), so
//  brg__wire_next_env hands the envelopes out without reading them again.
//  An envelope past the store's capacity is read a second time by
//  brg__wire_next_env. The store belongs to the frame's owner and the
//  decoder never allocates it: an untrusted frame's count cannot make the
//  decoder allocate, and the owner chooses the memory it spends (a session
//  grows its store to the batches it has seen, up to a bound; session.c).
//  Reading each envelope once instead of twice took about a tenth of the
//  receiving node's CPU per message off remote_stream (docs/PERFORMANCE.md).
//
//  Encoding writes msgpack bytes directly (the few forms it needs), minimal
//  widths except the BATCH's array32 header, which is back-patched with the
//  envelope count at the end. An envelope's arguments are the runtime
//  payload copied unchanged; the encoder walks them once to count them (the
//  envelope's array length) and to refuse a payload the decoder would
//  refuse, so one bad message fails alone with BRG_EINVAL instead of ending
//  the session of everyone else's messages. Every frame the encoder writes,
//  the decoder accepts (test_wire checks it, the fuzz loop too).
#include "wire.h"

#include "msg.h"
#include "tracing.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

//  Reason kinds on the wire: brg_exit_kind_t, 0 normal .. 5 noconnection.
#define S_REASON_MAX 5
//  HELLO: at most this many keys, and key, feature and unknown strings at
//  most BRG__WIRE_EP_MAX bytes.
#define S_HELLO_KEYS_MAX 32
#define S_FEATURES_MAX 32
//  The most envelopes one BATCH can carry (the protocol limit; a decoder may
//  be configured lower).
#define S_ENVS_MAX 65535u

//  ---------------------------------------------------------------------------
//  Kinds

int
brg__wire_kind_of(int msg_kind)
{
    switch (msg_kind) {
    case BRG__MSG_USER:
        return BRG__WK_SEND;
    case BRG__MSG_REPLY:
        return BRG__WK_REPLY;
    case BRG__MSG_REPLY_ERROR:
        return BRG__WK_REPLY_ERROR;
    case BRG__MSG_SYS_STOP:
        return BRG__WK_STOP;
    case BRG__MSG_SYS_KILL:
        return BRG__WK_EXIT_SIGNAL;
    case BRG__MSG_SYS_LINK:
        return BRG__WK_LINK;
    case BRG__MSG_SYS_UNLINK:
        return BRG__WK_UNLINK;
    case BRG__MSG_SYS_MONITOR:
        return BRG__WK_MONITOR;
    case BRG__MSG_SYS_DEMONITOR:
        return BRG__WK_DEMONITOR;
    case BRG__MSG_SYS_EXIT:
        return BRG__WK_EXIT;
    case BRG__MSG_SYS_DOWN:
        return BRG__WK_DOWN;
    default: // ask timeouts, idle checks, timer ticks: this node's own timers
        return -1;
    }
}

int
brg__wire_msg_kind(int wire_kind)
{
    switch (wire_kind) {
    case BRG__WK_SEND:
        return BRG__MSG_USER;
    case BRG__WK_REPLY:
        return BRG__MSG_REPLY;
    case BRG__WK_REPLY_ERROR:
        return BRG__MSG_REPLY_ERROR;
    case BRG__WK_LINK:
        return BRG__MSG_SYS_LINK;
    case BRG__WK_UNLINK:
        return BRG__MSG_SYS_UNLINK;
    case BRG__WK_MONITOR:
        return BRG__MSG_SYS_MONITOR;
    case BRG__WK_DEMONITOR:
        return BRG__MSG_SYS_DEMONITOR;
    case BRG__WK_EXIT:
        return BRG__MSG_SYS_EXIT;
    case BRG__WK_DOWN:
        return BRG__MSG_SYS_DOWN;
    case BRG__WK_EXIT_SIGNAL:
        return BRG__MSG_SYS_KILL;
    case BRG__WK_STOP:
        return BRG__MSG_SYS_STOP;
    default:
        return -1;
    }
}

bool
brg__wire_kind_is_control(int wire_kind)
{
    return wire_kind >= BRG__WK_LINK && wire_kind <= BRG__WK_STOP &&
           brg__wire_msg_kind(wire_kind) >= 0;
}

//  LINK .. DOWN speak for one actor of the sending node: their `from` must
//  be its local id (never nil, never a full ref).
static bool
s_kind_needs_actor(int wire_kind)
{
    return wire_kind >= BRG__WK_LINK && wire_kind <= BRG__WK_DOWN;
}

void
brg__wire_limits_default(brg__wire_limits_t *limits)
{
    assert(limits);
    limits->max_frame = (size_t)16 * 1024 * 1024 + 64 * 1024;
    limits->max_envelopes = S_ENVS_MAX;
    limits->max_payload = BRG_MSG_MAX;
}

//  ---------------------------------------------------------------------------
//  Reading: a cursor over the frame

typedef struct {
    const uint8_t *data;
    size_t len;
    size_t pos;
} s_cur_t;

//  The next value's header (a whole scalar, string, bin or ext).
static int
s_next(s_cur_t *cur, brg__mp_value_t *value)
{
    if (brg__msgpack_head(cur->data + cur->pos, cur->len - cur->pos, value) != BRG_OK)
        return BRG_EPROTO;
    cur->pos += value->size;
    return BRG_OK;
}

static int
s_next_uint(s_cur_t *cur, uint64_t max, uint64_t *out)
{
    brg__mp_value_t v;
    if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_INT || v.neg || v.u > max)
        return BRG_EPROTO;
    *out = v.u;
    return BRG_OK;
}

static int
s_next_int(s_cur_t *cur, int64_t min, int64_t max, int64_t *out)
{
    brg__mp_value_t v;
    if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_INT)
        return BRG_EPROTO;
    int64_t i;
    if (v.neg) {
        i = v.i;
    } else {
        if (max < 0 || v.u > (uint64_t)max)
            return BRG_EPROTO;
        i = (int64_t)v.u;
    }
    if (i < min || i > max)
        return BRG_EPROTO;
    *out = i;
    return BRG_OK;
}

//  Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
//  above U+10FFFF, no sequence cut at the end.
static bool
s_utf8_ok(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;                     // continuation bytes
        uint8_t lo = 0x80, hi = 0xbf; // the range of the first of them
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0; // overlong below U+0800
            else if (c == 0xed)
                hi = 0x9f; // U+D800..U+DFFF are surrogates
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90; // overlong below U+10000
            else if (c == 0xf4)
                hi = 0x8f; // above U+10FFFF
        } else {
            return false; // a continuation byte, c0, c1, f5..ff
        }
        if (len - i - 1 < n || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
        i += 1 + n;
    }
    return true;
}

//  A name-like string (names, tags, the cluster, endpoints, HELLO keys
//  and features): min..max bytes of UTF-8, no NUL (it becomes a C string).
static bool
s_text_ok(const brg__mp_value_t *v, size_t min, size_t max)
{
    return v->type == BRG_TYPE_STR && v->len >= min && v->len <= max &&
           !memchr(v->body, '\0', v->len) && s_utf8_ok(v->body, v->len);
}

static int
s_next_str(s_cur_t *cur, size_t min, size_t max, brg__mp_value_t *v)
{
    if (s_next(cur, v) != BRG_OK || !s_text_ok(v, min, max))
        return BRG_EPROTO;
    return BRG_OK;
}

static void
s_copy_text(char *dst, const brg__mp_value_t *v, size_t max)
{
    size_t n = v->len < max ? v->len : max;
    memcpy(dst, v->body, n);
    dst[n] = '\0';
}

//  BYE's and ERROR's text: any str, cut to BRG__WIRE_TEXT_MAX bytes.
static int
s_next_text(s_cur_t *cur, char *text)
{
    brg__mp_value_t v;
    if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_STR)
        return BRG_EPROTO;
    s_copy_text(text, &v, BRG__WIRE_TEXT_MAX);
    return BRG_OK;
}

static bool
s_is_ref(const brg__mp_value_t *v)
{
    return v->type == BRG_TYPE_EXT && v->ext_type == BRG__MSG_EXT_REF &&
           v->len == BRG__MSG_REF_BYTES;
}

static int
s_skip(s_cur_t *cur)
{
    return brg__msgpack_skip(cur->data, cur->len, &cur->pos) == BRG_OK ? BRG_OK : BRG_EPROTO;
}

//  ---------------------------------------------------------------------------
//  Envelopes

//  Check an envelope's arguments for its kind (nargs values in
//  [args, args + len), already walked). Sets *status for REPLY_ERROR (the
//  error code) and EXIT_SIGNAL (the reason kind). Shared by the decoder and
//  the encoder, which check the runtime's payload of EXIT and DOWN with it.
static int
s_check_args(int kind, uint64_t corr, const uint8_t *args, size_t len, uint64_t nargs,
             int32_t *status)
{
    s_cur_t cur = {args, len, 0};
    int64_t i;
    uint64_t u = 0;
    brg__mp_value_t v;
    switch (kind) {
    case BRG__WK_SEND:
        return BRG_OK;
    case BRG__WK_REPLY:
        return corr != 0 ? BRG_OK : BRG_EPROTO;
    case BRG__WK_REPLY_ERROR:
        // [status]: a negative BRG_E... code.
        if (corr == 0 || nargs != 1 || s_next_int(&cur, INT32_MIN, -1, &i) != BRG_OK)
            return BRG_EPROTO;
        *status = (int32_t)i;
        return BRG_OK;
    case BRG__WK_LINK:
    case BRG__WK_UNLINK:
    case BRG__WK_STOP:
        return nargs == 0 ? BRG_OK : BRG_EPROTO;
    case BRG__WK_MONITOR:
    case BRG__WK_DEMONITOR:
        return nargs == 0 && corr != 0 ? BRG_OK : BRG_EPROTO;
    case BRG__WK_EXIT_SIGNAL:
        // [reason_kind]: what brg_exit can send (shutdown, killed, failed).
        if (nargs != 1 || s_next_int(&cur, 1, 3, &i) != BRG_OK)
            return BRG_EPROTO;
        *status = (int32_t)i;
        return BRG_OK;
    case BRG__WK_EXIT:
    case BRG__WK_DOWN:
        // EXIT [reason_kind, code, text]; DOWN [monitor, reason_kind, code,
        // text], the monitor being corr.
        if (kind == BRG__WK_DOWN &&
            (nargs != 4 || corr == 0 || s_next_uint(&cur, UINT64_MAX, &u) != BRG_OK || u != corr))
            return BRG_EPROTO;
        if (nargs != (kind == BRG__WK_DOWN ? 4u : 3u) ||
            s_next_int(&cur, 0, S_REASON_MAX, &i) != BRG_OK ||
            s_next_int(&cur, INT32_MIN, INT32_MAX, &i) != BRG_OK || s_next(&cur, &v) != BRG_OK ||
            v.type != BRG_TYPE_STR)
            return BRG_EPROTO;
        return BRG_OK;
    default:
        return BRG_EPROTO;
    }
}

//  An envelope's ext map (1.1, kind bit 0x80): at most S_EXT_KEYS_MAX
//  entries, keys str of 1..63 bytes of UTF-8, each known key at most once.
//  Known: "trace", a bin of 25 bytes (trace id, span id, W3C flags); a
//  context with an all-zero id is no context. Unknown keys' values are
//  only checked to be well-formed (a later version's).
#define S_EXT_KEYS_MAX 16
#define S_TRACE_BYTES 25

static int
s_ext(s_cur_t *cur, brg__env_t *env)
{
    brg__mp_value_t v;
    if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_MAP || v.len > S_EXT_KEYS_MAX)
        return BRG_EPROTO;
    bool seen_trace = false;
    for (uint32_t i = 0, n = v.len; i < n; i++) {
        if (s_next_str(cur, 1, BRG__WIRE_NAME_MAX, &v) != BRG_OK)
            return BRG_EPROTO;
        if (v.len == 5 && memcmp(v.body, "trace", 5) == 0) {
            if (seen_trace || s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_BIN ||
                v.len != S_TRACE_BYTES)
                return BRG_EPROTO;
            seen_trace = true;
            static const uint8_t zero[16];
            if (memcmp(v.body, zero, 16) != 0 && memcmp(v.body + 16, zero, 8) != 0) {
                env->trace_ids = v.body;
                env->trace_flags = v.body[24];
            }
        } else if (s_skip(cur) != BRG_OK) {
            return BRG_EPROTO;
        }
    }
    return BRG_OK;
}

//  Read and check one envelope at the cursor into *env.
static int
s_env(s_cur_t *cur, size_t max_payload, brg__env_t *env)
{
    brg__mp_value_t v;
    uint64_t u = 0;
    memset(env, 0, sizeof *env);
    if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_ARRAY || v.len < 5)
        return BRG_EPROTO;
    uint64_t nargs = v.len - 5;
    // kind: a known one, with or without the ext bit.
    if (s_next_uint(cur, UINT8_MAX, &u) != BRG_OK)
        return BRG_EPROTO;
    bool ext = (u & BRG__WIRE_KIND_EXT) != 0;
    u &= ~(uint64_t)BRG__WIRE_KIND_EXT;
    if (brg__wire_msg_kind((int)u) < 0 || (ext && nargs == 0))
        return BRG_EPROTO;
    if (ext)
        nargs--;
    env->kind = (uint8_t)u;
    // to: a local id, a name, or a full ref.
    if (s_next(cur, &v) != BRG_OK)
        return BRG_EPROTO;
    if (v.type == BRG_TYPE_INT && !v.neg) {
        env->to_id = v.u;
    } else if (s_text_ok(&v, 1, BRG__WIRE_NAME_MAX)) {
        env->to_is_name = true;
        env->to_name = (const char *)v.body;
        env->to_name_len = v.len;
    } else if (s_is_ref(&v)) {
        env->has_to_node = true;
        env->to_ref = brg__ref_of_ext(v.body);
        env->to_id = env->to_ref.id;
    } else {
        return BRG_EPROTO;
    }
    // from: nil, a local id of the sending node, or a full ref.
    if (s_next(cur, &v) != BRG_OK)
        return BRG_EPROTO;
    if (v.type == BRG_TYPE_NIL) {
        env->from_form = 0;
    } else if (v.type == BRG_TYPE_INT && !v.neg) {
        env->from_form = 1;
        env->from_id = v.u;
    } else if (s_is_ref(&v)) {
        env->from_form = 2;
        env->from_ref = brg__ref_of_ext(v.body);
    } else {
        return BRG_EPROTO;
    }
    // A peer speaks only for its own actors: control kinds name their
    // sender by local id (exit signals and stops may have none).
    if (s_kind_needs_actor(env->kind) && (env->from_form != 1 || env->from_id == 0))
        return BRG_EPROTO;
    if (brg__wire_kind_is_control(env->kind) && env->from_form == 2)
        return BRG_EPROTO;
    if (s_next_uint(cur, UINT64_MAX, &env->corr) != BRG_OK)
        return BRG_EPROTO;
    if (s_next_str(cur, 1, BRG_TAG_MAX, &v) != BRG_OK)
        return BRG_EPROTO;
    env->tag = (const char *)v.body;
    env->tag_len = v.len;
    if (ext && s_ext(cur, env) != BRG_OK)
        return BRG_EPROTO;
    // args: whole values, each at most BRG_MSG_DEPTH_MAX deep, within the limit.
    size_t start = cur->pos;
    for (uint64_t k = 0; k < nargs; k++) {
        if (s_skip(cur) != BRG_OK)
            return BRG_EPROTO;
        if (cur->pos - start > max_payload)
            return BRG_EPROTO;
    }
    env->args = cur->data + start;
    env->args_len = cur->pos - start;
    return s_check_args(env->kind, env->corr, env->args, env->args_len, nargs, &env->status);
}

//  ---------------------------------------------------------------------------
//  HELLO and WELCOME

enum {
    S_K_NODE = 1 << 0,
    S_K_SESS = 1 << 1,
    S_K_ROLE = 1 << 2,
    S_K_NAME = 1 << 3,
    S_K_CLUSTER = 1 << 4,
    S_K_EP = 1 << 5,
    S_K_MINOR = 1 << 6,
    S_K_MAX_FRAME = 1 << 7,
    S_K_TICK = 1 << 8,
    S_K_TIMEOUT = 1 << 9,
    S_K_FEATURES = 1 << 10,
    S_K_PEERS = 1 << 11,
    S_K_REQUIRED = S_K_NODE | S_K_SESS | S_K_ROLE | S_K_NAME | S_K_CLUSTER
};

static const struct {
    const char *key;
    int bit;
} s_keys[] = {
    {"node", S_K_NODE},          {"sess", S_K_SESS},           {"role", S_K_ROLE},
    {"name", S_K_NAME},          {"cluster", S_K_CLUSTER},     {"ep", S_K_EP},
    {"minor", S_K_MINOR},        {"max_frame", S_K_MAX_FRAME}, {"tick_ms", S_K_TICK},
    {"timeout_ms", S_K_TIMEOUT}, {"features", S_K_FEATURES},   {"peers", S_K_PEERS},
};

static int
s_key_bit(const brg__mp_value_t *key)
{
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++)
        if (strlen(s_keys[i].key) == key->len && memcmp(s_keys[i].key, key->body, key->len) == 0)
            return s_keys[i].bit;
    return 0;
}

static int
s_peers(s_cur_t *cur, brg__hello_t *hello)
{
    brg__mp_value_t v;
    if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_ARRAY || v.len > BRG__WIRE_PEERS_MAX)
        return BRG_EPROTO;
    uint32_t n = v.len;
    for (uint32_t i = 0; i < n; i++) {
        brg__wire_peer_t *peer = &hello->peers[i];
        if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_ARRAY || v.len != 3)
            return BRG_EPROTO;
        if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_BIN || v.len != 16)
            return BRG_EPROTO;
        memcpy(peer->node, v.body, 16);
        if (s_next_str(cur, 1, BRG__WIRE_EP_MAX, &v) != BRG_OK)
            return BRG_EPROTO;
        s_copy_text(peer->ep, &v, BRG__WIRE_EP_MAX);
        if (s_next_str(cur, 0, BRG__WIRE_NAME_MAX, &v) != BRG_OK)
            return BRG_EPROTO;
        s_copy_text(peer->name, &v, BRG__WIRE_NAME_MAX);
    }
    hello->npeers = n;
    return BRG_OK;
}

static int
s_hello(s_cur_t *cur, bool welcome, brg__hello_t *hello)
{
    brg__mp_value_t v;
    uint64_t u = 0;
    memset(hello, 0, sizeof *hello);
    if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_MAP || v.len > S_HELLO_KEYS_MAX)
        return BRG_EPROTO;
    uint32_t nkeys = v.len;
    int seen = 0;
    for (uint32_t k = 0; k < nkeys; k++) {
        brg__mp_value_t key;
        if (s_next_str(cur, 1, BRG__WIRE_EP_MAX, &key) != BRG_OK)
            return BRG_EPROTO;
        int bit = s_key_bit(&key);
        if (bit & seen)
            return BRG_EPROTO; // a known key twice
        seen |= bit;
        int rc = BRG_OK;
        switch (bit) {
        case S_K_NODE:
            if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_BIN || v.len != 16)
                return BRG_EPROTO;
            memcpy(hello->node, v.body, 16);
            break;
        case S_K_SESS:
            rc = s_next_uint(cur, UINT64_MAX, &hello->sess);
            break;
        case S_K_ROLE:
            if (s_next_str(cur, 1, 16, &v) != BRG_OK)
                return BRG_EPROTO;
            if (v.len == 6 && memcmp(v.body, "client", 6) == 0)
                hello->client = true;
            else if (!(v.len == 4 && memcmp(v.body, "node", 4) == 0))
                return BRG_EPROTO;
            break;
        case S_K_NAME:
        case S_K_CLUSTER:
            rc = s_next_str(cur, 1, BRG__WIRE_NAME_MAX, &v);
            if (rc == BRG_OK)
                s_copy_text(bit == S_K_NAME ? hello->name : hello->cluster, &v, BRG__WIRE_NAME_MAX);
            break;
        case S_K_EP:
            if (s_next(cur, &v) != BRG_OK)
                return BRG_EPROTO;
            if (v.type == BRG_TYPE_NIL)
                break;
            if (!s_text_ok(&v, 0, BRG__WIRE_EP_MAX))
                return BRG_EPROTO;
            s_copy_text(hello->ep, &v, BRG__WIRE_EP_MAX);
            break;
        case S_K_MINOR:
            rc = s_next_uint(cur, UINT32_MAX, &u);
            hello->minor = (uint32_t)u;
            break;
        case S_K_MAX_FRAME:
            rc = s_next_uint(cur, UINT64_MAX, &hello->max_frame);
            break;
        case S_K_TICK:
        case S_K_TIMEOUT:
            rc = s_next_uint(cur, UINT32_MAX, &u);
            *(bit == S_K_TICK ? &hello->tick_ms : &hello->timeout_ms) = (uint32_t)u;
            break;
        case S_K_FEATURES:
            // v1.0 defines no feature: check the shape, use none.
            if (s_next(cur, &v) != BRG_OK || v.type != BRG_TYPE_ARRAY || v.len > S_FEATURES_MAX)
                return BRG_EPROTO;
            for (uint32_t i = 0, n = v.len; i < n && rc == BRG_OK; i++) {
                rc = s_next_str(cur, 1, BRG__WIRE_EP_MAX, &v);
                // PROTOCOL.md section 10: "probe" in a HELLO, "standby" in
                // a WELCOME; others (and these in the wrong frame) ignored.
                if (rc == BRG_OK && !welcome && v.len == 5 && memcmp(v.body, "probe", 5) == 0)
                    hello->probe = true;
                if (rc == BRG_OK && welcome && v.len == 7 && memcmp(v.body, "standby", 7) == 0)
                    hello->standby = true;
                // 1.1: "trace" in either, the sender reads envelope ext maps.
                if (rc == BRG_OK && v.len == 5 && memcmp(v.body, "trace", 5) == 0)
                    hello->trace = true;
            }
            break;
        case S_K_PEERS:
            // WELCOME only; in a HELLO it is an unknown key.
            rc = welcome ? s_peers(cur, hello) : s_skip(cur);
            break;
        default: // an unknown key (a later minor version's): ignored
            rc = s_skip(cur);
            break;
        }
        if (rc != BRG_OK)
            return BRG_EPROTO;
    }
    return (seen & S_K_REQUIRED) == S_K_REQUIRED ? BRG_OK : BRG_EPROTO;
}

//  ---------------------------------------------------------------------------
//  Frames

int
brg__wire_decode(const void *data, size_t len, const brg__wire_limits_t *limits,
                 brg__frame_t *frame, int *werr)
{
    assert(data || len == 0);
    assert(limits && frame && werr);
    *werr = BRG__WERR_MALFORMED;
    // Not the hello: zeroing its peers costs more than a small BATCH.
    frame->seq = 0;
    frame->count = 0;
    frame->code = 0;
    frame->text[0] = '\0';
    frame->data = NULL;
    frame->len = frame->pos = 0;
    frame->next = frame->stored = 0;
    if (len > limits->max_frame)
        return BRG_EPROTO;
    s_cur_t cur = {data, len, 0};
    brg__mp_value_t v;
    uint64_t type;
    if (s_next(&cur, &v) != BRG_OK || v.type != BRG_TYPE_ARRAY || v.len < 2)
        return BRG_EPROTO;
    uint32_t n = v.len;
    if (s_next(&cur, &v) != BRG_OK || v.type != BRG_TYPE_INT)
        return BRG_EPROTO;
    if (v.neg || v.u != BRG__WIRE_VERSION) {
        *werr = BRG__WERR_VERSION;
        return BRG_EPROTO;
    }
    if (s_next_uint(&cur, UINT8_MAX, &type) != BRG_OK)
        return BRG_EPROTO;
    int rc = BRG_EPROTO;
    uint64_t u = 0;
    switch (type) {
    case BRG__FRAME_HELLO:
    case BRG__FRAME_WELCOME:
        if (n == 3)
            rc = s_hello(&cur, type == BRG__FRAME_WELCOME, &frame->hello);
        break;
    case BRG__FRAME_BATCH: {
        if (n < 3 || n - 3 > limits->max_envelopes ||
            s_next_uint(&cur, UINT64_MAX, &frame->seq) != BRG_OK)
            break;
        size_t max_payload = limits->max_payload < BRG_MSG_MAX ? limits->max_payload : BRG_MSG_MAX;
        frame->count = n - 3;
        uint32_t keep = frame->count < frame->envs_cap ? frame->count : frame->envs_cap;
        brg__env_t env;
        rc = BRG_OK;
        for (uint32_t i = 0; i < frame->count && rc == BRG_OK; i++) {
            if (i == keep)
                frame->pos = cur.pos; // the first envelope read again by next_env
            rc = s_env(&cur, max_payload, i < keep ? &frame->envs[i] : &env);
        }
        if (rc == BRG_OK)
            frame->stored = keep;
        break;
    }
    case BRG__FRAME_TICK:
        if (n == 3)
            rc = s_next_uint(&cur, UINT64_MAX, &frame->seq);
        break;
    case BRG__FRAME_BYE:
        if (n == 3)
            rc = s_next_text(&cur, frame->text);
        break;
    case BRG__FRAME_ERROR:
        if (n == 4 && s_next_uint(&cur, INT32_MAX, &u) == BRG_OK && u >= 1) {
            frame->code = (int)u;
            rc = s_next_text(&cur, frame->text);
        }
        break;
    default: // 4 is reserved, 7 and up unknown
        break;
    }
    if (rc != BRG_OK || cur.pos != len) { // trailing bytes are malformed too
        frame->count = frame->stored = 0; // nothing to walk
        return BRG_EPROTO;
    }
    frame->type = (brg__frame_type_t)type;
    // Every frame's bytes, for the walk over a BATCH and the receiver's
    // byte count of any frame.
    frame->data = data;
    frame->len = len;
    *werr = 0;
    return BRG_OK;
}

int
brg__wire_next_env(brg__frame_t *frame, brg__env_t *env)
{
    assert(frame && env);
    if (frame->type != BRG__FRAME_BATCH || frame->next >= frame->count)
        return BRG_ENODATA;
    if (frame->next < frame->stored) {
        *env = frame->envs[frame->next++];
        return BRG_OK;
    }
    s_cur_t cur = {frame->data, frame->len, frame->pos};
    // The frame was checked whole by brg__wire_decode: this cannot fail.
    int rc = s_env(&cur, BRG_MSG_MAX, env);
    assert(rc == BRG_OK);
    if (rc != BRG_OK)
        return BRG_EPROTO;
    frame->pos = cur.pos;
    frame->next++;
    return BRG_OK;
}

brg_msg_t *
brg__wire_env_to_msg(const brg__env_t *env, brg_ref_t peer_node)
{
    assert(env);
    int kind = brg__wire_msg_kind(env->kind);
    assert(kind >= 0);
    brg_msg_t *msg = brg__msg_alloc();
    if (!msg)
        return NULL;
    msg->kind = (uint8_t)kind;
    brg__msg_set_tag(msg, env->tag, env->tag_len);
    msg->corr = env->corr;
    if (env->trace_ids) {
        msg->trace_flags = (uint8_t)(BRG__TRACE_PRESENT | (env->trace_flags & BRG__TRACE_W3C_MASK));
        memcpy(msg->trace_ids, env->trace_ids, sizeof msg->trace_ids);
    }
    if (env->from_form == 1)
        msg->sender = (brg_ref_t){peer_node.node_hi, peer_node.node_lo, env->from_id};
    else if (env->from_form == 2)
        msg->sender = env->from_ref;
    if (env->kind == BRG__WK_REPLY_ERROR || env->kind == BRG__WK_EXIT_SIGNAL) {
        // The runtime keeps these in status, with an empty payload.
        msg->status = env->status;
    } else if (brg__msg_append(msg, env->args, env->args_len) != BRG_OK) {
        brg__msg_free(msg);
        return NULL;
    }
    return msg;
}

//  ---------------------------------------------------------------------------
//  Writing

void
brg__wbuf_reset(brg__wbuf_t *self)
{
    assert(self);
    self->size = 0;
    self->batch_at = 0;
    self->batch_envs = 0;
}

void
brg__wbuf_free(brg__wbuf_t *self)
{
    assert(self);
    free(self->data);
    memset(self, 0, sizeof *self);
}

//  Room for extra more bytes.
static int
s_reserve(brg__wbuf_t *out, size_t extra)
{
    if (extra <= out->cap - out->size)
        return BRG_OK;
    if (extra > SIZE_MAX / 2 - out->size)
        return BRG_ENOMEM;
    size_t cap = out->cap ? out->cap : 256;
    while (cap - out->size < extra)
        cap *= 2;
    uint8_t *data = realloc(out->data, cap);
    if (!data)
        return BRG_ENOMEM;
    out->data = data;
    out->cap = cap;
    return BRG_OK;
}

//  The writers below assume s_reserve made room for them (each frame
//  reserves its worst case first, so a frame is written whole or not at all).
static void
s_put(brg__wbuf_t *out, const void *bytes, size_t n)
{
    if (n > 0)
        memcpy(out->data + out->size, bytes, n);
    out->size += n;
}

static void
s_put_byte(brg__wbuf_t *out, uint8_t b)
{
    out->data[out->size++] = b;
}

static void
s_put_be(brg__wbuf_t *out, uint64_t value, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        s_put_byte(out, (uint8_t)(value >> (8 * i)));
}

//  Worst-case sizes of the headers below.
#define S_UINT_MAX_BYTES 9
#define S_HEAD_MAX_BYTES 5

static void
s_put_uint(brg__wbuf_t *out, uint64_t value)
{
    if (value <= 0x7f) {
        s_put_byte(out, (uint8_t)value);
    } else if (value <= UINT8_MAX) {
        s_put_byte(out, 0xcc);
        s_put_be(out, value, 1);
    } else if (value <= UINT16_MAX) {
        s_put_byte(out, 0xcd);
        s_put_be(out, value, 2);
    } else if (value <= UINT32_MAX) {
        s_put_byte(out, 0xce);
        s_put_be(out, value, 4);
    } else {
        s_put_byte(out, 0xcf);
        s_put_be(out, value, 8);
    }
}

static void
s_put_int(brg__wbuf_t *out, int64_t value)
{
    if (value >= 0) {
        s_put_uint(out, (uint64_t)value);
    } else if (value >= -32) {
        s_put_byte(out, (uint8_t)(int8_t)value);
    } else if (value >= INT8_MIN) {
        s_put_byte(out, 0xd0);
        s_put_be(out, (uint64_t)value, 1);
    } else if (value >= INT16_MIN) {
        s_put_byte(out, 0xd1);
        s_put_be(out, (uint64_t)value, 2);
    } else if (value >= INT32_MIN) {
        s_put_byte(out, 0xd2);
        s_put_be(out, (uint64_t)value, 4);
    } else {
        s_put_byte(out, 0xd3);
        s_put_be(out, (uint64_t)value, 8);
    }
}

//  A container or string header: fix form up to fix_max, then 8 (strings
//  only), 16 and 32-bit lengths.
static void
s_put_head(brg__wbuf_t *out, uint8_t fix, uint32_t fix_max, uint8_t f8, uint8_t f16, uint8_t f32,
           uint32_t n)
{
    if (n <= fix_max) {
        s_put_byte(out, (uint8_t)(fix | n));
    } else if (f8 && n <= UINT8_MAX) {
        s_put_byte(out, f8);
        s_put_be(out, n, 1);
    } else if (n <= UINT16_MAX) {
        s_put_byte(out, f16);
        s_put_be(out, n, 2);
    } else {
        s_put_byte(out, f32);
        s_put_be(out, n, 4);
    }
}

static void
s_put_array(brg__wbuf_t *out, uint32_t n)
{
    s_put_head(out, 0x90, 15, 0, 0xdc, 0xdd, n);
}

static void
s_put_map(brg__wbuf_t *out, uint32_t n)
{
    s_put_head(out, 0x80, 15, 0, 0xde, 0xdf, n);
}

static void
s_put_strn(brg__wbuf_t *out, const char *str, size_t len)
{
    s_put_head(out, 0xa0, 31, 0xd9, 0xda, 0xdb, (uint32_t)len);
    s_put(out, str, len);
}

static void
s_put_str(brg__wbuf_t *out, const char *str)
{
    s_put_strn(out, str, strlen(str));
}

static void
s_put_bin16(brg__wbuf_t *out, const uint8_t *bytes)
{
    s_put_byte(out, 0xc4);
    s_put_byte(out, 16);
    s_put(out, bytes, 16);
}

#define S_REF_BYTES (3 + BRG__MSG_REF_BYTES)        // ext 8: c7 18 01 + body
#define S_EXT_BYTES (1 + 1 + 6 + 2 + S_TRACE_BYTES) // kind 0xcc, {"trace": bin 25}

static void
s_put_ref(brg__wbuf_t *out, brg_ref_t ref)
{
    s_put_byte(out, 0xc7);
    s_put_byte(out, BRG__MSG_REF_BYTES);
    s_put_byte(out, BRG__MSG_EXT_REF);
    s_put_be(out, ref.node_hi, 8);
    s_put_be(out, ref.node_lo, 8);
    s_put_be(out, ref.id, 8);
}

//  [1, type, ...n more: the frame's header.
static void
s_put_frame_head(brg__wbuf_t *out, brg__frame_type_t type, uint32_t more)
{
    s_put_array(out, 2 + more);
    s_put_byte(out, BRG__WIRE_VERSION);
    s_put_byte(out, (uint8_t)type);
}

//  What the decoder's s_text_ok accepts, for a C string.
static bool
s_name_ok(const char *s, size_t min, size_t max)
{
    size_t n = strnlen(s, max + 1);
    return n >= min && n <= max && s_utf8_ok((const uint8_t *)s, n);
}

int
brg__wire_encode_hello(brg__wbuf_t *out, brg__frame_type_t type, const brg__hello_t *hello)
{
    assert(out && hello);
    assert(type == BRG__FRAME_HELLO || type == BRG__FRAME_WELCOME);
    bool peers = type == BRG__FRAME_WELCOME && hello->npeers > 0;
    if (!s_name_ok(hello->name, 1, BRG__WIRE_NAME_MAX) ||
        !s_name_ok(hello->cluster, 1, BRG__WIRE_NAME_MAX) ||
        !s_name_ok(hello->ep, 0, BRG__WIRE_EP_MAX) || hello->npeers > BRG__WIRE_PEERS_MAX)
        return BRG_EINVAL;
    for (uint32_t i = 0; peers && i < hello->npeers; i++)
        if (!s_name_ok(hello->peers[i].ep, 1, BRG__WIRE_EP_MAX) ||
            !s_name_ok(hello->peers[i].name, 0, BRG__WIRE_NAME_MAX))
            return BRG_EINVAL;
    // Worst case: keys and fixed values under 192 bytes, three strings,
    // and each peer's bin, two strings and headers.
    size_t need = 192 + 2 * (BRG__WIRE_NAME_MAX + 2) + BRG__WIRE_EP_MAX + 3;
    if (peers)
        need += 3 + hello->npeers * (1 + 18 + BRG__WIRE_EP_MAX + 3 + BRG__WIRE_NAME_MAX + 2);
    if (s_reserve(out, need) != BRG_OK)
        return BRG_ENOMEM;
    const char *features[2];
    uint32_t nfeatures = 0;
    if (type == BRG__FRAME_HELLO && hello->probe)
        features[nfeatures++] = "probe";
    else if (type == BRG__FRAME_WELCOME && hello->standby)
        features[nfeatures++] = "standby";
    if (hello->trace)
        features[nfeatures++] = "trace";
    s_put_frame_head(out, type, 1);
    s_put_map(out, 10 + (peers ? 1 : 0) + (nfeatures > 0 ? 1 : 0));
    s_put_str(out, "node");
    s_put_bin16(out, hello->node);
    s_put_str(out, "sess");
    s_put_uint(out, hello->sess);
    s_put_str(out, "role");
    s_put_str(out, hello->client ? "client" : "node");
    s_put_str(out, "name");
    s_put_str(out, hello->name);
    s_put_str(out, "cluster");
    s_put_str(out, hello->cluster);
    s_put_str(out, "ep");
    if (hello->ep[0])
        s_put_str(out, hello->ep);
    else
        s_put_byte(out, 0xc0);
    s_put_str(out, "minor");
    s_put_uint(out, hello->minor);
    s_put_str(out, "max_frame");
    s_put_uint(out, hello->max_frame);
    s_put_str(out, "tick_ms");
    s_put_uint(out, hello->tick_ms);
    s_put_str(out, "timeout_ms");
    s_put_uint(out, hello->timeout_ms);
    if (nfeatures > 0) {
        s_put_str(out, "features");
        s_put_array(out, nfeatures);
        for (uint32_t i = 0; i < nfeatures; i++)
            s_put_str(out, features[i]);
    }
    if (peers) {
        s_put_str(out, "peers");
        s_put_array(out, hello->npeers);
        for (uint32_t i = 0; i < hello->npeers; i++) {
            s_put_array(out, 3);
            s_put_bin16(out, hello->peers[i].node);
            s_put_str(out, hello->peers[i].ep);
            s_put_str(out, hello->peers[i].name);
        }
    }
    return BRG_OK;
}

int
brg__wire_encode_tick(brg__wbuf_t *out, uint64_t acked_seq)
{
    assert(out);
    if (s_reserve(out, 3 + S_UINT_MAX_BYTES) != BRG_OK)
        return BRG_ENOMEM;
    s_put_frame_head(out, BRG__FRAME_TICK, 1);
    s_put_uint(out, acked_seq);
    return BRG_OK;
}

//  BYE's and ERROR's text, cut to BRG__WIRE_TEXT_MAX bytes.
static void
s_put_text(brg__wbuf_t *out, const char *text)
{
    s_put_strn(out, text ? text : "", text ? strnlen(text, BRG__WIRE_TEXT_MAX) : 0);
}

int
brg__wire_encode_bye(brg__wbuf_t *out, const char *text)
{
    assert(out);
    if (s_reserve(out, 3 + 2 + BRG__WIRE_TEXT_MAX) != BRG_OK)
        return BRG_ENOMEM;
    s_put_frame_head(out, BRG__FRAME_BYE, 1);
    s_put_text(out, text);
    return BRG_OK;
}

int
brg__wire_encode_error(brg__wbuf_t *out, int code, const char *text)
{
    assert(out);
    assert(code > 0);
    if (s_reserve(out, 3 + S_UINT_MAX_BYTES + 2 + BRG__WIRE_TEXT_MAX) != BRG_OK)
        return BRG_ENOMEM;
    s_put_frame_head(out, BRG__FRAME_ERROR, 2);
    s_put_uint(out, (uint64_t)code);
    s_put_text(out, text);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  BATCH

//  batch_at holds the open BATCH's header offset plus one (0: none open), so
//  a zeroed wbuf is a valid empty one.
int
brg__wire_batch_begin(brg__wbuf_t *out, uint64_t seq)
{
    assert(out);
    assert(out->batch_at == 0); // one BATCH per buffer at a time
    if (s_reserve(out, 5 + 2 + S_UINT_MAX_BYTES) != BRG_OK)
        return BRG_ENOMEM;
    out->batch_at = out->size + 1;
    out->batch_envs = 0;
    s_put_byte(out, 0xdd); // array32, patched by brg__wire_batch_end
    s_put_be(out, 0, 4);
    s_put_byte(out, BRG__WIRE_VERSION);
    s_put_byte(out, BRG__FRAME_BATCH);
    s_put_uint(out, seq);
    return BRG_OK;
}

int
brg__wire_batch_add(brg__wbuf_t *out, brg_ref_t self_node, brg_ref_t to, const char *to_name,
                    const brg_msg_t *msg)
{
    assert(out && msg);
    assert(out->batch_at != 0);
    int kind = brg__wire_kind_of(msg->kind);
    if (kind < 0 || msg->tag_len == 0 || msg->tag_len > BRG_TAG_MAX ||
        !s_utf8_ok((const uint8_t *)msg->tag, msg->tag_len))
        return BRG_EINVAL;
    if (out->batch_envs >= S_ENVS_MAX)
        return BRG_EMSGSIZE;
    size_t name_len = 0;
    if (to_name) {
        name_len = strnlen(to_name, BRG__WIRE_NAME_MAX + 1);
        if (!s_name_ok(to_name, 1, BRG__WIRE_NAME_MAX))
            return BRG_EINVAL;
    }
    // from: a sender here is its local id, one elsewhere a full ref.
    brg_ref_t from = msg->sender;
    int from_form = brg_ref_is_none(from)                                                    ? 0
                    : from.node_hi == self_node.node_hi && from.node_lo == self_node.node_lo ? 1
                                                                                             : 2;
    if (s_kind_needs_actor(kind) && (from_form != 1 || from.id == 0))
        return BRG_EINVAL;
    if (brg__wire_kind_is_control(kind) && from_form == 2)
        return BRG_EINVAL;
    // args: the payload as it is, except REPLY_ERROR's and EXIT_SIGNAL's,
    // which the runtime keeps in status.
    bool status_arg = kind == BRG__WK_REPLY_ERROR || kind == BRG__WK_EXIT_SIGNAL;
    uint8_t status_bytes[S_UINT_MAX_BYTES];
    brg__wbuf_t status_buf = {.data = status_bytes, .cap = sizeof status_bytes};
    const uint8_t *args = msg->data;
    size_t args_len = msg->size;
    int nargs;
    if (status_arg) {
        s_put_int(&status_buf, msg->status);
        args = status_bytes;
        args_len = status_buf.size;
        nargs = 1;
    } else {
        nargs = brg_msgpack_validate(msg->data, msg->size);
        if (nargs < 0)
            return BRG_EINVAL;
    }
    if ((uint64_t)nargs > UINT32_MAX - 5)
        return BRG_EINVAL;
    int32_t status = 0;
    if (s_check_args(kind, msg->corr, args, args_len, (uint64_t)nargs, &status) != BRG_OK)
        return BRG_EINVAL;

    // The trace context, to a peer that reads it (the ext map, 1.1).
    bool trace = out->trace && msg->trace_flags != 0;
    if (trace && (uint64_t)nargs > UINT32_MAX - 6)
        return BRG_EINVAL;
    size_t need = S_HEAD_MAX_BYTES + 1 + (S_HEAD_MAX_BYTES + BRG__WIRE_NAME_MAX) + S_REF_BYTES +
                  S_UINT_MAX_BYTES + (2 + BRG_TAG_MAX) + S_EXT_BYTES + args_len;
    if (s_reserve(out, need) != BRG_OK)
        return BRG_ENOMEM;
    s_put_array(out, 5 + (trace ? 1 : 0) + (uint32_t)nargs);
    // A kind with the ext bit is over 127: uint 8 (0xcc), not a fixint.
    s_put_uint(out, (uint64_t)(kind | (trace ? BRG__WIRE_KIND_EXT : 0)));
    if (to_name)
        s_put_strn(out, to_name, name_len);
    else
        s_put_uint(out, to.id);
    if (from_form == 0)
        s_put_byte(out, 0xc0);
    else if (from_form == 1)
        s_put_uint(out, from.id);
    else
        s_put_ref(out, from);
    s_put_uint(out, msg->corr);
    s_put_strn(out, msg->tag, msg->tag_len);
    if (trace) {
        s_put_map(out, 1);
        s_put_str(out, "trace");
        s_put_byte(out, 0xc4); // bin 8
        s_put_byte(out, S_TRACE_BYTES);
        s_put(out, msg->trace_ids, sizeof msg->trace_ids);
        s_put_byte(out, msg->trace_flags & BRG__TRACE_W3C_MASK);
    }
    s_put(out, args, args_len);
    out->batch_envs++;
    return BRG_OK;
}

int
brg__wire_batch_end(brg__wbuf_t *out)
{
    assert(out);
    assert(out->batch_at != 0);
    uint8_t *head = out->data + out->batch_at - 1;
    uint32_t n = 3 + out->batch_envs;
    for (int i = 0; i < 4; i++)
        head[1 + i] = (uint8_t)(n >> (24 - 8 * i));
    out->batch_at = 0;
    out->batch_envs = 0;
    return BRG_OK;
}
