//  proc - an operating-system process as an actor: crash isolation.
//
//  In C a wild pointer kills the whole process, so the only real isolation
//  for crash-prone or untrusted code is another process. A proc actor owns
//  one child process (Erlang's port opened with spawn_executable and
//  exit_status): it starts with the process and ends with it, so a
//  supervisor that has the proc actor as a child watches and restarts the
//  process like any other child.
//
//  * The process ends by itself (exit, a signal such as SIGSEGV or SIGABRT,
//    kill -9, the kernel's OOM killer): the actor exits at once. Exit status
//    0 is reason normal; anything else is reason failed, code BRG_EFAILED,
//    with a text naming the pid and the status or signal, e.g.
//    "process 4242 killed by signal 11 (SIGSEGV)" or
//    "process 4242 exited with status 3". The exit is logged (warning).
//  * The actor is asked to end (an exit signal, such as a supervisor's
//    shutdown, or an abnormal exit of a linked actor; it traps exits): it
//    sends the process SIGTERM, waits for it at most term_timeout_ms, then
//    sends SIGKILL, and exits once the process is gone, with reason shutdown
//    for a shutdown, else failed naming the linked actor's reason. A normal
//    exit of a linked actor is ignored, as for any trapping actor.
//  * The actor is killed (BRG_EXIT_KILLED, a supervisor's brutal kill or
//    shutdown timeout, brg_system_destroy): the process group gets SIGKILL
//    and is reaped before the actor's memory is freed (the worker waits for
//    the reap, normally well under a millisecond).
//  No zombie is left: every process is reaped by the thread that watches it.
//
//  The child runs in a process group of its own (so a signal to the group
//  reaches what it starts, and a terminal's Ctrl-C reaches only the
//  parent), with stdin from /dev/null, stdout and stderr inherited, default
//  signal dispositions and an empty signal mask.
//
//  The lifeline. If the parent process dies without stopping its actors
//  (kill -9, a crash), nobody signals the children. So every child gets the
//  read end of a pipe whose write end only the parent holds, named in its
//  environment as BRG_PARENT_FD=<fd>:<parent pid>. When the parent dies, by
//  any means, the kernel closes the write end and the read end reports end
//  of file. A child that calls brg_proc_lifeline() (brigade-node does) then
//  sends SIGTERM to its own process (an orderly shutdown where it handles
//  SIGTERM, also through a signalfd)
//  and, if it is still alive 10 s later, exits. A child in any language can
//  do the same: poll the fd for end of file. Caveat: a process the parent
//  forks without exec also holds the write end, and keeps children alive
//  until it ends.
//
//  Messages a proc actor understands (besides exit signals):
//    BRG_PROC_TAG_PID       ask -> reply BRG_PROC_TAG_PID with the pid (int)
//    BRG_PROC_TAG_SIGNAL    int signal number (1..64): sent to the process
//  Others are unhandled (dead letters).
#ifndef BRG_PROC_H
#define BRG_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "ref.h"
#include "supervisor.h"
#include "system.h"

#define BRG_PROC_TAG_PID "brg.proc.pid"
#define BRG_PROC_TAG_SIGNAL "brg.proc.signal"

//  The environment variable that carries the lifeline to a child.
#define BRG_PROC_LIFELINE_ENV "BRG_PARENT_FD"

//  Options. Start from brg_proc_opts_init(&opts). Everything is copied at
//  spawn, so the caller's strings may go away after it returns, except when
//  the options are a child spec's arg (brg_proc_child_start): then they
//  must live as long as the supervisor.
typedef struct brg_proc_opts {
    const char *const *argv; // required: program and arguments, NULL-terminated;
                             // a program without '/' is searched in PATH
    const char *const *env;  // optional: "NAME=value" entries added to the inherited
                             // environment (replacing the same names), NULL-terminated
    int term_timeout_ms;     // SIGTERM to SIGKILL when asked to end (default 5000;
                             // 0: SIGKILL at once)
    const char *name;        // optional: register the actor under this name
    unsigned flags;          // brg_proc_spawn only: BRG_SPAWN_LINK, BRG_SPAWN_MONITOR
    uint64_t *monitor;       // with BRG_SPAWN_MONITOR: receives the monitor id
} brg_proc_opts_t;

//  Fill with the defaults (see the fields).
BRG_EXPORT void brg_proc_opts_init(brg_proc_opts_t *opts);

//  Start the process and the actor that owns it, from an actor (ctx; link
//  or monitor as opts->flags say, atomically as brg_spawn does) or from
//  outside any actor (brg_system_proc_spawn: no link, no monitor). The
//  process is started in the calling thread (posix_spawn: about a
//  millisecond). Returns BRG_OK and *ref; BRG_EINVAL (no argv, a bad env
//  entry, a negative timeout, flags other than link/monitor); BRG_ENOTFOUND
//  (the program does not exist or cannot be executed); BRG_ESYS (another
//  failure of posix_spawn, pipe or a thread); or brg_spawn's errors (then
//  the process was killed and reaped again). Thread: the actor's, or any
//  for brg_system_proc_spawn.
BRG_EXPORT int brg_proc_spawn(brg_ctx_t *ctx, const brg_proc_opts_t *opts, brg_ref_t *ref);
BRG_EXPORT int brg_system_proc_spawn(brg_system_t *sys, const brg_proc_opts_t *opts,
                                     brg_ref_t *ref);

//  A supervisor child start function (brg_child_spec_t.start) whose arg is
//  a const brg_proc_opts_t * (which must live as long as the supervisor):
//  every start and restart runs a fresh process, linked to the supervisor.
//  Leave opts->name NULL and give the spec the name instead. Give the spec a
//  shutdown_ms above opts->term_timeout_ms, so that the process is asked
//  before it is killed.
BRG_EXPORT int brg_proc_child_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args,
                                    brg_ref_t *child);

//  In a child: watch the lifeline the parent's brg_proc_spawn passed (see
//  above), from a thread of its own. Returns BRG_OK (watching),
//  BRG_ENOTFOUND (not started by brg_proc_spawn, or the variable is stale:
//  it names another parent), BRG_EINVAL (the variable is malformed or its
//  fd is not a pipe), BRG_ESYS (no thread). Call it once, early in main.
//  Thread: any.
BRG_EXPORT int brg_proc_lifeline(void);

//  Describe a wait status as the exit reason does ("exited with status 3",
//  "killed by signal 11 (SIGSEGV)"), into buf. Returns buf. Thread: any.
BRG_EXPORT const char *brg_proc_status_text(int wait_status, char *buf, size_t len);

#endif
