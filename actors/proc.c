//  proc - an operating-system process as an actor (include/brigade/proc.h).
//
//  Design notes.
//
//  Who owns what. The actor's state (s_proc_t) is owned by the actor; the
//  process is started by the spawning thread, before the actor exists, so a
//  program that cannot run is an error of the spawn call, not a crash later.
//  The actor's init starts the reaper: a thread of its own that blocks in
//  waitpid for exactly this pid, so every child is reaped by one thread and
//  never by anyone else (no SIGCHLD handler, nothing process-wide that a
//  user's own waitpid(-1) could fight with, and no zombie).
//
//  Reaper -> actor. The reaper waits for the exit without reaping, then,
//  under `lock`, reaps, stores the wait status and sends the actor
//  S_TAG_EXITED unless the actor has been torn down
//  (`orphaned`). The actor's state destroy sets `orphaned` under the same
//  lock, kills the process group if it still runs and joins the reaper; so
//  the reaper never sends after the state is gone, and never touches the
//  system after brg_system_destroy has torn the actor down. The message is
//  only a wake-up: the behaviour reads the status from the state (an
//  acquire load of `exited`, paired with the reaper's release store), so a
//  forged S_TAG_EXITED from someone else changes nothing. Every signal to
//  the process is sent under `lock` while `exited` is 0: the process is
//  not reaped yet, so its pid and process group cannot have been reused.
//
//  The lifeline pipe is process-wide: created once, its write end
//  close-on-exec (so no exec'd child holds it), its read end inherited by
//  children. Only the parent's death closes the write end.
#include "actors_internal.h"

#include <brigade/proc.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define S_TAG_EXITED "brg.proc.exited" // from the reaper: the process is gone
#define S_TAG_KILL "brg.proc.kill"     // term_timeout_ms after SIGTERM: SIGKILL
#define S_ARGV_MAX 4096                // arguments and environment entries, each
#define S_LIFELINE_GRACE_S 10          // after SIGTERM on the parent's death

typedef struct {
    brg_system_t *sys;
    brg_ref_t self;
    pid_t pid;
    int term_timeout_ms;
    // Reaper -> actor (design notes).
    pthread_mutex_t lock;
    pthread_t reaper;
    bool reaper_started;
    bool orphaned;     // under lock: the actor is gone, send nothing
    atomic_int exited; // release by the reaper after `status`
    int status;        // the wait status, once exited
    // Owned by the actor.
    bool ending;               // asked to end: SIGTERM sent
    brg_exit_reason_t end_why; // the reason we were asked to end with
} s_proc_t;

//  ---------------------------------------------------------------------------
//  Status text.

const char *
brg_proc_status_text(int st, char *buf, size_t len)
{
    if (WIFEXITED(st)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        const char *abbrev = sigabbrev_np(sig);
        snprintf(buf, len, "killed by signal %d (%s%s)%s", sig, abbrev ? "SIG" : "",
                 abbrev ? abbrev : "unknown", WCOREDUMP(st) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "ended with wait status %#x", (unsigned)st);
    }
    return buf;
}

//  ---------------------------------------------------------------------------
//  The lifeline (parent side).

static pthread_once_t s_lifeline_once = PTHREAD_ONCE_INIT;
static int s_lifeline_read = -1; // inherited by children; -1 if it could not be made

static void
s_lifeline_make(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return;
    // The read end must survive exec; the write end must not (a child
    // holding it would keep its own lifeline, and its siblings', open).
    int flags = fcntl(fds[0], F_GETFD);
    if (flags < 0 || fcntl(fds[0], F_SETFD, flags & ~FD_CLOEXEC) != 0) {
        close(fds[0]);
        close(fds[1]);
        return;
    }
    s_lifeline_read = fds[0];
    // fds[1] stays open, unused, until the process ends: that is its job.
}

//  ---------------------------------------------------------------------------
//  Starting the process.

static bool
s_env_name_eq(const char *a, const char *b)
{
    // Compare the names of two "NAME=value" entries.
    while (*a && *a != '=' && *a == *b)
        a++, b++;
    return (*a == '=' || !*a) && (*b == '=' || !*b);
}

