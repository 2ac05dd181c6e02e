//  transport.wire: protocol v1's codec (transport/wire.c) without sockets.
//
//  Frames written by the codec must decode back to what went in; frames
//  built independently (msgpack-c's packer, hand-written bytes) must decode
//  as docs/PROTOCOL.md says; every malformed frame must be refused with the
//  right ERROR code and nothing read outside its bytes (ASan builds). A
//  seeded fuzz loop mutates valid frames and checks that whatever the
//  decoder accepts walks cleanly, converts to messages and re-encodes to a
//  frame that decodes to the same envelopes.
#include <brigade.h>

#include "msg.h"
#include "tracing.h"
#include "wire.h"

#include <check.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNUSED __attribute__((unused))

static const brg_ref_t s_peer = {0x1111111111111111u, 0x2222222222222222u, 0};  // the sender
static const brg_ref_t s_here = {0x3333333333333333u, 0x4444444444444444u, 0};  // the receiver
static const brg_ref_t s_third = {0x5555555555555555u, 0x6666666666666666u, 0}; // a third node

static brg_ref_t
s_ref(brg_ref_t node, uint64_t id)
{
    node.id = id;
    return node;
}

static brg__wire_limits_t
s_limits(void)
{
    brg__wire_limits_t limits;
    brg__wire_limits_default(&limits);
    return limits;
}

//  Decode with default limits; returns the result, *werr the ERROR code.
static brg__frame_t s_frame; // ~21 KB: not on the stack of every helper

static int
s_decode(const void *data, size_t len, int *werr)
{
    brg__wire_limits_t limits = s_limits();
    return brg__wire_decode(data, len, &limits, &s_frame, werr);
}

//  Expect the bytes to be refused with this ERROR code.
#define EXPECT_REFUSED(data, len, code)                                                            \
    do {                                                                                           \
        int werr_ = -1;                                                                            \
        ck_assert_int_eq(s_decode((data), (len), &werr_), BRG_EPROTO);                             \
        ck_assert_int_eq(werr_, (code));                                                           \
    } while (0)

#define EXPECT_ACCEPTED(data, len)                                                                 \
    do {                                                                                           \
        int werr_ = -1;                                                                            \
        ck_assert_int_eq(s_decode((data), (len), &werr_), BRG_OK);                                 \
        ck_assert_int_eq(werr_, 0);                                                                \
    } while (0)

//  ---------------------------------------------------------------------------
//  An independent encoder: msgpack-c's packer into an sbuffer.

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} pack_t;

static void
pack_init(pack_t *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void
pack_free(pack_t *p)
{
    msgpack_sbuffer_destroy(&p->sb);
}

static void
pack_str(pack_t *p, const char *s)
{
    msgpack_pack_str(&p->pk, strlen(s));
    msgpack_pack_str_body(&p->pk, s, strlen(s));
}

static void
pack_strn(pack_t *p, const char *s, size_t n)
{
    msgpack_pack_str(&p->pk, n);
    msgpack_pack_str_body(&p->pk, s, n);
}

static void
pack_bin(pack_t *p, const void *b, size_t n)
{
    msgpack_pack_bin(&p->pk, n);
    msgpack_pack_bin_body(&p->pk, b, n);
}

static void
pack_ref(pack_t *p, brg_ref_t ref)
{
    uint8_t body[24];
    uint64_t parts[3] = {ref.node_hi, ref.node_lo, ref.id};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 8; i++)
            body[8 * k + i] = (uint8_t)(parts[k] >> (56 - 8 * i));
    msgpack_pack_ext(&p->pk, 24, 1);
    msgpack_pack_ext_body(&p->pk, body, 24);
}

static void
pack_raw(pack_t *p, const void *b, size_t n)
{
    msgpack_sbuffer_write(&p->sb, b, n);
}

//  One envelope's fields, for frames built with msgpack-c. Types of `to`:
//  0 uint, 1 name, 2 ref; of `from`: 0 nil, 1 uint, 2 ref.
typedef struct {
    int kind;
    int to_type;
    uint64_t to_id;
    const char *to_name;
    brg_ref_t to_ref;
    int from_type;
    uint64_t from_id;
    brg_ref_t from_ref;
    uint64_t corr;
    const char *tag;
    const uint8_t *args; // packed values
    size_t args_len;
    uint32_t nargs;
    const uint8_t *ext; // a packed value after the tag, with kind bit 0x80; NULL: none
    size_t ext_len;
} env_spec_t;

static env_spec_t
spec_send(void)
{
    env_spec_t e = {0};
    e.kind = BRG__WK_SEND;
    e.to_id = 7;
    e.from_type = 1;
    e.from_id = 9;
    e.tag = "t";
    return e;
}

static void
pack_env(pack_t *p, const env_spec_t *e)
{
    msgpack_pack_array(&p->pk, 5 + (e->ext ? 1 : 0) + e->nargs);
    msgpack_pack_uint64(&p->pk, (uint64_t)e->kind | (e->ext ? BRG__WIRE_KIND_EXT : 0));
    if (e->to_type == 0)
        msgpack_pack_uint64(&p->pk, e->to_id);
    else if (e->to_type == 1)
        pack_str(p, e->to_name);
    else
        pack_ref(p, e->to_ref);
    if (e->from_type == 0)
        msgpack_pack_nil(&p->pk);
    else if (e->from_type == 1)
        msgpack_pack_uint64(&p->pk, e->from_id);
    else
        pack_ref(p, e->from_ref);
    msgpack_pack_uint64(&p->pk, e->corr);
    pack_str(p, e->tag);
    if (e->ext)
        pack_raw(p, e->ext, e->ext_len);
    pack_raw(p, e->args, e->args_len);
}

static void
pack_batch(pack_t *p, uint64_t seq, const env_spec_t *envs, uint32_t n)
{
    pack_init(p);
    msgpack_pack_array(&p->pk, 3 + n);
    msgpack_pack_uint8(&p->pk, 1);
    msgpack_pack_uint8(&p->pk, BRG__FRAME_BATCH);
    msgpack_pack_uint64(&p->pk, seq);
    for (uint32_t i = 0; i < n; i++)
        pack_env(p, &envs[i]);
}

//  A batch of one envelope: decode it, expect code (0 = accepted). The
//  bytes stay alive until the next call, so s_frame can be walked.
static pack_t s_last;
static bool s_last_set;

static void
expect_env(const env_spec_t *e, int code)
{
    if (s_last_set)
        pack_free(&s_last);
    pack_batch(&s_last, 1, e, 1);
    s_last_set = true;
    if (code == 0)
        EXPECT_ACCEPTED(s_last.sb.data, s_last.sb.size);
    else
        EXPECT_REFUSED(s_last.sb.data, s_last.sb.size, code);
}

//  HELLO map with the keys in mask (bit i = key i of the list below).
static const char *const s_hello_keys[] = {"node", "sess", "role", "name", "cluster", "ep"};

static void
pack_hello(pack_t *p, int type, unsigned mask)
{
    static const uint8_t node[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    pack_init(p);
    msgpack_pack_array(&p->pk, 3);
    msgpack_pack_uint8(&p->pk, 1);
    msgpack_pack_uint8(&p->pk, (uint8_t)type);
    msgpack_pack_map(&p->pk, (size_t)__builtin_popcount(mask));
    for (int k = 0; k < 6; k++) {
        if (!(mask & (1u << k)))
            continue;
        pack_str(p, s_hello_keys[k]);
        switch (k) {
        case 0:
            pack_bin(p, node, 16);
            break;
        case 1:
            msgpack_pack_uint64(&p->pk, 0xfedcba9876543210u);
            break;
        case 2:
            pack_str(p, "client");
            break;
        case 3:
            pack_str(p, "py-demo");
            break;
        case 4:
            pack_str(p, "demo");
            break;
        default:
            msgpack_pack_nil(&p->pk);
            break;
        }
    }
}

//  ---------------------------------------------------------------------------
//  Our encoder's frames

static brg__hello_t s_hello_in;

static void
fill_hello(brg__hello_t *h, uint32_t npeers)
{
    memset(h, 0, sizeof *h);
    for (int i = 0; i < 16; i++)
        h->node[i] = (uint8_t)(0xa0 + i);
    h->sess = 0x0123456789abcdefu;
    snprintf(h->name, sizeof h->name, "node-a");
    snprintf(h->cluster, sizeof h->cluster, "prod");
    snprintf(h->ep, sizeof h->ep, "tcp://10.0.0.1:7400");
    h->minor = 0;
    h->max_frame = 16u * 1024 * 1024 + 65536;
    h->tick_ms = 1000;
    h->timeout_ms = 10000;
    h->npeers = npeers;
    for (uint32_t i = 0; i < npeers; i++) {
        h->peers[i].node[0] = (uint8_t)i;
        h->peers[i].node[15] = 0x5a;
        snprintf(h->peers[i].ep, sizeof h->peers[i].ep, "tcp://10.0.0.%u:7400", i + 2);
        snprintf(h->peers[i].name, sizeof h->peers[i].name, "peer-%u", i);
    }
}

static void
assert_hello_eq(const brg__hello_t *a, const brg__hello_t *b, bool peers)
{
    ck_assert_mem_eq(a->node, b->node, 16);
    ck_assert_uint_eq(a->sess, b->sess);
    ck_assert_int_eq(a->client, b->client);
    ck_assert_str_eq(a->name, b->name);
    ck_assert_str_eq(a->cluster, b->cluster);
    ck_assert_str_eq(a->ep, b->ep);
    ck_assert_uint_eq(a->minor, b->minor);
    ck_assert_uint_eq(a->max_frame, b->max_frame);
    ck_assert_uint_eq(a->tick_ms, b->tick_ms);
    ck_assert_uint_eq(a->timeout_ms, b->timeout_ms);
    ck_assert_int_eq(a->trace, b->trace);
    ck_assert_uint_eq(b->npeers, peers ? a->npeers : 0);
    for (uint32_t i = 0; peers && i < a->npeers; i++) {
        ck_assert_mem_eq(a->peers[i].node, b->peers[i].node, 16);
        ck_assert_str_eq(a->peers[i].ep, b->peers[i].ep);
        ck_assert_str_eq(a->peers[i].name, b->peers[i].name);
    }
}

START_TEST(test_wire_hello_and_welcome_round_trip)
{
    brg__wbuf_t out = {0};
    for (int type = BRG__FRAME_HELLO; type <= BRG__FRAME_WELCOME; type++) {
        for (int client = 0; client <= 1; client++) {
            fill_hello(&s_hello_in, 3);
            s_hello_in.client = client;
            if (client)
                s_hello_in.ep[0] = '\0'; // nil on the wire
            brg__wbuf_reset(&out);
            ck_assert_int_eq(brg__wire_encode_hello(&out, type, &s_hello_in), BRG_OK);
            EXPECT_ACCEPTED(out.data, out.size);
            ck_assert_int_eq(s_frame.type, type);
            // Peers travel in a WELCOME only.
            assert_hello_eq(&s_hello_in, &s_frame.hello, type == BRG__FRAME_WELCOME);
        }
    }
    // Every peer a WELCOME may list.
    fill_hello(&s_hello_in, BRG__WIRE_PEERS_MAX);
    brg__wbuf_reset(&out);
    ck_assert_int_eq(brg__wire_encode_hello(&out, BRG__FRAME_WELCOME, &s_hello_in), BRG_OK);
    EXPECT_ACCEPTED(out.data, out.size);
    assert_hello_eq(&s_hello_in, &s_frame.hello, true);
    // What the decoder would refuse, the encoder refuses.
    fill_hello(&s_hello_in, 0);
    s_hello_in.name[0] = '\0';
    size_t before = out.size;
    ck_assert_int_eq(brg__wire_encode_hello(&out, BRG__FRAME_HELLO, &s_hello_in), BRG_EINVAL);
    ck_assert_uint_eq(out.size, before);
    brg__wbuf_free(&out);
}
END_TEST

//  The features "probe" (HELLO) and "standby" (WELCOME), PROTOCOL.md
//  section 10: each travels in its own frame type only, with and without
//  peers, and a frame without them decodes without them.
START_TEST(test_wire_probe_and_standby_features)
{
    brg__wbuf_t out = {0};
    for (uint32_t npeers = 0; npeers <= 2; npeers += 2) {
        for (int type = BRG__FRAME_HELLO; type <= BRG__FRAME_WELCOME; type++) {
            for (int on = 0; on <= 1; on++) {
                fill_hello(&s_hello_in, npeers);
                s_hello_in.probe = on;
                s_hello_in.standby = on;
                brg__wbuf_reset(&out);
                ck_assert_int_eq(brg__wire_encode_hello(&out, type, &s_hello_in), BRG_OK);
                EXPECT_ACCEPTED(out.data, out.size);
                assert_hello_eq(&s_hello_in, &s_frame.hello, type == BRG__FRAME_WELCOME);
                ck_assert_int_eq(s_frame.hello.probe, on && type == BRG__FRAME_HELLO);
                ck_assert_int_eq(s_frame.hello.standby, on && type == BRG__FRAME_WELCOME);
            }
        }
    }
    brg__wbuf_free(&out);
}
END_TEST

START_TEST(test_wire_tick_bye_error_round_trip)
{
    brg__wbuf_t out = {0};
    const uint64_t seqs[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffu, UINT64_MAX};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        brg__wbuf_reset(&out);
        ck_assert_int_eq(brg__wire_encode_tick(&out, seqs[i]), BRG_OK);
        EXPECT_ACCEPTED(out.data, out.size);
        ck_assert_int_eq(s_frame.type, BRG__FRAME_TICK);
        ck_assert_uint_eq(s_frame.seq, seqs[i]);
    }
    brg__wbuf_reset(&out);
    ck_assert_int_eq(brg__wire_encode_bye(&out, "shutdown"), BRG_OK);
    EXPECT_ACCEPTED(out.data, out.size);
    ck_assert_int_eq(s_frame.type, BRG__FRAME_BYE);
    ck_assert_str_eq(s_frame.text, "shutdown");
    for (int code = BRG__WERR_VERSION; code <= BRG__WERR_SELF; code++) {
        brg__wbuf_reset(&out);
        ck_assert_int_eq(brg__wire_encode_error(&out, code, "why"), BRG_OK);
        EXPECT_ACCEPTED(out.data, out.size);
        ck_assert_int_eq(s_frame.type, BRG__FRAME_ERROR);
        ck_assert_int_eq(s_frame.code, code);
        ck_assert_str_eq(s_frame.text, "why");
    }
    // Texts longer than BRG__WIRE_TEXT_MAX are cut, on both sides.
    char longtext[600];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    brg__wbuf_reset(&out);
    ck_assert_int_eq(brg__wire_encode_bye(&out, longtext), BRG_OK);
    EXPECT_ACCEPTED(out.data, out.size);
    ck_assert_uint_eq(strlen(s_frame.text), BRG__WIRE_TEXT_MAX);
    pack_t p;
    pack_init(&p);
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 1);
    msgpack_pack_uint8(&p.pk, BRG__FRAME_ERROR);
    msgpack_pack_uint8(&p.pk, 42); // an unknown code is still an ERROR
    pack_str(&p, longtext);
    EXPECT_ACCEPTED(p.sb.data, p.sb.size);
    ck_assert_int_eq(s_frame.code, 42);
    ck_assert_uint_eq(strlen(s_frame.text), BRG__WIRE_TEXT_MAX);
    pack_free(&p);
    brg__wbuf_free(&out);
}
END_TEST

