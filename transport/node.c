//  node - a system on the network: the public node API (include/brigade/
//  node.h), the node service actor, node events.
//
//  Design notes.
//  A node is a brg_system_t with the transport plugged in through the
//  runtime seam (runtime/remote.h): brg_node_new starts the I/O thread
//  (zmq_io.c, which owns every socket), plugs brg__io_send in as the
//  remote ops' send, and spawns the node service actor under
//  BRG_NODE_SERVICE. From then on the runtime hands every message for
//  another node's ref to brg__io_send; brg_system_destroy calls
//  ops->shutdown (flush, BYE, join the I/O thread) once every actor has
//  stopped and ops->destroy after the workers are joined, which frees the
//  node. A system knows nothing of its node, so the nodes of the process
//  are found through a small list (s_nodes, under s_nodes_lock).
//
//  Node events come from the I/O thread (s_on_event), after everything the
//  peer delivered: a log line, BRG_TAG_NODEUP / BRG_TAG_NODEDOWN to every
//  subscriber, and one BRG_TAG_NODEDOWN to every actor that monitors the
//  node. The subscriber and monitor lists are guarded by node->lock;
//  messages are sent after it is released (a send may run another actor).
//  brg_monitor_node checks "is the node up" under the same lock, and the
//  I/O thread marks a peer down before it takes the lock to fire its
//  monitors, so a monitor is either in the list when it fires or sees the
//  node down and gets its NODEDOWN at once: exactly one, never none.
//
//  Lock order: node->lock, then nothing (s_nodes_lock is never held with it).
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "brigade/node.h"
#include "keys.h"
#include "msg.h"
#include "operator.h"
#include "remote.h"
#include "system.h"
#include "zmq_io.h"

#define S_DEFAULT_CLUSTER "brigade"

//  An actor that receives node events: a subscriber (node == none) or a
//  monitor of one node.
typedef struct s_watch {
    struct s_watch *next;
    brg_ref_t actor;
    brg_ref_t node; // BRG_REF_NONE: every node (brg_node_subscribe)
} s_watch_t;

struct brg_node {
    brg_node_t *next; // in s_nodes
    brg_system_t *sys;
    brg__io_t *io;
    char name[BRG_NODE_NAME_MAX + 1];
    brg_ref_t self_ref;
    brg_ref_t service;
    _Atomic bool closing; // ops->shutdown began: events are logged, not sent
    pthread_mutex_t lock; // watches
    s_watch_t *watches;
};

static pthread_mutex_t s_nodes_lock = PTHREAD_MUTEX_INITIALIZER;
static brg_node_t *s_nodes;

void
brg_node_config_init(brg_node_config_t *cfg)
{
    assert(cfg);
    memset(cfg, 0, sizeof *cfg);
    cfg->cluster = S_DEFAULT_CLUSTER;
    cfg->tick_ms = 1000;
    cfg->timeout_ms = 10000;
    cfg->handshake_ms = 5000;
    cfg->reconnect_max_ms = 30000;
    cfg->peer_queue_bytes = 64u * 1024 * 1024;
    cfg->peer_busy_bytes = 1024u * 1024;
    cfg->max_frame = 16u * 1024 * 1024 + 64u * 1024;
    cfg->mesh = true;
    cfg->io_on_worker = true;
}

brg_node_t *
brg_system_node_of(brg_system_t *sys)
{
    pthread_mutex_lock(&s_nodes_lock);
    brg_node_t *n = s_nodes;
    while (n != NULL && n->sys != sys)
        n = n->next;
    pthread_mutex_unlock(&s_nodes_lock);
    return n;
}

//  ---------------------------------------------------------------------------
//  Node events.

static brg_msg_t *
s_event_msg(const char *tag, brg_ref_t peer, const char *name, const char *reason)
{
    brg_msg_t *m = brg_msg_new(tag);
    if (m == NULL)
        return NULL;
    if (brg_msg_add_ref(m, peer) != BRG_OK || brg_msg_add_str(m, name) != BRG_OK ||
        brg_msg_add_str(m, reason) != BRG_OK)
        brg_msg_destroy(&m);
    return m;
}

//  Send one event to each of n actors; returns in gone[] which ones are dead.
static void
s_send_events(brg_node_t *self, const char *tag, brg_ref_t peer, const char *name,
              const char *reason, const brg_ref_t *to, bool *gone, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        brg_msg_t *m = s_event_msg(tag, peer, name, reason);
        if (m == NULL)
            continue;
        gone[i] = brg_system_send(self->sys, to[i], &m) == BRG_ENOACTOR;
    }
}

