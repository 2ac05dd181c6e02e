//  session - one peer's session: handshake, sequence numbers, liveness,
//  and the links, monitors and asks that cross it
//
//  Design notes.
//  The session is a pure state machine owned by one thread (the node's I/O
//  thread; the tests' loopback double). It has no clock: every call that
//  depends on time takes now_ns, and brg__session_timer returns the next
//  deadline. Everything it wants done leaves through the io callbacks,
//  synchronously.
//
//  Directions. in_open: the peer's HELLO was accepted (its BATCHes and
//  TICKs may come in on our inbox). out_open: our HELLO was answered by
//  WELCOME on our outbox. A client has no outbox toward us, so for it
//  in_open is enough and every frame we send goes back through the inbox
//  (send_frame inbound true). We send BATCHes as soon as our HELLO is out,
//  without waiting for WELCOME (ZeroMQ keeps the order on the connection,
//  and a peer that refuses our HELLO drops them: they count as lost in
//  flight, their asks, links and monitors are in the tables and are
//  answered when the session ends).
//
//  Sequence numbers. out_seq counts our BATCH frames from 1, in_seq the
//  peer's; a BATCH whose seq is not in_seq + 1 ends the session (ERROR 2)
//  before any of its envelopes is delivered. A TICK carries the highest
//  BATCH seq we received; the peer's TICK tells us which of ours arrived.
//  Per sent frame we keep (last seq, messages sent through it) so that an
//  ack turns into msgs_acked; at the end lost_in_flight = msgs_out -
//  msgs_acked. A peer that never acks (a client) would grow that list
//  without bound, so past S_UNACKED_MAX ranges the newest range absorbs
//  the next frames: lost_in_flight then stays an upper bound, never an
//  undercount.
//
//  Tables. Four hash sets of (local id, remote id, monitor id or corr),
//  the remote ids being local ids on the peer's node. They change as
//  envelopes cross, in the order they cross (session.h), and on the end
//  each entry is answered exactly once, after every BATCH the peer sent
//  that passed the sequence check was delivered (delivery is synchronous
//  in brg__session_on_frame, so "after" is just program order). The end
//  answers go through io->deliver like any inbound message, so they queue
//  behind everything the peer's actors sent to the same local actors.
//  Bound: a LINK or MONITOR that would take a table past max_table is not
//  sent on and is answered at once: outbound, the local actor gets EXIT or
//  DOWN noconnection; inbound, the peer's actor gets EXIT or DOWN
//  noconnection back over the wire (from the local target), so its side's
//  table entry is answered too. A request past the bound is sent without
//  an entry (it keeps its timeout, not the fast failure).
//
//  Inbound targets. A `to` ext ref naming another node, and a control kind
//  addressed by name (links and monitors need an id for the tables), are
//  delivered to id 0: the deliver callback (brg__remote_deliver) counts a
//  dead letter and answers what is owed (an error reply to a request).
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "session.h"

#define S_BATCH_BYTES (64u * 1024u)  // a BATCH is sealed at this size...
#define S_BATCH_ENVS 1024u           // ... or this many envelopes
#define S_ENVS_KEPT_MAX S_BATCH_ENVS // decoded envelopes kept per frame (wire.c design notes)
#define S_ENV_OVERHEAD 128u          // an envelope's bytes beyond tag and payload, at most
#define S_FRAME_OVERHEAD 32u         // a BATCH frame's bytes before its envelopes, at most
#define S_UNACKED_MAX 4096u          // sent-frame ranges kept for acks
#define S_ANSWER_CHUNK 256u          // answers of an ended session per deliver call
#define S_NS_PER_MS 1000000ull

//  ---------------------------------------------------------------------------
//  A hash set of (local, remote, x) triples: open addressing, linear
//  probing, tombstones. x is the monitor id (watching, watched) or the ask
//  id (asks); 0 for links.

typedef struct {
    uint64_t local, remote, x;
} s_key_t;

typedef struct {
    s_key_t *keys;
    uint8_t *used;  // 0 empty, 1 full, 2 tombstone
    uint32_t cap;   // power of two, or 0
    uint32_t count; // full slots
    uint32_t tombs; // tombstones
} s_table_t;

static uint64_t
s_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint32_t
s_hash(s_key_t k)
{
    return (uint32_t)s_mix(k.local ^ s_mix(k.remote ^ s_mix(k.x)));
}

static bool
s_key_eq(s_key_t a, s_key_t b)
{
    return a.local == b.local && a.remote == b.remote && a.x == b.x;
}

//  The slot holding k, or UINT32_MAX.
static uint32_t
s_table_find(const s_table_t *t, s_key_t k)
{
    if (t->count == 0)
        return UINT32_MAX;
    uint32_t mask = t->cap - 1;
    for (uint32_t i = s_hash(k) & mask;; i = (i + 1) & mask) {
        if (t->used[i] == 0)
            return UINT32_MAX;
        if (t->used[i] == 1 && s_key_eq(t->keys[i], k))
            return i;
    }
}

static bool
s_table_has(const s_table_t *t, s_key_t k)
{
    return s_table_find(t, k) != UINT32_MAX;
}

static void
s_table_put_new(s_table_t *t, s_key_t k)
{
    uint32_t mask = t->cap - 1;
    uint32_t i = s_hash(k) & mask;
    while (t->used[i] == 1)
        i = (i + 1) & mask;
    if (t->used[i] == 2)
        t->tombs--;
    t->used[i] = 1;
    t->keys[i] = k;
    t->count++;
}

static int
s_table_rehash(s_table_t *t, uint32_t cap)
{
    s_key_t *keys = malloc((size_t)cap * sizeof(*keys));
    uint8_t *used = calloc(cap, 1);
    if (!keys || !used) {
        free(keys);
        free(used);
        return BRG_ENOMEM;
    }
    s_table_t old = *t;
    t->keys = keys;
    t->used = used;
    t->cap = cap;
    t->count = 0;
    t->tombs = 0;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.used[i] == 1)
            s_table_put_new(t, old.keys[i]);
    free(old.keys);
    free(old.used);
    return BRG_OK;
}