//  Messages of every runtime kind that leaves a node, as the runtime builds
//  them (link.c's signals, ask.c's error reply, brg_exit's kill).
typedef struct {
    int msg_kind;
    int wire_kind;
    brg_ref_t sender;
    uint64_t corr;
    int32_t status;
} kind_case_t;

static brg_msg_t *
build_msg(const kind_case_t *c)
{
    brg_msg_t *msg = brg__msg_alloc();
    ck_assert_ptr_nonnull(msg);
    msg->kind = (uint8_t)c->msg_kind;
    msg->sender = c->sender;
    msg->corr = c->corr;
    msg->status = c->status;
    const char *tag = "work";
    switch (c->msg_kind) {
    case BRG__MSG_SYS_EXIT:
        tag = BRG_TAG_EXIT;
        brg_msg_add_int(msg, BRG_EXIT_FAILED);
        brg_msg_add_int(msg, -13);
        brg_msg_add_str(msg, "boom");
        break;
    case BRG__MSG_SYS_DOWN:
        tag = BRG_TAG_DOWN;
        brg_msg_add_uint(msg, c->corr);
        brg_msg_add_int(msg, 5); // noconnection
        brg_msg_add_int(msg, BRG_ENETWORK);
        brg_msg_add_str(msg, "");
        break;
    case BRG__MSG_REPLY_ERROR:
        tag = "brg.error";
        break;
    case BRG__MSG_SYS_KILL:
    case BRG__MSG_SYS_LINK:
    case BRG__MSG_SYS_UNLINK:
    case BRG__MSG_SYS_MONITOR:
    case BRG__MSG_SYS_DEMONITOR:
        tag = BRG_TAG_EXIT;
        break;
    case BRG__MSG_SYS_STOP:
        tag = "brg.stop";
        break;
    default:
        brg_msg_add_str(msg, "hello");
        brg_msg_add_int(msg, -42);
        brg_msg_add_array(msg, 2);
        brg_msg_add_ref(msg, s_ref(s_third, 77));
        brg_msg_add_double(msg, 2.5);
        break;
    }
    brg__msg_set_tag(msg, tag, strlen(tag));
    return msg;
}

static void
assert_msg_eq(const brg_msg_t *a, const brg_msg_t *b)
{
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert_str_eq(a->tag, b->tag);
    ck_assert_uint_eq(a->tag_len, b->tag_len);
    ck_assert_uint_eq(a->tag_hash, b->tag_hash);
    ck_assert(brg_ref_eq(a->sender, b->sender));
    ck_assert_uint_eq(a->corr, b->corr);
    ck_assert_int_eq(a->status, b->status);
    ck_assert_uint_eq(a->size, b->size);
    if (a->size)
        ck_assert_mem_eq(a->data, b->data, a->size);
    ck_assert_uint_eq(a->trace_flags, b->trace_flags);
    if (a->trace_flags)
        ck_assert_mem_eq(a->trace_ids, b->trace_ids, sizeof a->trace_ids);
}

//  Give msg a trace context (ids from seed, sampled).
static void
set_trace(brg_msg_t *msg, uint8_t seed)
{
    msg->trace_flags = BRG__TRACE_PRESENT | BRG_TRACE_SAMPLED;
    for (int i = 0; i < 24; i++)
        msg->trace_ids[i] = (uint8_t)(seed + i);
}

START_TEST(test_wire_every_kind_round_trips_through_a_batch)
{
    const brg_ref_t actor = s_ref(s_peer, 0x0000000500000003u);
    const kind_case_t cases[] = {
        {BRG__MSG_USER, BRG__WK_SEND, actor, 0, 0},
        {BRG__MSG_USER, BRG__WK_SEND, actor, 99, 0},                  // a request
        {BRG__MSG_USER, BRG__WK_SEND, BRG_REF_NONE, 0, 0},            // from outside actors
        {BRG__MSG_USER, BRG__WK_SEND, s_ref(s_third, 12), 5, 0},      // forwarded: full ref
        {BRG__MSG_REPLY, BRG__WK_REPLY, actor, 99, 0},                //
        {BRG__MSG_REPLY_ERROR, BRG__WK_REPLY_ERROR, actor, 99, -3},   // BRG_ENOACTOR
        {BRG__MSG_REPLY_ERROR, BRG__WK_REPLY_ERROR, actor, 7, -1000}, // any negative code
        {BRG__MSG_SYS_LINK, BRG__WK_LINK, actor, 0, 0},
        {BRG__MSG_SYS_UNLINK, BRG__WK_UNLINK, actor, 0, 0},
        {BRG__MSG_SYS_MONITOR, BRG__WK_MONITOR, actor, 4, 0},
        {BRG__MSG_SYS_DEMONITOR, BRG__WK_DEMONITOR, actor, 4, 0},
        {BRG__MSG_SYS_EXIT, BRG__WK_EXIT, actor, 0, 0},
        {BRG__MSG_SYS_DOWN, BRG__WK_DOWN, actor, 4, 0},
        {BRG__MSG_SYS_KILL, BRG__WK_EXIT_SIGNAL, BRG_REF_NONE, 0, BRG_EXIT_SHUTDOWN},
        {BRG__MSG_SYS_KILL, BRG__WK_EXIT_SIGNAL, actor, 0, BRG_EXIT_KILLED},
        {BRG__MSG_SYS_STOP, BRG__WK_STOP, BRG_REF_NONE, 0, 0},
        {BRG__MSG_SYS_STOP, BRG__WK_STOP, actor, 0, 0},
    };
    const size_t n = sizeof cases / sizeof cases[0];
    brg__wbuf_t out = {0};
    ck_assert_int_eq(brg__wire_batch_begin(&out, 41), BRG_OK);
    brg_msg_t *sent[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < n; i++) {
        sent[i] = build_msg(&cases[i]);
        // Odd ones to a name, even ones to a local id of the receiver.
        const char *name = i % 2 ? "some.actor" : NULL;
        ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, 1000 + i), name, sent[i]),
                         BRG_OK);
    }
    ck_assert_int_eq(brg__wire_batch_end(&out), BRG_OK);
    EXPECT_ACCEPTED(out.data, out.size);
    ck_assert_int_eq(s_frame.type, BRG__FRAME_BATCH);
    ck_assert_uint_eq(s_frame.seq, 41);
    ck_assert_uint_eq(s_frame.count, n);
    brg__env_t env;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
        ck_assert_int_eq(env.kind, cases[i].wire_kind);
        ck_assert_int_eq(brg__wire_msg_kind(env.kind), cases[i].msg_kind);
        if (i % 2) {
            ck_assert(env.to_is_name);
            ck_assert_uint_eq(env.to_name_len, strlen("some.actor"));
            ck_assert_mem_eq(env.to_name, "some.actor", env.to_name_len);
        } else {
            ck_assert(!env.to_is_name);
            ck_assert(!env.has_to_node);
            ck_assert_uint_eq(env.to_id, 1000 + i);
        }
        // A sender on the sending node travels as its id, others as a ref.
        brg_ref_t s = cases[i].sender;
        int form = brg_ref_is_none(s) ? 0 : s.node_hi == s_peer.node_hi ? 1 : 2;
        ck_assert_int_eq(env.from_form, form);
        brg_msg_t *got = brg__wire_env_to_msg(&env, s_peer);
        ck_assert_ptr_nonnull(got);
        assert_msg_eq(sent[i], got);
        brg__msg_free(got);
        brg__msg_free(sent[i]);
    }
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_ENODATA);
    brg__wbuf_free(&out);
}
END_TEST

