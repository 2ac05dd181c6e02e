//  link - exit reasons, links, monitors and exit signals
//
//  Design notes.
//  Links and monitors are bookkeeping on both ends, changed only by each
//  actor's own thread: A records its side at once and sends B an internal
//  message (LINK, UNLINK, MONITOR, DEMONITOR) that B applies when it runs.
//  So no lock is needed, and the sets live in the actor's lazily allocated
//  extension (an actor that never links pays nothing).
//  When an actor dies it sends EXIT to every linked actor and DOWN to every
//  watcher, and DEMONITOR to the actors it was watching (so long-lived
//  targets do not accumulate dead watchers). A LINK or MONITOR that reaches
//  an actor that has already died is answered from its drain with EXIT or
//  DOWN and reason noproc; one sent to an actor already known dead is
//  answered at once. Either way the requester hears exactly once.
//  EXIT and DOWN travel in the ordinary lane, after everything the dying
//  actor sent before it died (Erlang's per-pair signal order); only exit
//  signals from brg_exit (shutdown, kill) use the priority lane.
//  An EXIT from an actor that is no longer linked (unlinked meanwhile) is
//  ignored; a DOWN for a monitor that was dropped is never delivered.
//  Every signal goes through the one send path (brg__system_deliver), so a
//  ref of another node works the same. A LINK or MONITOR the transport
//  cannot take (BRG_ENETWORK) is answered there with EXIT/DOWN noconnection
//  (brg__remote_dead_letter, through brg__link_answer): brg_link then keeps
//  the link, which that EXIT breaks, and brg_monitor adds no noproc DOWN.
#include "runtime_internal.h"

typedef struct {
    uint64_t mon;  // monitor id, unique per watcher
    brg_ref_t ref; // the other end
    bool adopted;  // monitors: set up by a remote spawn (brg__monitor_adopt)
} s_mon_t;

struct brg__links {
    brg_ref_t *links; // actors linked to this one
    uint32_t n_links, cap_links;
    s_mon_t *watchers; // (monitor id, watcher) pairs watching this actor
    uint32_t n_watchers, cap_watchers;
    s_mon_t *monitors; // (monitor id, target) pairs this actor watches
    uint32_t n_monitors, cap_monitors;
    uint64_t next_mon; // last monitor id handed out
    bool trap;         // trap exits
};

static int
s_reserve(void **items, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return BRG_OK;
    uint32_t ncap = *cap ? *cap * 2 : 4;
    void *p = realloc(*items, ncap * size);
    if (!p)
        return BRG_ENOMEM;
    *items = p;
    *cap = ncap;
    return BRG_OK;
}

static brg__links_t *
s_links(brg__actor_t *actor)
{
    brg__actor_ext_t *ext = brg__actor_ext(actor);
    if (ext && !ext->links)
        ext->links = calloc(1, sizeof(*ext->links));
    return ext ? ext->links : NULL;
}

static int
s_link_add(brg__links_t *l, brg_ref_t ref)
{
    for (uint32_t i = 0; i < l->n_links; i++)
        if (brg_ref_eq(l->links[i], ref))
            return BRG_OK;
    int rc = s_reserve((void **)&l->links, &l->cap_links, l->n_links, sizeof(*l->links));
    if (rc == BRG_OK)
        l->links[l->n_links++] = ref;
    return rc;
}

static bool
s_link_has(const brg__links_t *l, brg_ref_t ref)
{
    for (uint32_t i = 0; l && i < l->n_links; i++)
        if (brg_ref_eq(l->links[i], ref))
            return true;
    return false;
}

static bool
s_link_remove(brg__links_t *l, brg_ref_t ref)
{
    for (uint32_t i = 0; l && i < l->n_links; i++) {
        if (brg_ref_eq(l->links[i], ref)) {
            l->links[i] = l->links[--l->n_links];
            return true;
        }
    }
    return false;
}

