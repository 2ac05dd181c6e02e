//  ping_node - the asking half of a two-process pair: a node that connects
//  to pong_node and asks its actor "pong" by name, round after round.
//
//  Usage: ping_node --connect ENDPOINT [--rounds N]
//  --connect - reads the endpoint from stdin: the last word of the first
//  line, which is how pong_node announces it, so
//    pong_node --listen tcp://127.0.0.1:0 --once | ping_node --connect -
//  runs the pair on a free port.
//  The main thread asks "pong" on the peer node (brg_system_ask_named_at)
//  N times, one at a time, each with a one-second deadline, then prints the
//  median round-trip time and exits 0. The same ask that works on a local
//  actor works on a name at another node: only the address differs. A lost
//  peer fails the pending ask at once with BRG_ENETWORK.
#include <brigade.h>
#include <brigade/node.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int
usage(FILE *out)
{
    fprintf(out, "usage: ping_node --connect ENDPOINT [--rounds N]\n"
                 "  --connect ENDPOINT  where pong_node serves (tcp://HOST:PORT, ipc:///PATH);\n"
                 "                      - reads it from stdin (pong_node's first line)\n"
                 "  --rounds N          round trips to make, >= 1 (default 1000)\n");
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    const char *connect = NULL;
    int64_t rounds = 1000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
            connect = argv[++i];
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            rounds = strtoll(argv[++i], &end, 10);
            if (errno || *end || rounds < 1 || rounds > 10000000) {
                fprintf(stderr, "ping_node: bad --rounds '%s'\n", argv[i]);
                return usage(stderr);
            }
        } else {
            fprintf(stderr, "ping_node: bad argument '%s'\n", argv[i]);
            return usage(stderr);
        }
    }
    if (connect == NULL) {
        fprintf(stderr, "ping_node: --connect is required\n");
        return usage(stderr);
    }
    char line[512];
    if (strcmp(connect, "-") == 0) {
        char *word;
        if (fgets(line, sizeof line, stdin) == NULL || (word = strrchr(line, ' ')) == NULL) {
            fprintf(stderr, "ping_node: no endpoint on stdin\n");
            return 1;
        }
        word[strcspn(word, "\r\n")] = '\0';
        connect = word + 1;
    }
    brg_system_t *sys = brg_system_new(NULL);
    brg_node_config_t cfg;
    brg_node_config_init(&cfg);
    cfg.name = "ping";
    cfg.listen[0] = "tcp://127.0.0.1:0"; // where pong's answers come back
    brg_node_t *node = sys ? brg_node_new(sys, &cfg) : NULL;
    if (node == NULL) {
        brg_system_destroy(&sys);
        return 1;
    }
    // Wait up to 10 s for the session (pong_node may still be starting:
    // the dial is retried with backoff until then).
    brg_ref_t peer;
    int rc = brg_node_connect(node, connect, 10000, &peer);
    if (rc != BRG_OK) {
        fprintf(stderr, "ping_node: cannot reach %s: %s\n", connect, brg_strerror(rc));
        brg_system_destroy(&sys);
        return 1;
    }
    uint64_t *rtt = calloc((size_t)rounds, sizeof *rtt);
    for (int64_t i = 1; i <= rounds && rtt != NULL; i++) {
        brg_msg_t *ping = brg_msg_new_int("ping", i), *pong = NULL;
        uint64_t t0 = now_ns();
        rc = brg_system_ask_named_at(sys, peer, "pong", &ping, 1000, &pong);
        if (rc != BRG_OK) {
            fprintf(stderr, "ping_node: ask %lld failed: %s\n", (long long)i, brg_strerror(rc));
            free(rtt);
            brg_system_destroy(&sys);
            return 1;
        }
        rtt[i - 1] = now_ns() - t0;
        brg_msg_destroy(&pong);
    }
    brg_system_destroy(&sys); // says BYE to pong
    if (rtt == NULL)
        return 1;
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp_u64);
    printf("ping_node: %lld round trips done, median %.1f us\n", (long long)rounds,
           rtt[rounds / 2] / 1000.0);
    free(rtt);
    return 0;
}