static void
assert_env_eq(const brg__env_t *a, const brg__env_t *b)
{
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert_int_eq(a->to_is_name, b->to_is_name);
    ck_assert_uint_eq(a->to_id, b->to_id);
    ck_assert_ptr_eq(a->to_name, b->to_name);
    ck_assert_uint_eq(a->to_name_len, b->to_name_len);
    ck_assert_int_eq(a->has_to_node, b->has_to_node);
    ck_assert(brg_ref_eq(a->to_ref, b->to_ref));
    ck_assert_int_eq(a->from_form, b->from_form);
    ck_assert_uint_eq(a->from_id, b->from_id);
    ck_assert(brg_ref_eq(a->from_ref, b->from_ref));
    ck_assert_uint_eq(a->corr, b->corr);
    ck_assert_ptr_eq(a->tag, b->tag);
    ck_assert_uint_eq(a->tag_len, b->tag_len);
    ck_assert_ptr_eq(a->args, b->args);
    ck_assert_uint_eq(a->args_len, b->args_len);
    ck_assert_int_eq(a->status, b->status);
    ck_assert_int_eq(a->trace_flags, b->trace_flags);
    ck_assert_ptr_eq(a->trace_ids, b->trace_ids);
}

//  The decoder keeps the envelopes it checked in the caller's store, as many
//  as fit; next_env hands out exactly what a second read would, whatever the
//  store's size, also on a second walk from the start; and a frame refused
//  for its last envelope leaves nothing to walk, though earlier ones were kept.
START_TEST(test_wire_kept_envelopes_equal_the_ones_read_again)
{
    brg__wbuf_t out = {0};
    ck_assert_int_eq(brg__wire_batch_begin(&out, 9), BRG_OK);
    enum { N = 40 };
    for (int i = 0; i < N; i++) {
        const kind_case_t c = {BRG__MSG_USER, BRG__WK_SEND,
                               i % 3 ? s_ref(s_peer, 7 + (uint64_t)i) : s_ref(s_third, 12),
                               (uint64_t)i % 5, 0};
        brg_msg_t *m = build_msg(&c);
        ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, 100 + (uint64_t)i),
                                             i % 4 ? NULL : "kept.name", m),
                         BRG_OK);
        brg__msg_free(m);
    }
    ck_assert_int_eq(brg__wire_batch_end(&out), BRG_OK);
    brg__wire_limits_t limits = s_limits();
    int werr;
    static brg__frame_t plain, kept;
    ck_assert_int_eq(brg__wire_decode(out.data, out.size, &limits, &plain, &werr), BRG_OK);
    ck_assert_uint_eq(plain.stored, 0);
    brg__env_t ref[N], env;
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(brg__wire_next_env(&plain, &ref[i]), BRG_OK);
    static brg__env_t store[64];
    const uint32_t caps[] = {1, 5, N - 1, N, 64};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        kept.envs = store;
        kept.envs_cap = caps[c];
        ck_assert_int_eq(brg__wire_decode(out.data, out.size, &limits, &kept, &werr), BRG_OK);
        ck_assert_uint_eq(kept.stored, caps[c] < N ? caps[c] : N);
        size_t pos = kept.pos;
        for (int walk = 0; walk < 2; walk++) {
            kept.pos = pos; // a second walk from the start (a client's frame)
            kept.next = 0;
            for (int i = 0; i < N; i++) {
                ck_assert_int_eq(brg__wire_next_env(&kept, &env), BRG_OK);
                assert_env_eq(&ref[i], &env);
            }
            ck_assert_int_eq(brg__wire_next_env(&kept, &env), BRG_ENODATA);
        }
    }
    // The last envelope's tag cut to an invalid byte: refused whole.
    uint8_t *bad = malloc(out.size);
    memcpy(bad, out.data, out.size);
    size_t at = (size_t)(ref[N - 1].tag - (const char *)out.data);
    bad[at] = 0xff;
    kept.envs_cap = 64;
    ck_assert_int_eq(brg__wire_decode(bad, out.size, &limits, &kept, &werr), BRG_EPROTO);
    ck_assert_uint_eq(kept.stored, 0);
    ck_assert_uint_eq(kept.count, 0);
    ck_assert_int_eq(brg__wire_next_env(&kept, &env), BRG_ENODATA);
    free(bad);
    brg__wbuf_free(&out);
}
END_TEST

START_TEST(test_wire_refs_in_payloads_survive_the_trip)
{
    brg_msg_t *msg = brg_msg_new("refs");
    const brg_ref_t refs[] = {s_ref(s_peer, 1), s_ref(s_here, UINT64_MAX), s_ref(s_third, 0),
                              BRG_REF_NONE};
    brg_msg_add_map(msg, 1);
    brg_msg_add_str(msg, "who");
    brg_msg_add_array(msg, 4);
    for (int i = 0; i < 4; i++)
        brg_msg_add_ref(msg, refs[i]);
    brg__wbuf_t out = {0};
    brg__wire_batch_begin(&out, 1);
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, 5), NULL, msg), BRG_OK);
    brg__wire_batch_end(&out);
    EXPECT_ACCEPTED(out.data, out.size);
    brg__env_t env;
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
    brg_msg_t *got = brg__wire_env_to_msg(&env, s_peer);
    size_t pos = 0;
    uint32_t count;
    const char *str;
    size_t len;
    ck_assert_int_eq(brg_msg_read_map(got, &pos, &count), BRG_OK);
    ck_assert_int_eq(brg_msg_read_str(got, &pos, &str, &len), BRG_OK);
    ck_assert_int_eq(brg_msg_read_array(got, &pos, &count), BRG_OK);
    ck_assert_uint_eq(count, 4);
    for (int i = 0; i < 4; i++) {
        brg_ref_t r;
        ck_assert_int_eq(brg_msg_read_ref(got, &pos, &r), BRG_OK);
        ck_assert(brg_ref_eq(r, refs[i]));
    }
    brg__msg_free(got);
    brg_msg_destroy(&msg);
    brg__wbuf_free(&out);
}
END_TEST

START_TEST(test_wire_targets_by_id_name_and_ref)
{
    env_spec_t e = spec_send();
    e.to_type = 1;
    e.to_name = "echo";
    expect_env(&e, 0);
    brg__env_t env;
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
    ck_assert(env.to_is_name);
    ck_assert_mem_eq(env.to_name, "echo", 4);
    // A full ref: the receiver checks that it names itself.
    e.to_type = 2;
    e.to_ref = s_ref(s_here, 0x700000001u);
    expect_env(&e, 0);
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
    ck_assert(env.has_to_node);
    ck_assert(brg_ref_eq(env.to_ref, e.to_ref));
    ck_assert_uint_eq(env.to_id, 0x700000001u);
    // A 63-byte name is the longest.
    char name[BRG__WIRE_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    e.to_type = 1;
    e.to_name = name + 1;
    expect_env(&e, 0);
    e.to_name = name;
    expect_env(&e, BRG__WERR_MALFORMED);
    e.to_name = "";
    expect_env(&e, BRG__WERR_MALFORMED);
    // The encoder refuses the names the decoder would.
    brg__wbuf_t out = {0};
    brg_msg_t *msg = brg_msg_new("t");
    brg__wire_batch_begin(&out, 1);
    size_t before = out.size;
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_here, name, msg), BRG_EINVAL);
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_here, "", msg), BRG_EINVAL);
    ck_assert_uint_eq(out.size, before);
    brg_msg_destroy(&msg);
    brg__wbuf_free(&out);
}
END_TEST

START_TEST(test_wire_kind_maps)
{
    for (int k = 0; k <= BRG__MSG_TIMER; k++) {
        int w = brg__wire_kind_of(k);
        if (k == BRG__MSG_SYS_ASK_TIMEOUT || k == BRG__MSG_SYS_IDLE || k == BRG__MSG_TIMER) {
            ck_assert_int_eq(w, -1);
            continue;
        }
        ck_assert_int_ge(w, 0);
        ck_assert_int_eq(brg__wire_msg_kind(w), k);
    }
    int known = 0;
    for (int w = 0; w < 256; w++) {
        int k = brg__wire_msg_kind(w);
        if (k < 0) {
            ck_assert(!brg__wire_kind_is_control(w));
            continue;
        }
        known++;
        ck_assert_int_eq(brg__wire_kind_of(k), w);
        ck_assert_int_eq(brg__wire_kind_is_control(w), w >= BRG__WK_LINK);
    }
    ck_assert_int_eq(known, 11);
    ck_assert_int_eq(brg__wire_msg_kind(-1), -1);
    ck_assert_int_eq(brg__wire_kind_of(-1), -1);
}
END_TEST

START_TEST(test_wire_local_kinds_never_leave_and_leave_the_buffer_unchanged)
{
    const int local[] = {BRG__MSG_SYS_ASK_TIMEOUT, BRG__MSG_SYS_IDLE, BRG__MSG_TIMER};
    brg__wbuf_t out = {0};
    brg__wire_batch_begin(&out, 1);
    size_t before = out.size;
    for (size_t i = 0; i < 3; i++) {
        brg_msg_t *msg = brg_msg_new("x");
        msg->kind = (uint8_t)local[i];
        ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_here, NULL, msg), BRG_EINVAL);
        brg_msg_destroy(&msg);
    }
    // A LINK whose sender is not an actor of the sending node cannot be said.
    kind_case_t c = {BRG__MSG_SYS_LINK, BRG__WK_LINK, s_ref(s_third, 3), 0, 0};
    brg_msg_t *msg = build_msg(&c);
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_here, NULL, msg), BRG_EINVAL);
    msg->sender = BRG_REF_NONE;
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_here, NULL, msg), BRG_EINVAL);
    brg__msg_free(msg);
    // A payload nested deeper than BRG_MSG_DEPTH_MAX would end the peer's session.
    msg = brg_msg_new("deep");
    for (int i = 0; i < BRG_MSG_DEPTH_MAX + 1; i++)
        brg_msg_add_array(msg, 1);
    brg_msg_add_nil(msg);
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_here, NULL, msg), BRG_EINVAL);
    brg_msg_destroy(&msg);
    ck_assert_uint_eq(out.size, before);
    brg__wire_batch_end(&out);
    EXPECT_ACCEPTED(out.data, out.size);
    ck_assert_uint_eq(s_frame.count, 0);
    brg__wbuf_free(&out);
}
END_TEST

//  The example of PROTOCOL.md, built by an independent encoder.
START_TEST(test_wire_a_frame_from_another_encoder)
{
    pack_t a;
    pack_init(&a);
    pack_str(&a, "hello");
    msgpack_pack_int(&a.pk, 42);
    msgpack_pack_map(&a.pk, 1);
    pack_str(&a, "k");
    msgpack_pack_array(&a.pk, 2);
    msgpack_pack_int(&a.pk, 1);
    msgpack_pack_int(&a.pk, 2);
    env_spec_t e = {0};
    e.kind = 0;
    e.to_type = 1;
    e.to_name = "echo";
    e.from_type = 1;
    e.from_id = 1;
    e.corr = 1;
    e.tag = "greet";
    e.args = (const uint8_t *)a.sb.data;
    e.args_len = a.sb.size;
    e.nargs = 3;
    expect_env(&e, 0);
    brg__env_t env;
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
    brg_msg_t *msg = brg__wire_env_to_msg(&env, s_peer);
    ck_assert_str_eq(brg_msg_tag(msg), "greet");
    ck_assert_int_eq(brg_msg_count(msg), 3);
    ck_assert(brg_ref_eq(brg_msg_sender(msg), s_ref(s_peer, 1)));
    ck_assert_uint_eq(msg->corr, 1);
    ck_assert_uint_eq(brg_msg_size(msg), a.sb.size);
    ck_assert_mem_eq(brg_msg_data(msg), a.sb.data, a.sb.size);
    brg__msg_free(msg);
    pack_free(&a);
    // A client's HELLO: ep nil, no optional keys.
    pack_t h;
    pack_hello(&h, BRG__FRAME_HELLO, 0x3f);
    EXPECT_ACCEPTED(h.sb.data, h.sb.size);
    ck_assert(s_frame.hello.client);
    ck_assert_str_eq(s_frame.hello.name, "py-demo");
    ck_assert_str_eq(s_frame.hello.ep, "");
    ck_assert_uint_eq(s_frame.hello.sess, 0xfedcba9876543210u);
    pack_free(&h);
}
END_TEST