//  Collect the actors to tell under the lock: subscribers, and for a down
//  event the monitors of that node (removed: a monitor fires once).
static size_t
s_collect(brg_node_t *self, bool up, brg_ref_t peer, brg_ref_t **out, bool **gone)
{
    size_t n = 0, cap = 0;
    brg_ref_t *to = NULL;
    for (s_watch_t **pp = &self->watches; *pp != NULL;) {
        s_watch_t *w = *pp;
        bool sub = brg_ref_is_none(w->node);
        bool mon =
            !up && !sub && w->node.node_hi == peer.node_hi && w->node.node_lo == peer.node_lo;
        if (sub || mon) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                brg_ref_t *t = realloc(to, ncap * sizeof *t);
                if (t == NULL)
                    break;
                to = t;
                cap = ncap;
            }
            to[n++] = w->actor;
        }
        if (mon) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
    *out = to;
    *gone = n ? calloc(n, sizeof **gone) : NULL;
    return *gone || n == 0 ? n : 0;
}

//  Forget subscribers that are dead (their event was a dead letter).
static void
s_forget(brg_node_t *self, const brg_ref_t *to, const bool *gone, size_t n)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < n; i++) {
        if (!gone[i])
            continue;
        for (s_watch_t **pp = &self->watches; *pp != NULL; pp = &(*pp)->next) {
            s_watch_t *w = *pp;
            if (brg_ref_is_none(w->node) && brg_ref_eq(w->actor, to[i])) {
                *pp = w->next;
                free(w);
                break;
            }
        }
    }
    pthread_mutex_unlock(&self->lock);
}

//  brg__io_event_fn: on the I/O thread.
static void
s_on_event(void *arg, bool up, brg_ref_t peer, const char *name, const char *reason)
{
    brg_node_t *self = arg;
    char uuid[BRG_REF_STRLEN];
    brg_ref_format(peer, uuid, sizeof uuid);
    if (up)
        brg_system_log(self->sys, BRG_LOG_NOTICE, "node", BRG_REF_NONE, "node up: %s (%s)", name,
                       uuid);
    else
        brg_system_log(self->sys, BRG_LOG_NOTICE, "node", BRG_REF_NONE, "node down: %s (%s): %s",
                       name, uuid, reason);
    if (atomic_load_explicit(&self->closing, memory_order_relaxed))
        return;
    brg_ref_t *to;
    bool *gone;
    pthread_mutex_lock(&self->lock);
    size_t n = s_collect(self, up, peer, &to, &gone);
    pthread_mutex_unlock(&self->lock);
    s_send_events(self, up ? BRG_TAG_NODEUP : BRG_TAG_NODEDOWN, peer, name, reason, to, gone, n);
    s_forget(self, to, gone, n);
    free(to);
    free(gone);
}