static int
s_mon_add(s_mon_t **items, uint32_t *n, uint32_t *cap, uint64_t mon, brg_ref_t ref)
{
    int rc = s_reserve((void **)items, cap, *n, sizeof(**items));
    if (rc == BRG_OK)
        (*items)[(*n)++] = (s_mon_t){mon, ref, false};
    return rc;
}

static bool
s_mon_has(const s_mon_t *items, uint32_t n, uint64_t mon, brg_ref_t ref)
{
    for (uint32_t i = 0; i < n; i++)
        if (items[i].mon == mon && brg_ref_eq(items[i].ref, ref))
            return true;
    return false;
}

//  Remove the pair with this id (and, if ref is not NONE, this ref).
static bool
s_mon_remove(s_mon_t *items, uint32_t *n, uint64_t mon, brg_ref_t ref, brg_ref_t *found)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (items[i].mon == mon && (brg_ref_is_none(ref) || brg_ref_eq(items[i].ref, ref))) {
            if (found)
                *found = items[i].ref;
            items[i] = items[--*n];
            return true;
        }
    }
    return false;
}

void
brg__links_free(brg__links_t **self_p)
{
    brg__links_t *l = *self_p;
    if (!l)
        return;
    free(l->links);
    free(l->watchers);
    free(l->monitors);
    free(l);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------------
//  Reasons and the internal messages that carry them

void
brg__exit_reason_set(brg_exit_reason_t *reason, brg_exit_kind_t kind, int code, const char *text)
{
    reason->kind = kind;
    reason->code = code;
    reason->text[0] = '\0';
    if (text) {
        strncpy(reason->text, text, BRG_EXIT_TEXT_MAX);
        reason->text[BRG_EXIT_TEXT_MAX] = '\0';
    }
}

bool
brg_exit_is_abnormal(const brg_exit_reason_t *reason)
{
    assert(reason);
    return reason->kind != BRG_EXIT_NORMAL;
}

const char *
brg_exit_kind_name(brg_exit_kind_t kind)
{
    switch (kind) {
    case BRG_EXIT_NORMAL:
        return "normal";
    case BRG_EXIT_SHUTDOWN:
        return "shutdown";
    case BRG_EXIT_KILLED:
        return "killed";
    case BRG_EXIT_FAILED:
        return "failed";
    case BRG_EXIT_NOPROC:
        return "noproc";
    case BRG_EXIT_NOCONNECTION:
        return "noconnection";
    }
    return "unknown";
}

//  An internal message of `kind` from `from`, with the reason in its payload
//  for EXIT ([kind, code, text]) and DOWN ([monitor, kind, code, text]).
static brg_msg_t *
s_signal(brg__msg_kind_t kind, brg_ref_t from, uint64_t corr, const brg_exit_reason_t *reason)
{
    brg_msg_t *msg = brg__msg_alloc();
    if (!msg)
        return NULL;
    const char *tag = kind == BRG__MSG_SYS_DOWN ? BRG_TAG_DOWN : BRG_TAG_EXIT;
    brg__msg_set_tag(msg, tag, strlen(tag));
    msg->kind = (uint8_t)kind;
    msg->sender = from;
    msg->corr = corr;
    if (reason) {
        int rc = BRG_OK;
        if (kind == BRG__MSG_SYS_DOWN)
            rc = brg_msg_add_uint(msg, corr);
        if (rc == BRG_OK)
            rc = brg_msg_add_int(msg, reason->kind);
        if (rc == BRG_OK)
            rc = brg_msg_add_int(msg, reason->code);
        if (rc == BRG_OK)
            rc = brg_msg_add_str(msg, reason->text);
        if (rc != BRG_OK) {
            brg__msg_free(msg);
            return NULL;
        }
    }
    return msg;
}

brg_msg_t *
brg__link_signal(int kind, brg_ref_t from, uint64_t corr, const brg_exit_reason_t *reason)
{
    return s_signal((brg__msg_kind_t)kind, from, corr, reason);
}

//  Deliver an internal message through the one send path. A local failure
//  is no dead letter (nothing a user sent was lost): the caller decides.
//  Returns BRG_OK, BRG_ENOACTOR, BRG_ENOMEM (no message), or for another
//  node BRG_ENETWORK / BRG_EBUSY, when the message was counted and a LINK
//  or MONITOR already answered noconnection (brg__remote_dead_letter).
static int
s_post(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg)
{
    if (!msg)
        return BRG_ENOMEM;
    return brg__system_deliver(sys, to, &msg);
}

//  True if a post failed on another node's path: the transport (or, with
//  none, remote.c) has already answered a LINK or MONITOR with noconnection.
static bool
s_answered_remotely(int rc)
{
    return rc == BRG_ENETWORK || rc == BRG_EBUSY;
}

//  Queue a message to this actor itself (an immediate noproc answer).
static void
s_post_self(brg__actor_t *actor, brg_msg_t *msg)
{
    if (msg && brg__actor_push(actor, msg) != BRG_OK)
        brg__msg_free(msg);
}

static int
s_read_reason(const brg_msg_t *msg, size_t *pos, brg_exit_reason_t *reason)
{
    int64_t kind, code;
    const char *text;
    size_t len;
    size_t p = *pos;
    int rc = brg_msg_read_int(msg, &p, &kind);
    if (rc == BRG_OK)
        rc = brg_msg_read_int(msg, &p, &code);
    if (rc == BRG_OK)
        rc = brg_msg_read_str(msg, &p, &text, &len);
    if (rc != BRG_OK)
        return rc;
    if (kind < BRG_EXIT_NORMAL || kind > BRG_EXIT_NOCONNECTION || code < INT_MIN || code > INT_MAX)
        return BRG_ERANGE;
    reason->kind = (brg_exit_kind_t)kind;
    reason->code = (int)code;
    if (len > BRG_EXIT_TEXT_MAX)
        len = BRG_EXIT_TEXT_MAX;
    memcpy(reason->text, text, len);
    reason->text[len] = '\0';
    *pos = p;
    return BRG_OK;
}

int
brg_msg_read_exit(const brg_msg_t *msg, brg_ref_t *from, brg_exit_reason_t *reason)
{
    assert(msg && from && reason);
    if (!brg_msg_is(msg, BRG_TAG_EXIT))
        return BRG_ETYPE;
    size_t pos = 0;
    brg_exit_reason_t r;
    int rc = s_read_reason(msg, &pos, &r);
    if (rc != BRG_OK)
        return rc;
    *from = brg_msg_sender(msg);
    *reason = r;
    return BRG_OK;
}

int
brg_msg_read_down(const brg_msg_t *msg, brg_ref_t *from, uint64_t *monitor,
                  brg_exit_reason_t *reason)
{
    assert(msg && from && monitor && reason);
    if (!brg_msg_is(msg, BRG_TAG_DOWN))
        return BRG_ETYPE;
    size_t pos = 0;
    uint64_t mon;
    brg_exit_reason_t r;
    int rc = brg_msg_read_uint(msg, &pos, &mon);
    if (rc == BRG_OK)
        rc = s_read_reason(msg, &pos, &r);
    if (rc != BRG_OK)
        return rc;
    *from = brg_msg_sender(msg);
    *monitor = mon;
    *reason = r;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Runtime hooks (actor.c; brg__link_spawned and brg__links_free: slots.c)

//  A DOWN noproc for a monitor a remote spawn set up (adopted): the target
//  counted us among its watchers from before it ran, so its real DOWN (or,
//  if the connection is lost, a noconnection one) comes as well. The noproc
//  answers the MONITOR brg__monitor_adopt sent for the tables, which can
//  reach a target that is dying and overtake the DOWN its dying thread is
//  about to send (the noproc comes from the delivering thread): ignored, so
//  the watcher sees the real reason, once.
static bool
s_down_is_spurious(const brg__links_t *l, const brg_msg_t *msg)
{
    for (uint32_t i = 0; i < l->n_monitors; i++) {
        if (l->monitors[i].mon != msg->corr)
            continue;
        if (!l->monitors[i].adopted)
            return false;
        size_t pos = 0;
        uint64_t mon;
        brg_exit_reason_t reason;
        return brg_msg_read_uint(msg, &pos, &mon) == BRG_OK &&
               s_read_reason(msg, &pos, &reason) == BRG_OK && reason.kind == BRG_EXIT_NOPROC;
    }
    return false;
}

int
brg__link_handle(brg__actor_t *actor, brg_msg_t *msg, brg_exit_reason_t *die)
{
    brg__links_t *l = actor->ext ? actor->ext->links : NULL;
    brg_exit_reason_t reason;
    size_t pos = 0;
    switch ((brg__msg_kind_t)msg->kind) {
    case BRG__MSG_SYS_LINK:
        if (!(l = s_links(actor)) || s_link_add(l, msg->sender) != BRG_OK) {
            // Out of memory: the requester must not believe it is linked.
            brg__exit_reason_set(&reason, BRG_EXIT_FAILED, BRG_ENOMEM, "link: out of memory");
            s_post(actor->sys, msg->sender,
                   s_signal(BRG__MSG_SYS_EXIT, brg__actor_ref(actor), 0, &reason));
        }
        return BRG__LINK_HANDLED;
    case BRG__MSG_SYS_UNLINK:
        s_link_remove(l, msg->sender);
        return BRG__LINK_HANDLED;
    case BRG__MSG_SYS_MONITOR:
        // A watcher set up at spawn for a remote parent (brg__link_prewire)
        // sends the same MONITOR afterwards for its node's tables: one watch.
        if (l && s_mon_has(l->watchers, l->n_watchers, msg->corr, msg->sender))
            return BRG__LINK_HANDLED;
        if (!(l = s_links(actor)) || s_mon_add(&l->watchers, &l->n_watchers, &l->cap_watchers,
                                               msg->corr, msg->sender) != BRG_OK) {
            brg__exit_reason_set(&reason, BRG_EXIT_FAILED, BRG_ENOMEM, "monitor: out of memory");
            s_post(actor->sys, msg->sender,
                   s_signal(BRG__MSG_SYS_DOWN, brg__actor_ref(actor), msg->corr, &reason));
        }
        return BRG__LINK_HANDLED;
    case BRG__MSG_SYS_DEMONITOR:
        if (l)
            s_mon_remove(l->watchers, &l->n_watchers, msg->corr, msg->sender, NULL);
        return BRG__LINK_HANDLED;
    case BRG__MSG_SYS_DOWN:
        if (l && s_down_is_spurious(l, msg))
            return BRG__LINK_HANDLED;
        if (!l || !s_mon_remove(l->monitors, &l->n_monitors, msg->corr, BRG_REF_NONE, NULL))
            return BRG__LINK_HANDLED; // demonitored: never delivered
        return BRG__LINK_DELIVER;
    case BRG__MSG_SYS_EXIT:
        if (!s_link_remove(l, msg->sender))
            return BRG__LINK_HANDLED; // unlinked meanwhile
        if (s_read_reason(msg, &pos, &reason) != BRG_OK)
            brg__exit_reason_set(&reason, BRG_EXIT_FAILED, BRG_EBADMSG, "malformed exit signal");
        if (l->trap)
            return BRG__LINK_DELIVER;
        if (!brg_exit_is_abnormal(&reason))
            return BRG__LINK_HANDLED;
        *die = reason;
        return BRG__LINK_DIE;
    case BRG__MSG_SYS_KILL:
        brg__exit_reason_set(&reason, (brg_exit_kind_t)msg->status, 0, NULL);
        if (reason.kind != BRG_EXIT_KILLED && l && l->trap) {
            // Deliver as an EXIT message from the signal's sender.
            msg->size = 0;
            if (brg_msg_add_int(msg, reason.kind) == BRG_OK && brg_msg_add_int(msg, 0) == BRG_OK &&
                brg_msg_add_str(msg, "") == BRG_OK) {
                brg__msg_set_tag(msg, BRG_TAG_EXIT, sizeof(BRG_TAG_EXIT) - 1);
                return BRG__LINK_DELIVER;
            }
        }
        *die = reason;
        return BRG__LINK_DIE;
    default:
        brg__panic("link: message kind %d is not a link signal", msg->kind);
    }
}

bool
brg__link_is_signal(const brg_msg_t *msg)
{
    return msg->kind >= BRG__MSG_SYS_KILL && msg->kind <= BRG__MSG_SYS_DOWN;
}

void
brg__link_on_death(brg__actor_t *actor, const brg_exit_reason_t *reason)
{
    brg__links_t *l = actor->ext ? actor->ext->links : NULL;
    if (!l)
        return;
    brg_system_t *sys = actor->sys;
    brg_ref_t self = brg__actor_ref(actor);
    for (uint32_t i = 0; i < l->n_links; i++)
        s_post(sys, l->links[i], s_signal(BRG__MSG_SYS_EXIT, self, 0, reason));
    for (uint32_t i = 0; i < l->n_watchers; i++)
        s_post(sys, l->watchers[i].ref,
               s_signal(BRG__MSG_SYS_DOWN, self, l->watchers[i].mon, reason));
    for (uint32_t i = 0; i < l->n_monitors; i++)
        s_post(sys, l->monitors[i].ref,
               s_signal(BRG__MSG_SYS_DEMONITOR, self, l->monitors[i].mon, NULL));
    brg__links_free(&actor->ext->links);
}

bool
brg__link_answer(brg_system_t *sys, brg_ref_t target, const brg_msg_t *msg, brg_exit_kind_t kind)
{
    if (msg->kind != BRG__MSG_SYS_LINK && msg->kind != BRG__MSG_SYS_MONITOR)
        return false;
    if (brg_ref_is_none(msg->sender))
        return true; // nobody to answer (a malformed request from outside)
    brg_exit_reason_t reason;
    brg__exit_reason_set(&reason, kind, kind == BRG_EXIT_NOCONNECTION ? BRG_ENETWORK : BRG_ENOACTOR,
                         NULL);
    if (msg->kind == BRG__MSG_SYS_LINK)
        s_post(sys, msg->sender, s_signal(BRG__MSG_SYS_EXIT, target, 0, &reason));
    else
        s_post(sys, msg->sender, s_signal(BRG__MSG_SYS_DOWN, target, msg->corr, &reason));
    return true;
}

bool
brg__link_on_drain(brg__actor_t *actor, brg_msg_t *msg)
{
    if (!brg__link_is_signal(msg))
        return false;
    brg__links_t *l = actor->ext ? actor->ext->links : NULL;
    // A LINK from an actor already linked (linking twice is one link) gets no
    // noproc: brg__link_on_death, which runs after the drain, sends it the
    // EXIT with the real reason, and the requester must hear exactly once.
    // Likewise a MONITOR repeating a watch set up at spawn (brg__link_prewire).
    bool repeat = msg->kind == BRG__MSG_SYS_LINK
                      ? s_link_has(l, msg->sender)
                      : msg->kind == BRG__MSG_SYS_MONITOR && l &&
                            s_mon_has(l->watchers, l->n_watchers, msg->corr, msg->sender);
    if (!repeat)
        brg__link_answer(actor->sys, brg__actor_ref(actor), msg, BRG_EXIT_NOPROC);
    brg__msg_free(msg);
    return true;
}

int
brg__link_spawned(brg__actor_t *parent, brg__actor_t *child, unsigned flags, uint64_t *monitor)
{
    brg__links_t *pl = s_links(parent);
    brg__links_t *cl = s_links(child);
    if (!pl || !cl)
        return BRG_ENOMEM;
    if (flags & BRG_SPAWN_LINK) {
        if (s_link_add(cl, brg__actor_ref(parent)) != BRG_OK ||
            s_link_add(pl, brg__actor_ref(child)) != BRG_OK)
            return BRG_ENOMEM;
    }
    if (flags & BRG_SPAWN_MONITOR) {
        uint64_t mon = ++pl->next_mon;
        if (s_mon_add(&cl->watchers, &cl->n_watchers, &cl->cap_watchers, mon,
                      brg__actor_ref(parent)) != BRG_OK ||
            s_mon_add(&pl->monitors, &pl->n_monitors, &pl->cap_monitors, mon,
                      brg__actor_ref(child)) != BRG_OK)
            return BRG_ENOMEM;
        if (monitor)
            *monitor = mon;
    }
    return BRG_OK;
}

int
brg__link_prewire(brg__actor_t *child, brg_ref_t parent, bool link, uint64_t mon)
{
    brg__links_t *cl = s_links(child);
    if (!cl)
        return BRG_ENOMEM;
    if (link && s_link_add(cl, parent) != BRG_OK)
        return BRG_ENOMEM;
    if (mon != 0 &&
        s_mon_add(&cl->watchers, &cl->n_watchers, &cl->cap_watchers, mon, parent) != BRG_OK) {
        s_link_remove(cl, parent);
        return BRG_ENOMEM;
    }
    // The parent's half of the link: a LINK from the child, sent before the
    // child can run, so it precedes any EXIT of the child. Crossing nodes it
    // records the link in both nodes' tables; if it cannot cross, the
    // transport answers it with EXIT noconnection to the child (remote.c).
    if (link)
        s_post(child->sys, parent, s_signal(BRG__MSG_SYS_LINK, brg__actor_ref(child), 0, NULL));
    return BRG_OK;
}

uint64_t
brg__monitor_reserve(brg_ctx_t *ctx)
{
    brg__links_t *l = s_links(ctx->actor);
    return l ? ++l->next_mon : 0;
}

int
brg__monitor_adopt(brg_ctx_t *ctx, brg_ref_t target, uint64_t mon)
{
    brg__actor_t *actor = ctx->actor;
    brg__links_t *l = s_links(actor);
    if (!l || s_mon_add(&l->monitors, &l->n_monitors, &l->cap_monitors, mon, target) != BRG_OK)
        return BRG_ENOMEM;
    l->monitors[l->n_monitors - 1].adopted = true;
    // The target already counts us among its watchers; this MONITOR (the
    // target ignores a repeat) records the monitor in the nodes' tables,
    // so a lost connection gives us DOWN noconnection. If it reaches a dead
    // or dying target, the noproc answer is ignored (s_down_is_spurious):
    // the target's real DOWN comes anyway.
    s_post(actor->sys, target, s_signal(BRG__MSG_SYS_MONITOR, brg__actor_ref(actor), mon, NULL));
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Public API

void
brg_fail(brg_ctx_t *ctx, int code, const char *text)
{
    assert(ctx);
    brg__actor_ext_t *ext = brg__actor_ext(ctx->actor);
    if (ext) {
        if (!ext->fail_reason)
            ext->fail_reason = malloc(sizeof(*ext->fail_reason));
        if (ext->fail_reason)
            brg__exit_reason_set(ext->fail_reason, BRG_EXIT_FAILED, code, text);
    }
    brg__actor_fail_later(ctx->actor);
}

int
brg_link(brg_ctx_t *ctx, brg_ref_t other)
{
    assert(ctx);
    brg__actor_t *actor = ctx->actor;
    brg_ref_t self = brg__actor_ref(actor);
    if (brg_ref_eq(self, other) || brg_ref_is_none(other))
        return BRG_EINVAL;
    brg__links_t *l = s_links(actor);
    if (!l)
        return BRG_ENOMEM;
    int rc = s_post(actor->sys, other, s_signal(BRG__MSG_SYS_LINK, self, 0, NULL));
    // Another node that cannot be reached: the link is made, and the EXIT
    // noconnection already queued for us breaks it when we next run.
    if (rc == BRG_OK || s_answered_remotely(rc))
        rc = s_link_add(l, other);
    return rc;
}

int
brg_unlink(brg_ctx_t *ctx, brg_ref_t other)
{
    assert(ctx);
    brg__actor_t *actor = ctx->actor;
    if (!s_link_remove(actor->ext ? actor->ext->links : NULL, other))
        return BRG_OK;
    s_post(actor->sys, other, s_signal(BRG__MSG_SYS_UNLINK, brg__actor_ref(actor), 0, NULL));
    return BRG_OK;
}

bool
brg_is_linked(brg_ctx_t *ctx, brg_ref_t other)
{
    assert(ctx);
    brg__actor_t *actor = ctx->actor;
    return actor->ext && actor->ext->links && s_link_has(actor->ext->links, other);
}

int
brg_monitor(brg_ctx_t *ctx, brg_ref_t target, uint64_t *monitor)
{
    assert(ctx);
    assert(monitor);
    brg__actor_t *actor = ctx->actor;
    brg__links_t *l = s_links(actor);
    if (!l)
        return BRG_ENOMEM;
    uint64_t mon = l->next_mon + 1;
    int rc = s_mon_add(&l->monitors, &l->n_monitors, &l->cap_monitors, mon, target);
    if (rc != BRG_OK)
        return rc;
    l->next_mon = mon;
    *monitor = mon;
    brg_ref_t self = brg__actor_ref(actor);
    rc = s_post(actor->sys, target, s_signal(BRG__MSG_SYS_MONITOR, self, mon, NULL));
    if (rc != BRG_OK && !s_answered_remotely(rc)) {
        // Already gone: the DOWN (noproc) comes as a message, like any other.
        // (On another node's path it was answered already: noconnection.)
        brg_exit_reason_t noproc;
        brg__exit_reason_set(&noproc, BRG_EXIT_NOPROC, BRG_ENOACTOR, NULL);
        s_post_self(actor, s_signal(BRG__MSG_SYS_DOWN, target, mon, &noproc));
    }
    return BRG_OK;
}

int
brg_demonitor(brg_ctx_t *ctx, uint64_t monitor)
{
    assert(ctx);
    brg__actor_t *actor = ctx->actor;
    brg__links_t *l = actor->ext ? actor->ext->links : NULL;
    brg_ref_t target;
    if (!l || !s_mon_remove(l->monitors, &l->n_monitors, monitor, BRG_REF_NONE, &target))
        return BRG_ENOTFOUND;
    s_post(actor->sys, target,
           s_signal(BRG__MSG_SYS_DEMONITOR, brg__actor_ref(actor), monitor, NULL));
    return BRG_OK;
}

void
brg_trap_exits(brg_ctx_t *ctx, bool on)
{
    assert(ctx);
    brg__links_t *l = s_links(ctx->actor);
    if (l)
        l->trap = on;
}

int
brg_exit(brg_system_t *sys, brg_ref_t target, brg_exit_kind_t kind)
{
    assert(sys);
    assert(kind == BRG_EXIT_SHUTDOWN || kind == BRG_EXIT_KILLED || kind == BRG_EXIT_FAILED);
    brg_msg_t *msg = s_signal(BRG__MSG_SYS_KILL, BRG_REF_NONE, 0, NULL);
    if (!msg)
        return BRG_ENOMEM;
    msg->status = kind;
    return s_post(sys, target, msg);
}