//  The child's environment: ours, minus what opts->env replaces and any
//  lifeline of ours, plus opts->env, plus the child's lifeline. *store
//  holds the one string made here. NULL if out of memory.
static char **
s_env_build(const char *const *extra, char **lifeline)
{
    size_t n_own = 0, n_extra = 0;
    while (environ && environ[n_own])
        n_own++;
    while (extra && extra[n_extra])
        n_extra++;
    char **env = calloc(n_own + n_extra + 2, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_own; i++) {
        bool replaced = s_env_name_eq(environ[i], BRG_PROC_LIFELINE_ENV "=");
        for (size_t j = 0; !replaced && j < n_extra; j++)
            replaced = s_env_name_eq(environ[i], extra[j]);
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++)
        env[k++] = (char *)extra[j];
    *lifeline = NULL;
    if (s_lifeline_read >= 0) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s=%d:%ld", BRG_PROC_LIFELINE_ENV, s_lifeline_read,
                 (long)getpid());
        *lifeline = strdup(buf);
        if (!*lifeline) {
            free(env);
            return NULL;
        }
        env[k++] = *lifeline;
    }
    env[k] = NULL;
    return env;
}

static int
s_opts_check(const brg_proc_opts_t *opts)
{
    if (!opts || !opts->argv || !opts->argv[0] || !opts->argv[0][0] || opts->term_timeout_ms < 0)
        return BRG_EINVAL;
    if (opts->flags & ~(unsigned)(BRG_SPAWN_LINK | BRG_SPAWN_MONITOR))
        return BRG_EINVAL;
    if ((opts->flags & BRG_SPAWN_MONITOR) && !opts->monitor)
        return BRG_EINVAL;
    for (size_t i = 0; opts->argv[i]; i++)
        if (i >= S_ARGV_MAX)
            return BRG_EINVAL;
    for (size_t i = 0; opts->env && opts->env[i]; i++) {
        const char *eq = strchr(opts->env[i], '=');
        if (i >= S_ARGV_MAX || !eq || eq == opts->env[i])
            return BRG_EINVAL;
    }
    return BRG_OK;
}

//  posix_spawn, not fork: forking a multithreaded process is only safe for
//  async-signal-safe code up to exec, and under TSan it can deadlock in the
//  child (tests/transport/test_multiproc.c has the story).
static int
s_start(const brg_proc_opts_t *opts, pid_t *pid)
{
    pthread_once(&s_lifeline_once, s_lifeline_make);
    char *lifeline = NULL;
    char **env = s_env_build(opts->env, &lifeline);
    if (!env)
        return BRG_ENOMEM;
    int rc = BRG_ESYS;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    if (posix_spawn_file_actions_init(&fa) != 0)
        goto out_env;
    if (posix_spawnattr_init(&attr) != 0)
        goto out_fa;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    const int defaults[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        sigaddset(&dfl, defaults[i]);
    if (posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0) != 0 ||
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF) != 0 ||
        posix_spawnattr_setpgroup(&attr, 0) != 0 || posix_spawnattr_setsigmask(&attr, &none) != 0 ||
        posix_spawnattr_setsigdefault(&attr, &dfl) != 0)
        goto out_attr;
    int err = posix_spawnp(pid, opts->argv[0], &fa, &attr, (char *const *)opts->argv, env);
    if (err == 0)
        rc = BRG_OK;
    else if (err == ENOENT || err == EACCES || err == ENOEXEC || err == ENOTDIR)
        rc = BRG_ENOTFOUND;
out_attr:
    posix_spawnattr_destroy(&attr);
out_fa:
    posix_spawn_file_actions_destroy(&fa);
out_env:
    free(lifeline);
    free(env);
    return rc;
}

//  Kill the process group (the child leads it) and the child itself, in case
//  it left the group.
static void
s_kill(pid_t pid, int sig)
{
    kill(-pid, sig);
    kill(pid, sig);
}

//  ---------------------------------------------------------------------------
//  The reaper.

