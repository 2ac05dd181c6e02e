//  core_app - a program that needs only the core library (brigade): main()
//  asks an actor through an inbox; the actor answers later, from another
//  message, through a promise. Built by tests/integration/install.sh
//  against an installed Brigade, with find_package(Brigade) and with
//  pkg-config.
#include <brigade.h>
#include <stdio.h>

//  "double" (an ask): take a promise and answer it on "later", a message
//  the actor sends itself.
static int
doubler(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_promise_t **held = brg_state(ctx);
    if (brg_msg_is(msg, "double")) {
        int rc = brg_promise_take(ctx, held);
        return rc == BRG_OK ? brg_send_tag(ctx, brg_self(ctx), "later") : rc;
    }
    if (brg_msg_is(msg, "later") && *held) {
        size_t pos = 0;
        int64_t v = 0;
        brg_msg_read_int(brg_promise_request(*held), &pos, &v);
        brg_msg_t *reply = brg_msg_new_int("doubled", v * 2);
        return brg_promise_deliver(ctx, held, &reply);
    }
    return BRG_UNHANDLED;
}

static void
drop_held(void *state)
{
    brg_promise_drop(state);
}

int
main(void)
{
    brg_system_t *sys = brg_system_new(NULL);
    if (!sys)
        return 1;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(brg_promise_t *);
    opts.state_destroy = drop_held;
    brg_ref_t d;
    brg_inbox_t *in = NULL;
    int rc = brg_system_spawn(sys, doubler, &opts, &d);
    if (rc == BRG_OK)
        rc = brg_inbox_new(sys, &in);
    brg_msg_t *q = brg_msg_new_int("double", 21);
    brg_msg_t *reply = NULL;
    int64_t v = 0;
    if (rc == BRG_OK)
        rc = brg_inbox_ask(in, d, &q, 5000, &reply);
    brg_msg_destroy(&q);
    size_t pos = 0;
    if (rc == BRG_OK)
        rc = brg_msg_read_int(reply, &pos, &v);
    brg_msg_destroy(&reply);
    brg_inbox_destroy(&in);
    brg_system_destroy(&sys);
    printf("core_app: %s, 21 * 2 = %lld\n", brg_strerror(rc), (long long)v);
    return rc == BRG_OK && v == 42 ? 0 : 1;
}
