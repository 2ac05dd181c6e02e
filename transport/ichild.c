//  ichild - a supervisor's child that runs a kind in a child process of its
//  own (brg_child_start_isolated, include/brigade/node.h)
//
//  Design notes.
//  Three actors and one process per start:
//    supervisor --link-- proxy --link-- proc actor (owns the OS process)
//                          \--link-- the kind's actor, on the child's node
//  The proxy traps exits, so it sees every end as a message and chooses the
//  reason it exits with (the supervisor's view of the child):
//    - EXIT from the proc actor (the process ended): its reason, which names
//      the status or signal. This is the reason that matters, so:
//    - EXIT noconnection from the remote actor usually comes first (the
//      session drops as the process dies): wait up to S_GRACE_MS for the
//      proc actor's EXIT, then exit with noconnection's text;
//    - any other EXIT from the remote actor (it failed, or stopped
//      normally): that reason; the proc actor, linked, hears an abnormal
//      one and sends SIGTERM; for a normal one we ask it to shut down;
//    - EXIT from anyone else (the supervisor's shutdown): that reason,
//      which the links carry to the remote actor and to the proc actor.
//  Start: subscribe to node events, then start the process (so its nodeup
//  cannot be missed), then spawn the kind on the node whose name we gave
//  the process, once it is up. A timer bounds the whole start.
//  Thread: every function here runs in the proxy's behaviour.
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brigade.h"
#include "brigade/node.h"
#include "brigade/proc.h"

#define S_GRACE_MS 1000
#define S_TAG_TIMEOUT "brg.ichild.timeout" // the start took too long
#define S_TAG_GRACE "brg.ichild.grace"     // noconnection without the process's reason
#define S_ENV_PARENT "BRG_PARENT_NODE"     // the endpoint the child dials
#define S_ENV_NAME "BRG_CHILD_NODE"        // the child node's name
#define S_ENV_LISTEN "BRG_CHILD_LISTEN"    // the endpoint the child binds

typedef struct {
    const brg_isolated_child_t *ic;
    brg_ref_t proc;  // the proc actor
    brg_ref_t child; // the kind's actor, once spawned
    bool spawning;
    bool lost;                  // noconnection seen, waiting for the process's reason
    brg_exit_reason_t lost_why; // that noconnection
    char node_name[64];         // the child node's name
    char env[3][300];           // what the process is told
    const char *envp[40];       // its extra environment: ours + ic->env
} s_ichild_t;

static atomic_uint s_counter;

//  Exit with `why` (trapping exits: brg_fail for failures, an exit signal
//  to ourselves otherwise). Thread: the proxy's.
static void
s_exit_with(brg_ctx_t *ctx, const brg_exit_reason_t *why)
{
    s_ichild_t *self = brg_state(ctx);
    switch (why->kind) {
    case BRG_EXIT_NORMAL:
        // A normal exit does not travel along links: stop the process.
        if (!brg_ref_is_none(self->proc))
            brg_exit(brg_ctx_system(ctx), self->proc, BRG_EXIT_SHUTDOWN);
        brg_stop(ctx);
        return;
    case BRG_EXIT_SHUTDOWN:
    case BRG_EXIT_KILLED:
        brg_trap_exits(ctx, false);
        if (brg_exit(brg_ctx_system(ctx), brg_self(ctx), why->kind) != BRG_OK)
            brg_fail(ctx, BRG_ENOMEM, "isolated child: cannot signal its own exit");
        return;
    case BRG_EXIT_FAILED:
        brg_fail(ctx, why->code < 0 ? why->code : BRG_EFAILED, why->text);
        return;
    default: { // noproc, noconnection: say which
        char text[BRG_EXIT_TEXT_MAX + 1];
        snprintf(text, sizeof text, "%s%s%.80s", brg_exit_kind_name(why->kind),
                 why->text[0] ? ": " : "", why->text);
        brg_fail(ctx, why->kind == BRG_EXIT_NOCONNECTION ? BRG_ENETWORK : BRG_ENOACTOR, text);
        return;
    }
    }
}

static int
s_spawned(brg_ctx_t *ctx, int status, brg_ref_t child, void *arg)
{
    (void)arg;
    s_ichild_t *self = brg_state(ctx);
    if (status == BRG_ECLOSED)
        return BRG_OK; // stopping: the links end the rest
    if (status < 0) {
        char text[BRG_EXIT_TEXT_MAX + 1];
        snprintf(text, sizeof text, "isolated child: spawn of kind '%.40s' failed: %s",
                 self->ic->kind, brg_err_name(status));
        brg_log(ctx, BRG_LOG_WARNING, "%s", text);
        brg_fail(ctx, status, text);
        return BRG_OK;
    }
    self->child = child;
    return BRG_OK;
}

