//  proc_child - the child programs of tests/actors/test_proc.c, one per
//  way a process can end.
//
//    proc_child exit N          exit with status N
//    proc_child segv            dereference NULL (SIGSEGV, also under ASan)
//    proc_child abort           abort() (SIGABRT)
//    proc_child sleep           watch the lifeline, then wait for signals
//    proc_child ignore-term     ignore SIGTERM, then wait
//    proc_child tree K FILE     run K `proc_child sleep` children as proc
//                               actors, write "pid\n" for each to FILE, wait
//    proc_child tree-node K FILE NODE   the same with K brigade-node children
//
//  Every mode that waits prints "ready" on stdout once it is.
#include <brigade.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
s_ready(void)
{
    printf("ready\n");
    fflush(stdout);
}

static void
s_wait_forever(void)
{
    for (;;)
        pause();
}

//  tree: K `proc_child sleep` children; tree-node: K brigade-node children
//  (program `node`, key directory from the environment), each on its own
//  ipc endpoint next to FILE.
static int
s_tree(const char *self, int k, const char *file, const char *node)
{
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.workers = 1;
    brg_system_t *sys = brg_system_new(&cfg);
    if (!sys)
        return 2;
    FILE *out = fopen(file, "w");
    if (!out)
        return 2;
    for (int i = 0; i < k; i++) {
        char name[32], listen[300];
        snprintf(name, sizeof name, "tree-%ld-%d", (long)getpid(), i);
        snprintf(listen, sizeof listen, "ipc://%s.%d.ipc", file, i);
        const char *sleeper[] = {self, "sleep", NULL};
        const char *noder[] = {node, "--name", name, "--listen", listen, NULL};
        const char *const *argv = node ? noder : sleeper;
        brg_proc_opts_t opts;
        brg_proc_opts_init(&opts);
        opts.argv = argv;
        brg_ref_t ref;
        if (brg_system_proc_spawn(sys, &opts, &ref) != BRG_OK)
            return 3;
        brg_msg_t *ask = brg_msg_new(BRG_PROC_TAG_PID), *reply = NULL;
        if (brg_system_ask(sys, ref, &ask, 10000, &reply) != BRG_OK)
            return 4;
        size_t pos = 0;
        int64_t pid = 0;
        brg_msg_read_int(reply, &pos, &pid);
        brg_msg_destroy(&reply);
        fprintf(out, "%lld\n", (long long)pid);
    }
    fclose(out);
    s_ready();
    s_wait_forever();
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "exit") == 0)
        return atoi(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "segv") == 0) {
        signal(SIGSEGV, SIG_DFL); // not a sanitizer's report: the plain signal
        // Address 16, not NULL: UBSan reports a store to NULL and exits
        // before the fault; the page at 16 is never mapped all the same.
        volatile int *volatile nowhere = (volatile int *)(uintptr_t)16;
        *nowhere = 1;
        return 1;
    }
    if (argc >= 2 && strcmp(argv[1], "abort") == 0) {
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    if (argc >= 2 && strcmp(argv[1], "sleep") == 0) {
        if (brg_proc_lifeline() != BRG_OK) {
            fprintf(stderr, "proc_child: no lifeline\n");
            return 5;
        }
        s_ready();
        s_wait_forever();
    }
    if (argc >= 2 && strcmp(argv[1], "ignore-term") == 0) {
        signal(SIGTERM, SIG_IGN);
        s_ready();
        s_wait_forever();
    }
    if (argc >= 4 && strcmp(argv[1], "tree") == 0)
        return s_tree(argv[0], atoi(argv[2]), argv[3], NULL); // started by the test: no lifeline
    if (argc >= 5 && strcmp(argv[1], "tree-node") == 0)
        return s_tree(argv[0], atoi(argv[2]), argv[3], argv[4]);
    fprintf(stderr,
            "usage: proc_child exit N | segv | abort | sleep | ignore-term | tree K FILE\n");
    return 64;
}
