//  brgctl - look into a running node, and poke it, from the command line
//  (docs/OPERATIONS.md).
//
//  brgctl --node KEY@tcp://HOST:PORT --key FILE [--json] [--timeout MS] COMMAND
//
//  It is a client of the protocol (docs/PROTOCOL.md section 17): one
//  DEALER, a HELLO with role "client", then one request, its answer, BYE.
//  Over tcp:// it is a CURVE client with the key pair of --key (a
//  certificate brigade-node --keygen wrote); the operator commands (nodes,
//  actors, tree, stats, stop) are requests to the node service, which a
//  client reaches only with an admin key (--role admin); send and ask reach
//  the names the node exports with any client key, and every name with an
//  admin key.
//
//  Design notes.
//  A refused key never reaches the protocol: the node's ZAP handler
//  refuses the CURVE handshake and libzmq keeps retrying. So brgctl
//  watches its socket's monitor and reports the handshake failure (AUTH:
//  the key is not allowed; PROTOCOL: most often a wrong node key) instead of
//  waiting for the timeout. Payloads are converted between JSON (jansson)
//  and msgpack here, never by hand-written JSON text.
//
//  Exit codes: 0 done; 1 usage or bad input; 2 the node could not be reached
//  (no answer within --timeout); 3 refused (the key is not allowed, the
//  session was refused, or the key's role may not do this: BRG_EPERM);
//  4 the node answered with an error (an unknown name, BRG_ENOACTOR, ...).
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>
#include <msgpack.h>
#include <zmq.h>

#include "brigade.h"
#include "debug.h" // BRG__TSAN
#include "keys.h"

//  ThreadSanitizer and libzmq: Debian's libzmq is not built with TSan, so
//  its hand-offs between our thread and its I/O thread (through its lock-
//  free pipes) look like races to TSan. The same suppressions as the
//  node's, scoped to libzmq and libsodium (transport/zmq_io.c explains
//  them); brgctl does not link zmq_io.c, so it states them itself. Its own
//  code runs on one thread.
#ifdef BRG__TSAN
__attribute__((visibility("default"))) const char *__tsan_default_suppressions(void);
const char *
__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n"
           "race:libsodium.so\n"
           "called_from_lib:libzmq.so\n"
           "called_from_lib:libsodium.so\n"
           "called_from_lib:libstdc++.so\n";
}
#endif

enum { S_OK = 0, S_USAGE = 1, S_UNREACHABLE = 2, S_REFUSED = 3, S_REMOTE = 4 };

//  Frame types and envelope kinds (docs/PROTOCOL.md sections 4 and 7).
enum { S_HELLO = 0, S_WELCOME = 1, S_BATCH = 2, S_TICK = 3, S_BYE = 5, S_ERROR = 6 };
enum { S_SEND = 0, S_REPLY = 1, S_REPLY_ERROR = 2 };

#define S_PAYLOAD_MAX (16u * 1024 * 1024) // BRG_MSG_MAX

typedef struct {
    const char *node;    // the endpoint, KEY@ prefix included
    const char *key;     // --key FILE
    const char *name;    // our HELLO name
    const char *cluster; // the node's cluster
    int timeout_ms;
    bool json;
} s_opts_t;

typedef struct {
    void *ctx;
    void *sock;
    void *mon;        // PAIR reading the socket's monitor events
    uint64_t seq;     // our last BATCH
    uint64_t got_seq; // the node's last BATCH
    uint64_t corr;
    uint64_t deadline_ns;
    const s_opts_t *opts;
} s_client_t;

//  An answer: REPLY (status BRG_OK) or REPLY_ERROR (status < 0).
typedef struct {
    int status;
    char tag[BRG_TAG_MAX + 1];
    msgpack_zone zone;
    msgpack_object *args;
    uint32_t nargs;
    msgpack_unpacked frame;
} s_answer_t;

static int
usage(FILE *out)
{
    fprintf(out,
            "usage: brgctl --node ENDPOINT [--key FILE] [--json] [--timeout MS]\n"
            "              [--name NAME] [--cluster NAME] COMMAND [ARGS]\n"
            "  --node ENDPOINT  the node: KEY@tcp://HOST:PORT (KEY: the node's public key\n"
            "                   in Z85, as brigade-node prints it), tcp://HOST:PORT (a node\n"
            "                   with --insecure-loopback) or ipc:///PATH\n"
            "  --key FILE       our key pair: a certificate from brigade-node --keygen FILE\n"
            "                   (FILE or FILE_secret); the operator commands need a key the\n"
            "                   node allows with role admin (--keygen FILE --role admin)\n"
            "  --json           print one JSON document instead of aligned columns\n"
            "  --timeout MS     how long to wait for the node (default 5000)\n"
            "  --name NAME      the name this client gives the node (default brgctl)\n"
            "  --cluster NAME   the node's cluster (default brigade)\n"
            "commands:\n"
            "  nodes                     peers of the node: up or down, round-trip time\n"
            "  actors                    one line per actor: ref, name, label, mailbox,\n"
            "                            messages processed, state\n"
            "  tree                      the supervision trees, with restart counts\n"
            "  stats                     the node's counters and each peer's\n"
            "  send NAME TAG [PAYLOAD]   send a message to the actor registered as NAME\n"
            "  ask NAME TAG [PAYLOAD]    ask it and print its answer\n"
            "  stop REF|NAME             stop an actor of the node\n"
            "PAYLOAD: JSON (a JSON array is the list of arguments, any other value the\n"
            "         one argument; {\"$ref\": \"REF\"} is a ref, {\"$bin\": \"HEX\"} bytes),\n"
            "         hex:HEX (msgpack bytes: the arguments one after the other) or\n"
            "         @FILE (the same bytes in a file).\n"
            "exit: 0 done, 1 usage or bad input, 2 node unreachable, 3 refused (key not\n"
            "      allowed, or not allowed to do this), 4 the node answered an error\n");
    return out == stdout ? S_OK : S_USAGE;
}