START_TEST(test_wire_non_minimal_integers_are_accepted)
{
    // [1, 2, 5, [0, 7, 9, 3, "t", 300]] with every integer as a uint64 or
    // int64 and the arrays as array32.
    uint8_t b[128];
    size_t n = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        const uint8_t bytes_[] = {__VA_ARGS__};                                                    \
        memcpy(b + n, bytes_, sizeof bytes_);                                                      \
        n += sizeof bytes_;                                                                        \
    } while (0)
    PUT(0xdd, 0, 0, 0, 4);                   // array32 of 4
    PUT(0xcf, 0, 0, 0, 0, 0, 0, 0, 1);       // version 1 as uint64
    PUT(0xd3, 0, 0, 0, 0, 0, 0, 0, 2);       // type 2 as int64
    PUT(0xce, 0, 0, 0, 5);                   // seq 5 as uint32
    PUT(0xdd, 0, 0, 0, 6);                   // envelope: array32 of 6
    PUT(0xd0, 0);                            // kind 0 as int8
    PUT(0xcd, 0, 7);                         // to 7 as uint16
    PUT(0xcc, 9);                            // from 9 as uint8
    PUT(0xcf, 0, 0, 0, 0, 0, 0, 0, 3);       // corr 3 as uint64
    PUT(0xdb, 0, 0, 0, 1, 't');              // tag as str32
    PUT(0xd3, 0, 0, 0, 0, 0, 0, 0x01, 0x2c); // arg 300 as int64
#undef PUT
    EXPECT_ACCEPTED(b, n);
    ck_assert_uint_eq(s_frame.seq, 5);
    brg__env_t env;
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
    ck_assert_uint_eq(env.to_id, 7);
    ck_assert_uint_eq(env.from_id, 9);
    ck_assert_uint_eq(env.corr, 3);
    ck_assert_uint_eq(env.tag_len, 1);
    brg_msg_t *msg = brg__wire_env_to_msg(&env, s_peer);
    size_t pos = 0;
    int64_t v;
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &v), BRG_OK);
    ck_assert_int_eq(v, 300);
    brg__msg_free(msg);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Rejections

//  A few valid frames of every type, written by our encoder.
typedef struct {
    uint8_t *data[8];
    size_t len[8];
    int n;
} corpus_t;

static void
corpus_add(corpus_t *c, const brg__wbuf_t *out)
{
    c->data[c->n] = malloc(out->size);
    memcpy(c->data[c->n], out->data, out->size);
    c->len[c->n++] = out->size;
}

static void
corpus_make(corpus_t *c)
{
    memset(c, 0, sizeof *c);
    brg__wbuf_t out = {0};
    fill_hello(&s_hello_in, 2);
    s_hello_in.trace = true; // 1.1's feature in the seeds
    brg__wire_encode_hello(&out, BRG__FRAME_HELLO, &s_hello_in);
    corpus_add(c, &out);
    brg__wbuf_reset(&out);
    brg__wire_encode_hello(&out, BRG__FRAME_WELCOME, &s_hello_in);
    corpus_add(c, &out);
    brg__wbuf_reset(&out);
    brg__wire_encode_tick(&out, 123456);
    corpus_add(c, &out);
    brg__wbuf_reset(&out);
    brg__wire_encode_bye(&out, "bye now");
    corpus_add(c, &out);
    brg__wbuf_reset(&out);
    brg__wire_encode_error(&out, BRG__WERR_SEQUENCE, "gap");
    corpus_add(c, &out);
    // A BATCH with one envelope of each kind.
    const brg_ref_t actor = s_ref(s_peer, 0x100000002u);
    const kind_case_t cases[] = {
        {BRG__MSG_USER, 0, actor, 8, 0},
        {BRG__MSG_USER, 0, s_ref(s_third, 4), 0, 0},
        {BRG__MSG_REPLY, 0, actor, 8, 0},
        {BRG__MSG_REPLY_ERROR, 0, actor, 8, -17},
        {BRG__MSG_SYS_LINK, 0, actor, 0, 0},
        {BRG__MSG_SYS_UNLINK, 0, actor, 0, 0},
        {BRG__MSG_SYS_MONITOR, 0, actor, 2, 0},
        {BRG__MSG_SYS_DEMONITOR, 0, actor, 2, 0},
        {BRG__MSG_SYS_EXIT, 0, actor, 0, 0},
        {BRG__MSG_SYS_DOWN, 0, actor, 2, 0},
        {BRG__MSG_SYS_KILL, 0, BRG_REF_NONE, 0, BRG_EXIT_FAILED},
        {BRG__MSG_SYS_STOP, 0, actor, 0, 0},
    };
    brg__wbuf_reset(&out);
    out.trace = true; // the seeds' messages with a context carry the ext map
    brg__wire_batch_begin(&out, 77);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        brg_msg_t *msg = build_msg(&cases[i]);
        if (i < 4 || i == 8)
            set_trace(msg, (uint8_t)(i + 1));
        ck_assert_int_eq(
            brg__wire_batch_add(&out, s_peer, s_ref(s_here, i + 1), i == 1 ? "name" : NULL, msg),
            BRG_OK);
        brg__msg_free(msg);
    }
    brg__wire_batch_end(&out);
    corpus_add(c, &out);
    brg__wbuf_free(&out);
}

static void
corpus_free(corpus_t *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->data[i]);
}

START_TEST(test_wire_a_frame_truncated_anywhere_is_malformed)
{
    corpus_t c;
    corpus_make(&c);
    for (int i = 0; i < c.n; i++) {
        EXPECT_ACCEPTED(c.data[i], c.len[i]);
        for (size_t cut = 0; cut < c.len[i]; cut++) {
            // A copy of exactly cut bytes, so ASan sees any read past it.
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, c.data[i], cut);
            EXPECT_REFUSED(copy, cut, BRG__WERR_MALFORMED);
            free(copy);
        }
        // One byte too many is malformed too.
        uint8_t *longer = malloc(c.len[i] + 1);
        memcpy(longer, c.data[i], c.len[i]);
        longer[c.len[i]] = 0xc0;
        EXPECT_REFUSED(longer, c.len[i] + 1, BRG__WERR_MALFORMED);
        free(longer);
    }
    corpus_free(&c);
}
END_TEST