//  Add k (a set: adding twice is one entry). Returns BRG_OK or BRG_ENOMEM.
static int
s_table_add(s_table_t *t, s_key_t k)
{
    if (s_table_has(t, k))
        return BRG_OK;
    // Keep at least a quarter of the slots empty so probes end quickly.
    if ((uint64_t)(t->count + t->tombs + 1) * 4 > (uint64_t)t->cap * 3) {
        uint32_t cap = t->cap ? t->cap : 16;
        while ((uint64_t)(t->count + 1) * 2 > cap)
            cap *= 2;
        int rc = s_table_rehash(t, cap);
        if (rc != BRG_OK)
            return rc;
    }
    s_table_put_new(t, k);
    return BRG_OK;
}

static void
s_table_remove(s_table_t *t, s_key_t k)
{
    uint32_t i = s_table_find(t, k);
    if (i == UINT32_MAX)
        return;
    t->used[i] = 2;
    t->count--;
    t->tombs++;
}

static void
s_table_free(s_table_t *t)
{
    free(t->keys);
    free(t->used);
    memset(t, 0, sizeof(*t));
}

//  ---------------------------------------------------------------------------
//  The session.

typedef struct {
    uint64_t seq_end; // last BATCH seq of the range
    uint64_t msgs;    // msgs_out after that frame (cumulative)
} s_range_t;

struct brg__session {
    brg__session_cfg_t cfg;
    brg__session_io_t io;
    void *io_arg;
    brg_ref_t self_node; // our node as a ref (id 0)
    brg_ref_t peer_node; // the peer's, once its HELLO or WELCOME arrived
    brg__hello_t peer;   // the peer's HELLO (or WELCOME)
    bool have_peer;      // peer is valid
    bool initiator;      // we dialed
    bool client;         // the peer is a client: one connection, our inbox
    bool in_open;        // the peer's HELLO was accepted
    bool out_sent;       // our HELLO (or, to a client, WELCOME) was sent
    bool out_open;       // our HELLO was answered by WELCOME
    brg__sess_state_t state;
    brg__end_reason_t reason;

    uint64_t in_seq;        // last BATCH seq received
    uint64_t out_seq;       // last BATCH seq sent
    uint64_t acked;         // highest of our seqs the peer acked
    uint64_t handshake_end; // CONNECTING: end TIMEOUT at this time
    uint64_t heard_ns;      // last frame from the peer
    uint64_t next_tick;     // UP: next TICK due

    brg__wbuf_t batch;   // the open BATCH (our next frame)
    brg__wbuf_t scratch; // control frames, encoded and sent at once
    uint32_t batch_envs; // envelopes in the open BATCH (0: none open)
    s_range_t *unacked;  // sent frames not yet acked, oldest first from unacked_head
    uint32_t unacked_head, unacked_n, unacked_cap;

    s_table_t links, watching, watched, asks;
    brg__session_stats_t stats;

    // Inbound scratch, reused: one BATCH's targets, messages and names.
    brg__remote_target_t *tgt;
    brg_msg_t **msgs;
    size_t *name_at; // per message: offset of its name in names, or SIZE_MAX
    uint32_t scratch_cap;
    char *names;
    size_t names_len, names_cap;
    brg__frame_t in;    // brg__session_on_bytes decodes into it (~21 KiB, not per frame)
    bool in_busy;       // in is in use (bytes fed in from a callback: use the heap)
    brg__frame_t *walk; // a copy of a caller's BATCH frame's walk state, made on first use
};

const char *
brg__end_reason_name(brg__end_reason_t reason)
{
    switch (reason) {
    case BRG__END_NONE:
        return "none";
    case BRG__END_CLOSED:
        return "closed";
    case BRG__END_TIMEOUT:
        return "timeout";
    case BRG__END_PROTOCOL:
        return "protocol";
    case BRG__END_BYE:
        return "bye";
    case BRG__END_REPLACED:
        return "replaced";
    case BRG__END_REVOKED:
        return "revoked";
    case BRG__END_LOCAL:
        return "local";
    }
    return "unknown";
}

void
brg__session_cfg_default(brg__session_cfg_t *cfg)
{
    assert(cfg);
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->cluster, "brigade");
    cfg->tick_ms = 1000;
    cfg->timeout_ms = 10000;
    cfg->handshake_ms = 5000;
    cfg->max_table = 1u << 20;
    cfg->client_idle_ms = 600000;
    brg__wire_limits_default(&cfg->limits);
}

static bool
s_same_node(brg_ref_t a, brg_ref_t b)
{
    return a.node_hi == b.node_hi && a.node_lo == b.node_lo;
}

static brg_ref_t
s_with_id(brg_ref_t node, uint64_t id)
{
    node.id = id;
    return node;
}

static void s_send_hello(brg__session_t *self, brg__frame_type_t type, bool inbound);

brg__session_t *
brg__session_new(const brg__session_cfg_t *cfg, const brg__session_io_t *io, void *io_arg,
                 bool initiator, uint64_t now_ns)
{
    assert(cfg && io && io->send_frame && io->deliver);
    brg__session_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->cfg = *cfg;
    if (self->cfg.sess == 0)
        self->cfg.sess = s_mix(now_ns ^ (uintptr_t)self) | 1;
    self->io = *io;
    self->io_arg = io_arg;
    self->self_node = brg__ref_of_uuid(cfg->node, 0);
    self->initiator = initiator;
    self->state = BRG__SESS_CONNECTING;
    self->heard_ns = now_ns;
    self->handshake_end = now_ns + (uint64_t)cfg->handshake_ms * S_NS_PER_MS;
    if (initiator) {
        s_send_hello(self, BRG__FRAME_HELLO, false);
        self->out_sent = true;
    }
    return self;
}