static int
s_fail(int code, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "brgctl: ");
    fprintf(stderr, fmt, a ? a : "", b ? b : "");
    fprintf(stderr, "\n");
    return code;
}

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

//  ---------------------------------------------------------------------------
//  msgpack <-> JSON

static void
s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void
s_pack_ref(msgpack_packer *pk, brg_ref_t ref)
{
    uint8_t b[24];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(ref.node_hi >> (56 - 8 * i));
        b[8 + i] = (uint8_t)(ref.node_lo >> (56 - 8 * i));
        b[16 + i] = (uint8_t)(ref.id >> (56 - 8 * i));
    }
    msgpack_pack_ext(pk, sizeof b, 1);
    msgpack_pack_ext_body(pk, b, sizeof b);
}

static int
s_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

//  Hex text to bytes (malloc'd, *len); NULL if it is not hex.
static uint8_t *
s_unhex(const char *text, size_t *len)
{
    size_t n = strlen(text);
    if (n % 2 != 0)
        return NULL;
    uint8_t *out = malloc(n / 2 + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = s_hex_value(text[2 * i]), lo = s_hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return out;
}

static char *
s_hex(const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char *out = malloc(2 * len + 1);
    if (out == NULL)
        return NULL;
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}

//  Pack one JSON value; false (with *why) if it cannot be.
static bool
s_json_pack(msgpack_packer *pk, const json_t *v, const char **why)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return true;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return true;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return true;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
        return true;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        return true;
    case JSON_STRING:
        msgpack_pack_str(pk, json_string_length(v));
        msgpack_pack_str_body(pk, json_string_value(v), json_string_length(v));
        return true;
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!s_json_pack(pk, json_array_get(v, i), why))
                return false;
        return true;
    }
    case JSON_OBJECT: {
        const json_t *ref = json_object_get(v, "$ref");
        const json_t *bin = json_object_get(v, "$bin");
        if (json_object_size(v) == 1 && json_is_string(ref)) {
            brg_ref_t r;
            if (brg_ref_parse(json_string_value(ref), &r) != BRG_OK) {
                *why = "a $ref is not a ref (NODE-UUID/SLOT.GENERATION)";
                return false;
            }
            s_pack_ref(pk, r);
            return true;
        }
        if (json_object_size(v) == 1 && json_is_string(bin)) {
            size_t n;
            uint8_t *b = s_unhex(json_string_value(bin), &n);
            if (b == NULL) {
                *why = "a $bin is not hex";
                return false;
            }
            msgpack_pack_bin(pk, n);
            msgpack_pack_bin_body(pk, b, n);
            free(b);
            return true;
        }
        msgpack_pack_map(pk, json_object_size(v));
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)v, key, value)
        {
            s_pack_str(pk, key);
            if (!s_json_pack(pk, value, why))
                return false;
        }
        return true;
    }
    }
    *why = "an unknown JSON type";
    return false;
}

static json_t *s_to_json(const msgpack_object *o);

static json_t *
s_tagged(const char *key, const void *data, size_t len)
{
    char *hex = s_hex(data, len);
    json_t *j = hex ? json_pack("{ss}", key, hex) : NULL;
    free(hex);
    return j;
}

//  A ref (ext 1, 24 bytes) as brg_ref_format's text.
static bool
s_ext_ref(const msgpack_object *o, brg_ref_t *ref)
{
    if (o->type != MSGPACK_OBJECT_EXT || o->via.ext.type != 1 || o->via.ext.size != 24)
        return false;
    const uint8_t *b = (const uint8_t *)o->via.ext.ptr;
    uint64_t w[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 8; i++)
            w[k] = w[k] << 8 | b[8 * k + i];
    *ref = (brg_ref_t){w[0], w[1], w[2]};
    return true;
}

static json_t *
s_to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: {
        json_t *s = json_stringn(o->via.str.ptr, o->via.str.size);
        // Not UTF-8 (or has a zero byte): keep the bytes, as $bin.
        return s ? s : s_tagged("$bin", o->via.str.ptr, o->via.str.size);
    }
    case MSGPACK_OBJECT_BIN:
        return s_tagged("$bin", o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT: {
        brg_ref_t ref;
        if (s_ext_ref(o, &ref)) {
            char text[BRG_REF_STRLEN];
            brg_ref_format(ref, text, sizeof text);
            return json_string(text);
        }
        char *hex = s_hex(o->via.ext.ptr, o->via.ext.size);
        json_t *j = hex ? json_pack("{sisi}", "$ext", (int)o->via.ext.type, "hex", 0) : NULL;
        if (j != NULL)
            json_object_set_new(j, "hex", json_string(hex));
        free(hex);
        return j;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a != NULL && i < o->via.array.size; i++)
            json_array_append_new(a, s_to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m != NULL && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            char *key;
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                key = strndup(kv->key.via.str.ptr, kv->key.via.str.size);
            } else {
                // A key that is not a string: its JSON text is the key.
                json_t *k = s_to_json(&kv->key);
                key = k ? json_dumps(k, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                json_decref(k);
            }
            if (key != NULL)
                json_object_set_new(m, key, s_to_json(&kv->val));
            free(key);
        }
        return m;
    }
    }
    return json_null();
}