START_TEST(test_wire_bad_versions_and_frame_types)
{
    const uint8_t v2[] = {0x93, 0x02, 0x03, 0x00};    // [2, 3, 0]
    const uint8_t v0[] = {0x92, 0x00, 0x03};          // [0, 3]
    const uint8_t vneg[] = {0x93, 0xff, 0x03, 0x00};  // [-1, 3, 0]
    const uint8_t vbig[] = {0x92, 0xcd, 0x01, 0x01};  // [257, ...]
    const uint8_t vstr[] = {0x93, 0xa1, '1', 0x03};   // ["1", 3, ...]
    const uint8_t short1[] = {0x91, 0x01};            // [1]
    const uint8_t notarr[] = {0x81, 0x01, 0x03};      // {1: 3}
    const uint8_t type4[] = {0x93, 0x01, 0x04, 0x00}; // reserved type
    const uint8_t type7[] = {0x93, 0x01, 0x07, 0x00};
    const uint8_t typestr[] = {0x93, 0x01, 0xa1, 'x', 0x00};
    const uint8_t typeneg[] = {0x93, 0x01, 0xfe, 0x00};
    const uint8_t tick4[] = {0x94, 0x01, 0x03, 0x00, 0x00}; // TICK with an extra element
    const uint8_t ticks[] = {0x93, 0x01, 0x03, 0xff};       // TICK -1
    const uint8_t bye_int[] = {0x93, 0x01, 0x05, 0x01};     // BYE 1
    const uint8_t err0[] = {0x94, 0x01, 0x06, 0x00, 0xa0};  // ERROR code 0
    const uint8_t err3[] = {0x93, 0x01, 0x06, 0x03};        // ERROR without text
    const uint8_t two[] = {0x93, 0x01, 0x03, 0x00, 0xc0};   // a TICK, then nil
    EXPECT_REFUSED(v2, sizeof v2, BRG__WERR_VERSION);
    EXPECT_REFUSED(v0, sizeof v0, BRG__WERR_VERSION);
    EXPECT_REFUSED(vneg, sizeof vneg, BRG__WERR_VERSION);
    EXPECT_REFUSED(vbig, sizeof vbig, BRG__WERR_VERSION);
    EXPECT_REFUSED(vstr, sizeof vstr, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(short1, sizeof short1, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(notarr, sizeof notarr, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(type4, sizeof type4, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(type7, sizeof type7, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(typestr, sizeof typestr, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(typeneg, sizeof typeneg, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(tick4, sizeof tick4, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(ticks, sizeof ticks, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(bye_int, sizeof bye_int, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(err0, sizeof err0, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(err3, sizeof err3, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(two, sizeof two, BRG__WERR_MALFORMED);
    EXPECT_REFUSED("", 0, BRG__WERR_MALFORMED);
    const uint8_t ok[] = {0x93, 0x01, 0x03, 0x00};
    EXPECT_ACCEPTED(ok, sizeof ok);
}
END_TEST

START_TEST(test_wire_envelope_fields_of_the_wrong_type)
{
    env_spec_t base = spec_send();
    expect_env(&base, 0);
    // Each field replaced by a value of a type it may not have.
    const int bad_kinds[] = {5, 12, 16, 17, 18, 0x80, 255, 256};
    for (size_t i = 0; i < sizeof bad_kinds / sizeof bad_kinds[0]; i++) {
        env_spec_t e = base;
        e.kind = bad_kinds[i];
        expect_env(&e, BRG__WERR_MALFORMED);
    }
    // Hand-built envelopes: [kind, to, from, corr, tag] with one odd field.
    struct {
        const char *what;
        uint8_t bytes[16];
        size_t n;
    } bad[] = {
        {"kind str", {0x95, 0xa1, '0', 0x07, 0x09, 0x00, 0xa1, 't'}, 8},
        {"kind neg", {0x95, 0xff, 0x07, 0x09, 0x00, 0xa1, 't'}, 7},
        {"to nil", {0x95, 0x00, 0xc0, 0x09, 0x00, 0xa1, 't'}, 7},
        {"to bool", {0x95, 0x00, 0xc3, 0x09, 0x00, 0xa1, 't'}, 7},
        {"to neg", {0x95, 0x00, 0xff, 0x09, 0x00, 0xa1, 't'}, 7},
        {"to bin", {0x95, 0x00, 0xc4, 0x01, 'x', 0x09, 0x00, 0xa1, 't'}, 9},
        {"to ext 2", {0x95, 0x00, 0xd4, 0x02, 0x00, 0x09, 0x00, 0xa1, 't'}, 9},
        {"from str", {0x95, 0x00, 0x07, 0xa1, 'x', 0x00, 0xa1, 't'}, 8},
        {"from neg", {0x95, 0x00, 0x07, 0xff, 0x00, 0xa1, 't'}, 7},
        {"from bool", {0x95, 0x00, 0x07, 0xc2, 0x00, 0xa1, 't'}, 7},
        {"corr neg", {0x95, 0x00, 0x07, 0x09, 0xff, 0xa1, 't'}, 7},
        {"corr nil", {0x95, 0x00, 0x07, 0x09, 0xc0, 0xa1, 't'}, 7},
        {"tag int", {0x95, 0x00, 0x07, 0x09, 0x00, 0x01}, 6},
        {"tag bin", {0x95, 0x00, 0x07, 0x09, 0x00, 0xc4, 0x01, 't'}, 8},
        {"tag empty", {0x95, 0x00, 0x07, 0x09, 0x00, 0xa0}, 6},
        {"tag nul", {0x95, 0x00, 0x07, 0x09, 0x00, 0xa2, 't', 0}, 8},
        {"four fields", {0x94, 0x00, 0x07, 0x09, 0x00}, 5},
        {"not an array", {0x85, 0x00, 0x07, 0x09, 0x00, 0xa1, 't', 0, 0, 0, 0}, 11},
        {"name with nul", {0x95, 0x00, 0xa2, 'a', 0, 0x09, 0x00, 0xa1, 't'}, 9},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t frame[32] = {0x94, 0x01, 0x02, 0x01};
        memcpy(frame + 4, bad[i].bytes, bad[i].n);
        int werr = -1;
        int rc = s_decode(frame, 4 + bad[i].n, &werr);
        ck_assert_msg(rc == BRG_EPROTO && werr == BRG__WERR_MALFORMED, "%s accepted", bad[i].what);
    }
    // A seq that is not a uint.
    const uint8_t seq_neg[] = {0x93, 0x01, 0x02, 0xff};
    const uint8_t seq_str[] = {0x93, 0x01, 0x02, 0xa1, '1'};
    EXPECT_REFUSED(seq_neg, sizeof seq_neg, BRG__WERR_MALFORMED);
    EXPECT_REFUSED(seq_str, sizeof seq_str, BRG__WERR_MALFORMED);
}
END_TEST

START_TEST(test_wire_tags_are_1_to_31_bytes)
{
    char tag[BRG_TAG_MAX + 2];
    memset(tag, 'g', sizeof tag - 1);
    tag[sizeof tag - 1] = '\0';
    env_spec_t e = spec_send();
    e.tag = tag + 1; // 31 bytes
    expect_env(&e, 0);
    e.tag = tag; // 32 bytes
    expect_env(&e, BRG__WERR_MALFORMED);
    e.tag = "";
    expect_env(&e, BRG__WERR_MALFORMED);
}
END_TEST

//  A SEND whose one argument nests depth arrays around a nil.
static void
nested_args(pack_t *a, int depth)
{
    pack_init(a);
    for (int i = 0; i < depth; i++)
        msgpack_pack_array(&a->pk, 1);
    msgpack_pack_nil(&a->pk);
}

START_TEST(test_wire_payload_depth_limit_is_the_local_one)
{
    env_spec_t e = spec_send();
    pack_t a;
    nested_args(&a, BRG_MSG_DEPTH_MAX); // as deep as a local payload may be
    e.args = (const uint8_t *)a.sb.data;
    e.args_len = a.sb.size;
    e.nargs = 1;
    expect_env(&e, 0);
    pack_free(&a);
    nested_args(&a, BRG_MSG_DEPTH_MAX + 1); // depth 65
    e.args = (const uint8_t *)a.sb.data;
    e.args_len = a.sb.size;
    expect_env(&e, BRG__WERR_MALFORMED);
    pack_free(&a);
    // Deep values under an unknown HELLO key are refused the same way.
    pack_t h;
    pack_hello(&h, BRG__FRAME_HELLO, 0x1f);
    h.sb.data[3] = (char)(0x80 | 6); // the map has one more key
    pack_str(&h, "future");
    for (int i = 0; i < BRG_MSG_DEPTH_MAX + 1; i++)
        msgpack_pack_array(&h.pk, 1);
    msgpack_pack_nil(&h.pk);
    EXPECT_REFUSED(h.sb.data, h.sb.size, BRG__WERR_MALFORMED);
    pack_free(&h);
}
END_TEST

START_TEST(test_wire_limits_on_payload_envelopes_and_frame)
{
    pack_t a;
    pack_init(&a);
    char blob[100];
    memset(blob, 'b', sizeof blob);
    pack_bin(&a, blob, sizeof blob - 2); // 100 bytes with its header
    ck_assert_uint_eq(a.sb.size, 100);
    env_spec_t e = spec_send();
    e.args = (const uint8_t *)a.sb.data;
    e.args_len = a.sb.size;
    e.nargs = 1;
    env_spec_t envs[4] = {e, e, e, e};
    pack_t p;
    pack_batch(&p, 1, envs, 4);
    brg__wire_limits_t limits = s_limits();
    int werr;
    ck_assert_int_eq(brg__wire_decode(p.sb.data, p.sb.size, &limits, &s_frame, &werr), BRG_OK);
    limits.max_payload = 100;
    ck_assert_int_eq(brg__wire_decode(p.sb.data, p.sb.size, &limits, &s_frame, &werr), BRG_OK);
    limits.max_payload = 99;
    ck_assert_int_eq(brg__wire_decode(p.sb.data, p.sb.size, &limits, &s_frame, &werr), BRG_EPROTO);
    ck_assert_int_eq(werr, BRG__WERR_MALFORMED);
    limits = s_limits();
    limits.max_envelopes = 4;
    ck_assert_int_eq(brg__wire_decode(p.sb.data, p.sb.size, &limits, &s_frame, &werr), BRG_OK);
    limits.max_envelopes = 3;
    ck_assert_int_eq(brg__wire_decode(p.sb.data, p.sb.size, &limits, &s_frame, &werr), BRG_EPROTO);
    ck_assert_int_eq(werr, BRG__WERR_MALFORMED);
    limits = s_limits();
    limits.max_frame = p.sb.size;
    ck_assert_int_eq(brg__wire_decode(p.sb.data, p.sb.size, &limits, &s_frame, &werr), BRG_OK);
    limits.max_frame = p.sb.size - 1;
    ck_assert_int_eq(brg__wire_decode(p.sb.data, p.sb.size, &limits, &s_frame, &werr), BRG_EPROTO);
    ck_assert_int_eq(werr, BRG__WERR_MALFORMED);
    pack_free(&p);
    pack_free(&a);
    // The default: 65 535 envelopes, and one more is too many.
    pack_init(&p);
    msgpack_pack_array(&p.pk, 3 + 65536);
    msgpack_pack_uint8(&p.pk, 1);
    msgpack_pack_uint8(&p.pk, 2);
    msgpack_pack_uint8(&p.pk, 1);
    env_spec_t small = spec_send();
    for (int i = 0; i < 65536; i++)
        pack_env(&p, &small);
    EXPECT_REFUSED(p.sb.data, p.sb.size, BRG__WERR_MALFORMED);
    pack_free(&p);
}
END_TEST

START_TEST(test_wire_control_kinds_speak_only_for_the_senders_actors)
{
    const int control[] = {BRG__WK_LINK, BRG__WK_UNLINK, BRG__WK_MONITOR, BRG__WK_DEMONITOR,
                           BRG__WK_STOP};
    for (size_t i = 0; i < sizeof control / sizeof control[0]; i++) {
        env_spec_t e = spec_send();
        e.kind = control[i];
        e.corr = 3;
        expect_env(&e, 0);
        e.from_type = 2; // a full ref: refused, whatever node it names
        e.from_ref = s_ref(s_peer, 9);
        expect_env(&e, BRG__WERR_MALFORMED);
        e.from_ref = s_ref(s_third, 9);
        expect_env(&e, BRG__WERR_MALFORMED);
        e.from_type = 0; // nil: only exit signals and stops may come from no actor
        expect_env(&e, control[i] == BRG__WK_STOP ? 0 : BRG__WERR_MALFORMED);
        e.from_type = 1;
        e.from_id = 0; // id 0 is no actor
        expect_env(&e, control[i] == BRG__WK_STOP ? 0 : BRG__WERR_MALFORMED);
    }
    // EXIT and DOWN with a full-ref sender.
    pack_t a;
    pack_init(&a);
    msgpack_pack_int(&a.pk, 3);
    msgpack_pack_int(&a.pk, -13);
    pack_str(&a, "boom");
    env_spec_t e = spec_send();
    e.kind = BRG__WK_EXIT;
    e.args = (const uint8_t *)a.sb.data;
    e.args_len = a.sb.size;
    e.nargs = 3;
    expect_env(&e, 0);
    e.from_type = 2;
    e.from_ref = s_ref(s_third, 9);
    expect_env(&e, BRG__WERR_MALFORMED);
    pack_free(&a);
}
END_TEST

//  Arguments a kind must have: [status] for REPLY_ERROR, [reason_kind] for
//  EXIT_SIGNAL, the reason for EXIT and DOWN, none for LINK and friends.
START_TEST(test_wire_kind_arguments_are_checked)
{
    struct {
        int kind;
        uint64_t corr;
        const char *desc; // args as a tiny language: i<n> int, s str, n nil
        int code;
    } cases[] = {
        {BRG__WK_REPLY_ERROR, 1, "i-3", 0},
        {BRG__WK_REPLY_ERROR, 1, "i-2147483648", 0},
        {BRG__WK_REPLY_ERROR, 1, "i-2147483649", BRG__WERR_MALFORMED},
        {BRG__WK_REPLY_ERROR, 1, "i0", BRG__WERR_MALFORMED},
        {BRG__WK_REPLY_ERROR, 1, "i3", BRG__WERR_MALFORMED},
        {BRG__WK_REPLY_ERROR, 1, "", BRG__WERR_MALFORMED},
        {BRG__WK_REPLY_ERROR, 1, "i-3 i-3", BRG__WERR_MALFORMED},
        {BRG__WK_REPLY_ERROR, 1, "s", BRG__WERR_MALFORMED},
        {BRG__WK_REPLY_ERROR, 0, "i-3", BRG__WERR_MALFORMED}, // answers no ask
        {BRG__WK_REPLY, 0, "i1", BRG__WERR_MALFORMED},
        {BRG__WK_REPLY, 2, "", 0},
        {BRG__WK_EXIT_SIGNAL, 0, "i1", 0},
        {BRG__WK_EXIT_SIGNAL, 0, "i2", 0},
        {BRG__WK_EXIT_SIGNAL, 0, "i3", 0},
        {BRG__WK_EXIT_SIGNAL, 0, "i0", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT_SIGNAL, 0, "i4", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT_SIGNAL, 0, "", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT, 0, "i0 i0 s", 0},
        {BRG__WK_EXIT, 0, "i5 i-17 s", 0},
        {BRG__WK_EXIT, 0, "i6 i0 s", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT, 0, "i-1 i0 s", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT, 0, "i1 i2147483648 s", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT, 0, "i1 i0 n", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT, 0, "i1 i0", BRG__WERR_MALFORMED},
        {BRG__WK_EXIT, 0, "i1 i0 s s", BRG__WERR_MALFORMED},
        {BRG__WK_DOWN, 4, "i4 i4 i0 s", 0},
        {BRG__WK_DOWN, 4, "i5 i4 i0 s", BRG__WERR_MALFORMED}, // monitor != corr
        {BRG__WK_DOWN, 0, "i0 i4 i0 s", BRG__WERR_MALFORMED},
        {BRG__WK_DOWN, 4, "i4 i0 s", BRG__WERR_MALFORMED},
        {BRG__WK_LINK, 0, "i1", BRG__WERR_MALFORMED},
        {BRG__WK_UNLINK, 0, "i1", BRG__WERR_MALFORMED},
        {BRG__WK_STOP, 0, "n", BRG__WERR_MALFORMED},
        {BRG__WK_MONITOR, 0, "", BRG__WERR_MALFORMED}, // monitor id 0
        {BRG__WK_DEMONITOR, 0, "", BRG__WERR_MALFORMED},
        {BRG__WK_MONITOR, 1, "i1", BRG__WERR_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pack_t a;
        pack_init(&a);
        uint32_t nargs = 0;
        for (const char *d = cases[i].desc; *d;) {
            if (*d == ' ') {
                d++;
                continue;
            }
            nargs++;
            if (*d == 'i') {
                char *end;
                long long v = strtoll(d + 1, &end, 10);
                msgpack_pack_int64(&a.pk, v);
                d = end;
            } else if (*d == 's') {
                pack_str(&a, "why");
                d++;
            } else {
                msgpack_pack_nil(&a.pk);
                d++;
            }
        }
        env_spec_t e = spec_send();
        e.kind = cases[i].kind;
        e.corr = cases[i].corr;
        e.args = (const uint8_t *)a.sb.data;
        e.args_len = a.sb.size;
        e.nargs = nargs;
        pack_t p;
        pack_batch(&p, 1, &e, 1);
        int werr = -1;
        int rc = s_decode(p.sb.data, p.sb.size, &werr);
        ck_assert_msg(cases[i].code ? rc == BRG_EPROTO && werr == cases[i].code : rc == BRG_OK,
                      "case %zu (kind %d, %s): rc %d werr %d", i, cases[i].kind, cases[i].desc, rc,
                      werr);
        if (rc == BRG_OK && (e.kind == BRG__WK_REPLY_ERROR || e.kind == BRG__WK_EXIT_SIGNAL)) {
            brg__env_t env;
            ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
            ck_assert_int_eq(env.status, strtoll(cases[i].desc + 1, NULL, 10));
        }
        pack_free(&p);
        pack_free(&a);
    }
}
END_TEST

START_TEST(test_wire_hello_keys_are_checked)
{
    pack_t h;
    pack_hello(&h, BRG__FRAME_HELLO, 0x3f);
    EXPECT_ACCEPTED(h.sb.data, h.sb.size);
    pack_free(&h);
    // Every required key missing in turn (ep is optional).
    for (int k = 0; k < 5; k++) {
        pack_hello(&h, BRG__FRAME_HELLO, 0x3f & ~(1u << k));
        EXPECT_REFUSED(h.sb.data, h.sb.size, BRG__WERR_MALFORMED);
        pack_free(&h);
    }
    pack_hello(&h, BRG__FRAME_WELCOME, 0x1f);
    EXPECT_ACCEPTED(h.sb.data, h.sb.size);
    pack_free(&h);

    // One key added to a valid HELLO (the map count bumped): accepted or not.
    char longname[BRG__WIRE_EP_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    struct {
        const char *key;
        int value; // 0 str(len), 1 uint(n), 2 nil, 3 bin(n), 4 int(-1), 5 array of str
        size_t n;
        bool ok;
    } extra[] = {
        {"future", 0, 300, true}, // unknown keys are ignored, whatever their value
        {"minor", 1, 7, true},       {"minor", 1, 0x100000000u, false},
        {"tick_ms", 1, 500, true},   {"tick_ms", 4, 0, false},
        {"timeout_ms", 0, 3, false}, {"max_frame", 1, 1u << 20, true},
        {"features", 5, 2, true},    {"features", 1, 2, false},
        {"peers", 0, 1, true},  // in a HELLO peers is an unknown key
        {"node", 3, 16, false}, // twice
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        pack_hello(&h, BRG__FRAME_HELLO, 0x1f);
        h.sb.data[3] = (char)(0x80 | 6);
        pack_str(&h, extra[i].key);
        switch (extra[i].value) {
        case 0:
            pack_strn(&h, longname, extra[i].n < sizeof longname ? extra[i].n : 1);
            break;
        case 1:
            msgpack_pack_uint64(&h.pk, extra[i].n);
            break;
        case 2:
            msgpack_pack_nil(&h.pk);
            break;
        case 3:
            pack_bin(&h, longname, extra[i].n);
            break;
        case 4:
            msgpack_pack_int(&h.pk, -1);
            break;
        default:
            msgpack_pack_array(&h.pk, extra[i].n);
            for (size_t j = 0; j < extra[i].n; j++)
                pack_str(&h, "feat");
            break;
        }
        int werr = -1;
        int rc = s_decode(h.sb.data, h.sb.size, &werr);
        ck_assert_msg(extra[i].ok ? rc == BRG_OK : rc == BRG_EPROTO && werr == BRG__WERR_MALFORMED,
                      "extra key %s (case %zu): rc %d", extra[i].key, i, rc);
        pack_free(&h);
    }
}
END_TEST

//  HELLO with one field's value replaced.
static int
hello_with(const char *key, int form, const void *value, size_t n)
{
    static const uint8_t node[16] = {1};
    pack_t h;
    pack_init(&h);
    msgpack_pack_array(&h.pk, 3);
    msgpack_pack_uint8(&h.pk, 1);
    msgpack_pack_uint8(&h.pk, BRG__FRAME_WELCOME);
    msgpack_pack_map(&h.pk, 6);
    const char *keys[] = {"node", "sess", "role", "name", "cluster", "ep"};
    for (int k = 0; k < 6; k++) {
        pack_str(&h, keys[k]);
        if (strcmp(keys[k], key) == 0) {
            if (form == 0)
                pack_strn(&h, value, n);
            else if (form == 1)
                pack_bin(&h, value, n);
            else
                pack_raw(&h, value, n);
            continue;
        }
        switch (k) {
        case 0:
            pack_bin(&h, node, 16);
            break;
        case 1:
            msgpack_pack_uint64(&h.pk, 1);
            break;
        case 2:
            pack_str(&h, "node");
            break;
        case 5:
            pack_str(&h, "tcp://127.0.0.1:1");
            break;
        default:
            pack_str(&h, "x");
            break;
        }
    }
    int werr = -1;
    int rc = s_decode(h.sb.data, h.sb.size, &werr);
    pack_free(&h);
    return rc == BRG_OK ? 0 : werr;
}

START_TEST(test_wire_hello_strings_and_values_are_bounded)
{
    char s[300];
    memset(s, 'a', sizeof s);
    const int M = BRG__WERR_MALFORMED;
    ck_assert_int_eq(hello_with("name", 0, s, 63), 0);
    ck_assert_int_eq(hello_with("name", 0, s, 64), M);
    ck_assert_int_eq(hello_with("name", 0, s, 0), M);
    ck_assert_int_eq(hello_with("name", 0, "a\0b", 3), M);
    ck_assert_int_eq(hello_with("cluster", 0, s, 63), 0);
    ck_assert_int_eq(hello_with("cluster", 0, s, 64), M);
    ck_assert_int_eq(hello_with("ep", 0, s, 255), 0);
    ck_assert_int_eq(hello_with("ep", 0, s, 256), M);
    ck_assert_int_eq(hello_with("ep", 1, s, 3), M);
    ck_assert_int_eq(hello_with("role", 0, "client", 6), 0);
    ck_assert_int_eq(hello_with("role", 0, "admin", 5), M);
    ck_assert_int_eq(hello_with("node", 1, s, 15), M);
    ck_assert_int_eq(hello_with("node", 1, s, 17), M);
    ck_assert_int_eq(hello_with("node", 0, s, 16), M);
    const uint8_t neg[] = {0xff};
    ck_assert_int_eq(hello_with("sess", 2, neg, 1), M);
    // peers: [[bin16, ep, name]], at most BRG__WIRE_PEERS_MAX of them.
    pack_t p;
    for (int variant = 0; variant < 5; variant++) {
        pack_init(&p);
        uint32_t n = variant == 1 ? BRG__WIRE_PEERS_MAX + 1 : 1;
        msgpack_pack_array(&p.pk, n);
        for (uint32_t i = 0; i < n; i++) {
            msgpack_pack_array(&p.pk, 3);
            pack_bin(&p, s, variant == 2 ? 8 : 16);
            pack_strn(&p, s, variant == 3 ? 256 : 20);
            pack_strn(&p, s, variant == 4 ? 64 : 5);
        }
        // Replace the "ep" slot's value by a valid ep plus a "peers" key is
        // awkward with hello_with; build the WELCOME directly instead.
        pack_t h;
        pack_hello(&h, BRG__FRAME_WELCOME, 0x1f);
        h.sb.data[3] = (char)(0x80 | 6);
        pack_str(&h, "peers");
        pack_raw(&h, p.sb.data, p.sb.size);
        int werr = -1;
        int rc = s_decode(h.sb.data, h.sb.size, &werr);
        if (variant == 0) {
            ck_assert_int_eq(rc, BRG_OK);
            ck_assert_uint_eq(s_frame.hello.npeers, 1);
        } else {
            ck_assert_msg(rc == BRG_EPROTO && werr == M, "peers variant %d accepted", variant);
        }
        pack_free(&h);
        pack_free(&p);
    }
}
END_TEST

//  Names, tags, the cluster, endpoints, HELLO keys and features must be
//  well-formed UTF-8 (PROTOCOL.md section 19); payloads, BYE and ERROR
//  texts are not checked.
static const struct {
    const char *bytes;
    bool ok;
} s_utf8_cases[] = {
    {"plain", true},
    {"h\xc3\xa9llo", true},          // U+00E9
    {"\xe2\x82\xac", true},          // U+20AC
    {"\xed\x9f\xbf", true},          // U+D7FF, just below the surrogates
    {"\xee\x80\x80", true},          // U+E000, just above them
    {"\xf0\x9f\x98\x80", true},      // U+1F600
    {"\xf4\x8f\xbf\xbf", true},      // U+10FFFF, the last code point
    {"\xff", false},                 // never in UTF-8
    {"a\x80", false},                // a lone continuation byte
    {"\xc3\x28", false},             // a lead byte without its continuation
    {"\xc0\xaf", false},             // overlong '/'
    {"\xc1\xbf", false},             // overlong
    {"\xe0\x80\xaf", false},         // overlong, 3 bytes
    {"\xf0\x80\x80\xaf", false},     // overlong, 4 bytes
    {"\xed\xa0\x80", false},         // U+D800, a surrogate
    {"\xed\xbf\xbf", false},         // U+DFFF
    {"\xf4\x90\x80\x80", false},     // U+110000, past the last code point
    {"\xf5\x80\x80\x80", false},     // f5 never starts a sequence
    {"\xf8\x88\x80\x80\x80", false}, // 5-byte forms are gone
    {"ab\xe2\x82", false},           // cut at the end
    {"\xe2\x28\xa1", false},         // a bad second byte
    {"\xf0\x9f\x98\x28", false},     // a bad last byte
};

START_TEST(test_wire_names_tags_and_endpoints_must_be_utf8)
{
    const int M = BRG__WERR_MALFORMED;
    for (size_t i = 0; i < sizeof s_utf8_cases / sizeof s_utf8_cases[0]; i++) {
        const char *b = s_utf8_cases[i].bytes;
        size_t n = strlen(b);
        int want = s_utf8_cases[i].ok ? 0 : M;
        // An envelope's tag and its `to` name.
        env_spec_t e = spec_send();
        e.tag = b;
        expect_env(&e, want);
        e = spec_send();
        e.to_type = 1;
        e.to_name = b;
        expect_env(&e, want);
        // HELLO's name, cluster, endpoint.
        ck_assert_msg(hello_with("name", 0, b, n) == want, "name case %zu", i);
        ck_assert_msg(hello_with("cluster", 0, b, n) == want, "cluster case %zu", i);
        ck_assert_msg(hello_with("ep", 0, b, n) == want, "ep case %zu", i);
        // A key, a feature, a peer's endpoint and name.
        for (int where = 0; where < 4; where++) {
            pack_t h;
            pack_hello(&h, BRG__FRAME_WELCOME, 0x1f);
            h.sb.data[3] = (char)(0x80 | 6);
            if (where == 0) {
                pack_strn(&h, b, n); // an unknown key
                msgpack_pack_nil(&h.pk);
            } else if (where == 1) {
                pack_str(&h, "features");
                msgpack_pack_array(&h.pk, 1);
                pack_strn(&h, b, n);
            } else {
                pack_str(&h, "peers");
                msgpack_pack_array(&h.pk, 1);
                msgpack_pack_array(&h.pk, 3);
                pack_bin(&h, "0123456789abcdef", 16);
                pack_strn(&h, where == 2 ? b : "tcp://h:1", where == 2 ? n : 9);
                pack_strn(&h, where == 3 ? b : "p", where == 3 ? n : 1);
            }
            int werr = -1;
            int rc = s_decode(h.sb.data, h.sb.size, &werr);
            ck_assert_msg(rc == (want ? BRG_EPROTO : BRG_OK) && (want == 0 || werr == M),
                          "case %zu in place %d: rc %d", i, where, rc);
            pack_free(&h);
        }
    }
    // BYE and ERROR texts and payload strings are not names: any bytes.
    static const uint8_t bye[] = {0x93, 0x01, 0x05, 0xa2, 0xc3, 0x28};
    EXPECT_ACCEPTED(bye, sizeof bye);
    static const uint8_t arg[] = {0xa1, 0xff};
    env_spec_t e = spec_send();
    e.args = arg;
    e.args_len = sizeof arg;
    e.nargs = 1;
    expect_env(&e, 0);
}
END_TEST

//  The encoder refuses what the decoder would: one message fails alone.
START_TEST(test_wire_encoder_refuses_names_and_tags_that_are_not_utf8)
{
    brg__wbuf_t out = {0};
    ck_assert_int_eq(brg__wire_batch_begin(&out, 1), BRG_OK);
    size_t size = out.size;
    brg_msg_t *m = brg_msg_new("\xc3\x28");
    ck_assert_ptr_nonnull(m); // the runtime takes any bytes as a tag
    m->sender = s_ref(s_peer, 1);
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, 2), NULL, m), BRG_EINVAL);
    ck_assert_uint_eq(out.size, size);
    brg_msg_destroy(&m);
    m = brg_msg_new("ok");
    m->sender = s_ref(s_peer, 1);
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, 2), "\xed\xa0\x80", m),
                     BRG_EINVAL);
    ck_assert_uint_eq(out.size, size);
    ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, 2), "caf\xc3\xa9", m), BRG_OK);
    brg_msg_destroy(&m);
    brg__wbuf_reset(&out);
    brg__hello_t h;
    for (int field = 0; field < 4; field++) {
        fill_hello(&h, 1);
        char *dst = field == 0   ? h.name
                    : field == 1 ? h.cluster
                    : field == 2 ? h.ep
                                 : h.peers[0].name;
        snprintf(dst, 8, "\xc0\xaf");
        ck_assert_int_eq(brg__wire_encode_hello(&out, BRG__FRAME_WELCOME, &h), BRG_EINVAL);
        ck_assert_uint_eq(out.size, 0);
    }
    brg__wbuf_free(&out);
}
END_TEST

//  ---------------------------------------------------------------------------
//  The fuzz loop

//  xorshift64*: a reproducible stream from the seed.
static uint64_t
s_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Du;
}

//  One mutation of buf (len bytes, room for cap) in place; returns the new length.
static size_t
s_mutate(uint64_t *rng, uint8_t *buf, size_t len, size_t cap, const corpus_t *c)
{
    static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                          0xbf, 0xc0, 0xc1, 0xc4, 0xc7, 0xcc, 0xcf, 0xd3,
                                          0xd4, 0xd8, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
                                          0xe0, 0xff, 0x18, 0x20, 0x1f, 0x3f, 0x40};
    int rounds = 1 + (int)(s_rand(rng) % 4);
    for (int r = 0; r < rounds; r++) {
        uint64_t op = s_rand(rng) % 7;
        size_t at = len ? (size_t)(s_rand(rng) % len) : 0;
        switch (op) {
        case 0: // bit flip
            if (len)
                buf[at] ^= (uint8_t)(1u << (s_rand(rng) % 8));
            break;
        case 1: // an interesting byte
            if (len)
                buf[at] = interesting[s_rand(rng) % sizeof interesting];
            break;
        case 2: // truncate
            len = at;
            break;
        case 3: { // splice: a piece of another frame over the tail from at
            int k = (int)(s_rand(rng) % (uint64_t)c->n);
            size_t from = (size_t)(s_rand(rng) % c->len[k]);
            size_t n = c->len[k] - from;
            if (at + n > cap)
                n = cap - at;
            memcpy(buf + at, c->data[k] + from, n);
            if (at + n > len)
                len = at + n;
            break;
        }
        case 4: { // insert a random byte
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)s_rand(rng);
                len++;
            }
            break;
        }
        case 5: { // delete a run
            size_t n = 1 + (size_t)(s_rand(rng) % 8);
            if (at + n > len)
                n = len - at;
            memmove(buf + at, buf + at + n, len - at - n);
            len -= n;
            break;
        }
        default: // a random byte
            if (len)
                buf[at] = (uint8_t)s_rand(rng);
            break;
        }
    }
    return len;
}

//  An accepted frame must walk cleanly, convert, and re-encode to a frame
//  that decodes to the same content. Returns the number of envelopes.
static uint32_t
s_check_accepted(const uint8_t *data, size_t len, brg__frame_t *frame)
{
    static brg__frame_t again;
    brg__wire_limits_t limits = s_limits();
    brg__wbuf_t out = {0};
    out.trace = true; // a context that came in goes out again
    int werr;
    uint32_t walked = 0;
    switch (frame->type) {
    case BRG__FRAME_HELLO:
    case BRG__FRAME_WELCOME:
        ck_assert_int_eq(brg__wire_encode_hello(&out, frame->type, &frame->hello), BRG_OK);
        ck_assert_int_eq(brg__wire_decode(out.data, out.size, &limits, &again, &werr), BRG_OK);
        assert_hello_eq(&frame->hello, &again.hello, frame->type == BRG__FRAME_WELCOME);
        break;
    case BRG__FRAME_TICK:
        ck_assert_int_eq(brg__wire_encode_tick(&out, frame->seq), BRG_OK);
        ck_assert_int_eq(brg__wire_decode(out.data, out.size, &limits, &again, &werr), BRG_OK);
        ck_assert_uint_eq(again.seq, frame->seq);
        break;
    case BRG__FRAME_BYE:
    case BRG__FRAME_ERROR:
        if (frame->type == BRG__FRAME_BYE)
            ck_assert_int_eq(brg__wire_encode_bye(&out, frame->text), BRG_OK);
        else
            ck_assert_int_eq(brg__wire_encode_error(&out, frame->code, frame->text), BRG_OK);
        ck_assert_int_eq(brg__wire_decode(out.data, out.size, &limits, &again, &werr), BRG_OK);
        ck_assert_int_eq(again.code, frame->code);
        ck_assert_str_eq(again.text, frame->text);
        break;
    case BRG__FRAME_BATCH: {
        brg__env_t env;
        brg_msg_t *msgs[64];
        uint32_t n = 0;
        ck_assert_int_eq(brg__wire_batch_begin(&out, frame->seq), BRG_OK);
        while (brg__wire_next_env(frame, &env) == BRG_OK) {
            walked++;
            ck_assert_uint_le(env.args_len, len);
            ck_assert(env.args >= data && env.args + env.args_len <= data + len);
            brg_msg_t *msg = brg__wire_env_to_msg(&env, s_peer);
            ck_assert_ptr_nonnull(msg);
            ck_assert_int_ge(brg_msg_count(msg), 0);
            char name[BRG__WIRE_NAME_MAX + 1] = "";
            if (env.to_is_name) {
                memcpy(name, env.to_name, env.to_name_len);
                name[env.to_name_len] = '\0';
            }
            // Re-encoded as the peer would have: its own actors by id.
            ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, env.to_id),
                                                 env.to_is_name ? name : NULL, msg),
                             BRG_OK);
            if (n < 64)
                msgs[n++] = msg;
            else
                brg__msg_free(msg);
        }
        ck_assert_uint_eq(walked, frame->count);
        ck_assert_int_eq(brg__wire_batch_end(&out), BRG_OK);
        ck_assert_int_eq(brg__wire_decode(out.data, out.size, &limits, &again, &werr), BRG_OK);
        ck_assert_uint_eq(again.count, frame->count);
        ck_assert_uint_eq(again.seq, frame->seq);
        for (uint32_t i = 0; i < frame->count; i++) {
            ck_assert_int_eq(brg__wire_next_env(&again, &env), BRG_OK);
            brg_msg_t *msg = brg__wire_env_to_msg(&env, s_peer);
            if (i < n) {
                assert_msg_eq(msgs[i], msg);
                brg__msg_free(msgs[i]);
            }
            brg__msg_free(msg);
        }
        break;
    }
    default:
        ck_abort_msg("accepted frame type %d", frame->type);
    }
    brg__wbuf_free(&out);
    return walked;
}

