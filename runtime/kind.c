//  kind - behaviours registered by name, spawned by name here or for
//  another node's actor
//
//  Design notes.
//  The registry is a short list per system under kind_lock: kinds are
//  registered at start and looked up once per spawn, so a list and a mutex
//  cost nothing that matters, and a lookup copies the kind out under the
//  lock (kinds are never removed, but the copy keeps the rule simple).
//
//  Init arguments. A kind's init takes a message (its args); the runtime's
//  init takes a void *. Every spawn by kind therefore runs s_start as the
//  actor's init, with a heap record holding the kind's init and the args
//  message; s_start calls the kind's init and frees both. An actor with an
//  init always runs it as its first activation (actor.c), even when it is
//  stopped at once, so the record is always freed.
//
//  Remote spawn (brg__kind_spawn_remote). The requester is an actor of
//  another node, so the link or monitor cannot be set up on its side inside
//  the spawn, as brg__link_spawned does for a local parent. Instead the
//  child is spawned held (BRG__MODE_HOLD: published, in the scheduled state
//  so no message can make it run, but in no run queue), wired to the remote
//  parent (link.c, brg__link_prewire: the parent among its links and a LINK
//  from it to the parent sent; the parent's monitor among its watchers),
//  then the caller's `spawned` callback sends the reply, then the child is
//  scheduled. Everything the child sends afterwards (its EXIT or DOWN if
//  init fails) leaves the node after the LINK and the reply: one queue per
//  peer, filled in this thread's order (docs/ARCHITECTURE.md, nodes).
//
//  An abandoned remote spawn (brg__kind_late_spawn_reply). The requester's
//  ask may time out while the spawn still happens: its reply then comes
//  late, and a linked child would live on, linked to an actor that never
//  learned its ref. As OTP does for a spawn_reply after
//  spawn_request_abandon, the requester ends it: UNLINK first, then the
//  exit signal, both on the one queue to the child's node, so the child's
//  EXIT can never reach the requester. OTP's reason is `abandoned`, which
//  a trapping child may survive; Brigade's exit signals carry a kind, not a
//  text, and a child nothing refers to is killed. Only a child the actor is
//  linked to, on the node that sent the reply, is touched: a late reply
//  cannot make an actor end anything else. An unlinked child lives on, as
//  in OTP (a monitor-only spawn's DOWN is never delivered: the monitor was
//  never adopted).
#include "runtime_internal.h"

#include "brigade/kind.h"

struct brg__kind {
    struct brg__kind *next;
    char name[BRG_KIND_NAME_MAX + 1];
    brg_kind_t kind;
};

//  The init record of one spawn by kind (design notes).
typedef struct {
    brg_kind_init_fn init;
    brg_msg_t *args;
} s_start_t;

void
brg_kind_init(brg_kind_t *kind)
{
    assert(kind);
    memset(kind, 0, sizeof(*kind));
}

void
brg_kind_spawn_opts_init(brg_kind_spawn_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
}

static bool
s_name_ok(const char *name)
{
    return name && name[0] != '\0' && strlen(name) <= BRG_KIND_NAME_MAX;
}