void
brg__session_destroy(brg__session_t **self_p)
{
    assert(self_p);
    brg__session_t *self = *self_p;
    if (!self)
        return;
    brg__wbuf_free(&self->batch);
    brg__wbuf_free(&self->scratch);
    free(self->unacked);
    s_table_free(&self->links);
    s_table_free(&self->watching);
    s_table_free(&self->watched);
    s_table_free(&self->asks);
    free(self->tgt);
    free(self->msgs);
    free(self->name_at);
    free(self->names);
    free(self->walk);
    free(self->in.envs);
    free(self);
    *self_p = NULL;
}

brg__sess_state_t
brg__session_state(const brg__session_t *self)
{
    assert(self);
    return self->state;
}

const brg__hello_t *
brg__session_peer(const brg__session_t *self)
{
    assert(self);
    return self->have_peer ? &self->peer : NULL;
}

brg_ref_t
brg__session_peer_node(const brg__session_t *self)
{
    assert(self);
    return self->have_peer ? self->peer_node : BRG_REF_NONE;
}

//  ---------------------------------------------------------------------------
//  Sending frames.

//  The connection our data goes on: the outbox, or the inbox for a client.
static bool
s_data_inbound(const brg__session_t *self)
{
    return self->client;
}

static void
s_send_scratch(brg__session_t *self, bool inbound)
{
    self->io.send_frame(self->io_arg, inbound, self->scratch.data, self->scratch.size);
    self->stats.frames_out++;
    self->stats.bytes_out += self->scratch.size;
    brg__wbuf_reset(&self->scratch);
}

static void
s_send_hello(brg__session_t *self, brg__frame_type_t type, bool inbound)
{
    brg__hello_t h;
    memset(&h, 0, sizeof(h));
    memcpy(h.node, self->cfg.node, 16);
    h.sess = self->cfg.sess;
    memcpy(h.name, self->cfg.name, sizeof(h.name));
    memcpy(h.cluster, self->cfg.cluster, sizeof(h.cluster));
    memcpy(h.ep, self->cfg.ep, sizeof(h.ep));
    h.max_frame = self->cfg.limits.max_frame;
    h.tick_ms = self->cfg.tick_ms;
    h.timeout_ms = self->cfg.timeout_ms;
    h.probe = self->cfg.probe && self->initiator && type == BRG__FRAME_HELLO;
    h.minor = BRG__WIRE_MINOR;
    h.trace = true; // we read envelope ext maps: send us trace contexts
    if (type == BRG__FRAME_WELCOME && self->io.welcome_peers != NULL)
        self->io.welcome_peers(self->io_arg, &h);
    // Out of memory for a frame of a few hundred bytes: the frame is not
    // sent, and the handshake timeout ends the session.
    if (brg__wire_encode_hello(&self->scratch, type, &h) == BRG_OK)
        s_send_scratch(self, inbound);
}

static void
s_send_error(brg__session_t *self, bool inbound, int code, const char *text)
{
    if (brg__wire_encode_error(&self->scratch, code, text) == BRG_OK)
        s_send_scratch(self, inbound);
}

static void
s_send_tick(brg__session_t *self)
{
    if (brg__wire_encode_tick(&self->scratch, self->in_seq) == BRG_OK)
        s_send_scratch(self, s_data_inbound(self));
}

//  Remember how many messages were sent up to frame out_seq, for the acks.
static void
s_unacked_push(brg__session_t *self)
{
    if (self->unacked_head > 0 && self->unacked_head == self->unacked_n) {
        self->unacked_head = 0;
        self->unacked_n = 0;
    }
    if (self->unacked_n == self->unacked_cap && self->unacked_head > 0) {
        memmove(self->unacked, self->unacked + self->unacked_head,
                (self->unacked_n - self->unacked_head) * sizeof(*self->unacked));
        self->unacked_n -= self->unacked_head;
        self->unacked_head = 0;
    }
    if (self->unacked_n == self->unacked_cap && self->unacked_cap < S_UNACKED_MAX) {
        uint32_t cap = self->unacked_cap ? self->unacked_cap * 2 : 16;
        s_range_t *p = realloc(self->unacked, cap * sizeof(*p));
        if (p) {
            self->unacked = p;
            self->unacked_cap = cap;
        }
    }
    if (self->unacked_n == self->unacked_cap) {
        // Full (or out of memory): the newest range takes this frame too.
        // With no range at all the frame can never count as acked, which
        // keeps lost_in_flight an upper bound.
        if (self->unacked_n > self->unacked_head) {
            s_range_t *last = &self->unacked[self->unacked_n - 1];
            last->seq_end = self->out_seq;
            last->msgs = self->stats.msgs_out;
        }
        return;
    }
    self->unacked[self->unacked_n++] = (s_range_t){self->out_seq, self->stats.msgs_out};
}

static void
s_on_ack(brg__session_t *self, uint64_t acked)
{
    if (acked <= self->acked)
        return;
    self->acked = acked;
    while (self->unacked_head < self->unacked_n &&
           self->unacked[self->unacked_head].seq_end <= acked) {
        self->stats.msgs_acked = self->unacked[self->unacked_head].msgs;
        self->unacked_head++;
    }
}

void
brg__session_flush(brg__session_t *self)
{
    assert(self);
    if (self->batch_envs == 0 || self->state == BRG__SESS_ENDED)
        return;
    // batch_end only patches the count into the header written by
    // batch_begin: it cannot fail for a BATCH begun here.
    brg__wire_batch_end(&self->batch);
    self->out_seq++;
    self->io.send_frame(self->io_arg, s_data_inbound(self), self->batch.data, self->batch.size);
    self->stats.frames_out++;
    self->stats.bytes_out += self->batch.size;
    self->stats.msgs_out += self->batch_envs;
    s_unacked_push(self);
    self->batch_envs = 0;
    brg__wbuf_reset(&self->batch);
}

