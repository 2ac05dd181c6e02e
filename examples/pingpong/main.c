//  pingpong - two actors bounce a counter; the smallest complete Brigade program.
//
//  ping sends "ping" with a number to pong; pong answers "pong" with the same
//  number; after `rounds` round trips ping stops, and main waits for every
//  actor to finish. Usage: pingpong [rounds]   (default 100000)
#include <brigade.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    brg_ref_t pong; // whom to play with
    int64_t rounds; // round trips to make
} ping_state_t;

static int
pong_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is_tag(msg, BRG_TAG("stop"))) {
        brg_stop(ctx);
        return BRG_OK;
    }
    if (!brg_msg_is_tag(msg, BRG_TAG("ping")))
        return BRG_UNHANDLED;
    size_t pos = 0;
    int64_t n;
    int rc = brg_msg_read_int(msg, &pos, &n);
    if (rc != BRG_OK)
        return rc; // a malformed ping fails the actor
    brg_msg_t *reply = brg_msg_new_int("pong", n);
    return brg_reply(ctx, &reply);
}

static int
ping_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    ping_state_t *self = brg_state(ctx);
    size_t pos = 0;
    int64_t n;
    if (!brg_msg_is_tag(msg, BRG_TAG("pong")) || brg_msg_read_int(msg, &pos, &n) != BRG_OK)
        return BRG_UNHANDLED;
    if (n == self->rounds) {
        printf("ping: %lld round trips done\n", (long long)n);
        brg_send_tag(ctx, self->pong, "stop");
        brg_stop(ctx);
        return BRG_OK;
    }
    return brg_send_int(ctx, self->pong, "ping", n + 1);
}

static int
ping_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    ping_state_t *self = brg_state(ctx);
    return brg_send_int(ctx, self->pong, "ping", 1);
}

static int
usage(const char *argv0, FILE *out)
{
    fprintf(out, "usage: %s [ROUNDS]\n  ROUNDS  round trips to make, >= 1 (default 100000)\n",
            argv0);
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    int64_t rounds = 100000;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage(argv[0], stdout);
    if (argc > 1) {
        char *end;
        errno = 0;
        rounds = strtoll(argv[1], &end, 10);
        if (argc > 2 || errno || end == argv[1] || *end || rounds < 1) {
            fprintf(stderr, "pingpong: bad argument '%s'\n", argv[argc > 2 ? 2 : 1]);
            return usage(argv[0], stderr);
        }
    }
    brg_system_t *sys = brg_system_new(NULL);
    if (!sys) {
        fprintf(stderr, "pingpong: cannot start the system\n");
        return 1;
    }
    brg_ref_t pong;
    brg_system_spawn(sys, pong_behaviour, NULL, &pong);

    ping_state_t *state = malloc(sizeof(*state));
    state->pong = pong;
    state->rounds = rounds;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = state;        // the actor owns it from here on
    opts.state_destroy = free; // and frees it when it stops
    opts.init = ping_init;     // the first serve
    brg_system_spawn(sys, ping_behaviour, &opts, NULL);

    brg_system_await_actors(sys, -1);
    brg_stats_t stats;
    brg_system_stats(sys, &stats);
    printf("messages processed: %llu, dead letters: %llu\n",
           (unsigned long long)stats.messages_processed, (unsigned long long)stats.dead_letters);
    brg_system_destroy(&sys);
    return stats.dead_letters == 0 ? 0 : 1;
}
