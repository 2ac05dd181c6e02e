//  test_plugin - a brigade-node plugin for tests/transport/test_launcher.c:
//  brg_plugin_register registers the kind "greeter", which answers "hello"
//  with "greeting" [text, n]: text is its "greeting" argument (default
//  "hi"), n its "times" argument (default 1). An argument of the wrong type
//  fails its init (so the supervisor cannot start it).
//
//  Built as a shared library that links no Brigade library: brigade-node
//  exports the API and the plugin uses that one runtime.
#include <brigade.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char greeting[64];
    int64_t times;
} greeter_t;

static int
s_greeter_init(brg_ctx_t *ctx, const brg_msg_t *args)
{
    greeter_t *self = brg_state(ctx);
    strcpy(self->greeting, "hi");
    self->times = 1;
    size_t pos = 0;
    uint32_t n = 0;
    if (brg_msg_size(args) == 0)
        return BRG_OK;
    int rc = brg_msg_read_map(args, &pos, &n);
    for (uint32_t i = 0; rc == BRG_OK && i < n; i++) {
        const char *k, *v;
        size_t klen, vlen;
        rc = brg_msg_read_str(args, &pos, &k, &klen);
        if (rc != BRG_OK)
            break;
        if (klen == 8 && memcmp(k, "greeting", 8) == 0) {
            rc = brg_msg_read_str(args, &pos, &v, &vlen);
            if (rc == BRG_OK && vlen >= sizeof self->greeting)
                rc = BRG_ERANGE;
            if (rc == BRG_OK) {
                memcpy(self->greeting, v, vlen);
                self->greeting[vlen] = '\0';
            }
        } else if (klen == 5 && memcmp(k, "times", 5) == 0) {
            rc = brg_msg_read_int(args, &pos, &self->times);
        } else {
            rc = brg_msg_skip(args, &pos);
        }
    }
    if (rc != BRG_OK)
        brg_log(ctx, BRG_LOG_ERROR, "greeter: bad arguments: %s", brg_strerror(rc));
    return rc;
}

static int
s_greeter(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    greeter_t *self = brg_state(ctx);
    if (!brg_msg_is(msg, "hello"))
        return BRG_UNHANDLED;
    brg_msg_t *r = brg_msg_new_str("greeting", self->greeting);
    if (r == NULL || brg_msg_add_int(r, self->times) != BRG_OK) {
        brg_msg_destroy(&r);
        return BRG_ENOMEM;
    }
    brg_reply(ctx, &r);
    return BRG_OK;
}

BRG_EXPORT int brg_plugin_register(brg_system_t *sys);

int
brg_plugin_register(brg_system_t *sys)
{
    brg_kind_t kind;
    brg_kind_init(&kind);
    kind.behaviour = s_greeter;
    kind.init = s_greeter_init;
    kind.state_size = sizeof(greeter_t);
    return brg_kind_register(sys, "greeter", &kind);
}