static void
s_fuzz(uint64_t seed, long iterations)
{
    const char *env_seed = getenv("BRG_FUZZ_SEED");
    if (env_seed)
        seed = strtoull(env_seed, NULL, 0);
    corpus_t c;
    corpus_make(&c);
    size_t cap = 0;
    for (int i = 0; i < c.n; i++)
        cap = c.len[i] > cap ? c.len[i] : cap;
    cap *= 2;
    uint8_t *work = malloc(cap);
    uint64_t rng = seed | 1;
    long accepted = 0, envs = 0;
    static brg__frame_t frame;
    brg__wire_limits_t limits = s_limits();
    for (long it = 0; it < iterations; it++) {
        int k = (int)(s_rand(&rng) % (uint64_t)c.n);
        memcpy(work, c.data[k], c.len[k]);
        size_t len = s_mutate(&rng, work, c.len[k], cap, &c);
        // Exactly len bytes on the heap, so ASan catches a read past the end.
        uint8_t *exact = malloc(len ? len : 1);
        memcpy(exact, work, len);
        int werr = -1;
        // A store of none, a few or many envelopes: s_check_accepted
        // compares the walk with a frame read from the bytes alone.
        static brg__env_t store[64];
        static const uint32_t caps[] = {0, 1, 3, 64};
        frame.envs = store;
        frame.envs_cap = caps[s_rand(&rng) % 4];
        int rc = brg__wire_decode(exact, len, &limits, &frame, &werr);
        if (rc == BRG_OK) {
            ck_assert_int_eq(werr, 0);
            accepted++;
            envs += s_check_accepted(exact, len, &frame);
        } else {
            ck_assert_int_eq(rc, BRG_EPROTO);
            ck_assert_msg(werr == BRG__WERR_MALFORMED || werr == BRG__WERR_VERSION,
                          "werr %d (seed %llu, iteration %ld)", werr, (unsigned long long)seed, it);
        }
        free(exact);
    }
    // The mutations must leave some frames valid, or the loop tests only refusals.
    ck_assert_msg(accepted > iterations / 100, "only %ld of %ld accepted", accepted, iterations);
    ck_assert_int_gt(envs, 0);
    free(work);
    corpus_free(&c);
}

