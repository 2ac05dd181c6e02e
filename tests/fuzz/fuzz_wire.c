//  fuzz_wire - libFuzzer target for protocol v1's decoder (transport/wire.c).
//
//  Every input is a frame from a hostile peer. The decoder must refuse it
//  or accept it; it must never crash or read outside the input (ASan,
//  UBSan). What it accepts must walk cleanly, convert to messages, and
//  re-encode to a frame that decodes to the same content: the invariant
//  test_wire's seeded fuzz loop checks too. Built with BRG_FUZZ=ON and
//  clang; see tests/fuzz/README.md.
#include <brigade.h>

#include "msg.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_wire: %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const brg_ref_t s_peer = {0x1111111111111111u, 0x2222222222222222u, 0};
static const brg_ref_t s_here = {0x3333333333333333u, 0x4444444444444444u, 0};

static brg__frame_t s_frame, s_again;

static bool
s_msg_eq(const brg_msg_t *a, const brg_msg_t *b)
{
    return a->kind == b->kind && a->tag_len == b->tag_len && strcmp(a->tag, b->tag) == 0 &&
           a->tag_hash == b->tag_hash && brg_ref_eq(a->sender, b->sender) && a->corr == b->corr &&
           a->status == b->status && a->size == b->size &&
           (a->size == 0 || memcmp(a->data, b->data, a->size) == 0) &&
           a->trace_flags == b->trace_flags &&
           (a->trace_flags == 0 || memcmp(a->trace_ids, b->trace_ids, sizeof a->trace_ids) == 0);
}

static void
s_hello_eq(const brg__hello_t *a, const brg__hello_t *b)
{
    REQUIRE(memcmp(a->node, b->node, 16) == 0 && a->sess == b->sess && a->client == b->client);
    REQUIRE(strcmp(a->name, b->name) == 0 && strcmp(a->cluster, b->cluster) == 0);
    REQUIRE(strcmp(a->ep, b->ep) == 0 && a->minor == b->minor && a->max_frame == b->max_frame);
    REQUIRE(a->tick_ms == b->tick_ms && a->timeout_ms == b->timeout_ms);
    REQUIRE(a->trace == b->trace);
    REQUIRE(a->npeers == b->npeers);
    for (uint32_t i = 0; i < a->npeers; i++) {
        REQUIRE(memcmp(a->peers[i].node, b->peers[i].node, 16) == 0);
        REQUIRE(strcmp(a->peers[i].ep, b->peers[i].ep) == 0);
        REQUIRE(strcmp(a->peers[i].name, b->peers[i].name) == 0);
    }
}

static void
s_batch(const uint8_t *data, size_t len, brg__wbuf_t *out, const brg__wire_limits_t *limits)
{
    brg__env_t env;
    int werr;
    uint32_t walked = 0;
    REQUIRE(brg__wire_batch_begin(out, s_frame.seq) == BRG_OK);
    while (brg__wire_next_env(&s_frame, &env) == BRG_OK) {
        walked++;
        REQUIRE(env.args >= data && env.args + env.args_len <= data + len);
        REQUIRE(env.tag_len >= 1 && env.tag_len <= BRG_TAG_MAX);
        brg_msg_t *msg = brg__wire_env_to_msg(&env, s_peer);
        REQUIRE(msg);
        REQUIRE(brg_msg_count(msg) >= 0);
        char name[BRG__WIRE_NAME_MAX + 1] = "";
        if (env.to_is_name) {
            REQUIRE(env.to_name_len >= 1 && env.to_name_len <= BRG__WIRE_NAME_MAX);
            memcpy(name, env.to_name, env.to_name_len);
            name[env.to_name_len] = '\0';
        }
        brg_ref_t to = s_here;
        to.id = env.to_id;
        REQUIRE(brg__wire_batch_add(out, s_peer, to, env.to_is_name ? name : NULL, msg) == BRG_OK);
        brg__msg_free(msg);
    }
    REQUIRE(walked == s_frame.count);
    REQUIRE(brg__wire_batch_end(out) == BRG_OK);
    REQUIRE(brg__wire_decode(out->data, out->size, limits, &s_again, &werr) == BRG_OK);
    REQUIRE(s_again.count == s_frame.count && s_again.seq == s_frame.seq);
    // Walk both again side by side: the same messages. This decode keeps
    // up to 3 envelopes (wire.h, the frame's store), so the kept ones and
    // those read again are both checked against the re-encoded frame.
    static brg__frame_t first;
    static brg__env_t store[3];
    first.envs = store;
    first.envs_cap = (uint32_t)(len % 4);
    REQUIRE(brg__wire_decode(data, len, limits, &first, &werr) == BRG_OK);
    for (uint32_t i = 0; i < s_frame.count; i++) {
        brg__env_t a, b;
        REQUIRE(brg__wire_next_env(&first, &a) == BRG_OK);
        REQUIRE(brg__wire_next_env(&s_again, &b) == BRG_OK);
        brg_msg_t *ma = brg__wire_env_to_msg(&a, s_peer);
        brg_msg_t *mb = brg__wire_env_to_msg(&b, s_peer);
        REQUIRE(ma && mb && s_msg_eq(ma, mb));
        brg__msg_free(ma);
        brg__msg_free(mb);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    brg__wire_limits_t limits;
    brg__wire_limits_default(&limits);
    int werr = -1;
    int rc = brg__wire_decode(data, len, &limits, &s_frame, &werr);
    if (rc != BRG_OK) {
        REQUIRE(rc == BRG_EPROTO);
        REQUIRE(werr == BRG__WERR_MALFORMED || werr == BRG__WERR_VERSION);
        return 0;
    }
    REQUIRE(werr == 0);
    brg__wbuf_t out = {0};
    out.trace = true; // a trace context that came in goes out again (PROTOCOL.md 1.1)
    switch (s_frame.type) {
    case BRG__FRAME_HELLO:
    case BRG__FRAME_WELCOME:
        REQUIRE(brg__wire_encode_hello(&out, s_frame.type, &s_frame.hello) == BRG_OK);
        REQUIRE(brg__wire_decode(out.data, out.size, &limits, &s_again, &werr) == BRG_OK);
        REQUIRE(s_again.type == s_frame.type);
        s_hello_eq(&s_frame.hello, &s_again.hello);
        break;
    case BRG__FRAME_TICK:
        REQUIRE(brg__wire_encode_tick(&out, s_frame.seq) == BRG_OK);
        REQUIRE(brg__wire_decode(out.data, out.size, &limits, &s_again, &werr) == BRG_OK);
        REQUIRE(s_again.seq == s_frame.seq);
        break;
    case BRG__FRAME_BYE:
        REQUIRE(brg__wire_encode_bye(&out, s_frame.text) == BRG_OK);
        REQUIRE(brg__wire_decode(out.data, out.size, &limits, &s_again, &werr) == BRG_OK);
        REQUIRE(strcmp(s_again.text, s_frame.text) == 0);
        break;
    case BRG__FRAME_ERROR:
        REQUIRE(brg__wire_encode_error(&out, s_frame.code, s_frame.text) == BRG_OK);
        REQUIRE(brg__wire_decode(out.data, out.size, &limits, &s_again, &werr) == BRG_OK);
        REQUIRE(s_again.code == s_frame.code && strcmp(s_again.text, s_frame.text) == 0);
        break;
    case BRG__FRAME_BATCH:
        s_batch(data, len, &out, &limits);
        break;
    default:
        REQUIRE(!"accepted an unknown frame type");
    }
    brg__wbuf_free(&out);
    return 0;
}
