//  rchild - a supervisor's child that runs on another node (brg_child_start_remote)
//
//  Design notes.
//  A supervisor starts children synchronously: its start function returns
//  the child's ref at once, and it links to that ref. A remote spawn is an
//  ask, answered later. So the supervisor's child is a small local proxy,
//  spawned linked to the supervisor (BRG_SPAWN_LINK, atomic), whose init
//  asks the node to spawn the kind with BRG_SPAWN_LINK | BRG_SPAWN_MONITOR
//  (set up on the remote side before the remote child runs, node.c). The
//  proxy does not trap exits, so links do the work:
//    - the remote child exits abnormally (failed, killed, noconnection when
//      its node is lost): its EXIT kills the proxy with that reason, and the
//      supervisor sees that reason and applies its restart rules;
//    - the remote child exits normally: a normal EXIT does not propagate, so
//      the proxy also watches it and stops normally on that DOWN;
//    - the supervisor stops the proxy (shutdown, killed): the proxy's EXIT
//      carries the reason to the remote child, which exits with it (unless
//      it traps exits); if the node is unreachable the remote side's own
//      table gives the child EXIT noconnection when the session ends;
//    - the spawn fails (node unreachable or lost, unknown kind, refused):
//      the proxy fails with that code, so a restart that cannot reach the
//      node counts as a failed child against the supervisor's intensity, as
//      OTP counts a failed start; a node that stays away makes the
//      supervisor give up.
//  While the proxy runs, messages sent to it are forwarded to the remote
//  child (asks included, brg_forward), so a name the spec registers locally
//  reaches the child wherever it runs.
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "brigade.h"
#include "brigade/node.h"

typedef struct {
    const brg_remote_child_t *rc;
    brg_ref_t child; // the remote child, once spawned
    uint64_t mon;    // our monitor of it
} s_proxy_t;

static int
s_proxy_spawned(brg_ctx_t *ctx, int status, brg_ref_t child, void *arg)
{
    (void)arg;
    s_proxy_t *self = brg_state(ctx);
    if (status == BRG_ECLOSED)
        return BRG_OK; // we are stopping: the remote child, if any, hears our EXIT
    if (status < 0) {
        brg_log(ctx, BRG_LOG_WARNING, "remote child of kind '%s': spawn failed: %s", self->rc->kind,
                brg_strerror(status));
        char text[BRG_EXIT_TEXT_MAX + 1];
        snprintf(text, sizeof text, "remote spawn of '%s' failed", self->rc->kind);
        brg_fail(ctx, status, text);
        return BRG_OK;
    }
    self->child = child;
    return BRG_OK;
}

static int
s_proxy(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_proxy_t *self = brg_state(ctx);
    if (brg_msg_is(msg, BRG_TAG_DOWN)) {
        brg_ref_t from;
        uint64_t mon;
        brg_exit_reason_t reason;
        if (brg_msg_read_down(msg, &from, &mon, &reason) == BRG_OK && mon == self->mon) {
            // Normal: stop normally. Abnormal: the EXIT came first and we
            // are gone; should it not have (a trapping proxy never is),
            // fail with its code rather than live on without a child.
            if (reason.kind == BRG_EXIT_NORMAL)
                brg_stop(ctx);
            else
                brg_fail(ctx, reason.code < 0 ? reason.code : BRG_EFAILED, reason.text);
            return BRG_OK;
        }
    }
    if (brg_ref_is_none(self->child))
        return BRG_UNHANDLED; // not spawned yet: a counted dead letter
    brg_forward(ctx, self->child);
    return BRG_OK;
}

static int
s_proxy_init(brg_ctx_t *ctx, void *arg)
{
    s_proxy_t *self = brg_state(ctx);
    self->rc = arg;
    brg_kind_spawn_opts_t opts;
    brg_kind_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_LINK | BRG_SPAWN_MONITOR;
    opts.name = self->rc->name;
    opts.monitor = &self->mon;
    int timeout = self->rc->timeout_ms > 0 ? self->rc->timeout_ms : 5000;
    int rc = brg_spawn_remote(ctx, self->rc->node, self->rc->kind, self->rc->args, &opts, timeout,
                              s_proxy_spawned, NULL);
    if (rc != BRG_OK)
        brg_log(ctx, BRG_LOG_WARNING, "remote child of kind '%s': %s", self->rc->kind,
                brg_strerror(rc));
    return rc;
}

void
brg_remote_child_init(brg_remote_child_t *rc)
{
    assert(rc);
    memset(rc, 0, sizeof *rc);
}

int
brg_child_start_remote(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    assert(sup_ctx);
    assert(arg);
    (void)args;
    const brg_remote_child_t *rc = arg;
    if (rc->kind == NULL || rc->kind[0] == '\0' || strlen(rc->kind) > BRG_KIND_NAME_MAX)
        return BRG_EINVAL;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(s_proxy_t);
    opts.init = s_proxy_init;
    opts.init_arg = arg;
    opts.flags = BRG_SPAWN_LINK;
    opts.label = "brg.remote_child";
    return brg_spawn(sup_ctx, s_proxy, &opts, child);
}
