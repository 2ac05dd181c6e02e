//  isolated_child - the child program of tests/transport/test_isolate.c: a
//  node made with brg_node_config_from_parent that registers the kind
//  "fragile" (BRG_KIND_REMOTE), whose actor answers
//    "ping" -> "pong" with this process's pid
//    "segv" -> writes through a wild pointer (SIGSEGV)
//    "fail" -> fails (brg_fail BRG_EPROTO "asked to fail")
//    "exit" -> the process exits with status 3
//  and the kind "stubborn", registered without BRG_KIND_REMOTE.
//  Runs until SIGTERM (read from a signalfd), then stops in order.
#include <brigade.h>
#include <brigade/node.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

static int
s_fragile(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "ping")) {
        brg_msg_t *r = brg_msg_new_int("pong", (int64_t)getpid());
        return brg_reply(ctx, &r);
    }
    if (brg_msg_is(msg, "segv")) {
        volatile int *volatile wild = (volatile int *)(uintptr_t)16;
        *wild = 1;
        return BRG_OK;
    }
    if (brg_msg_is(msg, "fail")) {
        brg_fail(ctx, BRG_EPROTO, "asked to fail");
        return BRG_OK;
    }
    if (brg_msg_is(msg, "exit"))
        _exit(3);
    return BRG_UNHANDLED;
}

int
main(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    brg_node_config_t cfg;
    brg_node_config_init(&cfg);
    int rc = brg_node_config_from_parent(&cfg);
    if (rc != BRG_OK) {
        fprintf(stderr, "isolated_child: not started by brg_child_start_isolated: %s\n",
                brg_err_name(rc));
        return 2;
    }
    brg_config_t scfg;
    brg_config_init(&scfg);
    scfg.workers = 1;
    brg_system_t *sys = brg_system_new(&scfg);
    brg_kind_t kind;
    brg_kind_init(&kind);
    kind.behaviour = s_fragile;
    kind.flags = BRG_KIND_REMOTE;
    brg_kind_t local;
    brg_kind_init(&local);
    local.behaviour = s_fragile;
    if (sys == NULL || sfd < 0 || brg_kind_register(sys, "fragile", &kind) != BRG_OK ||
        brg_kind_register(sys, "stubborn", &local) != BRG_OK || brg_node_new(sys, &cfg) == NULL) {
        fprintf(stderr, "isolated_child: cannot start\n");
        brg_system_destroy(&sys);
        return 1;
    }
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) != (ssize_t)sizeof si) {
    }
    brg_system_destroy(&sys);
    return 0;
}