//  Copy out the kind called name. Returns false if there is none.
static bool
s_find_labelled(brg_system_t *sys, const char *name, brg_kind_t *out, const char **label)
{
    bool found = false;
    pthread_mutex_lock(&sys->kind_lock);
    for (struct brg__kind *k = sys->kinds; k; k = k->next) {
        if (strcmp(k->name, name) == 0) {
            *out = k->kind;
            // The registry's copy of the name: it lives until the system
            // is destroyed (kinds are never unregistered), longer than any
            // actor, as a spawn label must.
            if (label)
                *label = k->name;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&sys->kind_lock);
    return found;
}

static bool
s_find(brg_system_t *sys, const char *name, brg_kind_t *out)
{
    return s_find_labelled(sys, name, out, NULL);
}

int
brg_kind_register(brg_system_t *sys, const char *name, const brg_kind_t *kind)
{
    assert(sys);
    assert(kind);
    if (!s_name_ok(name) || !kind->behaviour ||
        (kind->spawn_flags & ~(unsigned)(BRG_SPAWN_BLOCKING | BRG_SPAWN_FAIL_UNHANDLED)) ||
        (kind->flags & ~(unsigned)BRG_KIND_REMOTE))
        return BRG_EINVAL;
    struct brg__kind *k = calloc(1, sizeof(*k));
    if (!k)
        return BRG_ENOMEM;
    memcpy(k->name, name, strlen(name) + 1);
    k->kind = *kind;
    pthread_mutex_lock(&sys->kind_lock);
    for (struct brg__kind *o = sys->kinds; o; o = o->next) {
        if (strcmp(o->name, name) == 0) {
            pthread_mutex_unlock(&sys->kind_lock);
            free(k);
            return BRG_EEXIST;
        }
    }
    k->next = sys->kinds;
    sys->kinds = k;
    pthread_mutex_unlock(&sys->kind_lock);
    return BRG_OK;
}

bool
brg_kind_lookup(brg_system_t *sys, const char *name, unsigned *flags)
{
    assert(sys);
    brg_kind_t kind;
    if (!s_name_ok(name) || !s_find(sys, name, &kind))
        return false;
    if (flags)
        *flags = kind.flags;
    return true;
}

void
brg__kinds_fini(brg_system_t *sys)
{
    while (sys->kinds) {
        struct brg__kind *k = sys->kinds;
        sys->kinds = k->next;
        free(k);
    }
}

static int
s_start(brg_ctx_t *ctx, void *arg)
{
    s_start_t *start = arg;
    int rc = start->init ? start->init(ctx, start->args) : BRG_OK;
    brg_msg_destroy(&start->args);
    free(start);
    return rc;
}

//  The spawn options of kind, with s_start and its record (taking
//  *args_p: an empty "brg.args" message when NULL). BRG_ENOMEM.
static int
s_prepare(const brg_kind_t *kind, brg_msg_t **args_p, brg_spawn_opts_t *opts)
{
    s_start_t *start = malloc(sizeof(*start));
    brg_msg_t *args = args_p && *args_p ? *args_p : brg_msg_new("brg.args");
    if (args_p)
        *args_p = NULL;
    if (!start || !args) {
        free(start);
        brg_msg_destroy(&args);
        return BRG_ENOMEM;
    }
    start->init = kind->init;
    start->args = args;
    brg_spawn_opts_init(opts);
    opts->state_size = kind->state_size;
    opts->state_destroy = kind->state_destroy;
    opts->flags = kind->spawn_flags;
    opts->init = s_start;
    opts->init_arg = start;
    return BRG_OK;
}

static void
s_unprepare(brg_spawn_opts_t *opts)
{
    s_start_t *start = opts->init_arg;
    brg_msg_destroy(&start->args);
    free(start);
}

//  A copy of args' payload as an init message (NULL args: none). BRG_ENOMEM.
static int
s_args_copy(const brg_msg_t *args, brg_msg_t **out)
{
    *out = NULL;
    if (!args)
        return BRG_OK;
    brg_msg_t *copy = brg_msg_new("brg.args");
    if (!copy || brg__msg_append(copy, brg_msg_data(args), brg_msg_size(args)) != BRG_OK) {
        brg_msg_destroy(&copy);
        return BRG_ENOMEM;
    }
    *out = copy;
    return BRG_OK;
}

static int
s_spawn_local(brg_system_t *sys, brg__actor_t *parent, const char *name, const brg_msg_t *args,
              const brg_kind_spawn_opts_t *kopts, brg_ref_t *ref)
{
    unsigned flags = kopts ? kopts->flags : 0;
    if (flags & ~(unsigned)(BRG_SPAWN_LINK | BRG_SPAWN_MONITOR))
        return BRG_EINVAL;
    if (!s_name_ok(name))
        return BRG_EINVAL;
    brg_kind_t kind;
    const char *label;
    if (!s_find_labelled(sys, name, &kind, &label))
        return BRG_ENOTFOUND;
    brg_msg_t *copy;
    int rc = s_args_copy(args, &copy);
    if (rc != BRG_OK)
        return rc;
    brg_spawn_opts_t opts;
    if ((rc = s_prepare(&kind, &copy, &opts)) != BRG_OK)
        return rc;
    opts.flags |= flags;
    opts.name = kopts ? kopts->name : NULL;
    opts.monitor = kopts ? kopts->monitor : NULL;
    opts.label = label; // brgctl actors shows the kind
    rc = brg__actor_spawn(sys, parent, kind.behaviour, &opts, 0, ref, NULL);
    if (rc != BRG_OK)
        s_unprepare(&opts);
    return rc;
}

int
brg_spawn_kind(brg_ctx_t *ctx, const char *kind, const brg_msg_t *args,
               const brg_kind_spawn_opts_t *opts, brg_ref_t *ref)
{
    assert(ctx);
    brg__tctx_t trace; // the kind's init runs in our trace context (actor.h)
    brg__trace_current(ctx, &trace);
    brg__spawn_trace = trace.flags ? &trace : NULL;
    int rc = s_spawn_local(ctx->actor->sys, ctx->actor, kind, args, opts, ref);
    brg__spawn_trace = NULL;
    return rc;
}

int
brg_system_spawn_kind(brg_system_t *sys, const char *kind, const brg_msg_t *args, const char *name,
                      brg_ref_t *ref)
{
    assert(sys);
    brg_kind_spawn_opts_t opts;
    brg_kind_spawn_opts_init(&opts);
    opts.name = name;
    brg__spawn_trace = brg__trace_tls.flags ? &brg__trace_tls : NULL;
    int rc = s_spawn_local(sys, NULL, kind, args, &opts, ref);
    brg__spawn_trace = NULL;
    return rc;
}

int
brg__kind_spawn_remote(brg_system_t *sys, const char *name, brg_msg_t **args_p, brg_ref_t parent,
                       bool link, uint64_t mon, const char *reg_name, brg__spawned_fn spawned,
                       void *arg, brg_ref_t *ref)
{
    assert(sys && spawned);
    brg_kind_t kind;
    const char *label = NULL;
    int rc = BRG_OK;
    if (!s_name_ok(name) || brg_ref_is_none(parent) || brg_system_is_local(sys, parent))
        rc = BRG_EINVAL;
    else if (!s_find_labelled(sys, name, &kind, &label))
        rc = BRG_ENOTFOUND;
    else if (!(kind.flags & BRG_KIND_REMOTE))
        rc = BRG_EPERM;
    if (rc != BRG_OK) {
        if (args_p)
            brg_msg_destroy(args_p);
        return rc;
    }
    brg_spawn_opts_t opts;
    if ((rc = s_prepare(&kind, args_p, &opts)) != BRG_OK)
        return rc;
    opts.name = reg_name;
    opts.label = label;
    brg__actor_t *child = NULL;
    brg_ref_t self;
    rc = brg__actor_spawn(sys, NULL, kind.behaviour, &opts, BRG__MODE_HOLD, &self, &child);
    if (rc != BRG_OK) {
        s_unprepare(&opts);
        return rc;
    }
    rc = brg__link_prewire(child, parent, link, mon);
    if (rc != BRG_OK) {
        // Out of memory with the child published: it must not run unwatched.
        // It stops right after its init (whose record that frees), and the
        // requester hears BRG_ENOMEM.
        brg__actor_fail_later(child);
        brg__sched_schedule(sys->sched, child);
        return rc;
    }
    spawned(arg, self);
    // Whatever `spawned` sent goes before anything the child sends.
    brg__send_flush();
    if (ref)
        *ref = self;
    brg__sched_schedule(sys->sched, child);
    return BRG_OK;
}

bool
brg__kind_late_spawn_reply(brg_ctx_t *ctx, const brg_msg_t *reply)
{
    if (reply->kind != BRG__MSG_REPLY || strcmp(brg_msg_tag(reply), BRG__SPAWNED_TAG) != 0)
        return false;
    size_t pos = 0;
    brg_ref_t child;
    brg_ref_t from = brg_msg_sender(reply);
    brg_system_t *sys = brg_ctx_system(ctx);
    if (brg_msg_read_ref(reply, &pos, &child) != BRG_OK || brg_system_is_local(sys, child) ||
        child.node_hi != from.node_hi || child.node_lo != from.node_lo ||
        !brg_is_linked(ctx, child))
        return false;
    brg_unlink(ctx, child);
    int rc = brg_exit(sys, child, BRG_EXIT_KILLED);
    char ref[BRG_REF_STRLEN];
    brg_ref_format(child, ref, sizeof ref);
    brg_log(ctx, BRG_LOG_NOTICE,
            "remote spawn: the reply came after the deadline; the linked child %s is abandoned "
            "and ended%s",
            ref, rc == BRG_OK ? "" : " (the exit signal could not be sent)");
    return true;
}
