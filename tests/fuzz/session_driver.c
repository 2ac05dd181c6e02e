//  session_driver - one session through a script read from arbitrary bytes
//  (session_driver.h gives the format and the invariants).
//
//  Design notes. The session under test is "us" (node A); the script plays
//  the peer (node B), a stranger (node C) and our own owner (time, pushes,
//  flushes, ends). The peer's frames are raw bytes from the script, frames
//  built by the encoder (HELLO, WELCOME, TICK, BYE, ERROR), or BATCHes
//  built byte by byte here from a few bytes per envelope, so that mutations
//  reach a session that is UP with tables in it quickly. The callbacks
//  keep an independent count of everything the session does, and s_after
//  compares it with the session's own counters after every call. When a
//  HELLO replaces the session (BRG_EEXIST) the driver does what the owner
//  does: checks and destroys the old one, and gives the frame to a new one.
#include "session_driver.h"

#include <brigade.h>

#include "msg.h"
#include "transport/session.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000ull

static void
s_default_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "fuzz_session: %s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

static fz_fail_fn s_fail_fn = s_default_fail;

void
fz_session_on_fail(fz_fail_fn fn)
{
    s_fail_fn = fn ? fn : s_default_fail;
}

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            s_fail_fn(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

static const uint8_t s_node_us[16] = {0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t s_node_peer[16] = {0xb0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t s_node_other[16] = {0xc0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

//  ---------------------------------------------------------------------------
//  The model of one session.

#define S_RING 4

typedef struct {
    brg__session_t *s;
    // Counted by the callbacks and the driver.
    uint64_t frames_out, bytes_out; // send_frame calls
    uint64_t frames_in, bytes_in;   // on_bytes calls on a session not ended
    uint64_t out_seq;               // our last BATCH seq
    uint64_t in_seq;                // the peer's last BATCH seq the session took
    uint64_t pushed;                // messages push took (BRG_OK)
    uint64_t refused_out;           // of them, answered at once by the table bound
    uint64_t delivered;             // inbound messages delivered before the end
    uint64_t answers;               // messages delivered by the end
    uint64_t tables_at_call;        // table entries when the current call began
    int ups, endeds;
    brg__end_reason_t reason;
    bool error_sent; // an ERROR went out in the current call
    bool in_push;    // inside brg__session_push
} s_model_t;

static s_model_t M;
static brg__session_cfg_t CFG;
static uint64_t NOW;
static bool INITIATOR;  // the current session dialed
static brg__frame_t FR; // decoded frames (big: not on the stack)
static brg__wire_limits_t DEF_LIMITS;
static uint8_t *RING[S_RING]; // the last frames the session sent
static size_t RING_LEN[S_RING];
static unsigned RING_AT;

static uint64_t
s_tables(const brg__session_t *s)
{
    brg__session_stats_t st;
    brg__session_stats(s, &st);
    return st.links + st.watching + st.watched + st.asks;
}

static void
s_on_send(void *arg, bool inbound, const void *data, size_t len)
{
    (void)arg;
    REQUIRE(M.endeds == 0); // nothing after ended
    M.frames_out++;
    M.bytes_out += len;
    uint8_t *copy = malloc(len ? len : 1);
    REQUIRE(copy != NULL);
    memcpy(copy, data, len);
    free(RING[RING_AT]);
    RING[RING_AT] = copy;
    RING_LEN[RING_AT] = len;
    RING_AT = (RING_AT + 1) % S_RING;
    // Every frame the encoder writes, the decoder accepts.
    int werr = -1;
    REQUIRE(brg__wire_decode(data, len, &DEF_LIMITS, &FR, &werr) == BRG_OK);
    switch (FR.type) {
    case BRG__FRAME_HELLO:
        REQUIRE(!inbound); // on our outbox
        REQUIRE(memcmp(FR.hello.node, s_node_us, 16) == 0);
        REQUIRE(FR.hello.sess == CFG.sess);
        break;
    case BRG__FRAME_WELCOME:
        REQUIRE(inbound); // back on the connection the HELLO came on
        REQUIRE(memcmp(FR.hello.node, s_node_us, 16) == 0);
        break;
    case BRG__FRAME_BATCH:
        REQUIRE(FR.seq == M.out_seq + 1);
        REQUIRE(FR.count > 0);
        M.out_seq = FR.seq;
        break;
    case BRG__FRAME_TICK:
        REQUIRE(FR.seq == M.in_seq);
        break;
    case BRG__FRAME_ERROR:
        REQUIRE(FR.code >= BRG__WERR_VERSION && FR.code <= BRG__WERR_SELF);
        M.error_sent = true;
        break;
    case BRG__FRAME_BYE:
        break;
    }
}

static void
s_on_deliver(void *arg, const brg__remote_target_t *to, brg_msg_t **msgs, size_t n)
{
    (void)arg;
    REQUIRE(M.endeds == 0);
    REQUIRE(n > 0);
    bool ending = brg__session_state(M.s) == BRG__SESS_ENDED;
    for (size_t i = 0; i < n; i++) {
        brg_msg_t *m = msgs[i];
        REQUIRE(m != NULL);
        REQUIRE(m->tag_len >= 1 && m->tag_len <= BRG_TAG_MAX);
        REQUIRE(strlen(m->tag) == m->tag_len);
        if (to[i].name) {
            size_t len = strlen(to[i].name);
            REQUIRE(len >= 1 && len <= BRG__WIRE_NAME_MAX);
            REQUIRE(to[i].id == 0);
        }
        if (ending) {
            // The answers of the tables, from the peer's actors.
            REQUIRE(m->kind == BRG__MSG_SYS_EXIT || m->kind == BRG__MSG_SYS_DOWN ||
                    m->kind == BRG__MSG_SYS_DEMONITOR || m->kind == BRG__MSG_REPLY_ERROR);
            REQUIRE(to[i].id != 0 && to[i].name == NULL);
            brg_ref_t peer = brg__session_peer_node(M.s);
            REQUIRE(m->sender.node_hi == peer.node_hi && m->sender.node_lo == peer.node_lo);
            if (m->kind == BRG__MSG_REPLY_ERROR)
                REQUIRE(m->status == BRG_ENETWORK);
            M.answers++;
        } else if (M.in_push) {
            // A LINK or MONITOR past the bound, answered at once.
            REQUIRE(m->kind == BRG__MSG_SYS_EXIT || m->kind == BRG__MSG_SYS_DOWN);
            M.refused_out++;
        } else {
            REQUIRE(brg__wire_kind_of(m->kind) >= 0); // a kind that travels
            M.delivered++;
        }
        brg__msg_free(m);
    }
}

static void
s_on_up(void *arg)
{
    (void)arg;
    REQUIRE(M.ups == 0 && M.endeds == 0);
    REQUIRE(brg__session_state(M.s) == BRG__SESS_UP);
    M.ups++;
}

static void
s_on_ended(void *arg, brg__end_reason_t reason)
{
    (void)arg;
    REQUIRE(M.endeds == 0);
    REQUIRE(reason >= BRG__END_CLOSED && reason <= BRG__END_LOCAL);
    REQUIRE(brg__session_state(M.s) == BRG__SESS_ENDED);
    // Every entry the tables held when the call began was answered once
    // (no call changes the tables and then ends the session).
    REQUIRE(M.answers == M.tables_at_call);
    REQUIRE(s_tables(M.s) == 0);
    M.endeds++;
    M.reason = reason;
}

//  Exports for client sessions: names of even length may be reached, so
//  the scripts see both the delivery and the refusal (BRG_EPERM) paths.
static bool
s_on_may_reach(void *arg, const char *name, size_t len)
{
    (void)arg;
    (void)name;
    return len % 2 == 0;
}

static const brg__session_io_t IO = {s_on_send,      s_on_deliver, s_on_up, s_on_ended,
                                     s_on_may_reach, NULL,         NULL};

static void
s_begin_call(void)
{
    M.error_sent = false;
    M.tables_at_call = s_tables(M.s);
}

//  The session's counters against the model, after every call.
static void
s_after(void)
{
    brg__session_stats_t st;
    brg__session_stats(M.s, &st);
    brg__sess_state_t state = brg__session_state(M.s);
    REQUIRE(st.frames_out == M.frames_out && st.bytes_out == M.bytes_out);
    REQUIRE(st.frames_in == M.frames_in && st.bytes_in == M.bytes_in);
    REQUIRE(st.msgs_acked <= st.msgs_out);
    REQUIRE(M.delivered <= st.msgs_in);
    // An envelope taken but not delivered was refused by the table bound,
    // or was a client's past its exports.
    REQUIRE(st.msgs_in - M.delivered <= st.table_full + st.refused_unauthorized);
    REQUIRE(st.refused_unauthorized == 0 || brg__session_peer(M.s)->client);
    REQUIRE(M.ups <= 1 && M.endeds <= 1);
    REQUIRE((state == BRG__SESS_ENDED) == (M.endeds == 1));
    if (state == BRG__SESS_UP)
        REQUIRE(M.ups == 1);
    if (M.error_sent)
        REQUIRE(state == BRG__SESS_ENDED && M.reason == BRG__END_PROTOCOL);
    if (state == BRG__SESS_ENDED) {
        REQUIRE(st.links + st.watching + st.watched + st.asks == 0);
        REQUIRE(st.msgs_out == st.msgs_acked + st.lost_in_flight);
        // The session's own pushes: one EXIT or DOWN back over the wire for
        // each inbound LINK or MONITOR the bound refused (taken, not
        // delivered), and one BRG_EPERM answer for each refused client
        // request (none for a refused plain send).
        uint64_t refused_in = st.msgs_in - M.delivered;
        uint64_t out = st.msgs_out + st.dead_on_end + M.refused_out;
        REQUIRE(M.pushed + refused_in - st.refused_unauthorized <= out);
        REQUIRE(out <= M.pushed + refused_in);
    }
}

static void
s_new_session(bool initiator)
{
    memset(&M, 0, sizeof M);
    CFG.sess = 0xa5a5 + (NOW & 0xff);
    M.tables_at_call = 0;
    M.s = brg__session_new(&CFG, &IO, NULL, initiator, NOW);
    REQUIRE(M.s != NULL);
    s_after();
}

//  The end of a session's life: ended (by the owner if need be), checked,
//  destroyed.
static fz_totals_t TOTALS;

void
fz_session_totals(fz_totals_t *totals)
{
    *totals = TOTALS;
}

static void
s_finish(void)
{
    s_begin_call();
    brg__session_end(M.s, BRG__END_LOCAL);
    s_after();
    REQUIRE(M.endeds == 1);
    TOTALS.ups += (uint64_t)M.ups;
    TOTALS.delivered += M.delivered;
    TOTALS.answers += M.answers;
    TOTALS.refused += M.reason == BRG__END_PROTOCOL;
    TOTALS.replaced += M.reason == BRG__END_REPLACED;
    TOTALS.timeouts += M.reason == BRG__END_TIMEOUT;
    // Idempotent: a second end calls nothing back.
    uint64_t frames = M.frames_out;
    brg__session_end(M.s, BRG__END_CLOSED);
    REQUIRE(M.frames_out == frames && M.endeds == 1);
    brg__session_destroy(&M.s);
}

//  ---------------------------------------------------------------------------
//  Feeding frames.

static void
s_feed(const uint8_t *data, size_t len, bool inbound)
{
    bool was_ended = brg__session_state(M.s) == BRG__SESS_ENDED;
    uint64_t frames_out = M.frames_out;
    // Peek at what the bytes are, to follow the peer's seq.
    int werr = 0;
    bool decoded = brg__wire_decode(data, len, &CFG.limits, &FR, &werr) == BRG_OK;
    bool batch = decoded && FR.type == BRG__FRAME_BATCH;
    uint64_t seq = FR.seq;
    s_begin_call();
    if (!was_ended) {
        M.frames_in++;
        M.bytes_in += len;
    }
    int rc = brg__session_on_bytes(M.s, data, len, inbound, NOW);
    if (was_ended) {
        // An ended session stays ended and does nothing.
        REQUIRE(rc == BRG_ENETWORK);
        REQUIRE(M.frames_out == frames_out);
        s_after();
        return;
    }
    REQUIRE(rc == BRG_OK || rc == BRG_EPROTO || rc == BRG_EEXIST);
    // A refused frame: ERROR sent, session ended (the owner counts it).
    REQUIRE((rc == BRG_EPROTO) == M.error_sent);
    if (rc == BRG_OK && batch)
        M.in_seq = seq;
    if (rc == BRG_EPROTO && !decoded)
        REQUIRE(M.reason == BRG__END_PROTOCOL);
    s_after();
    if (rc == BRG_EEXIST) {
        // Replaced: the owner starts a new session from the same HELLO.
        REQUIRE(M.reason == BRG__END_REPLACED);
        s_finish();
        s_new_session(false);
        s_feed(data, len, inbound);
    }
}

//  A minimal msgpack writer for the frames built here.
typedef struct {
    uint8_t b[4096];
    size_t n;
    bool over;
} s_out_t;

static void
s_put(s_out_t *o, const void *p, size_t n)
{
    if (o->over || n > sizeof o->b - o->n) {
        o->over = true;
        return;
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void
s_put1(s_out_t *o, uint8_t c)
{
    s_put(o, &c, 1);
}

static void
s_put_be(s_out_t *o, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        s_put1(o, (uint8_t)(v >> (8 * i)));
}

static void
s_put_uint(s_out_t *o, uint64_t v)
{
    if (v <= 0x7f) {
        s_put1(o, (uint8_t)v);
    } else if (v <= 0xffff) {
        s_put1(o, 0xcd);
        s_put_be(o, v, 2);
    } else {
        s_put1(o, 0xcf);
        s_put_be(o, v, 8);
    }
}

static void
s_put_int(s_out_t *o, int64_t v)
{
    if (v >= 0) {
        s_put_uint(o, (uint64_t)v);
    } else {
        s_put1(o, 0xd3);
        s_put_be(o, (uint64_t)v, 8);
    }
}

static void
s_put_str(s_out_t *o, const char *s, size_t n)
{
    s_put1(o, 0xd9);
    s_put1(o, (uint8_t)n);
    s_put(o, s, n);
}

static void
s_put_ref(s_out_t *o, const uint8_t node[16], uint64_t id)
{
    s_put1(o, 0xc7);
    s_put1(o, 24);
    s_put1(o, 1);
    s_put(o, node, 16);
    s_put_be(o, id, 8);
}

//  ---------------------------------------------------------------------------
//  Operations. Each reads its bytes from the script at *pos.

typedef struct {
    const uint8_t *data;
    size_t len, pos;
} s_script_t;

static bool
s_take(s_script_t *sc, size_t n, const uint8_t **p)
{
    if (sc->len - sc->pos < n)
        return false;
    *p = sc->data + sc->pos;
    sc->pos += n;
    return true;
}

//  b[0]: bit 0 WELCOME (else HELLO), 1 role client, 2 our own node, 3 a
//  stranger's node (else the peer's), 4 another cluster, 6 small max_frame
//  and other timings, 7 two peers; b[1]: the session id.
static void
s_op_hello(const uint8_t *b, bool flip)
{
    brg__hello_t h;
    memset(&h, 0, sizeof h);
    bool welcome = b[0] & 1;
    h.client = b[0] & 2;
    memcpy(h.node, b[0] & 4 ? s_node_us : b[0] & 8 ? s_node_other : s_node_peer, 16);
    snprintf(h.cluster, sizeof h.cluster, "%s", b[0] & 0x10 ? "other" : CFG.cluster);
    bool inbound = !welcome; // HELLO on our inbox, WELCOME on our outbox
    h.sess = 0x5e55 + b[1];
    snprintf(h.name, sizeof h.name, "peer");
    snprintf(h.ep, sizeof h.ep, "inproc://peer");
    if (b[0] & 0x40) {
        h.max_frame = 1024; // our pushes meet EMSGSIZE sooner
        h.tick_ms = 50;
        h.timeout_ms = 4000;
    }
    if (b[0] & 0x80) {
        h.npeers = 2;
        for (uint32_t i = 0; i < h.npeers; i++) {
            memcpy(h.peers[i].node, s_node_other, 16);
            h.peers[i].node[15] = (uint8_t)i;
            snprintf(h.peers[i].ep, sizeof h.peers[i].ep, "inproc://p%u", i);
        }
    }
    if (flip)
        inbound = !inbound;
    brg__wbuf_t w = {0};
    REQUIRE(brg__wire_encode_hello(&w, welcome ? BRG__FRAME_WELCOME : BRG__FRAME_HELLO, &h) ==
            BRG_OK);
    s_feed(w.data, w.size, inbound);
    brg__wbuf_free(&w);
}

static const uint8_t s_wire_kinds[] = {
    BRG__WK_SEND,   BRG__WK_REPLY,       BRG__WK_REPLY_ERROR, BRG__WK_LINK,
    BRG__WK_UNLINK, BRG__WK_MONITOR,     BRG__WK_DEMONITOR,   BRG__WK_EXIT,
    BRG__WK_DOWN,   BRG__WK_EXIT_SIGNAL, BRG__WK_STOP,        BRG__WK_SEND,
    BRG__WK_LINK,   BRG__WK_MONITOR,     BRG__WK_REPLY,       5 /* reserved */};

//  One envelope from 6 bytes: kind, to, from, corr, tag, args.
static void
s_put_env(s_out_t *o, const uint8_t *e)
{
    uint8_t kind = s_wire_kinds[e[0] & 15];
    uint64_t to_id = (e[1] >> 3) & 7, from_id = (e[2] >> 2) & 7;
    uint64_t corr = e[3];
    uint8_t nargs = 0;
    switch (kind) {
    case BRG__WK_REPLY_ERROR:
    case BRG__WK_EXIT_SIGNAL:
        nargs = 1;
        break;
    case BRG__WK_EXIT:
        nargs = 3;
        break;
    case BRG__WK_DOWN:
        nargs = 4;
        break;
    case BRG__WK_SEND:
    case BRG__WK_REPLY:
        nargs = (e[5] >> 3) & 3;
        break;
    default:
        break;
    }
    bool extra = (e[5] & 7) == 7; // one argument too many
    s_put1(o, (uint8_t)(0x90 | (5 + nargs + extra)));
    s_put_uint(o, kind);
    switch (e[1] & 7) {
    case 5:
        s_put_str(o, e[1] & 0x40 ? "svc" : "brg.node", e[1] & 0x40 ? 3 : 8);
        break;
    case 6:
        s_put_ref(o, s_node_us, to_id);
        break;
    case 7:
        s_put_ref(o, s_node_other, to_id);
        break;
    default:
        s_put_uint(o, to_id);
        break;
    }
    switch (e[2] & 3) {
    case 0:
        s_put1(o, 0xc0);
        break;
    case 1:
        s_put_uint(o, from_id);
        break;
    case 2:
        s_put_ref(o, s_node_peer, from_id);
        break;
    default:
        s_put_ref(o, s_node_other, from_id);
        break;
    }
    s_put_uint(o, corr);
    static const char *const tags[] = {"t", "brg.exit", "brg.down",
                                       "ggggggggggggggggggggggggggggggg"};
    const char *tag = tags[e[4] & 3];
    s_put_str(o, tag, strlen(tag));
    int64_t reason = (e[5] >> 3) % 6;
    switch (kind) {
    case BRG__WK_REPLY_ERROR:
        s_put_int(o, -1 - (int64_t)(e[5] >> 3));
        break;
    case BRG__WK_EXIT_SIGNAL:
        s_put_int(o, 1 + reason % 3);
        break;
    case BRG__WK_DOWN:
        s_put_uint(o, corr);
        // fall through
    case BRG__WK_EXIT:
        s_put_int(o, reason);
        s_put_int(o, -17);
        s_put_str(o, "why", 3);
        break;
    default:
        for (uint8_t i = 0; i < nargs; i++)
            s_put_int(o, (int64_t)i - 1);
        break;
    }
    if (extra)
        s_put1(o, 0xc0);
}

static bool
s_op_batch(s_script_t *sc, bool flip)
{
    const uint8_t *b;
    if (!s_take(sc, 2, &b))
        return false;
    uint64_t seq = M.in_seq + 1 + (uint64_t)(int64_t)(int8_t)b[0];
    unsigned n = b[1] & 15;
    s_out_t o = {.n = 0};
    s_put1(&o, (uint8_t)(0x90 | (3 + n)));
    s_put1(&o, 1);
    s_put1(&o, BRG__FRAME_BATCH);
    s_put_uint(&o, seq);
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *e;
        if (!s_take(sc, 6, &e))
            return false;
        s_put_env(&o, e);
    }
    if (!o.over)
        s_feed(o.b, o.n, !flip);
    return true;
}

//  b[0]: the kind; b[1]: the sender (one of our actors, none, or an actor
//  of the peer's node); b[2]: the peer's actor (bit 7: the name "svc"
//  instead); b[3]: corr; b[4]: the payload (bit 7: 900 bytes, bit 6: a tag
//  that is not UTF-8).
static void
s_op_push(const uint8_t *b)
{
    static const uint8_t kinds[] = {
        BRG__MSG_USER,     BRG__MSG_USER,        BRG__MSG_REPLY,           BRG__MSG_REPLY_ERROR,
        BRG__MSG_SYS_LINK, BRG__MSG_SYS_UNLINK,  BRG__MSG_SYS_MONITOR,     BRG__MSG_SYS_DEMONITOR,
        BRG__MSG_SYS_EXIT, BRG__MSG_SYS_DOWN,    BRG__MSG_SYS_KILL,        BRG__MSG_SYS_STOP,
        BRG__MSG_SYS_LINK, BRG__MSG_SYS_MONITOR, BRG__MSG_SYS_ASK_TIMEOUT, BRG__MSG_TIMER};
    // Push only where the owner may: once our HELLO is out (or after the end).
    bool ended = brg__session_state(M.s) == BRG__SESS_ENDED;
    if (!ended && !INITIATOR && brg__session_peer(M.s) == NULL)
        return;
    uint8_t kind = kinds[b[0] & 15];
    brg_msg_t *m = brg_msg_new(b[4] & 0x40                 ? "\xc3\x28"
                               : kind == BRG__MSG_SYS_DOWN ? BRG_TAG_DOWN
                               : kind >= BRG__MSG_SYS_LINK ? BRG_TAG_EXIT
                                                           : "fz");
    REQUIRE(m != NULL);
    m->kind = kind;
    m->corr = b[3];
    uint64_t sid = 1 + ((b[1] >> 2) & 7);
    switch (b[1] & 3) {
    case 2:
        m->sender = BRG_REF_NONE;
        break;
    case 3:
        m->sender = brg__ref_of_uuid(s_node_peer, sid); // a forwarded sender
        break;
    default:
        m->sender = brg__ref_of_uuid(s_node_us, sid);
        break;
    }
    int64_t reason = (b[4] >> 3) % 6;
    switch (kind) {
    case BRG__MSG_SYS_DOWN:
        REQUIRE(brg_msg_add_uint(m, m->corr) == BRG_OK);
        // fall through
    case BRG__MSG_SYS_EXIT:
        REQUIRE(brg_msg_add_int(m, reason) == BRG_OK);
        REQUIRE(brg_msg_add_int(m, BRG_ENETWORK) == BRG_OK);
        REQUIRE(brg_msg_add_str(m, "why") == BRG_OK);
        break;
    case BRG__MSG_SYS_KILL:
        m->status = 1 + (int32_t)(reason % 3);
        break;
    case BRG__MSG_REPLY_ERROR:
        m->status = BRG_ENOACTOR;
        break;
    case BRG__MSG_USER:
    case BRG__MSG_REPLY:
        for (int i = 0; i < (b[4] & 7); i++)
            REQUIRE(brg_msg_add_int(m, i) == BRG_OK);
        if (b[4] & 0x80) {
            static const char blob[900] = {0};
            REQUIRE(brg_msg_add_bin(m, blob, sizeof blob) == BRG_OK);
        }
        break;
    default:
        break;
    }
    brg_ref_t to = brg__ref_of_uuid(s_node_peer, b[2] & 7);
    s_begin_call();
    M.in_push = true;
    brg_msg_t *msg = m;
    int rc = brg__session_push(M.s, to, b[2] & 0x80 ? "svc" : NULL, &msg);
    M.in_push = false;
    if (ended)
        REQUIRE(rc == BRG_ENETWORK);
    else
        REQUIRE(rc == BRG_OK || rc == BRG_EINVAL || rc == BRG_EMSGSIZE);
    if (rc == BRG_OK) {
        REQUIRE(msg == NULL);
        M.pushed++;
    } else {
        REQUIRE(msg == m);
        brg_msg_destroy(&msg);
    }
    s_after();
}

static void
s_op_tick(uint8_t b, bool flip)
{
    uint64_t back = b & 3;
    uint64_t acked = b & 0x80 ? M.out_seq + 1 + back : M.out_seq > back ? M.out_seq - back : 0;
    brg__wbuf_t w = {0};
    REQUIRE(brg__wire_encode_tick(&w, acked) == BRG_OK);
    s_feed(w.data, w.size, !flip);
    brg__wbuf_free(&w);
}

static void
s_op_time(const uint8_t *b, bool longer)
{
    uint64_t ms = (uint64_t)b[0] << 8 | b[1];
    NOW += (longer ? ms * 64 : ms) * MS;
    s_begin_call();
    uint64_t next = brg__session_timer(M.s, NOW);
    s_after();
    // A deadline that is not in the future would spin the owner's poll.
    if (brg__session_state(M.s) == BRG__SESS_ENDED)
        REQUIRE(next == UINT64_MAX);
    else
        REQUIRE(next > NOW);
}

static void
s_op_end(uint8_t b)
{
    s_begin_call();
    brg__session_end(M.s, (brg__end_reason_t)(BRG__END_CLOSED + b % 6));
    s_after();
    REQUIRE(brg__session_state(M.s) == BRG__SESS_ENDED);
}

static void
s_op_replay(uint8_t b, bool flip)
{
    unsigned at = (RING_AT + S_RING - 1 - (b & 3)) % S_RING;
    if (!RING[at])
        return;
    size_t len = RING_LEN[at];
    uint8_t *copy = malloc(len ? len : 1); // the ring changes as the session sends
    REQUIRE(copy != NULL);
    memcpy(copy, RING[at], len);
    s_feed(copy, len, !flip);
    free(copy);
}

static void
s_op_bye_error(uint8_t b, bool flip)
{
    brg__wbuf_t w = {0};
    if (b & 1)
        REQUIRE(brg__wire_encode_bye(&w, "fz") == BRG_OK);
    else
        REQUIRE(brg__wire_encode_error(&w, 1 + (b >> 1) % 8, "fz") == BRG_OK);
    s_feed(w.data, w.size, !flip);
    brg__wbuf_free(&w);
}

static void
s_config(uint8_t conf)
{
    static const uint32_t tables[4] = {1u << 20, 1, 2, 4};
    brg__session_cfg_default(&CFG);
    memcpy(CFG.node, s_node_us, 16);
    snprintf(CFG.name, sizeof CFG.name, "us");
    snprintf(CFG.cluster, sizeof CFG.cluster, "fuzz");
    snprintf(CFG.ep, sizeof CFG.ep, "inproc://us");
    CFG.tick_ms = 100;
    CFG.timeout_ms = 1000;
    CFG.handshake_ms = 500;
    CFG.client_idle_ms = 5000;
    CFG.max_table = tables[(conf >> 1) & 3];
    CFG.client_key = (conf & 16) != 0; // the peer proved a client key (PROTOCOL.md 22)
    if (conf & 8) {
        CFG.limits.max_envelopes = 4;
        CFG.limits.max_payload = 64;
        CFG.limits.max_frame = 512;
    }
}

void
fz_session_run(const uint8_t *data, size_t len)
{
    s_script_t sc = {data, len, 0};
    const uint8_t *b;
    uint8_t conf = s_take(&sc, 1, &b) ? b[0] : 0;
    s_config(conf);
    TOTALS.runs++;
    brg__wire_limits_default(&DEF_LIMITS);
    NOW = 1000000 * MS;
    INITIATOR = conf & 1;
    s_new_session(INITIATOR);
    while (s_take(&sc, 1, &b)) {
        uint8_t op = b[0] & 15;
        bool flag = b[0] & 0x10;
        if (op == 0) { // RAW
            if (!s_take(&sc, 2, &b))
                break;
            size_t n = (size_t)b[0] << 8 | b[1];
            if (n > sc.len - sc.pos)
                n = sc.len - sc.pos;
            s_take(&sc, n, &b);
            // Exactly n bytes on the heap, so ASan sees a read past them.
            uint8_t *exact = malloc(n ? n : 1);
            REQUIRE(exact != NULL);
            memcpy(exact, b, n);
            s_feed(exact, n, !flag);
            free(exact);
        } else if (op == 1) {
            if (!s_take(&sc, 2, &b))
                break;
            s_op_hello(b, flag);
        } else if (op == 2) {
            if (!s_op_batch(&sc, flag))
                break;
        } else if (op == 3) {
            if (!s_take(&sc, 1, &b))
                break;
            s_op_tick(b[0], flag);
        } else if (op == 4) {
            if (!s_take(&sc, 2, &b))
                break;
            s_op_time(b, flag);
        } else if (op == 5) {
            if (!s_take(&sc, 5, &b))
                break;
            s_op_push(b);
        } else if (op == 7) {
            if (!s_take(&sc, 1, &b))
                break;
            s_op_end(b[0]);
        } else if (op == 8) {
            if (!s_take(&sc, 1, &b))
                break;
            s_op_replay(b[0], flag);
        } else if (op == 9) {
            if (!s_take(&sc, 1, &b))
                break;
            s_op_bye_error(b[0], flag);
        } else { // 6 and 10-15: FLUSH
            s_begin_call();
            brg__session_flush(M.s);
            s_after();
        }
    }
    s_finish();
    for (unsigned i = 0; i < S_RING; i++) {
        free(RING[i]);
        RING[i] = NULL;
    }
    RING_AT = 0;
}

//  ---------------------------------------------------------------------------
//  Seeds: scripts that bring the session up in each role and exercise each
//  part of it, written by code so they follow the format.

typedef struct {
    uint8_t *b;
    size_t n, cap;
} s_buf_t;

static void
sb_put(s_buf_t *s, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->b = realloc(s->b, s->cap);
        REQUIRE(s->b != NULL);
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void
sb_op(s_buf_t *s, uint8_t op, const uint8_t *args, size_t n)
{
    sb_put(s, &op, 1);
    sb_put(s, args, n);
}

#define OP(s, op, ...)                                                                             \
    do {                                                                                           \
        const uint8_t args_[] = {__VA_ARGS__};                                                     \
        sb_op((s), (op), args_, sizeof args_);                                                     \
    } while (0)

enum {
    K_SEND,
    K_REPLY,
    K_REPLY_ERROR,
    K_LINK,
    K_UNLINK,
    K_MONITOR,
    K_DEMONITOR,
    K_EXIT,
    K_DOWN,
    K_EXIT_SIGNAL,
    K_STOP
};

//  An envelope's 6 bytes: kind index, to id, from id, corr, tag 0..3, args byte.
#define ENV(kind, to, from, corr, tag, args)                                                       \
    (kind), (uint8_t)((to) << 3), (uint8_t)((from) << 2 | 1), (corr), (tag), (args)

//  Both directions up: the peer's HELLO on our inbox, its WELCOME of ours.
static void
sb_up(s_buf_t *s, uint8_t sess)
{
    OP(s, 1, 0x00, sess); // HELLO
    OP(s, 1, 0x01, sess); // WELCOME
}

static void
sb_raw(s_buf_t *s, const uint8_t *frame, size_t len)
{
    uint8_t head[3] = {0, (uint8_t)(len >> 8), (uint8_t)len};
    sb_put(s, head, 3);
    sb_put(s, frame, len);
}

//  A frame of each type written by the encoder, as RAW operations: bytes
//  for libFuzzer to mutate at the msgpack level.
static void
sb_raw_frames(s_buf_t *s)
{
    brg__hello_t h;
    memset(&h, 0, sizeof h);
    memcpy(h.node, s_node_peer, 16);
    h.sess = 0x5e56;
    snprintf(h.name, sizeof h.name, "peer");
    snprintf(h.cluster, sizeof h.cluster, "fuzz");
    snprintf(h.ep, sizeof h.ep, "inproc://peer");
    brg__wbuf_t w = {0};
    REQUIRE(brg__wire_encode_hello(&w, BRG__FRAME_HELLO, &h) == BRG_OK);
    sb_raw(s, w.data, w.size);
    brg__wbuf_reset(&w);
    REQUIRE(brg__wire_encode_hello(&w, BRG__FRAME_WELCOME, &h) == BRG_OK);
    // A WELCOME arrives on our outbox: RAW with flag 1.
    uint8_t head[3] = {0x10, (uint8_t)(w.size >> 8), (uint8_t)w.size};
    sb_put(s, head, 3);
    sb_put(s, w.data, w.size);
    brg__wbuf_reset(&w);
    // A BATCH from the peer's actors 2 and 3 to our 1 and the name "svc".
    brg_ref_t peer = brg__ref_of_uuid(s_node_peer, 0), us = brg__ref_of_uuid(s_node_us, 1);
    REQUIRE(brg__wire_batch_begin(&w, 1) == BRG_OK);
    brg_msg_t *m = brg_msg_new("greet");
    REQUIRE(m && brg_msg_add_str(m, "hello") == BRG_OK && brg_msg_add_int(m, 42) == BRG_OK);
    m->sender = brg__ref_of_uuid(s_node_peer, 2);
    REQUIRE(brg__wire_batch_add(&w, peer, us, NULL, m) == BRG_OK);
    m->corr = 7; // an ask
    REQUIRE(brg__wire_batch_add(&w, peer, us, "svc", m) == BRG_OK);
    brg_msg_destroy(&m);
    m = brg_msg_new(BRG_TAG_EXIT);
    REQUIRE(m != NULL);
    m->kind = BRG__MSG_SYS_LINK;
    m->sender = brg__ref_of_uuid(s_node_peer, 3);
    REQUIRE(brg__wire_batch_add(&w, peer, us, NULL, m) == BRG_OK);
    brg_msg_destroy(&m);
    REQUIRE(brg__wire_batch_end(&w) == BRG_OK);
    sb_raw(s, w.data, w.size);
    brg__wbuf_reset(&w);
    REQUIRE(brg__wire_encode_tick(&w, 0) == BRG_OK);
    sb_raw(s, w.data, w.size);
    brg__wbuf_reset(&w);
    REQUIRE(brg__wire_encode_bye(&w, "done") == BRG_OK);
    sb_raw(s, w.data, w.size);
    brg__wbuf_free(&w);
}

size_t
fz_session_seeds(fz_seed_t **seeds_p)
{
    enum { N = 14 };
    fz_seed_t *seeds = calloc(N, sizeof *seeds);
    REQUIRE(seeds != NULL);
    s_buf_t s[N];
    memset(s, 0, sizeof s);
    size_t k = 0;

    // We accept: up, traffic both ways with every table, acks, ticks, silence.
    seeds[k].name = "accept_up";
    sb_put(&s[k], "\x00", 1);
    sb_up(&s[k], 1);
    OP(&s[k], 2, 0, 3, ENV(K_SEND, 1, 2, 0, 0, 0x08), ENV(K_LINK, 3, 4, 0, 1, 0),
       ENV(K_MONITOR, 3, 4, 9, 1, 0));
    OP(&s[k], 5, 0, 0x00, 2, 7, 0x02); // an ask from our 1 to their 2
    OP(&s[k], 5, 4, 0x04, 2, 0, 0);    // LINK
    OP(&s[k], 5, 6, 0x04, 2, 5, 0);    // MONITOR 5
    sb_op(&s[k], 6, NULL, 0);
    OP(&s[k], 3, 0); // they ack it
    OP(&s[k], 4, 0, 150);
    OP(&s[k], 2, 0, 3, ENV(K_REPLY, 1, 2, 7, 0, 0x08), ENV(K_UNLINK, 3, 4, 0, 1, 0),
       ENV(K_DEMONITOR, 3, 4, 9, 1, 0));
    OP(&s[k], 4, 0x13, 0x88); // 5 s of silence
    k++;

    // We dial: WELCOME, their HELLO, every kind out, signals in, a cut.
    seeds[k].name = "dial_up";
    sb_put(&s[k], "\x01", 1);
    OP(&s[k], 1, 0x01, 2);
    OP(&s[k], 1, 0x00, 2);
    for (uint8_t kind = 0; kind < 14; kind++)
        OP(&s[k], 5, kind, 0x04, 3, (uint8_t)(kind + 1), 0x09);
    OP(&s[k], 5, 0, 0x04, 3, 0, 0x80); // a big one
    sb_op(&s[k], 6, NULL, 0);
    OP(&s[k], 2, 0, 4, ENV(K_DOWN, 2, 3, 4, 2, 0x18), ENV(K_EXIT, 2, 3, 0, 1, 0x18),
       ENV(K_EXIT_SIGNAL, 2, 3, 0, 1, 0x08), ENV(K_STOP, 2, 3, 0, 1, 0));
    OP(&s[k], 3, 1);
    OP(&s[k], 7, 0); // closed
    k++;

    // A client: its HELLO, an ask by name, our reply, its idle end.
    seeds[k].name = "client";
    sb_put(&s[k], "\x00", 1);
    OP(&s[k], 1, 0x02, 3);
    OP(&s[k], 2, 0, 1, K_SEND, 0x45, 0x05, 5, 0, 0x08); // to the name "svc"
    OP(&s[k], 5, 2, 0x00, 1, 5, 0x01);
    sb_op(&s[k], 6, NULL, 0);
    OP(&s[k], 4, 0x17, 0x70); // 6 s
    k++;

    // A new HELLO from the same node replaces the session.
    seeds[k].name = "replaced";
    sb_put(&s[k], "\x00", 1);
    sb_up(&s[k], 4);
    OP(&s[k], 2, 0, 1, ENV(K_LINK, 1, 2, 0, 1, 0));
    OP(&s[k], 1, 0x00, 5);
    OP(&s[k], 1, 0x01, 5);
    OP(&s[k], 2, 0, 1, ENV(K_SEND, 1, 2, 0, 0, 0));
    k++;

    // The encoder's frames as raw bytes.
    seeds[k].name = "raw_frames";
    sb_put(&s[k], "\x00", 1);
    sb_raw_frames(&s[k]);
    k++;

    // Tables bounded at one entry: links and monitors past it both ways.
    seeds[k].name = "table_bound";
    sb_put(&s[k], "\x02", 1);
    sb_up(&s[k], 6);
    OP(&s[k], 2, 0, 3, ENV(K_LINK, 1, 2, 0, 1, 0), ENV(K_LINK, 1, 3, 0, 1, 0),
       ENV(K_MONITOR, 1, 4, 3, 1, 0));
    OP(&s[k], 5, 4, 0x04, 1, 0, 0);
    OP(&s[k], 5, 4, 0x08, 1, 0, 0);
    OP(&s[k], 5, 6, 0x08, 1, 2, 0);
    OP(&s[k], 5, 0, 0x08, 1, 3, 0); // an ask without an entry
    sb_op(&s[k], 6, NULL, 0);
    OP(&s[k], 7, 5); // local
    k++;

    // A BATCH with a sequence gap: ERROR 2.
    seeds[k].name = "seq_gap";
    sb_put(&s[k], "\x00", 1);
    sb_up(&s[k], 7);
    OP(&s[k], 2, 5, 1, ENV(K_SEND, 1, 2, 0, 0, 0));
    OP(&s[k], 2, 0, 1, ENV(K_SEND, 1, 2, 0, 0, 0)); // after the end
    k++;

    // A TICK acking a BATCH never sent: ERROR 2.
    seeds[k].name = "tick_never_sent";
    sb_put(&s[k], "\x01", 1);
    OP(&s[k], 1, 0x01, 8);
    OP(&s[k], 1, 0x00, 8);
    OP(&s[k], 5, 0, 0x00, 1, 0, 0);
    sb_op(&s[k], 6, NULL, 0);
    OP(&s[k], 3, 0x80);
    k++;

    // BYE, then frames to the ended session.
    seeds[k].name = "bye";
    sb_put(&s[k], "\x00", 1);
    sb_up(&s[k], 9);
    OP(&s[k], 5, 2, 0x00, 1, 1, 0);
    OP(&s[k], 9, 1);
    OP(&s[k], 3, 0);
    OP(&s[k], 5, 0, 0x00, 1, 0, 0);
    k++;

    // An ERROR from the peer.
    seeds[k].name = "error_in";
    sb_put(&s[k], "\x01", 1);
    OP(&s[k], 1, 0x01, 10);
    OP(&s[k], 0x19, 4); // ERROR 3 on our outbox
    k++;

    // No WELCOME: the handshake times out.
    seeds[k].name = "handshake_timeout";
    sb_put(&s[k], "\x01", 1);
    OP(&s[k], 4, 0x02, 0x58);
    k++;

    // Our own HELLO comes back: a connection to ourselves.
    seeds[k].name = "self";
    sb_put(&s[k], "\x01", 1);
    OP(&s[k], 8, 0);
    k++;

    // Another cluster, from a stranger's node.
    seeds[k].name = "cluster";
    sb_put(&s[k], "\x00", 1);
    OP(&s[k], 1, 0x18, 11);
    k++;

    // Small decoder limits: a BATCH of 6 envelopes is over 4.
    seeds[k].name = "small_limits";
    sb_put(&s[k], "\x08", 1);
    sb_up(&s[k], 12);
    OP(&s[k], 2, 0, 6, ENV(K_SEND, 1, 2, 0, 0, 0), ENV(K_SEND, 1, 2, 0, 0, 0),
       ENV(K_SEND, 1, 2, 0, 0, 0), ENV(K_SEND, 1, 2, 0, 0, 0), ENV(K_SEND, 1, 2, 0, 0, 0),
       ENV(K_SEND, 1, 2, 0, 0, 0));
    k++;

    REQUIRE(k == N);
    for (size_t i = 0; i < N; i++) {
        seeds[i].data = s[i].b;
        seeds[i].len = s[i].n;
    }
    *seeds_p = seeds;
    return N;
}

void
fz_session_seeds_free(fz_seed_t *seeds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(seeds[i].data);
    free(seeds);
}
