//  counter - an actor with private state, fed from outside and asked for its total.
//
//  The README's tour, as a program: spawn with zeroed state, fire-and-forget
//  sends from the main thread, a blocking ask with a deadline, and what happens
//  to a message the behaviour does not handle (a counted dead letter).
#include <brigade.h>
#include <stdio.h>
#include <string.h>

static int
counter(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t *total = brg_state(ctx);
    size_t pos = 0;
    int64_t n;
    if (brg_msg_is_tag(msg, BRG_TAG("add")) && brg_msg_read_int(msg, &pos, &n) == BRG_OK) {
        *total += n;
        return BRG_OK;
    }
    if (brg_msg_is_tag(msg, BRG_TAG("get"))) {
        brg_msg_t *reply = brg_msg_new_int("total", *total);
        return brg_reply(ctx, &reply);
    }
    return BRG_UNHANDLED;
}

int
main(int argc, char **argv)
{
    if (argc > 1) { // no arguments, but say so
        bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        if (!help)
            fprintf(stderr, "counter: bad argument '%s'\n", argv[1]);
        fprintf(help ? stdout : stderr, "usage: %s   (no arguments)\n", argv[0]);
        return help ? 0 : 2;
    }
    brg_system_t *sys = brg_system_new(NULL);
    if (!sys)
        return 1;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(int64_t);
    brg_ref_t c;
    if (brg_system_spawn(sys, counter, &opts, &c) != BRG_OK)
        return 1;

    for (int i = 1; i <= 100; i++) {
        brg_msg_t *add = brg_msg_new_int("add", i);
        brg_system_send(sys, c, &add);
    }
    brg_msg_t *odd = brg_msg_new("multiply"); // nobody handles this one
    brg_system_send(sys, c, &odd);

    // Messages from one sender arrive in order, so the ask sees all 100 adds.
    brg_msg_t *get = brg_msg_new("get"), *reply = NULL;
    int rc = brg_system_ask(sys, c, &get, 1000, &reply);
    int64_t total = -1;
    if (rc == BRG_OK) {
        size_t pos = 0;
        brg_msg_read_int(reply, &pos, &total);
        brg_msg_destroy(&reply);
    } else {
        fprintf(stderr, "counter: ask failed: %s\n", brg_strerror(rc));
    }
    brg_stats_t stats;
    brg_system_stats(sys, &stats);
    printf("total %lld (expected 5050), dead letters %llu (expected 1)\n", (long long)total,
           (unsigned long long)stats.dead_letters);
    brg_system_destroy(&sys);
    return total == 5050 && stats.dead_letters == 1 ? 0 : 1;
}