static void *
s_reaper(void *arg)
{
    s_proc_t *self = arg;
    // Wait without reaping: until `exited` is set under the lock, the pid
    // (and its process group) cannot be reused, so the signals others send
    // under the lock (s_signal) never reach a stranger.
    siginfo_t info;
    int rc;
    do
        rc = waitid(P_PID, (id_t)self->pid, &info, WEXITED | WNOWAIT);
    while (rc < 0 && errno == EINTR);
    pthread_mutex_lock(&self->lock);
    int st = 0;
    pid_t got;
    do
        got = waitpid(self->pid, &st, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        st = 0x7f00; // reaped by someone else (a user's waitpid(-1)): report "status 127"
    self->status = st;
    // Release: pairs with the acquire loads of the behaviour, publishing status.
    atomic_store_explicit(&self->exited, 1, memory_order_release);
    if (!self->orphaned) {
        brg_msg_t *m = brg_msg_new(S_TAG_EXITED);
        if (!m)
            brg_system_log(self->sys, BRG_LOG_ERROR, "proc", self->self,
                           "out of memory: the exit of process %ld is not reported",
                           (long)self->pid);
        else if (brg_system_send(self->sys, self->self, &m) != BRG_OK)
            brg_msg_destroy(&m);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

//  Send sig to the process (and its group) if it has not been reaped.
static void
s_signal(s_proc_t *self, int sig)
{
    pthread_mutex_lock(&self->lock);
    if (!atomic_load_explicit(&self->exited, memory_order_relaxed))
        s_kill(self->pid, sig);
    pthread_mutex_unlock(&self->lock);
}

static void
s_state_destroy(void *state)
{
    s_proc_t *self = state;
    pthread_mutex_lock(&self->lock);
    self->orphaned = true;
    bool running = !atomic_load_explicit(&self->exited, memory_order_relaxed);
    if (running)
        s_kill(self->pid, SIGKILL);
    pthread_mutex_unlock(&self->lock);
    if (self->reaper_started) {
        pthread_join(self->reaper, NULL);
    } else if (running) {
        // The actor never ran its init: reap here.
        while (waitpid(self->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
}

//  ---------------------------------------------------------------------------
//  The actor.

static int
s_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    s_proc_t *self = brg_state(ctx);
    self->self = brg_self(ctx);
    brg_trap_exits(ctx, true);
    if (pthread_create(&self->reaper, NULL, s_reaper, self) != 0) {
        brg_fail(ctx, BRG_ESYS, "proc: cannot start the reaper thread");
        return BRG_OK;
    }
    self->reaper_started = true;
    return BRG_OK;
}

//  Copy src into an exit reason's text, cut at BRG_EXIT_TEXT_MAX bytes.
static void
s_text_copy(char dst[BRG_EXIT_TEXT_MAX + 1], const char *src)
{
    size_t n = strnlen(src, BRG_EXIT_TEXT_MAX);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

//  The process is gone: exit as the header says.
static int
s_on_exited(s_proc_t *self, brg_ctx_t *ctx)
{
    if (!atomic_load_explicit(&self->exited, memory_order_acquire))
        return BRG_UNHANDLED; // not from the reaper
    char what[BRG_EXIT_TEXT_MAX + 1];
    brg_proc_status_text(self->status, what, sizeof(what));
    if (self->ending) {
        brg_system_log(self->sys, BRG_LOG_INFO, "proc", brg_self(ctx),
                       "process %ld ended on request: %s", (long)self->pid, what);
        if (self->end_why.kind == BRG_EXIT_SHUTDOWN) {
            brg_trap_exits(ctx, false);
            if (brg_exit(self->sys, brg_self(ctx), BRG_EXIT_SHUTDOWN) != BRG_OK)
                brg_stop(ctx);
        } else {
            brg_fail(ctx, self->end_why.code < 0 ? self->end_why.code : BRG_EFAILED,
                     self->end_why.text);
        }
        return BRG_OK;
    }
    if (WIFEXITED(self->status) && WEXITSTATUS(self->status) == 0) {
        brg_system_log(self->sys, BRG_LOG_INFO, "proc", brg_self(ctx),
                       "process %ld exited with status 0", (long)self->pid);
        brg_stop(ctx);
        return BRG_OK;
    }
    char text[256];
    snprintf(text, sizeof(text), "process %ld %s", (long)self->pid, what);
    brg_system_log(self->sys, BRG_LOG_WARNING, "proc", brg_self(ctx), "%s", text);
    char reason[BRG_EXIT_TEXT_MAX + 1];
    s_text_copy(reason, text);
    brg_fail(ctx, BRG_EFAILED, reason);
    return BRG_OK;
}

//  Asked to end (an exit signal we trap): SIGTERM, then SIGKILL later.
static int
s_on_exit_signal(s_proc_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    brg_exit_reason_t why;
    if (brg_msg_read_exit(msg, &from, &why) != BRG_OK)
        return BRG_UNHANDLED;
    if (!brg_exit_is_abnormal(&why) || self->ending)
        return BRG_OK; // a normal exit of a linked actor does not end us
    self->ending = true;
    self->end_why = why;
    if (why.kind != BRG_EXIT_SHUTDOWN) {
        // Not a plain shutdown: say whose exit took us down.
        char text[256];
        snprintf(text, sizeof(text), "linked actor exited: %s%s%s", brg_exit_kind_name(why.kind),
                 why.text[0] ? ": " : "", why.text);
        s_text_copy(self->end_why.text, text);
    }
    if (self->term_timeout_ms == 0) {
        s_signal(self, SIGKILL);
        return BRG_OK;
    }
    s_signal(self, SIGTERM);
    brg_msg_t *kill_msg = brg_msg_new(S_TAG_KILL);
    if (!kill_msg ||
        brg_send_after(ctx, brg_self(ctx), &kill_msg, self->term_timeout_ms, NULL) != BRG_OK) {
        brg_msg_destroy(&kill_msg);
        s_signal(self, SIGKILL); // no timer: do not risk waiting forever
    }
    return BRG_OK;
}

static int
s_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_proc_t *self = brg_state(ctx);
    if (brg_msg_is(msg, S_TAG_EXITED))
        return s_on_exited(self, ctx);
    if (brg_msg_is(msg, BRG_TAG_EXIT))
        return s_on_exit_signal(self, ctx, msg);
    if (brg_msg_is(msg, S_TAG_KILL)) {
        if (self->ending && !atomic_load_explicit(&self->exited, memory_order_acquire)) {
            brg_system_log(self->sys, BRG_LOG_WARNING, "proc", brg_self(ctx),
                           "process %ld ignored SIGTERM for %d ms: SIGKILL", (long)self->pid,
                           self->term_timeout_ms);
            s_signal(self, SIGKILL);
        }
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_PROC_TAG_PID)) {
        brg_msg_t *r = brg_msg_new_int(BRG_PROC_TAG_PID, (int64_t)self->pid);
        if (!r)
            return brg_reply_error(ctx, BRG_ENOMEM);
        (void)brg_reply(ctx, &r); // a caller that is gone makes it a dead letter
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_PROC_TAG_SIGNAL)) {
        size_t pos = 0;
        int64_t sig;
        if (brg_msg_read_int(msg, &pos, &sig) != BRG_OK || sig < 1 || sig > 64) {
            brg_system_log(self->sys, BRG_LOG_WARNING, "proc", brg_self(ctx),
                           "%s: not a signal number; ignored", BRG_PROC_TAG_SIGNAL);
            return BRG_OK;
        }
        s_signal(self, (int)sig);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

//  ---------------------------------------------------------------------------
//  Spawning.

static int
s_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_proc_opts_t *opts, brg_ref_t *ref)
{
    int rc = s_opts_check(opts);
    if (rc != BRG_OK)
        return rc;
    if (!ctx && (opts->flags & (BRG_SPAWN_LINK | BRG_SPAWN_MONITOR)))
        return BRG_EINVAL;
    s_proc_t *self = calloc(1, sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    self->sys = sys;
    self->term_timeout_ms = opts->term_timeout_ms;
    atomic_init(&self->exited, 0);
    if (pthread_mutex_init(&self->lock, NULL) != 0) {
        free(self);
        return BRG_ESYS;
    }
    rc = s_start(opts, &self->pid);
    if (rc != BRG_OK) {
        pthread_mutex_destroy(&self->lock);
        free(self);
        return rc;
    }
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = self;
    so.state_destroy = s_state_destroy;
    so.init = s_init;
    so.name = opts->name;
    so.flags = opts->flags;
    so.monitor = opts->monitor;
    so.label = "brg.proc";
    rc = ctx ? brg_spawn(ctx, s_behaviour, &so, ref) : brg_system_spawn(sys, s_behaviour, &so, ref);
    if (rc != BRG_OK) {
        // The state was not handed over: kill and reap the process here.
        s_state_destroy(self);
        return rc;
    }
    return BRG_OK;
}

void
brg_proc_opts_init(brg_proc_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->term_timeout_ms = 5000;
}

int
brg_proc_spawn(brg_ctx_t *ctx, const brg_proc_opts_t *opts, brg_ref_t *ref)
{
    assert(ctx && ref);
    return s_spawn(brg_ctx_system(ctx), ctx, opts, ref);
}

int
brg_system_proc_spawn(brg_system_t *sys, const brg_proc_opts_t *opts, brg_ref_t *ref)
{
    assert(sys && ref);
    return s_spawn(sys, NULL, opts, ref);
}

int
brg_proc_child_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)args;
    const brg_proc_opts_t *given = arg;
    if (!given)
        return BRG_EINVAL;
    brg_proc_opts_t opts = *given;
    opts.flags = BRG_SPAWN_LINK;
    opts.monitor = NULL;
    opts.name = NULL; // the supervisor registers the spec's name
    return brg_proc_spawn(sup_ctx, &opts, child);
}

//  ---------------------------------------------------------------------------
//  The lifeline (child side).

static void *
s_lifeline_watch(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            break; // end of file: the parent is gone (n > 0: nobody writes; ignore)
    }
    static const char line[] = "brigade: warning proc: the parent process is gone; terminating\n";
    ssize_t w = write(STDERR_FILENO, line, sizeof(line) - 1);
    (void)w;
    // To the process, not this thread (raise): a program that blocks SIGTERM
    // in every thread and reads it from a signalfd (brigade-node) sees only
    // signals sent to the process.
    kill(getpid(), SIGTERM);
    sleep(S_LIFELINE_GRACE_S);
    static const char late[] =
        "brigade: error proc: still alive 10 s after the parent's death; exiting\n";
    w = write(STDERR_FILENO, late, sizeof(late) - 1);
    (void)w;
    _exit(70);
}

int
brg_proc_lifeline(void)
{
    const char *v = getenv(BRG_PROC_LIFELINE_ENV);
    if (!v)
        return BRG_ENOTFOUND;
    char *end;
    errno = 0;
    long fd = strtol(v, &end, 10);
    if (errno || end == v || *end != ':' || fd < 0 || fd > 1 << 20)
        return BRG_EINVAL;
    const char *p = end + 1;
    long ppid = strtol(p, &end, 10);
    if (errno || end == p || *end || ppid <= 0)
        return BRG_EINVAL;
    // Inherited by a grandchild that some other code started: not ours.
    if ((long)getppid() != ppid)
        return BRG_ENOTFOUND;
    struct stat sb;
    if (fstat((int)fd, &sb) != 0 || !S_ISFIFO(sb.st_mode))
        return BRG_EINVAL;
    // Our own children get a lifeline of ours, not this one.
    int flags = fcntl((int)fd, F_GETFD);
    if (flags >= 0)
        fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
    pthread_attr_t attr;
    pthread_t t;
    if (pthread_attr_init(&attr) != 0)
        return BRG_ESYS;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, s_lifeline_watch, (void *)(intptr_t)fd);
    pthread_attr_destroy(&attr);
    return err == 0 ? BRG_OK : BRG_ESYS;
}