//  The payload argument: JSON, hex:HEX or @FILE, into sb (msgpack values).
static int
s_payload(const char *text, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    uint8_t *raw = NULL;
    size_t len = 0;
    if (strncmp(text, "hex:", 4) == 0) {
        raw = s_unhex(text + 4, &len);
        if (raw == NULL)
            return s_fail(S_USAGE, "the payload after hex: is not hex%s%s", NULL, NULL);
    } else if (text[0] == '@') {
        FILE *f = fopen(text + 1, "rb");
        if (f == NULL)
            return s_fail(S_USAGE, "cannot read %s: %s", text + 1, strerror(errno));
        raw = malloc(S_PAYLOAD_MAX + 1);
        len = raw ? fread(raw, 1, S_PAYLOAD_MAX + 1, f) : 0;
        fclose(f);
        if (raw == NULL || len > S_PAYLOAD_MAX) {
            free(raw);
            return s_fail(S_USAGE, "%s is larger than 16 MiB%s", text + 1, NULL);
        }
    } else {
        json_error_t err;
        json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
        if (j == NULL)
            return s_fail(S_USAGE, "the payload is not JSON: %s%s", err.text, NULL);
        const char *why = NULL;
        bool ok = true;
        if (json_is_array(j)) {
            for (size_t i = 0; ok && i < json_array_size(j); i++)
                ok = s_json_pack(&pk, json_array_get(j, i), &why);
        } else {
            ok = s_json_pack(&pk, j, &why);
        }
        json_decref(j);
        if (!ok)
            return s_fail(S_USAGE, "the payload cannot be sent: %s%s", why, NULL);
        return S_OK;
    }
    // Raw msgpack: the node checks it too, but a local check says why.
    if (brg_msgpack_validate(raw, len) < 0) {
        free(raw);
        return s_fail(S_USAGE, "the payload is not well-formed msgpack%s%s", NULL, NULL);
    }
    msgpack_sbuffer_write(sb, (const char *)raw, len);
    free(raw);
    return S_OK;
}

//  ---------------------------------------------------------------------------
//  The session.

static int
s_remaining_ms(const s_client_t *c)
{
    uint64_t now = s_now_ns();
    return now >= c->deadline_ns ? 0 : (int)((c->deadline_ns - now) / 1000000u) + 1;
}

//  A monitor event: a handshake failure is a refusal we can name.
static int
s_read_monitor(s_client_t *c)
{
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    zmq_msg_init(&addr);
    int rc = S_OK;
    if (zmq_msg_recv(&ev, c->mon, 0) >= 0 && zmq_msg_more(&ev) &&
        zmq_msg_recv(&addr, c->mon, 0) >= 0 && zmq_msg_size(&ev) >= 6) {
        uint16_t event;
        uint32_t value;
        memcpy(&event, zmq_msg_data(&ev), 2);
        memcpy(&value, (const uint8_t *)zmq_msg_data(&ev) + 2, 4);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            rc = s_fail(S_REFUSED, "refused: the node does not allow this key (ZAP status %s)%s",
                        value == 400 ? "400" : "error", NULL);
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                 event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            rc = s_fail(S_REFUSED,
                        "refused: the secure handshake failed (is KEY@ the node's public key, "
                        "and does the node use CURVE on %s?)%s",
                        c->opts->node, NULL);
    }
    zmq_msg_close(&ev);
    zmq_msg_close(&addr);
    return rc;
}