//  ---------------------------------------------------------------------------
//  Signals the session builds: the answers of the tables.

//  EXIT/DOWN noconnection, DEMONITOR or REPLY_ERROR BRG_ENETWORK, built as
//  the runtime builds its signals. NULL if out of memory.
static brg_msg_t *
s_signal(int kind, brg_ref_t from, uint64_t corr)
{
    if (kind == BRG__MSG_REPLY_ERROR)
        return brg__remote_signal(kind, from, corr, BRG_ENETWORK, NULL);
    if (kind == BRG__MSG_SYS_DEMONITOR) // no reason, as a dying actor's
        return brg__remote_signal(kind, from, corr, 0, NULL);
    brg_exit_reason_t reason;
    memset(&reason, 0, sizeof(reason));
    reason.kind = BRG_EXIT_NOCONNECTION;
    reason.code = BRG_ENETWORK;
    return brg__remote_signal(kind, from, corr, 0, &reason);
}

static void
s_deliver_one(brg__session_t *self, uint64_t to, brg_msg_t *msg)
{
    if (!msg)
        return; // out of memory: the one answer the runtime could not build
    brg__remote_target_t t = {to, NULL};
    self->io.deliver(self->io_arg, &t, &msg, 1);
}

//  ---------------------------------------------------------------------------
//  Ending.

//  Every table entry's answer, in the order session.h gives, then the
//  tables are empty. Called once, with the session already ENDED (so the
//  callbacks cannot add entries).
static void
s_answer_tables(brg__session_t *self)
{
    brg__remote_target_t tgt[S_ANSWER_CHUNK];
    brg_msg_t *msgs[S_ANSWER_CHUNK];
    size_t n = 0;
    struct {
        s_table_t *t;
        int kind;
    } order[4] = {{&self->links, BRG__MSG_SYS_EXIT},
                  {&self->watching, BRG__MSG_SYS_DOWN},
                  {&self->watched, BRG__MSG_SYS_DEMONITOR},
                  {&self->asks, BRG__MSG_REPLY_ERROR}};
    for (int o = 0; o < 4; o++) {
        s_table_t *t = order[o].t;
        for (uint32_t i = 0; i < t->cap; i++) {
            if (t->used[i] != 1)
                continue;
            s_key_t k = t->keys[i];
            brg_ref_t from = s_with_id(self->peer_node, k.remote);
            brg_msg_t *m = s_signal(order[o].kind, from, k.x);
            if (!m)
                continue; // out of memory: that one answer is lost
            tgt[n] = (brg__remote_target_t){k.local, NULL};
            msgs[n++] = m;
            if (n == S_ANSWER_CHUNK) {
                self->io.deliver(self->io_arg, tgt, msgs, n);
                n = 0;
            }
        }
        s_table_free(t);
    }
    if (n > 0)
        self->io.deliver(self->io_arg, tgt, msgs, n);
}

void
brg__session_end(brg__session_t *self, brg__end_reason_t reason)
{
    assert(self);
    assert(reason != BRG__END_NONE);
    if (self->state == BRG__SESS_ENDED)
        return;
    if (reason == BRG__END_LOCAL && self->out_sent) {
        brg__session_flush(self);
        if (brg__wire_encode_bye(&self->scratch, "local") == BRG_OK)
            s_send_scratch(self, s_data_inbound(self));
    } else if (reason == BRG__END_REVOKED && self->out_sent) {
        // Nothing more leaves for a peer whose key was taken away.
        s_send_error(self, s_data_inbound(self), BRG__WERR_NOT_ALLOWED, "key revoked");
    }
    self->state = BRG__SESS_ENDED;
    self->reason = reason;
    self->stats.dead_on_end += self->batch_envs;
    self->batch_envs = 0;
    brg__wbuf_reset(&self->batch);
    self->stats.lost_in_flight = self->stats.msgs_out - self->stats.msgs_acked;
    s_answer_tables(self);
    if (self->io.ended)
        self->io.ended(self->io_arg, reason);
}

//  A violation: ERROR on the connection it came from, then the end.
static int
s_fail(brg__session_t *self, bool inbound, int code, const char *text)
{
    s_send_error(self, inbound, code, text);
    brg__session_end(self, BRG__END_PROTOCOL);
    return BRG_EPROTO;
}

//  ---------------------------------------------------------------------------
//  Pushing messages out.

static bool
s_is_local_actor(const brg__session_t *self, brg_ref_t ref)
{
    return ref.id != 0 && s_same_node(ref, self->self_node);
}

static size_t
s_peer_max_frame(const brg__session_t *self)
{
    if (self->have_peer && self->peer.max_frame != 0)
        return self->peer.max_frame;
    brg__wire_limits_t def;
    brg__wire_limits_default(&def);
    return def.max_frame;
}

//  A LINK or MONITOR that finds its table full: answered at once, locally,
//  as if the session had ended for it. Takes msg.
static void
s_refuse_out(brg__session_t *self, int wk, brg_ref_t to, brg_msg_t *msg)
{
    self->stats.table_full++;
    int kind = wk == BRG__WK_LINK ? BRG__MSG_SYS_EXIT : BRG__MSG_SYS_DOWN;
    brg_msg_t *answer = s_signal(kind, to, wk == BRG__WK_LINK ? 0 : msg->corr);
    uint64_t asker = msg->sender.id;
    brg__msg_free(msg);
    s_deliver_one(self, asker, answer);
}