//  A node came up: ours? Then spawn the kind there.
static int
s_on_nodeup(s_ichild_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    brg_ref_t node;
    char name[BRG_NODE_NAME_MAX + 1];
    if (brg_msg_read_ref(msg, &pos, &node) != BRG_OK ||
        brg_msg_read_str_copy(msg, &pos, name, sizeof name) != BRG_OK)
        return BRG_OK;
    if (self->spawning || strcmp(name, self->node_name) != 0)
        return BRG_OK;
    self->spawning = true;
    brg_kind_spawn_opts_t opts;
    brg_kind_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_LINK;
    opts.name = self->ic->name;
    int timeout = self->ic->start_timeout_ms > 0 ? self->ic->start_timeout_ms : 10000;
    int rc = brg_spawn_remote(ctx, node, self->ic->kind, self->ic->args, &opts, timeout, s_spawned,
                              NULL);
    if (rc != BRG_OK)
        brg_fail(ctx, rc, "isolated child: cannot ask for the spawn");
    return BRG_OK;
}

static int
s_on_exit(s_ichild_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_ref_t from;
    brg_exit_reason_t why;
    if (brg_msg_read_exit(msg, &from, &why) != BRG_OK)
        return BRG_UNHANDLED;
    if (brg_ref_eq(from, self->proc)) {
        // The process ended (or its actor was stopped): its reason wins.
        // (Exit status 0 is a normal exit: the remote actor ended with it.)
        self->proc = BRG_REF_NONE;
        s_exit_with(ctx, &why);
        return BRG_OK;
    }
    if (!brg_ref_is_none(self->child) && brg_ref_eq(from, self->child)) {
        if (why.kind == BRG_EXIT_NOCONNECTION) {
            // Most likely the process died: its reason is on the way.
            self->lost = true;
            self->lost_why = why;
            brg_msg_t *grace = brg_msg_new(S_TAG_GRACE);
            if (grace == NULL ||
                brg_send_after(ctx, brg_self(ctx), &grace, S_GRACE_MS, NULL) != BRG_OK) {
                brg_msg_destroy(&grace);
                s_exit_with(ctx, &why);
            }
            return BRG_OK;
        }
        s_exit_with(ctx, &why);
        return BRG_OK;
    }
    if (!brg_exit_is_abnormal(&why))
        return BRG_OK; // a normal exit of a linked actor does not end us
    s_exit_with(ctx, &why);
    return BRG_OK;
}

static int
s_proxy(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_ichild_t *self = brg_state(ctx);
    if (brg_msg_is(msg, BRG_TAG_EXIT))
        return s_on_exit(self, ctx, msg);
    if (brg_msg_is(msg, BRG_TAG_NODEUP))
        return s_on_nodeup(self, ctx, msg);
    if (brg_msg_is(msg, BRG_TAG_NODEDOWN))
        return BRG_OK;
    if (brg_msg_is(msg, S_TAG_TIMEOUT)) {
        if (brg_ref_is_none(self->child)) {
            char text[BRG_EXIT_TEXT_MAX + 1];
            snprintf(text, sizeof text, "isolated child: node '%.40s' not up within %d ms",
                     self->node_name,
                     self->ic->start_timeout_ms > 0 ? self->ic->start_timeout_ms : 10000);
            brg_log(ctx, BRG_LOG_WARNING, "%s", text);
            brg_fail(ctx, BRG_ETIMEDOUT, text);
        }
        return BRG_OK;
    }
    if (brg_msg_is(msg, S_TAG_GRACE)) {
        if (self->lost)
            s_exit_with(ctx, &self->lost_why);
        return BRG_OK;
    }
    if (brg_ref_is_none(self->child))
        return BRG_UNHANDLED; // not spawned yet: a counted dead letter
    // A forward that cannot be delivered (the node just went) is a counted
    // dead letter, and the child's EXIT follows: not a reason to fail.
    (void)brg_forward(ctx, self->child);
    return BRG_OK;
}

//  The child's listen endpoint, next to this node's first one: an ipc://
//  path with the child's name appended, or tcp on the same host, port 0.
static int
s_child_endpoints(s_ichild_t *self, char *parent, size_t len)
{
    if (brg_node_endpoint(self->ic->node, 0, parent, len) != BRG_OK)
        return BRG_EINVAL;
    char listen[256];
    if (strncmp(parent, "ipc://", 6) == 0) {
        // Next to ours; a socket path longer than sun_path would not bind.
        if (strlen(parent) + 1 + strlen(self->node_name) >= 108 + 6)
            return BRG_EINVAL;
        snprintf(listen, sizeof listen, "%.120s.%.63s", parent, self->node_name);
    } else if (strncmp(parent, "tcp://", 6) == 0) {
        const char *host = parent + 6, *colon = strrchr(host, ':');
        if (colon == NULL || (size_t)(colon - host) > 200)
            return BRG_EINVAL;
        snprintf(listen, sizeof listen, "tcp://%.*s:0", (int)(colon - host), host);
    } else {
        return BRG_EINVAL; // inproc:// cannot reach another process
    }
    snprintf(self->env[0], sizeof self->env[0], "%s=%s", S_ENV_PARENT, parent);
    snprintf(self->env[1], sizeof self->env[1], "%s=%s", S_ENV_NAME, self->node_name);
    snprintf(self->env[2], sizeof self->env[2], "%s=%s", S_ENV_LISTEN, listen);
    return BRG_OK;
}