//  Wait for the next frame, decoded into *u. S_OK, or the exit code of a
//  refusal or the deadline.
static int
s_recv(s_client_t *c, msgpack_unpacked *u)
{
    for (;;) {
        zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        int ms = s_remaining_ms(c);
        if (ms == 0 || zmq_poll(items, 2, ms) < 0)
            break;
        if (items[1].revents & ZMQ_POLLIN) {
            int rc = s_read_monitor(c);
            if (rc != S_OK)
                return rc;
        }
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        msgpack_unpack_return ur = msgpack_unpack_next(u, zmq_msg_data(&m), zmq_msg_size(&m), NULL);
        zmq_msg_close(&m);
        if (ur != MSGPACK_UNPACK_SUCCESS || u->data.type != MSGPACK_OBJECT_ARRAY ||
            u->data.via.array.size < 3 ||
            u->data.via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return s_fail(S_REFUSED, "the node sent a malformed frame%s%s", NULL, NULL);
        return S_OK;
    }
    return s_fail(S_UNREACHABLE, "no answer from %s within the timeout%s", c->opts->node, NULL);
}

//  ERROR or BYE from the node: the session is over.
static int
s_ended(const msgpack_object *f)
{
    uint64_t type = f->via.array.ptr[1].via.u64;
    char text[256] = "";
    const msgpack_object *t = &f->via.array.ptr[f->via.array.size - 1];
    if (t->type == MSGPACK_OBJECT_STR)
        snprintf(text, sizeof text, "%.*s", (int)t->via.str.size, t->via.str.ptr);
    if (type == S_ERROR)
        return s_fail(S_REFUSED, "refused by the node: %s%s", text, NULL);
    return s_fail(S_REFUSED, "the node ended the session: %s%s", text, NULL);
}

static int
s_send_frame(s_client_t *c, msgpack_sbuffer *sb)
{
    if (zmq_send(c->sock, sb->data, sb->size, 0) != (int)sb->size)
        return s_fail(S_UNREACHABLE, "cannot send to %s: %s", c->opts->node,
                      zmq_strerror(zmq_errno()));
    return S_OK;
}

static int
s_open(s_client_t *c, const s_opts_t *o)
{
    memset(c, 0, sizeof *c);
    c->opts = o;
    c->deadline_ns = s_now_ns() + (uint64_t)o->timeout_ms * 1000000u;
    const char *ep = o->node;
    char server_key[BRG__KEY_Z85 + 1] = "";
    // Z85 has '@' in its alphabet: the key is the first 40 characters.
    const char *scheme = strstr(ep, "://");
    if (strlen(ep) > BRG__KEY_Z85 && ep[BRG__KEY_Z85] == '@') {
        const char *at = ep + BRG__KEY_Z85;
        memcpy(server_key, ep, BRG__KEY_Z85);
        uint8_t k[BRG__KEY_BYTES];
        if (brg__key_from_text(k, server_key) != BRG_OK)
            return s_fail(S_USAGE, "--node %s: the key is not Z85%s", ep, NULL);
        ep = at + 1;
    } else if (scheme != NULL && memchr(ep, '@', (size_t)(scheme - ep)) != NULL) {
        return s_fail(S_USAGE, "--node %s: KEY@ needs the node's key (40 characters of Z85)%s", ep,
                      NULL);
    }
    bool curve = server_key[0] != '\0';
    brg__cert_t cert;
    memset(&cert, 0, sizeof cert);
    if (curve) {
        if (o->key == NULL)
            return s_fail(S_USAGE, "--node KEY@... needs --key FILE (our key pair)%s%s", NULL,
                          NULL);
        const char *why = "";
        int rc = brg__cert_load(o->key, &cert, &why);
        if (rc == BRG_OK && !cert.has_sec) {
            char sec[1100];
            snprintf(sec, sizeof sec, "%s_secret", o->key);
            rc = brg__cert_load(sec, &cert, &why);
        }
        if (rc != BRG_OK || !cert.has_sec)
            return s_fail(S_USAGE, "--key %s: not a secret certificate (%s)", o->key,
                          rc == BRG_ENOTFOUND ? "no such file" : why);
    } else if (o->key != NULL) {
        return s_fail(S_USAGE,
                      "--key is used over CURVE only (tcp://): give the node's key, --node "
                      "KEY@%s%s",
                      ep, NULL);
    }
    c->ctx = zmq_ctx_new();
    c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
    if (c->sock == NULL)
        return s_fail(S_UNREACHABLE, "cannot make a socket: %s%s", zmq_strerror(zmq_errno()), NULL);
    int linger = 500, send_ms = o->timeout_ms;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &send_ms, sizeof send_ms);
    if (curve) {
        char pub[BRG__KEY_Z85 + 1], sec[BRG__KEY_Z85 + 1];
        brg__z85_encode(pub, cert.pub, BRG__KEY_BYTES);
        brg__z85_encode(sec, cert.sec, BRG__KEY_BYTES);
        bool ok = zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, pub, BRG__KEY_Z85) == 0 &&
                  zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, sec, BRG__KEY_Z85) == 0 &&
                  zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, server_key, BRG__KEY_Z85) == 0;
        memset(sec, 0, sizeof sec);
        memset(&cert, 0, sizeof cert);
        if (!ok)
            return s_fail(S_UNREACHABLE, "this libzmq has no CURVE: %s%s",
                          zmq_strerror(zmq_errno()), NULL);
    }
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://brgctl-monitor");
    if (zmq_socket_monitor(c->sock, mon_ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0 ||
        (c->mon = zmq_socket(c->ctx, ZMQ_PAIR)) == NULL || zmq_connect(c->mon, mon_ep) != 0)
        return s_fail(S_UNREACHABLE, "cannot watch the socket: %s%s", zmq_strerror(zmq_errno()),
                      NULL);
    if (zmq_connect(c->sock, ep) != 0)
        return s_fail(S_USAGE, "--node %s: %s", o->node, zmq_strerror(zmq_errno()));
    // HELLO: a fresh node UUID and session id (PROTOCOL.md section 5).
    uint8_t node[16];
    uint64_t sess = 0;
    if (getrandom(node, sizeof node, 0) != (ssize_t)sizeof node ||
        getrandom(&sess, sizeof sess, 0) != (ssize_t)sizeof sess)
        return s_fail(S_UNREACHABLE, "no random bytes: %s%s", strerror(errno), NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, S_HELLO);
    msgpack_pack_map(&pk, 6);
    s_pack_str(&pk, "node");
    msgpack_pack_bin(&pk, sizeof node);
    msgpack_pack_bin_body(&pk, node, sizeof node);
    s_pack_str(&pk, "sess");
    msgpack_pack_uint64(&pk, sess | 1);
    s_pack_str(&pk, "role");
    s_pack_str(&pk, "client");
    s_pack_str(&pk, "name");
    s_pack_str(&pk, o->name);
    s_pack_str(&pk, "cluster");
    s_pack_str(&pk, o->cluster);
    s_pack_str(&pk, "ep");
    msgpack_pack_nil(&pk);
    int rc = s_send_frame(c, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc != S_OK)
        return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    rc = s_recv(c, &u);
    if (rc == S_OK) {
        uint64_t type = u.data.via.array.ptr[1].via.u64;
        if (type == S_ERROR || type == S_BYE)
            rc = s_ended(&u.data);
        else if (type != S_WELCOME)
            rc = s_fail(S_REFUSED, "the node answered HELLO with frame type %s%s",
                        type == S_BATCH ? "BATCH" : "other", NULL);
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

static void
s_close(s_client_t *c)
{
    if (c->sock != NULL && c->seq > 0) {
        // Acknowledge what we got, then say goodbye (PROTOCOL.md 17.2).
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint8(&pk, 1);
        msgpack_pack_uint8(&pk, S_TICK);
        msgpack_pack_uint64(&pk, c->got_seq);
        zmq_send(c->sock, sb.data, sb.size, ZMQ_DONTWAIT);
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint8(&pk, 1);
        msgpack_pack_uint8(&pk, S_BYE);
        s_pack_str(&pk, "brgctl done");
        zmq_send(c->sock, sb.data, sb.size, ZMQ_DONTWAIT);
        msgpack_sbuffer_destroy(&sb);
    }
    if (c->sock != NULL)
        zmq_socket_monitor(c->sock, NULL, 0);
    if (c->mon != NULL)
        zmq_close(c->mon);
    if (c->sock != NULL)
        zmq_close(c->sock);
    if (c->ctx != NULL)
        zmq_ctx_term(c->ctx);
    memset(c, 0, sizeof *c);
}

//  Send [SEND, to, 1, corr, tag, payload...] in its own BATCH. ask: wait
//  for its answer into *a (free it with s_answer_free).
static int
s_request(s_client_t *c, const char *to, const char *tag, const msgpack_sbuffer *payload, bool ask,
          s_answer_t *a)
{
    uint32_t nargs = 0;
    if (payload != NULL && payload->size > 0) {
        size_t off = 0;
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        while (off < payload->size && msgpack_unpack_next(&u, payload->data, payload->size, &off) ==
                                          MSGPACK_UNPACK_SUCCESS)
            nargs++;
        msgpack_unpacked_destroy(&u);
    }
    uint64_t corr = ask ? ++c->corr : 0;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint8(&pk, S_BATCH);
    msgpack_pack_uint64(&pk, ++c->seq);
    msgpack_pack_array(&pk, 5 + nargs);
    msgpack_pack_uint8(&pk, S_SEND);
    s_pack_str(&pk, to);
    msgpack_pack_uint8(&pk, 1); // our actor 1: where the answer comes
    msgpack_pack_uint64(&pk, corr);
    s_pack_str(&pk, tag);
    if (nargs > 0)
        msgpack_sbuffer_write(&sb, payload->data, payload->size);
    int rc = s_send_frame(c, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc != S_OK || !ask)
        return rc;
    memset(a, 0, sizeof *a);
    msgpack_unpacked_init(&a->frame);
    for (;;) {
        rc = s_recv(c, &a->frame);
        if (rc != S_OK)
            return rc;
        const msgpack_object *f = &a->frame.data;
        uint64_t type = f->via.array.ptr[1].via.u64;
        if (type == S_ERROR || type == S_BYE)
            return s_ended(f);
        if (type != S_BATCH)
            continue;
        if (f->via.array.ptr[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            c->got_seq = f->via.array.ptr[2].via.u64;
        for (uint32_t i = 3; i < f->via.array.size; i++) {
            const msgpack_object *env = &f->via.array.ptr[i];
            if (env->type != MSGPACK_OBJECT_ARRAY || env->via.array.size < 5)
                continue;
            const msgpack_object *e = env->via.array.ptr;
            if (e[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                e[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER || e[3].via.u64 != corr ||
                (e[0].via.u64 != S_REPLY && e[0].via.u64 != S_REPLY_ERROR))
                continue;
            if (e[4].type == MSGPACK_OBJECT_STR)
                snprintf(a->tag, sizeof a->tag, "%.*s", (int)e[4].via.str.size, e[4].via.str.ptr);
            a->args = (msgpack_object *)&e[5];
            a->nargs = env->via.array.size - 5;
            a->status = BRG_OK;
            if (e[0].via.u64 == S_REPLY_ERROR) {
                a->status = BRG_EPROTO;
                if (a->nargs == 1 && a->args[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                    a->status = (int)a->args[0].via.i64;
            }
            return S_OK;
        }
    }
}

static void
s_answer_free(s_answer_t *a)
{
    msgpack_unpacked_destroy(&a->frame);
}

//  The exit code and message of an error answer.
static int
s_remote_error(const char *what, int status)
{
    char buf[200];
    snprintf(buf, sizeof buf, "%s (%s)", brg_strerror(status), brg_err_name(status));
    if (status == BRG_EPERM)
        return s_fail(S_REFUSED,
                      "%s: refused: %s; the operator commands, and names the node does not "
                      "export, need an admin key",
                      what, buf);
    return s_fail(S_REMOTE, "%s: %s", what, buf);
}

//  ---------------------------------------------------------------------------
//  Output.

static const msgpack_object *
s_get(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
            memcmp(kv->key.via.str.ptr, key, n) == 0)
            return &kv->val;
    }
    return NULL;
}

//  A field as text, for the columns.
static void
s_text(const msgpack_object *o, char *buf, size_t len)
{
    brg_ref_t ref;
    if (o == NULL || o->type == MSGPACK_OBJECT_NIL)
        snprintf(buf, len, "-");
    else if (o->type == MSGPACK_OBJECT_STR)
        snprintf(buf, len, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(buf, len, "%" PRIu64, o->via.u64);
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf(buf, len, "%" PRId64, o->via.i64);
    else if (o->type == MSGPACK_OBJECT_BOOLEAN)
        snprintf(buf, len, "%s", o->via.boolean ? "yes" : "no");
    else if (s_ext_ref(o, &ref))
        brg_ref_format(ref, buf, len);
    else
        snprintf(buf, len, "?");
    if (buf[0] == '\0')
        snprintf(buf, len, "-");
}

static uint64_t
s_uint(const msgpack_object *o)
{
    return o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

static bool
s_true(const msgpack_object *o)
{
    return o != NULL && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

static int
s_print_json(const msgpack_object *o)
{
    json_t *j = s_to_json(o);
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (text == NULL)
        return s_fail(S_REMOTE, "cannot print the answer as JSON%s%s", NULL, NULL);
    printf("%s\n", text);
    free(text);
    return S_OK;
}

//  Columns: widths from the widest cell of each (first pass), then print.
#define S_COLS_MAX 12
typedef struct {
    int ncols;
    int width[S_COLS_MAX];
    char **cells; // rows * ncols, malloc'd
    size_t rows, cap;
} s_table_t;

static void
s_table_add(s_table_t *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        char **n = realloc(t->cells, ncap * (size_t)t->ncols * sizeof *n);
        if (n == NULL)
            return;
        t->cells = n;
        t->cap = ncap;
    }
    for (int i = 0; i < t->ncols; i++) {
        char *s = strdup(cells[i]);
        t->cells[t->rows * (size_t)t->ncols + (size_t)i] = s;
        int w = s ? (int)strlen(s) : 0;
        if (w > t->width[i])
            t->width[i] = w;
    }
    t->rows++;
}

static void
s_table_print(s_table_t *t)
{
    for (size_t r = 0; r < t->rows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * (size_t)t->ncols + (size_t)i];
            if (i + 1 == t->ncols)
                printf("%s\n", s ? s : "");
            else
                printf("%-*s  ", t->width[i], s ? s : "");
        }
    }
    for (size_t k = 0; k < t->rows * (size_t)t->ncols; k++)
        free(t->cells[k]);
    free(t->cells);
}

static int
s_print_actors(const msgpack_object *res)
{
    const msgpack_object *list = s_get(res, "actors");
    if (list == NULL || list->type != MSGPACK_OBJECT_ARRAY)
        return s_fail(S_REMOTE, "the node's actors answer has no list%s%s", NULL, NULL);
    s_table_t t = {.ncols = 6};
    const char *head[] = {"REF", "NAME", "LABEL", "MAILBOX", "PROCESSED", "STATE"};
    s_table_add(&t, head);
    const char *keys[] = {"ref", "name", "label", "mailbox", "processed", "state"};
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        char buf[6][BRG_REF_STRLEN + 8];
        const char *row[6];
        for (int k = 0; k < 6; k++) {
            s_text(s_get(&list->via.array.ptr[i], keys[k]), buf[k], sizeof buf[k]);
            row[k] = buf[k];
        }
        s_table_add(&t, row);
    }
    s_table_print(&t);
    uint64_t total = s_uint(s_get(res, "total"));
    if (total > list->via.array.size)
        printf("(%" PRIu64 " actors, the first %u shown)\n", total, list->via.array.size);
    return S_OK;
}

static int
s_print_nodes(const msgpack_object *res)
{
    if (res == NULL || res->type != MSGPACK_OBJECT_ARRAY)
        return s_fail(S_REMOTE, "the node's nodes answer is not a list%s%s", NULL, NULL);
    s_table_t t = {.ncols = 5};
    const char *head[] = {"NAME", "NODE", "STATE", "ROLE", "RTT"};
    s_table_add(&t, head);
    for (uint32_t i = 0; i < res->via.array.size; i++) {
        const msgpack_object *p = &res->via.array.ptr[i];
        char name[80], node[BRG_REF_STRLEN], rtt[64];
        s_text(s_get(p, "name"), name, sizeof name);
        s_text(s_get(p, "node"), node, sizeof node);
        const msgpack_object *us = s_get(p, "rtt_us");
        char err[40];
        s_text(s_get(p, "rtt_error"), err, sizeof err);
        if (us != NULL && us->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            snprintf(rtt, sizeof rtt, "%.3f ms", (double)us->via.u64 / 1000.0);
        else
            snprintf(rtt, sizeof rtt, "%s", strcmp(err, "-") != 0 ? err : "-");
        const char *row[] = {name, node, s_true(s_get(p, "up")) ? "up" : "down",
                             s_true(s_get(p, "client")) ? "client" : "node", rtt};
        s_table_add(&t, row);
    }
    s_table_print(&t);
    return S_OK;
}

static void
s_print_counters(const char *title, const msgpack_object *map)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return;
    printf("%s\n", title);
    s_table_t t = {.ncols = 2};
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        char k[64], v[32];
        s_text(&map->via.map.ptr[i].key, k, sizeof k);
        s_text(&map->via.map.ptr[i].val, v, sizeof v);
        char key[72];
        snprintf(key, sizeof key, "  %s", k);
        const char *row[] = {key, v};
        s_table_add(&t, row);
    }
    s_table_print(&t);
}

static int
s_print_stats(const msgpack_object *res)
{
    if (res == NULL || res->type != MSGPACK_OBJECT_MAP)
        return s_fail(S_REMOTE, "the node's stats answer is not a map%s%s", NULL, NULL);
    s_print_counters("runtime", s_get(res, "runtime"));
    s_print_counters("node", s_get(res, "node"));
    const msgpack_object *peers = s_get(res, "peers");
    if (peers == NULL || peers->type != MSGPACK_OBJECT_ARRAY)
        return S_OK;
    printf("peers\n");
    s_table_t t = {.ncols = 11};
    const char *head[] = {"  NAME",    "STATE",     "ROLE",     "SENT",
                          "RECEIVED",  "BYTES_OUT", "BYTES_IN", "QUEUE_BYTES",
                          "DROP_BUSY", "DROP_DOWN", "REFUSED"};
    s_table_add(&t, head);
    const char *keys[] = {"msgs_out",    "msgs_in",      "bytes_out",    "bytes_in",
                          "queue_bytes", "dropped_busy", "dropped_down", "refused_unauthorized"};
    for (uint32_t i = 0; i < peers->via.array.size; i++) {
        const msgpack_object *p = &peers->via.array.ptr[i];
        char name[80], nm[72], buf[8][32];
        s_text(s_get(p, "name"), nm, sizeof nm);
        snprintf(name, sizeof name, "  %s", nm);
        const char *row[11] = {name, s_true(s_get(p, "up")) ? "up" : "down",
                               s_true(s_get(p, "client")) ? "client" : "node"};
        for (int k = 0; k < 8; k++) {
            s_text(s_get(p, keys[k]), buf[k], sizeof buf[k]);
            row[3 + k] = buf[k];
        }
        s_table_add(&t, row);
    }
    s_table_print(&t);
    return S_OK;
}

//  The tree: supervisors nest where a child's ref is another supervisor's.
static const char *s_child_states[] = {"stopped", "running", "restarting"};
static const char *s_child_types[] = {"worker", "supervisor"};

static int
s_sup_index(const msgpack_object *sups, const msgpack_object *ref)
{
    brg_ref_t r, s;
    if (!s_ext_ref(ref, &r))
        return -1;
    for (uint32_t i = 0; i < sups->via.array.size; i++)
        if (s_ext_ref(s_get(&sups->via.array.ptr[i], "ref"), &s) && brg_ref_eq(r, s))
            return (int)i;
    return -1;
}

static void
s_print_sup(const msgpack_object *sups, uint32_t i, int depth, bool *shown)
{
    const msgpack_object *sup = &sups->via.array.ptr[i];
    shown[i] = true;
    char ref[BRG_REF_STRLEN], name[80];
    s_text(s_get(sup, "ref"), ref, sizeof ref);
    s_text(s_get(sup, "name"), name, sizeof name);
    if (depth == 0)
        printf("%s  %s  supervisor\n", strcmp(name, "-") ? name : "(unnamed)", ref);
    const msgpack_object *kids = s_get(sup, "children");
    if (kids == NULL || kids->type != MSGPACK_OBJECT_ARRAY) {
        char err[40];
        s_text(s_get(sup, "error"), err, sizeof err);
        printf("%*s(no answer: %s)\n", 2 * depth + 2, "", err);
        return;
    }
    for (uint32_t k = 0; k < kids->via.array.size; k++) {
        const msgpack_object *c = &kids->via.array.ptr[k];
        if (c->type != MSGPACK_OBJECT_ARRAY || c->via.array.size < 5)
            continue;
        char id[80], cref[BRG_REF_STRLEN];
        s_text(&c->via.array.ptr[0], id, sizeof id);
        s_text(&c->via.array.ptr[1], cref, sizeof cref);
        uint64_t restarts = s_uint(&c->via.array.ptr[2]);
        uint64_t st = s_uint(&c->via.array.ptr[3]), ty = s_uint(&c->via.array.ptr[4]);
        printf("%*s%s  %s  %s  %s  restarts=%" PRIu64 "\n", 2 * depth + 2, "", id, cref,
               ty < 2 ? s_child_types[ty] : "?", st < 3 ? s_child_states[st] : "?", restarts);
        int sub = s_sup_index(sups, &c->via.array.ptr[1]);
        if (sub >= 0 && !shown[sub])
            s_print_sup(sups, (uint32_t)sub, depth + 1, shown);
    }
}

static int
s_print_tree(const msgpack_object *res)
{
    if (res == NULL || res->type != MSGPACK_OBJECT_ARRAY)
        return s_fail(S_REMOTE, "the node's tree answer is not a list%s%s", NULL, NULL);
    uint32_t n = res->via.array.size;
    if (n == 0) {
        printf("(no supervisors)\n");
        return S_OK;
    }
    bool *child = calloc(n, sizeof *child), *shown = calloc(n, sizeof *shown);
    if (child == NULL || shown == NULL) {
        free(child);
        free(shown);
        return s_fail(S_REMOTE, "out of memory%s%s", NULL, NULL);
    }
    // A root is a supervisor no other supervisor lists as its child.
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *kids = s_get(&res->via.array.ptr[i], "children");
        for (uint32_t k = 0; kids && kids->type == MSGPACK_OBJECT_ARRAY && k < kids->via.array.size;
             k++) {
            const msgpack_object *c = &kids->via.array.ptr[k];
            if (c->type == MSGPACK_OBJECT_ARRAY && c->via.array.size >= 2) {
                int s = s_sup_index(res, &c->via.array.ptr[1]);
                if (s >= 0 && (uint32_t)s != i)
                    child[s] = true;
            }
        }
    }
    for (uint32_t i = 0; i < n; i++)
        if (!child[i] && !shown[i])
            s_print_sup(res, i, 0, shown);
    for (uint32_t i = 0; i < n; i++) // a cycle would leave some: never, but show them
        if (!shown[i])
            s_print_sup(res, i, 0, shown);
    free(child);
    free(shown);
    return S_OK;
}

//  ---------------------------------------------------------------------------
//  Commands.

//  One request to the node service, printed by print (or as JSON).
static int
s_service(s_client_t *c, const char *tag, int (*print)(const msgpack_object *))
{
    s_answer_t a;
    int rc = s_request(c, BRG_NODE_SERVICE, tag, NULL, true, &a);
    if (rc == S_OK) {
        if (a.status != BRG_OK)
            rc = s_remote_error(tag, a.status);
        else if (a.nargs < 1)
            rc = s_fail(S_REMOTE, "%s: the node's answer is empty%s", tag, NULL);
        else
            rc = c->opts->json ? s_print_json(&a.args[0]) : print(&a.args[0]);
    }
    s_answer_free(&a);
    return rc;
}

//  Does the node have an actor registered as name? S_OK, S_REMOTE (no),
//  or -1 when this key may not ask (an ordinary client key: the node
//  service is not for it).
static int
s_check_name(s_client_t *c, const char *name)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    s_pack_str(&pk, name);
    s_answer_t a;
    int rc = s_request(c, BRG_NODE_SERVICE, "whereis", &sb, true, &a);
    msgpack_sbuffer_destroy(&sb);
    if (rc == S_OK && a.status == BRG_EPERM)
        rc = -1;
    else if (rc == S_OK && a.status != BRG_OK)
        rc = s_fail(S_REMOTE, "no actor is registered as %s on the node%s", name, NULL);
    s_answer_free(&a);
    return rc;
}

static int
s_send_or_ask(s_client_t *c, bool ask, const char *name, const char *tag, const char *payload)
{
    if (strlen(name) == 0 || strlen(name) > BRG_NAME_MAX)
        return s_fail(S_USAGE, "NAME must be 1..63 bytes, not '%s'%s", name, NULL);
    if (strlen(tag) == 0 || strlen(tag) > BRG_TAG_MAX)
        return s_fail(S_USAGE, "TAG must be 1..31 bytes, not '%s'%s", tag, NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = payload != NULL ? s_payload(payload, &sb) : S_OK;
    if (rc == S_OK && !ask) {
        // A plain send has no answer: learn first whether the name exists,
        // where this key may ask the node service (an admin key).
        rc = s_check_name(c, name);
        if (rc == -1)
            rc = S_OK;
        if (rc == S_OK)
            rc = s_request(c, name, tag, &sb, false, NULL);
        if (rc == S_OK) {
            if (c->opts->json)
                printf("{\"sent\": true}\n");
            else
                printf("sent %s to %s\n", tag, name);
        }
    } else if (rc == S_OK) {
        s_answer_t a;
        rc = s_request(c, name, tag, &sb, true, &a);
        if (rc == S_OK && a.status != BRG_OK) {
            char what[128];
            snprintf(what, sizeof what, "ask %s", name);
            rc = s_remote_error(what, a.status);
        } else if (rc == S_OK) {
            msgpack_object args = {.type = MSGPACK_OBJECT_ARRAY};
            args.via.array.size = a.nargs;
            args.via.array.ptr = a.args;
            json_t *j = json_object();
            json_object_set_new(j, "tag", json_string(a.tag));
            json_object_set_new(j, "args", s_to_json(&args));
            char *text = json_dumps(j, c->opts->json ? JSON_INDENT(2) : JSON_COMPACT);
            if (c->opts->json)
                printf("%s\n", text ? text : "null");
            else {
                char *argtext = json_dumps(json_object_get(j, "args"), JSON_COMPACT);
                printf("%s %s\n", a.tag, argtext ? argtext : "[]");
                free(argtext);
            }
            free(text);
            json_decref(j);
        }
        s_answer_free(&a);
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int
s_stop(s_client_t *c, const char *what)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    brg_ref_t ref;
    if (brg_ref_parse(what, &ref) == BRG_OK)
        s_pack_ref(&pk, ref);
    else
        s_pack_str(&pk, what);
    s_answer_t a;
    int rc = s_request(c, BRG_NODE_SERVICE, "stop", &sb, true, &a);
    msgpack_sbuffer_destroy(&sb);
    if (rc == S_OK && a.status != BRG_OK) {
        char w[128];
        snprintf(w, sizeof w, "stop %s", what);
        rc = s_remote_error(w, a.status);
    } else if (rc == S_OK) {
        char text[BRG_REF_STRLEN] = "?";
        if (a.nargs >= 1)
            s_text(&a.args[0], text, sizeof text);
        if (c->opts->json)
            printf("{\"stopped\": \"%s\"}\n", text);
        else
            printf("stopped %s\n", text);
    }
    s_answer_free(&a);
    return rc;
}

int
main(int argc, char **argv)
{
    s_opts_t o = {.name = "brgctl", .cluster = "brigade", .timeout_ms = 5000};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0)
            return usage(stdout);
        if (strcmp(a, "--json") == 0) {
            o.json = true;
            continue;
        }
        if (i + 1 >= argc)
            return s_fail(S_USAGE, "%s needs a value (brgctl --help)%s", a, NULL);
        const char *v = argv[++i];
        if (strcmp(a, "--node") == 0) {
            o.node = v;
        } else if (strcmp(a, "--key") == 0) {
            o.key = v;
        } else if (strcmp(a, "--name") == 0) {
            o.name = v;
        } else if (strcmp(a, "--cluster") == 0) {
            o.cluster = v;
        } else if (strcmp(a, "--timeout") == 0) {
            char *end;
            long ms = strtol(v, &end, 10);
            if (*end != '\0' || ms <= 0 || ms > 3600000)
                return s_fail(S_USAGE, "--timeout takes 1..3600000 ms, not '%s'%s", v, NULL);
            o.timeout_ms = (int)ms;
        } else {
            return s_fail(S_USAGE, "unknown option %s (brgctl --help)%s", a, NULL);
        }
    }
    if (i < argc && (strcmp(argv[i], "help") == 0 || strcmp(argv[i], "-h") == 0))
        return usage(stdout);
    if (o.node == NULL)
        return s_fail(S_USAGE, "--node ENDPOINT is required (brgctl --help)%s%s", NULL, NULL);
    if (strlen(o.name) == 0 || strlen(o.name) > BRG_NODE_NAME_MAX || strlen(o.cluster) == 0 ||
        strlen(o.cluster) > BRG_NODE_NAME_MAX)
        return s_fail(S_USAGE, "--name and --cluster are 1..63 bytes%s%s", NULL, NULL);
    if (i >= argc)
        return s_fail(S_USAGE, "no command (brgctl --help)%s%s", NULL, NULL);
    const char *cmd = argv[i++];
    int nargs = argc - i;
    char **args = argv + i;
    struct {
        const char *name;
        int min, max;
    } cmds[] = {{"nodes", 0, 0}, {"actors", 0, 0}, {"tree", 0, 0}, {"stats", 0, 0},
                {"send", 2, 3},  {"ask", 2, 3},    {"stop", 1, 1}};
    int k = 0, ncmds = (int)(sizeof cmds / sizeof cmds[0]);
    while (k < ncmds && strcmp(cmds[k].name, cmd) != 0)
        k++;
    if (k == ncmds)
        return s_fail(S_USAGE, "unknown command %s (brgctl --help)%s", cmd, NULL);
    if (nargs < cmds[k].min || nargs > cmds[k].max)
        return s_fail(S_USAGE, "wrong arguments for %s (brgctl --help)%s", cmd, NULL);
    s_client_t c;
    int rc = s_open(&c, &o);
    if (rc == S_OK) {
        if (strcmp(cmd, "nodes") == 0)
            rc = s_service(&c, "nodes", s_print_nodes);
        else if (strcmp(cmd, "actors") == 0)
            rc = s_service(&c, "actors", s_print_actors);
        else if (strcmp(cmd, "tree") == 0)
            rc = s_service(&c, "tree", s_print_tree);
        else if (strcmp(cmd, "stats") == 0)
            rc = s_service(&c, "stats", s_print_stats);
        else if (strcmp(cmd, "send") == 0 || strcmp(cmd, "ask") == 0)
            rc = s_send_or_ask(&c, cmd[0] == 'a', args[0], args[1], nargs > 2 ? args[2] : NULL);
        else
            rc = s_stop(&c, args[0]);
    }
    s_close(&c);
    return rc;
}