int
brg__session_push(brg__session_t *self, brg_ref_t to, const char *to_name, brg_msg_t **msg_p)
{
    assert(self && msg_p && *msg_p);
    assert(self->out_sent || self->state == BRG__SESS_ENDED);
    if (self->state == BRG__SESS_ENDED)
        return BRG_ENETWORK;
    brg_msg_t *msg = *msg_p;
    int wk = brg__wire_kind_of(msg->kind);
    if (wk < 0)
        return BRG_EINVAL;
    bool local = s_is_local_actor(self, msg->sender);
    bool control = brg__wire_kind_is_control(wk);
    // A control kind speaks for its sender, which must be ours (the peer
    // refuses the frame otherwise), and its target needs an id for the
    // tables. Exit signals and stops may have no sender (brg_exit and
    // brg_actor_stop from outside any actor; the wire allows nil for them).
    bool anonymous =
        brg_ref_is_none(msg->sender) && (wk == BRG__WK_EXIT_SIGNAL || wk == BRG__WK_STOP);
    if (control && ((!local && !anonymous) || to_name))
        return BRG_EINVAL;
    size_t env_max =
        (size_t)msg->size + msg->tag_len + S_ENV_OVERHEAD + (to_name ? strlen(to_name) : 0);
    if (env_max + S_FRAME_OVERHEAD > s_peer_max_frame(self))
        return BRG_EMSGSIZE;

    uint64_t l = msg->sender.id;
    s_key_t key = {l, to.id, 0};
    s_table_t *add = NULL;
    switch (wk) {
    case BRG__WK_LINK:
        add = &self->links;
        break;
    case BRG__WK_MONITOR:
        key.x = msg->corr;
        add = &self->watching;
        break;
    case BRG__WK_SEND:
        if (msg->corr != 0 && local) {
            key = (s_key_t){l, 0, msg->corr};
            add = &self->asks;
        }
        break;
    default:
        break;
    }
    // The entry goes in before the envelope, so that a LINK or MONITOR
    // never leaves without one (out of memory counts as a full table).
    bool added = false, no_entry = false;
    if (add && !s_table_has(add, key)) {
        if (add->count < self->cfg.max_table && s_table_add(add, key) == BRG_OK) {
            added = true;
        } else if (add != &self->asks) {
            *msg_p = NULL;
            s_refuse_out(self, wk, to, msg);
            return BRG_OK;
        } else {
            no_entry = true;
        }
    }

    // A big message goes alone in its frame, after the BATCH before it.
    if (self->batch_envs > 0 && self->batch.size + env_max > S_BATCH_BYTES)
        brg__session_flush(self);
    bool began = false;
    if (self->batch_envs == 0) {
        began = brg__wire_batch_begin(&self->batch, self->out_seq + 1) == BRG_OK;
        if (!began) {
            if (added)
                s_table_remove(add, key);
            return BRG_ENOMEM;
        }
    }
    int rc = brg__wire_batch_add(&self->batch, self->self_node, to, to_name, msg);
    if (rc != BRG_OK) {
        if (began)
            brg__wbuf_reset(&self->batch);
        if (added)
            s_table_remove(add, key);
        return rc;
    }
    self->batch_envs++;
    if (no_entry)
        self->stats.table_full++;

    // The envelope is on its way: the closing kinds take their entries.
    switch (wk) {
    case BRG__WK_UNLINK:
    case BRG__WK_EXIT:
        s_table_remove(&self->links, key);
        break;
    case BRG__WK_DEMONITOR:
        s_table_remove(&self->watching, (s_key_t){l, to.id, msg->corr});
        break;
    case BRG__WK_DOWN:
        s_table_remove(&self->watched, (s_key_t){l, to.id, msg->corr});
        break;
    default:
        break;
    }
    *msg_p = NULL;
    brg__msg_free(msg);
    if (self->batch_envs >= S_BATCH_ENVS || self->batch.size >= S_BATCH_BYTES)
        brg__session_flush(self);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Receiving frames.

static void
s_maybe_up(brg__session_t *self, uint64_t now_ns)
{
    if (self->state != BRG__SESS_CONNECTING || !self->in_open)
        return;
    if (!self->client && !self->out_open)
        return;
    self->state = BRG__SESS_UP;
    self->heard_ns = now_ns;
    self->next_tick = now_ns + (uint64_t)self->cfg.tick_ms * S_NS_PER_MS;
    if (self->io.up)
        self->io.up(self->io_arg);
}

//  Checks common to HELLO and WELCOME. Returns 0 or the ERROR code.
static int
s_check_hello(const brg__session_t *self, const brg__hello_t *h, const char **why)
{
    if (memcmp(h->node, self->cfg.node, 16) == 0) {
        *why = "self-connection";
        return BRG__WERR_SELF;
    }
    if (strcmp(h->cluster, self->cfg.cluster) != 0) {
        *why = "cluster mismatch";
        return BRG__WERR_NOT_ALLOWED;
    }
    if (self->have_peer && memcmp(h->node, self->peer.node, 16) != 0) {
        *why = "another node";
        return BRG__WERR_NOT_ALLOWED;
    }
    return 0;
}

static void
s_set_peer(brg__session_t *self, const brg__hello_t *h)
{
    if (self->have_peer)
        return;
    self->peer = *h;
    self->have_peer = true;
    self->peer_node = brg__ref_of_uuid(h->node, 0);
}

static int
s_on_hello(brg__session_t *self, const brg__hello_t *h, uint64_t now_ns)
{
    if (self->have_peer && memcmp(h->node, self->peer.node, 16) == 0 &&
        h->sess != self->peer.sess) {
        // The same node on a new connection of a new session: it gave up
        // on this one (Erlang's `alive`). Ours ends; the owner starts the
        // new one from this HELLO.
        brg__session_end(self, BRG__END_REPLACED);
        return BRG_EEXIST;
    }
    if (self->in_open)
        return s_fail(self, true, BRG__WERR_MALFORMED, "duplicate HELLO");
    const char *why = NULL;
    int code = s_check_hello(self, h, &why);
    if (code == 0 && h->client && self->initiator) {
        why = "a client cannot be dialed";
        code = BRG__WERR_NOT_ALLOWED;
    }
    if (code == 0 && !h->client && self->cfg.client_key) {
        why = "a client key may not act as a node";
        code = BRG__WERR_NOT_ALLOWED;
    }
    if (code != 0)
        return s_fail(self, true, code, why);
    s_set_peer(self, h);
    if (h->trace)
        self->batch.trace = true; // it reads trace contexts (PROTOCOL.md section 6)
    self->client = h->client;
    self->in_open = true;
    s_send_hello(self, BRG__FRAME_WELCOME, true);
    if (self->client) {
        self->out_sent = true;
    } else if (!self->out_sent) {
        // The reverse direction: the owner opens our outbox to the peer's
        // endpoint on this first frame.
        s_send_hello(self, BRG__FRAME_HELLO, false);
        self->out_sent = true;
        self->handshake_end = now_ns + (uint64_t)self->cfg.handshake_ms * S_NS_PER_MS;
    }
    s_maybe_up(self, now_ns);
    return BRG_OK;
}

static int
s_on_welcome(brg__session_t *self, const brg__hello_t *h, uint64_t now_ns)
{
    if (!self->out_sent || self->client || self->out_open)
        return s_fail(self, false, BRG__WERR_MALFORMED, "unexpected WELCOME");
    const char *why = NULL;
    int code = s_check_hello(self, h, &why);
    if (code == 0 && h->client) {
        why = "a client cannot welcome";
        code = BRG__WERR_NOT_ALLOWED;
    }
    if (code == 0 && self->have_peer && h->sess != self->peer.sess) {
        why = "session id differs from the peer's HELLO";
        code = BRG__WERR_NOT_ALLOWED;
    }
    if (code != 0)
        return s_fail(self, false, code, why);
    s_set_peer(self, h);
    if (h->trace)
        self->batch.trace = true;
    self->out_open = true;
    if (h->npeers > 0 && self->io.gossip != NULL)
        self->io.gossip(self->io_arg, h);
    s_maybe_up(self, now_ns);
    return BRG_OK;
}

static int
s_grow_scratch(brg__session_t *self, uint32_t n)
{
    if (n <= self->scratch_cap)
        return BRG_OK;
    uint32_t cap = self->scratch_cap ? self->scratch_cap : 64;
    while (cap < n)
        cap *= 2;
    brg__remote_target_t *tgt = realloc(self->tgt, cap * sizeof(*tgt));
    if (tgt)
        self->tgt = tgt;
    brg_msg_t **msgs = realloc(self->msgs, cap * sizeof(*msgs));
    if (msgs)
        self->msgs = msgs;
    size_t *name_at = realloc(self->name_at, cap * sizeof(*name_at));
    if (name_at)
        self->name_at = name_at;
    if (!tgt || !msgs || !name_at)
        return BRG_ENOMEM;
    self->scratch_cap = cap;
    return BRG_OK;
}

static int
s_add_name(brg__session_t *self, const char *name, size_t len, size_t *at)
{
    if (self->names_len + len + 1 > self->names_cap) {
        size_t cap = self->names_cap ? self->names_cap : 1024;
        while (cap < self->names_len + len + 1)
            cap *= 2;
        char *p = realloc(self->names, cap);
        if (!p)
            return BRG_ENOMEM;
        self->names = p;
        self->names_cap = cap;
    }
    memcpy(self->names + self->names_len, name, len);
    self->names[self->names_len + len] = '\0';
    *at = self->names_len;
    self->names_len += len + 1;
    return BRG_OK;
}

//  A walk over frame's envelopes from its first one. A frame decoded into
//  self->in is walked in place (its walk state saved for a second walk);
//  a caller's frame is const, so its walk state is copied (not its ~21 KiB
//  hello) into self->walk. NULL if out of memory.
static brg__frame_t *
s_walk_begin(brg__session_t *self, const brg__frame_t *frame, size_t pos, uint32_t next)
{
    brg__frame_t *w = &self->in;
    if (frame != &self->in) {
        if (!self->walk && !(self->walk = malloc(sizeof(*self->walk))))
            return NULL;
        w = self->walk;
        w->type = frame->type;
        w->seq = frame->seq;
        w->count = frame->count;
        w->data = frame->data;
        w->len = frame->len;
        w->envs = frame->envs;
        w->envs_cap = frame->envs_cap;
        w->stored = frame->stored;
    }
    w->pos = pos;
    w->next = next;
    return w;
}

//  An inbound LINK or MONITOR that finds its table full: not delivered;
//  its sender gets EXIT or DOWN noconnection from the target over the wire.
static void
s_refuse_in(brg__session_t *self, const brg__env_t *env, uint64_t target)
{
    self->stats.table_full++;
    bool link = env->kind == BRG__WK_LINK;
    brg_msg_t *answer = s_signal(link ? BRG__MSG_SYS_EXIT : BRG__MSG_SYS_DOWN,
                                 s_with_id(self->self_node, target), link ? 0 : env->corr);
    if (answer &&
        brg__session_push(self, s_with_id(self->peer_node, env->from_id), NULL, &answer) != BRG_OK)
        brg__msg_free(answer);
}

//  What a client may send (PROTOCOL.md section 22): replies and answers to
//  anyone, requests and sends only to the names its node exports.
static bool
s_client_may(brg__session_t *self, const brg__env_t *env)
{
    if (env->kind == BRG__WK_REPLY || env->kind == BRG__WK_REPLY_ERROR) {
        // Only the answer to an ask this client was sent: a client must not
        // answer another peer's ask by guessing its corr (the asks table
        // holds every request that crossed this session, up to max_table).
        uint64_t target = env->to_id;
        if (env->has_to_node)
            target = s_same_node(env->to_ref, self->self_node) ? env->to_ref.id : 0;
        else if (env->to_is_name)
            target = 0;
        return target != 0 && env->corr != 0 &&
               s_table_has(&self->asks, (s_key_t){target, 0, env->corr});
    }
    if (env->kind != BRG__WK_SEND || !env->to_is_name || env->has_to_node)
        return false;
    return self->io.may_reach == NULL ||
           self->io.may_reach(self->io_arg, env->to_name, env->to_name_len);
}

//  A client's envelope it may not send: a request is answered BRG_EPERM
//  (so the client learns why at once), a send is dropped; both counted.
static void
s_refuse_client(brg__session_t *self, const brg__env_t *env)
{
    self->stats.refused_unauthorized++;
    if (env->corr == 0 || env->kind != BRG__WK_SEND || env->from_form == 0)
        return;
    brg_ref_t to = env->from_form == 1 ? s_with_id(self->peer_node, env->from_id) : env->from_ref;
    brg_msg_t *answer =
        brg__remote_signal(BRG__MSG_REPLY_ERROR, BRG_REF_NONE, env->corr, BRG_EPERM, NULL);
    if (answer && brg__session_push(self, to, NULL, &answer) != BRG_OK)
        brg__msg_free(answer);
}

//  The tables' view of one inbound envelope for a local id target. Returns
//  false if the envelope must not be delivered (refused by the bound).
static bool
s_track_in(brg__session_t *self, const brg__env_t *env, uint64_t target)
{
    s_key_t key = {target, env->from_id, 0};
    s_table_t *t = NULL;
    switch (env->kind) {
    case BRG__WK_LINK:
        t = &self->links;
        break;
    case BRG__WK_UNLINK:
    case BRG__WK_EXIT:
        s_table_remove(&self->links, key);
        return true;
    case BRG__WK_MONITOR:
        key.x = env->corr;
        t = &self->watched;
        break;
    case BRG__WK_DEMONITOR:
        key.x = env->corr;
        s_table_remove(&self->watched, key);
        return true;
    case BRG__WK_DOWN:
        key.x = env->corr;
        s_table_remove(&self->watching, key);
        return true;
    case BRG__WK_REPLY:
    case BRG__WK_REPLY_ERROR:
        if (env->corr != 0)
            s_table_remove(&self->asks, (s_key_t){target, 0, env->corr});
        return true;
    default:
        return true;
    }
    if (s_table_has(t, key))
        return true;
    if (t->count >= self->cfg.max_table || s_table_add(t, key) != BRG_OK) {
        s_refuse_in(self, env, target);
        return false;
    }
    return true;
}

static int
s_on_batch(brg__session_t *self, const brg__frame_t *frame)
{
    if (frame->seq != self->in_seq + 1)
        return s_fail(self, true, BRG__WERR_SEQUENCE, "sequence gap");
    brg__env_t env;
    size_t pos = frame->pos;
    uint32_t next = frame->next;
    brg__frame_t *walk = s_walk_begin(self, frame, pos, next);
    // A client may only send, reply and answer (its key's permission):
    // checked over the whole frame before anything of it is delivered.
    if (walk && self->client) {
        while (brg__wire_next_env(walk, &env) == BRG_OK)
            if (brg__wire_kind_is_control(env.kind))
                return s_fail(self, true, BRG__WERR_NOT_ALLOWED, "control kind from a client");
        walk = s_walk_begin(self, frame, pos, next);
    }
    self->in_seq = frame->seq;
    if (!walk || s_grow_scratch(self, frame->count) != BRG_OK) {
        // Out of memory on the I/O thread: the frame cannot be delivered,
        // and a session with a hole in it must not go on.
        brg__session_end(self, BRG__END_LOCAL);
        return BRG_ENOMEM;
    }
    self->names_len = 0;
    size_t n = 0;
    bool oom = false;
    while (brg__wire_next_env(walk, &env) == BRG_OK) {
        self->stats.msgs_in++;
        if (self->client && !s_client_may(self, &env)) {
            s_refuse_client(self, &env);
            continue;
        }
        uint64_t target = env.to_id;
        bool by_name = env.to_is_name;
        if (env.has_to_node) {
            target = s_same_node(env.to_ref, self->self_node) ? env.to_ref.id : 0;
            by_name = false;
        }
        bool control = brg__wire_kind_is_control(env.kind);
        if (by_name && control) {
            by_name = false;
            target = 0;
        }
        if (!by_name && target != 0 && !s_track_in(self, &env, target))
            continue;
        brg_msg_t *msg = brg__wire_env_to_msg(&env, self->peer_node);
        size_t at = SIZE_MAX;
        if (!msg || (by_name && s_add_name(self, env.to_name, env.to_name_len, &at) != BRG_OK)) {
            if (msg)
                brg__msg_free(msg);
            oom = true;
            break;
        }
        self->tgt[n] = (brg__remote_target_t){by_name ? 0 : target, NULL};
        self->name_at[n] = at;
        self->msgs[n++] = msg;
    }
    for (size_t i = 0; i < n; i++)
        if (self->name_at[i] != SIZE_MAX)
            self->tgt[i].name = self->names + self->name_at[i];
    if (n > 0)
        self->io.deliver(self->io_arg, self->tgt, self->msgs, n);
    if (oom) {
        brg__session_end(self, BRG__END_LOCAL);
        return BRG_ENOMEM;
    }
    // Answers pushed by the table bound leave with this turn.
    brg__session_flush(self);
    return BRG_OK;
}

int
brg__session_on_frame(brg__session_t *self, const brg__frame_t *frame, bool inbound,
                      uint64_t now_ns)
{
    assert(self && frame);
    if (self->state == BRG__SESS_ENDED)
        return BRG_ENETWORK;
    self->stats.frames_in++;
    self->stats.bytes_in += frame->len;
    self->heard_ns = now_ns;
    switch (frame->type) {
    case BRG__FRAME_HELLO:
        if (!inbound)
            return s_fail(self, false, BRG__WERR_MALFORMED, "HELLO on an outbox");
        return s_on_hello(self, &frame->hello, now_ns);
    case BRG__FRAME_WELCOME:
        if (inbound)
            return s_fail(self, true, BRG__WERR_MALFORMED, "WELCOME on an inbox");
        return s_on_welcome(self, &frame->hello, now_ns);
    case BRG__FRAME_BATCH:
    case BRG__FRAME_TICK:
        if (!inbound)
            return s_fail(self, false, BRG__WERR_MALFORMED, "data on an outbox");
        if (!self->in_open)
            return s_fail(self, true, BRG__WERR_NO_SESSION, "no HELLO yet");
        if (frame->type == BRG__FRAME_BATCH)
            return s_on_batch(self, frame);
        if (frame->seq > self->out_seq)
            return s_fail(self, true, BRG__WERR_SEQUENCE, "ack of a frame never sent");
        s_on_ack(self, frame->seq);
        return BRG_OK;
    case BRG__FRAME_BYE:
        brg__session_end(self, BRG__END_BYE);
        return BRG_OK;
    case BRG__FRAME_ERROR:
        brg__session_end(self, BRG__END_PROTOCOL);
        return BRG_OK;
    }
    return s_fail(self, inbound, BRG__WERR_MALFORMED, "unknown frame type");
}

//  After a BATCH of more envelopes than self->in keeps, room for that many
//  (up to S_ENVS_KEPT_MAX), so the next such frame is read once (wire.c
//  design notes). Grown after any frame that decoded (whatever the session
//  then made of it), never during its walk, which reads the store: so not
//  in s_grow_scratch. In powers of two, so a peer's frames cost a few
//  reallocations, not one per frame; out of memory just keeps the old store
//  (the envelopes past it are read twice).
static void
s_grow_kept(brg__session_t *self, const brg__frame_t *frame)
{
    if (frame->type != BRG__FRAME_BATCH || frame->count <= frame->envs_cap ||
        frame->envs_cap >= S_ENVS_KEPT_MAX)
        return;
    uint32_t cap = frame->envs_cap ? frame->envs_cap : 16;
    while (cap < frame->count && cap < S_ENVS_KEPT_MAX)
        cap *= 2;
    brg__env_t *envs = realloc(self->in.envs, cap * sizeof(*envs));
    if (envs) {
        self->in.envs = envs;
        self->in.envs_cap = cap;
    }
}

int
brg__session_on_bytes(brg__session_t *self, const void *data, size_t len, bool inbound,
                      uint64_t now_ns)
{
    assert(self && (data || len == 0));
    if (self->state == BRG__SESS_ENDED)
        return BRG_ENETWORK;
    int werr = BRG__WERR_MALFORMED;
    bool own = !self->in_busy;
    brg__frame_t *frame = own ? &self->in : malloc(sizeof(*frame));
    if (!frame) {
        brg__session_end(self, BRG__END_LOCAL);
        return BRG_ENOMEM;
    }
    if (!own) {
        frame->envs = NULL; // a nested frame keeps no envelopes
        frame->envs_cap = 0;
    }
    self->in_busy = true;
    int rc = brg__wire_decode(data, len, &self->cfg.limits, frame, &werr);
    if (rc == BRG_OK) {
        rc = brg__session_on_frame(self, frame, inbound, now_ns);
    } else {
        self->stats.frames_in++;
        self->stats.bytes_in += len;
        rc = s_fail(self, inbound, werr, "malformed frame");
    }
    if (own) {
        self->in_busy = false;
        s_grow_kept(self, frame);
    } else {
        free(frame);
    }
    return rc;
}

//  ---------------------------------------------------------------------------
//  Time.

uint64_t
brg__session_timer(brg__session_t *self, uint64_t now_ns)
{
    assert(self);
    if (self->state == BRG__SESS_ENDED)
        return UINT64_MAX;
    if (self->state == BRG__SESS_CONNECTING) {
        if (now_ns >= self->handshake_end) {
            brg__session_end(self, BRG__END_TIMEOUT);
            return UINT64_MAX;
        }
        return self->handshake_end;
    }
    // Each side uses the larger of the two timeouts, so the slower one's
    // ticks are never taken for silence; but at most 10 times our own: a
    // peer must not switch our silence detection off by announcing days.
    uint64_t timeout_ms = self->cfg.timeout_ms;
    if (self->client)
        timeout_ms = self->cfg.client_idle_ms;
    else if (self->peer.timeout_ms > timeout_ms)
        timeout_ms = self->peer.timeout_ms < 10ull * self->cfg.timeout_ms
                         ? self->peer.timeout_ms
                         : 10ull * self->cfg.timeout_ms;
    uint64_t silence_end = self->heard_ns + timeout_ms * S_NS_PER_MS;
    if (now_ns >= silence_end) {
        brg__session_end(self, BRG__END_TIMEOUT);
        return UINT64_MAX;
    }
    if (self->client) // clients need no ticks (PROTOCOL.md)
        return silence_end;
    if (now_ns >= self->next_tick) {
        s_send_tick(self);
        self->next_tick = now_ns + (uint64_t)self->cfg.tick_ms * S_NS_PER_MS;
    }
    return self->next_tick < silence_end ? self->next_tick : silence_end;
}

void
brg__session_stats(const brg__session_t *self, brg__session_stats_t *stats)
{
    assert(self && stats);
    *stats = self->stats;
    stats->links = self->links.count;
    stats->watching = self->watching.count;
    stats->watched = self->watched.count;
    stats->asks = self->asks.count;
}