int
brg_node_subscribe(brg_ctx_t *ctx, bool on)
{
    assert(ctx);
    brg_node_t *self = brg_system_node_of(brg_ctx_system(ctx));
    if (self == NULL)
        return BRG_ENOTFOUND;
    brg_ref_t me = brg_self(ctx);
    pthread_mutex_lock(&self->lock);
    s_watch_t **pp = &self->watches;
    while (*pp != NULL && !(brg_ref_is_none((*pp)->node) && brg_ref_eq((*pp)->actor, me)))
        pp = &(*pp)->next;
    int rc = BRG_OK;
    if (on && *pp == NULL) {
        s_watch_t *w = calloc(1, sizeof *w);
        if (w == NULL) {
            rc = BRG_ENOMEM;
        } else {
            w->actor = me;
            w->next = self->watches;
            self->watches = w;
        }
    } else if (!on && *pp != NULL) {
        s_watch_t *w = *pp;
        *pp = w->next;
        free(w);
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
brg_monitor_node(brg_ctx_t *ctx, brg_ref_t node)
{
    assert(ctx);
    brg_node_t *self = brg_system_node_of(brg_ctx_system(ctx));
    if (self == NULL)
        return BRG_ENOTFOUND;
    node.id = 0;
    pthread_mutex_lock(&self->lock);
    bool up = brg__io_peer_up(self->io, node);
    if (up) {
        s_watch_t *w = calloc(1, sizeof *w);
        if (w == NULL) {
            pthread_mutex_unlock(&self->lock);
            return BRG_ENOMEM;
        }
        w->actor = brg_self(ctx);
        w->node = node;
        w->next = self->watches;
        self->watches = w;
    }
    pthread_mutex_unlock(&self->lock);
    if (!up) {
        brg_msg_t *m = s_event_msg(BRG_TAG_NODEDOWN, node, "", "noconnection");
        if (m == NULL)
            return BRG_ENOMEM;
        return brg_send(ctx, brg_self(ctx), &m);
    }
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  The node service actor.

static int
s_reply_info(brg_ctx_t *ctx, brg_node_t *self)
{
    brg_node_stats_t st;
    brg__io_stats(self->io, &st, false);
    char ep[BRG_NODE_MAX_ENDPOINTS][256];
    int neps = 0;
    while (neps < BRG_NODE_MAX_ENDPOINTS &&
           brg__io_endpoint(self->io, neps, ep[neps], sizeof ep[0]) == BRG_OK)
        neps++;
    brg_ref_t peers[64];
    int npeers = brg__io_peers(self->io, peers, 64);
    if (npeers > 64)
        npeers = 64;
    brg_msg_t *r = brg_msg_new("info");
    if (r == NULL)
        return brg_reply_error(ctx, BRG_ENOMEM);
    int rc = brg_msg_add_map(r, 5);
    rc |= brg_msg_add_str(r, "name");
    rc |= brg_msg_add_str(r, self->name);
    rc |= brg_msg_add_str(r, "node");
    rc |= brg_msg_add_ref(r, self->self_ref);
    rc |= brg_msg_add_str(r, "endpoints");
    rc |= brg_msg_add_array(r, (uint32_t)neps);
    for (int i = 0; i < neps; i++)
        rc |= brg_msg_add_str(r, ep[i]);
    rc |= brg_msg_add_str(r, "peers");
    rc |= brg_msg_add_array(r, (uint32_t)npeers);
    for (int i = 0; i < npeers; i++)
        rc |= brg_msg_add_ref(r, peers[i]);
    rc |= brg_msg_add_str(r, "counters");
    rc |= brg__operator_add_counters(r, &st);
    if (rc != BRG_OK) {
        brg_msg_destroy(&r);
        return brg_reply_error(ctx, BRG_ENOMEM);
    }
    return brg_reply(ctx, &r);
}

//  ---------------------------------------------------------------------------
//  Remote spawn: the service's half (docs/PROTOCOL.md section 20, "spawn").
//  The request [kind, name|nil, link, mon, args...] comes from an actor of
//  another node (a client session never gets here: brg.node is not
//  exported, and an admin client's spawn is refused in s_service);
//  runtime/kind.c spawns the child held, wires it to the
//  requester, lets s_spawned reply, and only then lets it run.

static void
s_spawned(void *arg, brg_ref_t child)
{
    brg_ctx_t *ctx = arg;
    brg_msg_t *r = brg_msg_new(BRG__SPAWNED_TAG);
    if (r != NULL && brg_msg_add_ref(r, child) != BRG_OK)
        brg_msg_destroy(&r);
    if (r == NULL) {
        // The child exists and is wired (its LINK, if any, is sent); the
        // requester hears ENOMEM and its monitor, if any, is never adopted.
        brg_system_log(brg_ctx_system(ctx), BRG_LOG_ERROR, "node", child,
                       "remote spawn: out of memory for the reply");
        brg_reply_error(ctx, BRG_ENOMEM);
        return;
    }
    brg_reply(ctx, &r);
}

static int
s_spawn(brg_ctx_t *ctx, brg_node_t *self, const brg_msg_t *msg)
{
    char kind[BRG_KIND_NAME_MAX + 1];
    char name[BRG_NAME_MAX + 1];
    bool has_name = false, link = false;
    uint64_t mon = 0;
    size_t pos = 0;
    brg_ref_t parent = brg_msg_sender(msg);
    int rc = BRG_OK;
    if (brg_msg_read_str_copy(msg, &pos, kind, sizeof kind) != BRG_OK || kind[0] == '\0')
        rc = BRG_EINVAL;
    else if (brg_msg_peek(msg, pos) == BRG_TYPE_NIL)
        rc = brg_msg_read_nil(msg, &pos);
    else if ((rc = brg_msg_read_str_copy(msg, &pos, name, sizeof name)) == BRG_OK)
        has_name = name[0] != '\0' ? true : (rc = BRG_EINVAL, false);
    if (rc == BRG_OK && (brg_msg_read_bool(msg, &pos, &link) != BRG_OK ||
                         brg_msg_read_uint(msg, &pos, &mon) != BRG_OK))
        rc = BRG_EINVAL;
    // The requester must be an actor of another node: a local one spawns
    // with brg_spawn_kind, which links and monitors atomically itself.
    if (rc == BRG_OK &&
        (brg_ref_is_none(parent) || parent.id == 0 || brg_system_is_local(self->sys, parent)))
        rc = BRG_EINVAL;
    if (rc != BRG_OK) {
        rc = rc == BRG_ENOMEM ? rc : BRG_EINVAL;
        return brg_reply_error(ctx, rc);
    }
    brg_msg_t *args = brg_msg_new("brg.args");
    if (args == NULL ||
        brg__msg_append(args, brg_msg_data(msg) + pos, brg_msg_size(msg) - pos) != BRG_OK) {
        brg_msg_destroy(&args);
        return brg_reply_error(ctx, BRG_ENOMEM);
    }
    rc = brg__kind_spawn_remote(self->sys, kind, &args, parent, link, mon, has_name ? name : NULL,
                                s_spawned, ctx, NULL);
    if (rc != BRG_OK) {
        brg_system_log(self->sys, rc == BRG_ENOMEM ? BRG_LOG_ERROR : BRG_LOG_WARNING, "node",
                       parent, "remote spawn of kind '%s' refused: %s", kind, brg_strerror(rc));
        return brg_reply_error(ctx, rc);
    }
    return BRG_OK;
}

//  One entry of a "brg.peers" message: [bin(16) node, str endpoint, str
//  name, ...] (more elements are skipped: later versions may add some).
static bool
s_read_peer(const brg_msg_t *msg, size_t *pos, brg__wire_peer_t *e)
{
    uint32_t n;
    const void *bin;
    const char *str;
    size_t len;
    if (brg_msg_read_array(msg, pos, &n) != BRG_OK || n < 3)
        return false;
    if (brg_msg_read_bin(msg, pos, &bin, &len) != BRG_OK || len != 16)
        return false;
    memcpy(e->node, bin, 16);
    if (brg_msg_read_str(msg, pos, &str, &len) != BRG_OK || len == 0 || len > BRG__WIRE_EP_MAX ||
        memchr(str, '\0', len) != NULL)
        return false;
    memcpy(e->ep, str, len);
    e->ep[len] = '\0';
    if (brg_msg_read_str(msg, pos, &str, &len) != BRG_OK || len > BRG__WIRE_NAME_MAX ||
        memchr(str, '\0', len) != NULL)
        return false;
    memcpy(e->name, str, len);
    e->name[len] = '\0';
    for (uint32_t i = 3; i < n; i++)
        if (brg_msg_skip(msg, pos) != BRG_OK)
            return false;
    return true;
}

//  "brg.peers" from a peer's I/O thread (the mesh, PROTOCOL.md section 13):
//  [[node, endpoint, name], ...], at most BRG__WIRE_PEERS_MAX. A malformed
//  message is refused whole (counted gossip_refused, logged); the entries
//  go to the I/O thread, which checks what they say.
static void
s_on_peers(brg_node_t *self, const brg_msg_t *msg)
{
    size_t pos = 0;
    uint32_t n = 0;
    const char *why = NULL;
    brg__wire_peer_t *e = NULL;
    if (brg_msg_read_array(msg, &pos, &n) != BRG_OK)
        why = "not an array";
    else if (n > BRG__WIRE_PEERS_MAX)
        why = "more than 64 entries";
    else if (n > 0 && (e = calloc(n, sizeof *e)) == NULL)
        why = "out of memory";
    for (uint32_t i = 0; why == NULL && i < n; i++)
        if (!s_read_peer(msg, &pos, &e[i]))
            why = "an entry is not [bin(16) node, endpoint, name]";
    if (why == NULL && brg__io_learn(self->io, e, n) != BRG_OK)
        why = "out of memory";
    if (why != NULL) {
        brg__io_gossip_refused(self->io, n > 0 && n <= BRG__WIRE_PEERS_MAX ? n : 1);
        brg_system_log(self->sys, BRG_LOG_WARNING, "node", BRG_REF_NONE,
                       "mesh: refused a brg.peers message: %s", why);
    }
    free(e);
}

static int
s_service(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_node_t *self = brg_state(ctx);
    int rc;
    if (brg_msg_is(msg, "ping")) {
        brg_msg_t *r = brg_msg_new("pong");
        rc = r ? brg_reply(ctx, &r) : brg_reply_error(ctx, BRG_ENOMEM);
    } else if (brg_msg_is(msg, "info")) {
        rc = s_reply_info(ctx, self);
    } else if ((brg_msg_is(msg, "spawn") || brg_msg_is(msg, "brg.peers")) &&
               brg__io_peer_is_client(self->io, brg_msg_sender(msg))) {
        // Only an admin client gets here (PROTOCOL.md 22.4): it may look
        // and stop, not spawn actors nor tell this node whom to dial.
        brg_system_log(self->sys, BRG_LOG_WARNING, "node", brg_msg_sender(msg),
                       "refused %s from a client: only nodes may ask it", brg_msg_tag(msg));
        if (brg_msg_is(msg, "brg.peers"))
            return BRG_OK;
        rc = brg_reply_error(ctx, BRG_EPERM);
    } else if (brg_msg_is(msg, "spawn")) {
        rc = s_spawn(ctx, self, msg);
    } else if (brg_msg_is(msg, "brg.peers")) {
        s_on_peers(self, msg);
        return BRG_OK;
    } else if (brg_msg_is(msg, "whereis")) {
        char name[BRG_NODE_NAME_MAX + 1];
        size_t pos = 0;
        brg_ref_t ref;
        if (brg_msg_read_str_copy(msg, &pos, name, sizeof name) != BRG_OK)
            rc = brg_reply_error(ctx, BRG_EINVAL);
        else if (brg_whereis(self->sys, name, &ref) != BRG_OK)
            rc = brg_reply_error(ctx, BRG_ENOTFOUND);
        else {
            brg_msg_t *r = brg_msg_new("whereis");
            if (r != NULL && brg_msg_add_ref(r, ref) != BRG_OK)
                brg_msg_destroy(&r);
            rc = r ? brg_reply(ctx, &r) : brg_reply_error(ctx, BRG_ENOMEM);
        }
    } else {
        // The operator requests (operator.c): only this node's actors, peer
        // nodes and admin clients reach this service (PROTOCOL.md 22.4).
        return brg__operator_handle(ctx, self->io, msg) == BRG_UNHANDLED ? BRG_UNHANDLED : BRG_OK;
    }
    // A requester that went away (plain message, dead asker) is not our
    // failure: the reply is its dead letter.
    (void)rc;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  The remote ops (runtime/remote.h).

static int
s_ops_send(void *arg, brg_ref_t to, const char *to_name, brg_msg_t **msg_p)
{
    brg_node_t *self = arg;
    return brg__io_send(self->io, to, to_name, msg_p);
}

static bool
s_ops_gate_wait(void *arg, uint32_t gate)
{
    brg_node_t *self = arg;
    return brg__io_gate_wait(self->io, gate);
}

static void
s_ops_shutdown(void *arg)
{
    brg_node_t *self = arg;
    atomic_store_explicit(&self->closing, true, memory_order_relaxed);
    brg__io_shutdown(self->io);
}

static void
s_ops_destroy(void *arg)
{
    brg_node_t *self = arg;
    pthread_mutex_lock(&s_nodes_lock);
    for (brg_node_t **pp = &s_nodes; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == self) {
            *pp = self->next;
            break;
        }
    }
    pthread_mutex_unlock(&s_nodes_lock);
    brg__io_destroy(&self->io);
    while (self->watches != NULL) {
        s_watch_t *w = self->watches;
        self->watches = w->next;
        free(w);
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
}

static const brg__remote_ops_t s_ops = {
    .send = s_ops_send,
    .shutdown = s_ops_shutdown,
    .destroy = s_ops_destroy,
    .gate_wait = s_ops_gate_wait,
};

//  ---------------------------------------------------------------------------
//  API.

static bool
s_config_ok(const brg_node_config_t *cfg)
{
    size_t n = cfg->name ? strlen(cfg->name) : 0;
    if (n == 0 || n > BRG_NODE_NAME_MAX)
        return false;
    if (cfg->cluster && (cfg->cluster[0] == '\0' || strlen(cfg->cluster) > BRG_NODE_NAME_MAX))
        return false;
    if (cfg->listen[0] == NULL)
        return false;
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS; i++) {
        if ((cfg->listen[i] && strlen(cfg->listen[i]) > 255) ||
            (cfg->connect[i] && strlen(cfg->connect[i]) > 255))
            return false;
    }
    if (cfg->advertise && (cfg->advertise[0] == '\0' || strlen(cfg->advertise) > 255))
        return false;
    return cfg->tick_ms > 0 && cfg->timeout_ms > cfg->tick_ms && cfg->handshake_ms > 0 &&
           cfg->reconnect_max_ms >= 100 && cfg->peer_queue_bytes > 0 && cfg->max_frame >= 65536;
}

//  The default key directory (node.h): $BRG_KEY_DIR, else
//  $XDG_CONFIG_HOME/brigade, else $HOME/.config/brigade. One per user, not
//  per node: a user's nodes on one machine share a key pair, so they admit
//  each other with no setup (as Erlang's ~/.erlang.cookie, but a real key).
static int
s_default_key_dir(char *buf, size_t len)
{
    const char *env = getenv("BRG_KEY_DIR");
    int n;
    if (env != NULL && env[0] != '\0')
        n = snprintf(buf, len, "%s", env);
    else if ((env = getenv("XDG_CONFIG_HOME")) != NULL && env[0] == '/')
        n = snprintf(buf, len, "%s/brigade", env);
    else if ((env = getenv("HOME")) != NULL && env[0] != '\0')
        n = snprintf(buf, len, "%s/.config/brigade", env);
    else
        return BRG_ENOTFOUND;
    return n > 0 && (size_t)n < len ? BRG_OK : BRG_EINVAL;
}

brg_node_t *
brg_node_new(brg_system_t *sys, const brg_node_config_t *cfg)
{
    assert(sys);
    assert(cfg);
    if (brg_system_is_deterministic(sys)) {
        brg_system_log(sys, BRG_LOG_ERROR, "node", BRG_REF_NONE,
                       "a deterministic system cannot be a node");
        return NULL;
    }
    brg_node_config_t c = *cfg;
    if (c.cluster == NULL)
        c.cluster = S_DEFAULT_CLUSTER;
    if (!s_config_ok(&c)) {
        brg_system_log(sys, BRG_LOG_ERROR, "node", BRG_REF_NONE, "invalid node configuration");
        return NULL;
    }
    if (brg_system_node_of(sys) != NULL)
        return NULL;
    char key_dir[1024];
    if (c.key_dir == NULL) {
        if (s_default_key_dir(key_dir, sizeof key_dir) != BRG_OK) {
            brg_system_log(sys, BRG_LOG_ERROR, "node", BRG_REF_NONE,
                           "no key directory: set cfg.key_dir, BRG_KEY_DIR or HOME");
            return NULL;
        }
        c.key_dir = key_dir;
    }
    brg_node_t *self = calloc(1, sizeof *self);
    if (self == NULL)
        return NULL;
    self->sys = sys;
    snprintf(self->name, sizeof self->name, "%s", c.name);
    pthread_mutex_init(&self->lock, NULL);
    atomic_init(&self->closing, false);
    self->self_ref = brg__system_ref(sys, 0); // the node ref: our UUID, id 0
    self->io = brg__io_new(sys, &c, s_on_event, self);
    if (self->io == NULL)
        goto fail;
    if (brg__system_set_remote_ops(sys, &s_ops, self) != BRG_OK) {
        brg__io_destroy(&self->io);
        goto fail;
    }
    pthread_mutex_lock(&s_nodes_lock);
    self->next = s_nodes;
    s_nodes = self;
    pthread_mutex_unlock(&s_nodes_lock);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = self;
    opts.name = BRG_NODE_SERVICE;
    opts.label = BRG_NODE_SERVICE;
    if (brg__system_spawn_hidden(sys, s_service, &opts, &self->service) != BRG_OK)
        brg_system_log(sys, BRG_LOG_WARNING, "node", BRG_REF_NONE,
                       "could not start the node service %s", BRG_NODE_SERVICE);
    char ep[256] = "";
    brg__io_endpoint(self->io, 0, ep, sizeof ep);
    brg_system_log(sys, BRG_LOG_INFO, "node", BRG_REF_NONE, "node %s listening on %s", self->name,
                   ep);
    return self;
fail:
    pthread_mutex_destroy(&self->lock);
    free(self);
    return NULL;
}

brg_ref_t
brg_node_self(brg_node_t *node)
{
    assert(node);
    return node->self_ref;
}

int
brg_node_endpoint(brg_node_t *node, int i, char *buf, size_t len)
{
    assert(node);
    assert(buf);
    return brg__io_endpoint(node->io, i, buf, len);
}

int
brg_node_connect(brg_node_t *node, const char *endpoint, int timeout_ms, brg_ref_t *peer)
{
    assert(node);
    assert(endpoint);
    return brg__io_connect(node->io, endpoint, timeout_ms, peer);
}

int
brg_node_disconnect(brg_node_t *node, brg_ref_t peer)
{
    assert(node);
    return brg__io_disconnect(node->io, peer);
}

int
brg_node_find(brg_node_t *node, const char *name, brg_ref_t *peer)
{
    assert(node);
    assert(name);
    assert(peer);
    return brg__io_find(node->io, name, peer);
}

int
brg_node_peers(brg_node_t *node, brg_ref_t *peers, int max)
{
    assert(node);
    assert(peers || max == 0);
    return brg__io_peers(node->io, peers, max);
}

int
brg_node_whereis(brg_node_t *node, brg_ref_t peer, const char *name, int timeout_ms, brg_ref_t *ref)
{
    assert(node);
    assert(name);
    assert(ref);
    brg_msg_t *m = brg_msg_new("whereis");
    if (m == NULL || brg_msg_add_str(m, name) != BRG_OK) {
        brg_msg_destroy(&m);
        return BRG_ENOMEM;
    }
    peer.id = 0;
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask_named_at(node->sys, peer, BRG_NODE_SERVICE, &m, timeout_ms, &reply);
    if (rc != BRG_OK)
        return rc;
    size_t pos = 0;
    rc = brg_msg_read_ref(reply, &pos, ref) == BRG_OK ? BRG_OK : BRG_EPROTO;
    brg_msg_destroy(&reply);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Remote spawn: the requester's half.

typedef struct {
    brg_spawn_fn fn;
    void *arg;
    uint64_t mon; // reserved monitor id, 0 for none
} s_rspawn_t;

//  The request [kind, name|nil, link, mon, args...] (PROTOCOL.md section 20).
static brg_msg_t *
s_spawn_request(const char *kind, const char *name, bool link, uint64_t mon, const brg_msg_t *args)
{
    brg_msg_t *m = brg_msg_new("spawn");
    if (m == NULL)
        return NULL;
    int rc = brg_msg_add_str(m, kind);
    rc |= name != NULL ? brg_msg_add_str(m, name) : brg_msg_add_nil(m);
    rc |= brg_msg_add_bool(m, link);
    rc |= brg_msg_add_uint(m, mon);
    if (rc == BRG_OK && args != NULL && brg_msg_size(args) > 0)
        rc = brg_msg_add_raw(m, brg_msg_data(args), brg_msg_size(args));
    if (rc != BRG_OK)
        brg_msg_destroy(&m);
    return m;
}

static bool
s_spawn_args_ok(brg_system_t *sys, brg_ref_t node, const char *kind, const char *name)
{
    return kind != NULL && kind[0] != '\0' && strlen(kind) <= BRG_KIND_NAME_MAX &&
           (name == NULL || (name[0] != '\0' && strlen(name) <= BRG_NAME_MAX)) &&
           !brg_system_is_local(sys, node);
}

static int
s_on_spawned(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_rspawn_t *st = arg;
    brg_ref_t child = BRG_REF_NONE;
    size_t pos = 0;
    if (status == BRG_OK && brg_msg_read_ref(reply, &pos, &child) != BRG_OK) {
        status = BRG_EPROTO;
        brg_log(ctx, BRG_LOG_WARNING, "remote spawn: a malformed reply from %s",
                brg_msg_tag(reply));
    }
    if (status == BRG_OK && st->mon != 0 && brg__monitor_adopt(ctx, child, st->mon) != BRG_OK)
        brg_log(ctx, BRG_LOG_ERROR, "remote spawn: out of memory adopting monitor %llu",
                (unsigned long long)st->mon);
    int rc = st->fn(ctx, status, child, st->arg);
    free(st);
    return rc;
}

int
brg_spawn_remote(brg_ctx_t *ctx, brg_ref_t node, const char *kind, const brg_msg_t *args,
                 const brg_kind_spawn_opts_t *opts, int timeout_ms, brg_spawn_fn fn, void *arg)
{
    assert(ctx);
    assert(fn);
    unsigned flags = opts != NULL ? opts->flags : 0;
    const char *name = opts != NULL ? opts->name : NULL;
    brg_system_t *sys = brg_ctx_system(ctx);
    node.id = 0;
    if (timeout_ms < 0 || (flags & ~(unsigned)(BRG_SPAWN_LINK | BRG_SPAWN_MONITOR)) ||
        !s_spawn_args_ok(sys, node, kind, name))
        return BRG_EINVAL;
    s_rspawn_t *st = calloc(1, sizeof *st);
    if (st == NULL)
        return BRG_ENOMEM;
    st->fn = fn;
    st->arg = arg;
    if ((flags & BRG_SPAWN_MONITOR) && (st->mon = brg__monitor_reserve(ctx)) == 0) {
        free(st);
        return BRG_ENOMEM;
    }
    brg_msg_t *m = s_spawn_request(kind, name, (flags & BRG_SPAWN_LINK) != 0, st->mon, args);
    if (m == NULL) {
        free(st);
        return BRG_ENOMEM;
    }
    int rc = brg_ask_named_at(ctx, node, BRG_NODE_SERVICE, &m, timeout_ms, s_on_spawned, st);
    if (rc != BRG_OK) {
        free(st);
        return rc;
    }
    if ((flags & BRG_SPAWN_MONITOR) && opts->monitor != NULL)
        *opts->monitor = st->mon;
    return BRG_OK;
}

int
brg_system_spawn_remote(brg_system_t *sys, brg_ref_t node, const char *kind, const brg_msg_t *args,
                        const char *name, int timeout_ms, brg_ref_t *child)
{
    assert(sys);
    node.id = 0;
    if (!s_spawn_args_ok(sys, node, kind, name))
        return BRG_EINVAL;
    brg_msg_t *m = s_spawn_request(kind, name, false, 0, args);
    if (m == NULL)
        return BRG_ENOMEM;
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask_named_at(sys, node, BRG_NODE_SERVICE, &m, timeout_ms, &reply);
    if (rc != BRG_OK)
        return rc;
    size_t pos = 0;
    brg_ref_t ref;
    rc = brg_msg_read_ref(reply, &pos, &ref) == BRG_OK ? BRG_OK : BRG_EPROTO;
    brg_msg_destroy(&reply);
    if (rc == BRG_OK && child != NULL)
        *child = ref;
    return rc;
}

void
brg_node_stats(brg_node_t *node, brg_node_stats_t *stats)
{
    assert(node);
    assert(stats);
    // Off the system's threads: a snapshot taken now by the I/O thread;
    // on them (where waiting is refused) the last one it published.
    brg__io_stats(node->io, stats, !brg_system_is_own_thread(node->sys));
}

//  ---------------------------------------------------------------------------
//  Keys and permissions.

int
brg_node_public_key(brg_node_t *node, char *buf, size_t len)
{
    assert(node);
    assert(buf);
    return brg__io_public_key(node->io, buf, len);
}

int
brg_node_allow_key(brg_node_t *node, const char *name, const char *key, brg_key_role_t role)
{
    assert(node);
    return brg__io_allow_key(node->io, name, key, role);
}

int
brg_node_revoke_key(brg_node_t *node, const char *what)
{
    assert(node);
    return brg__io_revoke_key(node->io, what);
}

int
brg_node_reload_keys(brg_node_t *node)
{
    assert(node);
    return brg__io_reload_keys(node->io);
}

int
brg_node_export(brg_node_t *node, const char *name, bool on)
{
    assert(node);
    return brg__io_export(node->io, name, on);
}

int
brg_keygen(const char *path, const char *name, brg_key_role_t role, char *key, size_t key_len)
{
    if (path == NULL || (role != BRG_KEY_NODE && role != BRG_KEY_CLIENT && role != BRG_KEY_ADMIN) ||
        (name != NULL && strlen(name) > BRG_NODE_NAME_MAX) ||
        (key != NULL && key_len < BRG_KEY_TEXT))
        return BRG_EINVAL;
    brg__cert_t cert;
    memset(&cert, 0, sizeof cert);
    if (brg__io_keygen(cert.pub, cert.sec) != 0)
        return BRG_ESYS;
    cert.has_sec = true;
    cert.role = role;
    snprintf(cert.name, sizeof cert.name, "%s", name != NULL ? name : "");
    int rc = brg__cert_save(path, &cert);
    if (rc == BRG_OK && key != NULL)
        brg__z85_encode(key, cert.pub, BRG__KEY_BYTES);
    memset(&cert, 0, sizeof cert);
    return rc;
}