START_TEST(test_wire_fuzz_mutated_frames)
{
    s_fuzz(0x5eed0001u, 5000);
}
END_TEST

START_TEST(test_wire_stress_fuzz_mutated_frames)
{
    s_fuzz(0x5eed0002u, 300000);
}
END_TEST

//  Writes the seed corpus of tests/fuzz (one file per frame) into the
//  directory named by BRG_WIRE_CORPUS_DIR, when set.
START_TEST(test_wire_write_corpus)
{
    const char *dir = getenv("BRG_WIRE_CORPUS_DIR");
    if (!dir)
        return;
    corpus_t c;
    corpus_make(&c);
    static const char *names[] = {"hello", "welcome", "tick", "bye", "error", "batch"};
    for (int i = 0; i < c.n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.bin", dir, names[i]);
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(c.data[i], 1, c.len[i], f), c.len[i]);
        fclose(f);
    }
    corpus_free(&c);
}
END_TEST

//  ---------------------------------------------------------------------------
//  1.1: the envelope ext map and its trace context.

START_TEST(test_wire_trace_feature_in_hello_and_welcome)
{
    brg__wbuf_t out = {0};
    for (int type = BRG__FRAME_HELLO; type <= BRG__FRAME_WELCOME; type++) {
        for (int mask = 0; mask < 4; mask++) {
            fill_hello(&s_hello_in, 0);
            s_hello_in.probe = s_hello_in.standby = (mask & 1) != 0;
            s_hello_in.trace = (mask & 2) != 0;
            brg__wbuf_reset(&out);
            ck_assert_int_eq(brg__wire_encode_hello(&out, type, &s_hello_in), BRG_OK);
            EXPECT_ACCEPTED(out.data, out.size);
            ck_assert_int_eq(s_frame.hello.trace, (mask & 2) != 0);
            ck_assert_int_eq(s_frame.hello.probe, (mask & 1) && type == BRG__FRAME_HELLO);
            ck_assert_int_eq(s_frame.hello.standby, (mask & 1) && type == BRG__FRAME_WELCOME);
        }
    }
    brg__wbuf_free(&out);
}
END_TEST