static int
s_init(brg_ctx_t *ctx, void *arg)
{
    s_ichild_t *self = brg_state(ctx);
    self->ic = arg;
    brg_trap_exits(ctx, true);
    int rc = brg_node_subscribe(ctx, true);
    if (rc != BRG_OK)
        return rc;
    snprintf(self->node_name, sizeof self->node_name, "isolated-%ld-%u", (long)getpid(),
             atomic_fetch_add(&s_counter, 1));
    char parent[256];
    if (s_child_endpoints(self, parent, sizeof parent) != BRG_OK) {
        brg_fail(ctx, BRG_EINVAL, "isolated child: this node has no ipc:// or tcp:// endpoint");
        return BRG_OK;
    }
    size_t n = 0;
    for (int i = 0; i < 3; i++)
        self->envp[n++] = self->env[i];
    for (size_t i = 0; self->ic->env && self->ic->env[i] && n + 1 < 40; i++)
        self->envp[n++] = self->ic->env[i];
    self->envp[n] = NULL;
    brg_proc_opts_t po;
    brg_proc_opts_init(&po);
    po.argv = self->ic->argv;
    po.env = self->envp;
    po.term_timeout_ms = self->ic->term_timeout_ms > 0 ? self->ic->term_timeout_ms : 5000;
    po.flags = BRG_SPAWN_LINK;
    rc = brg_proc_spawn(ctx, &po, &self->proc);
    if (rc != BRG_OK) {
        char text[BRG_EXIT_TEXT_MAX + 1];
        snprintf(text, sizeof text, "isolated child: cannot start %.60s: %s", self->ic->argv[0],
                 brg_err_name(rc));
        brg_fail(ctx, rc, text);
        return BRG_OK;
    }
    brg_msg_t *timeout = brg_msg_new(S_TAG_TIMEOUT);
    if (timeout == NULL ||
        brg_send_after(ctx, brg_self(ctx), &timeout,
                       self->ic->start_timeout_ms > 0 ? self->ic->start_timeout_ms : 10000,
                       NULL) != BRG_OK) {
        brg_msg_destroy(&timeout);
        brg_fail(ctx, BRG_ENOMEM, "isolated child: no start timer");
    }
    return BRG_OK;
}

void
brg_isolated_child_init(brg_isolated_child_t *ic)
{
    assert(ic);
    memset(ic, 0, sizeof *ic);
}

int
brg_child_start_isolated(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    assert(sup_ctx);
    (void)args;
    const brg_isolated_child_t *ic = arg;
    if (ic == NULL || ic->node == NULL || ic->argv == NULL || ic->argv[0] == NULL ||
        ic->kind == NULL || ic->kind[0] == '\0' || strlen(ic->kind) > BRG_KIND_NAME_MAX)
        return BRG_EINVAL;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(s_ichild_t);
    opts.init = s_init;
    opts.init_arg = arg;
    opts.flags = BRG_SPAWN_LINK;
    opts.label = "brg.isolated";
    return brg_spawn(sup_ctx, s_proxy, &opts, child);
}

//  ---------------------------------------------------------------------------
//  The child's side.

int
brg_node_config_from_parent(brg_node_config_t *cfg)
{
    static char parent[256], name[BRG_NODE_NAME_MAX + 1], listen[300];
    const char *p = getenv(S_ENV_PARENT), *n = getenv(S_ENV_NAME), *l = getenv(S_ENV_LISTEN);
    if (p == NULL && n == NULL && l == NULL)
        return BRG_ENOTFOUND;
    if (p == NULL || n == NULL || l == NULL || strlen(p) >= sizeof parent || n[0] == '\0' ||
        strlen(n) >= sizeof name || strlen(l) >= sizeof listen)
        return BRG_EINVAL;
    strcpy(parent, p);
    strcpy(name, n);
    strcpy(listen, l);
    int rc = brg_proc_lifeline();
    if (rc != BRG_OK && rc != BRG_ENOTFOUND)
        return rc;
    cfg->name = name;
    cfg->listen[0] = listen;
    cfg->listen[1] = NULL;
    cfg->connect[0] = parent;
    cfg->connect[1] = NULL;
    cfg->mesh = false; // a child talks to its parent, not to the parent's cluster
    return BRG_OK;
}