START_TEST(test_wire_trace_context_travels_only_to_a_peer_that_reads_it)
{
    const brg_ref_t actor = s_ref(s_peer, 0x0000000500000003u);
    const kind_case_t cases[] = {
        {BRG__MSG_USER, BRG__WK_SEND, actor, 0, 0},
        {BRG__MSG_USER, BRG__WK_SEND, actor, 9, 0},
        {BRG__MSG_REPLY, BRG__WK_REPLY, actor, 9, 0},
        {BRG__MSG_REPLY_ERROR, BRG__WK_REPLY_ERROR, actor, 9, BRG_ETIMEDOUT},
    };
    for (int reads = 0; reads <= 1; reads++) {
        brg__wbuf_t out = {0}, plain = {0};
        out.trace = reads;
        ck_assert_int_eq(brg__wire_batch_begin(&out, 5), BRG_OK);
        ck_assert_int_eq(brg__wire_batch_begin(&plain, 5), BRG_OK);
        brg_msg_t *sent[4];
        for (int i = 0; i < 4; i++) {
            sent[i] = build_msg(&cases[i]);
            ck_assert_int_eq(brg__wire_batch_add(&plain, s_peer, s_ref(s_here, 3), NULL, sent[i]),
                             BRG_OK);
            set_trace(sent[i], (uint8_t)(16 * i + 1));
            ck_assert_int_eq(brg__wire_batch_add(&out, s_peer, s_ref(s_here, 3), NULL, sent[i]),
                             BRG_OK);
        }
        brg__wire_batch_end(&out);
        brg__wire_batch_end(&plain);
        if (!reads) // a 1.0 peer gets exactly the 1.0 bytes
            ck_assert(out.size == plain.size && memcmp(out.data, plain.data, out.size) == 0);
        else
            ck_assert_uint_eq(out.size, plain.size + 4 * 35); // 0xcc kind, {"trace": bin 25}
        EXPECT_ACCEPTED(out.data, out.size);
        for (int i = 0; i < 4; i++) {
            brg__env_t env;
            ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
            ck_assert_int_eq(env.kind, cases[i].wire_kind); // without the ext bit
            brg_msg_t *got = brg__wire_env_to_msg(&env, s_peer);
            if (reads) {
                ck_assert_ptr_nonnull(env.trace_ids);
                assert_msg_eq(sent[i], got);
                brg_trace_ctx_t tc;
                ck_assert(brg_msg_trace(got, &tc));
                ck_assert_uint_eq(tc.trace_id[0], 16 * i + 1);
                ck_assert_uint_eq(tc.span_id[0], 16 * i + 17);
                ck_assert_uint_eq(tc.flags, BRG_TRACE_SAMPLED);
            } else {
                ck_assert_ptr_null(env.trace_ids);
                ck_assert_uint_eq(got->trace_flags, 0);
            }
            brg__msg_free(got);
            brg__msg_free(sent[i]);
        }
        brg__wbuf_free(&out);
        brg__wbuf_free(&plain);
    }
}
END_TEST

//  An ext map packed with msgpack-c: {"trace": bin(len) of ids + flags},
//  plus extra entries.
static void
pack_trace_ext(pack_t *p, size_t bin_len, uint8_t fill, int extra)
{
    pack_init(p);
    msgpack_pack_map(&p->pk, 1 + (uint32_t)extra);
    for (int i = 0; i < extra; i++) {
        char key[16];
        snprintf(key, sizeof key, "x%d", i);
        pack_str(p, key);
        msgpack_pack_array(&p->pk, 2); // unknown: any well-formed value
        msgpack_pack_int(&p->pk, i);
        pack_str(p, "later");
    }
    pack_str(p, "trace");
    uint8_t body[32];
    memset(body, fill, sizeof body);
    body[24] = 0x01;
    pack_bin(p, body, bin_len);
}

START_TEST(test_wire_ext_map_is_checked)
{
    env_spec_t e = spec_send();
    pack_t x;
    // Accepted: a trace context, with unknown keys before it.
    pack_trace_ext(&x, 25, 0xab, 2);
    e.ext = (const uint8_t *)x.sb.data;
    e.ext_len = x.sb.size;
    uint8_t arg = 0x07; // one payload value after the ext map
    e.args = &arg;
    e.args_len = 1;
    e.nargs = 1;
    expect_env(&e, 0);
    brg__env_t env;
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
    ck_assert_ptr_nonnull(env.trace_ids);
    ck_assert_uint_eq(env.trace_ids[0], 0xab);
    ck_assert_uint_eq(env.trace_flags, 1);
    ck_assert_uint_eq(env.args_len, 1); // the ext map is not payload
    brg_msg_t *m = brg__wire_env_to_msg(&env, s_peer);
    ck_assert_int_eq(brg_msg_count(m), 1);
    brg__msg_free(m);
    pack_free(&x);
    // An all-zero id: accepted, no context.
    pack_trace_ext(&x, 25, 0x00, 0);
    e.ext = (const uint8_t *)x.sb.data;
    e.ext_len = x.sb.size;
    expect_env(&e, 0);
    ck_assert_int_eq(brg__wire_next_env(&s_frame, &env), BRG_OK);
    ck_assert_ptr_null(env.trace_ids);
    pack_free(&x);
    // Refused: a trace of another size, 17 entries, not a map.
    pack_trace_ext(&x, 24, 0xab, 0);
    e.ext = (const uint8_t *)x.sb.data;
    e.ext_len = x.sb.size;
    expect_env(&e, BRG__WERR_MALFORMED);
    pack_free(&x);
    pack_trace_ext(&x, 25, 0xab, 16);
    e.ext = (const uint8_t *)x.sb.data;
    e.ext_len = x.sb.size;
    expect_env(&e, BRG__WERR_MALFORMED);
    pack_free(&x);
    const uint8_t not_map[] = {0x91, 0x01};                                       // [1]
    const uint8_t str_trace[] = {0x81, 0xa5, 't', 'r', 'a', 'c', 'e', 0xa1, 'x'}; // {"trace": "x"}
    const uint8_t int_key[] = {0x81, 0x01, 0x02};                                 // {1: 2}
    const uint8_t empty_key[] = {0x81, 0xa0, 0x02};                               // {"": 2}
    const uint8_t empty_map[] = {0x80};                                           // {}: accepted
    const struct {
        const uint8_t *b;
        size_t n;
        int code;
    } raw[] = {
        {not_map, sizeof not_map, BRG__WERR_MALFORMED},
        {str_trace, sizeof str_trace, BRG__WERR_MALFORMED},
        {int_key, sizeof int_key, BRG__WERR_MALFORMED},
        {empty_key, sizeof empty_key, BRG__WERR_MALFORMED},
        {empty_map, sizeof empty_map, 0},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        e.ext = raw[i].b;
        e.ext_len = raw[i].n;
        expect_env(&e, raw[i].code);
    }
    // "trace" twice.
    pack_init(&x);
    msgpack_pack_map(&x.pk, 2);
    for (int i = 0; i < 2; i++) {
        uint8_t body[25] = {1, 2, 3};
        body[16] = 4;
        pack_str(&x, "trace");
        pack_bin(&x, body, 25);
    }
    e.ext = (const uint8_t *)x.sb.data;
    e.ext_len = x.sb.size;
    expect_env(&e, BRG__WERR_MALFORMED);
    pack_free(&x);
    // The ext bit with nothing after the tag: no ext map.
    e = spec_send();
    e.kind = BRG__WK_SEND | BRG__WIRE_KIND_EXT;
    expect_env(&e, BRG__WERR_MALFORMED);
    // The ext bit on an unknown kind.
    e.kind = 12 | BRG__WIRE_KIND_EXT;
    e.args = empty_map;
    e.args_len = 1;
    e.nargs = 1;
    expect_env(&e, BRG__WERR_MALFORMED);
}
END_TEST

static Suite *
wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_wire_hello_and_welcome_round_trip);
    tcase_add_test(tc, test_wire_probe_and_standby_features);
    tcase_add_test(tc, test_wire_tick_bye_error_round_trip);
    tcase_add_test(tc, test_wire_every_kind_round_trips_through_a_batch);
    tcase_add_test(tc, test_wire_kept_envelopes_equal_the_ones_read_again);
    tcase_add_test(tc, test_wire_refs_in_payloads_survive_the_trip);
    tcase_add_test(tc, test_wire_targets_by_id_name_and_ref);
    tcase_add_test(tc, test_wire_kind_maps);
    tcase_add_test(tc, test_wire_local_kinds_never_leave_and_leave_the_buffer_unchanged);
    tcase_add_test(tc, test_wire_a_frame_from_another_encoder);
    tcase_add_test(tc, test_wire_non_minimal_integers_are_accepted);
    tcase_add_test(tc, test_wire_a_frame_truncated_anywhere_is_malformed);
    tcase_add_test(tc, test_wire_bad_versions_and_frame_types);
    tcase_add_test(tc, test_wire_envelope_fields_of_the_wrong_type);
    tcase_add_test(tc, test_wire_tags_are_1_to_31_bytes);
    tcase_add_test(tc, test_wire_payload_depth_limit_is_the_local_one);
    tcase_add_test(tc, test_wire_limits_on_payload_envelopes_and_frame);
    tcase_add_test(tc, test_wire_control_kinds_speak_only_for_the_senders_actors);
    tcase_add_test(tc, test_wire_kind_arguments_are_checked);
    tcase_add_test(tc, test_wire_hello_keys_are_checked);
    tcase_add_test(tc, test_wire_hello_strings_and_values_are_bounded);
    tcase_add_test(tc, test_wire_names_tags_and_endpoints_must_be_utf8);
    tcase_add_test(tc, test_wire_encoder_refuses_names_and_tags_that_are_not_utf8);
    tcase_add_test(tc, test_wire_trace_feature_in_hello_and_welcome);
    tcase_add_test(tc, test_wire_trace_context_travels_only_to_a_peer_that_reads_it);
    tcase_add_test(tc, test_wire_ext_map_is_checked);
    tcase_add_test(tc, test_wire_fuzz_mutated_frames);
    tcase_add_test(tc, test_wire_write_corpus);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_set_timeout(stress, 600);
    tcase_add_test(stress, test_wire_stress_fuzz_mutated_frames);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    SRunner *runner = srunner_create(wire_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failures = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failures != 0;
}
