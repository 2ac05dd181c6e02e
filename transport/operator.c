//  operator - the node service's operator requests (operator.h).
//
//  Design notes.
//  "actors", "stats" and "stop" are answered at once from snapshots that
//  never block: brg_system_actors (runtime/observe.c), brg_system_stats,
//  the node counters the I/O thread published before its last sleep, and
//  brg__io_peer_stats. "tree" and "nodes" need answers from other actors
//  (every supervisor's which_children; every peer node's service for a
//  ping whose round trip is the measured rtt), and a behaviour must not
//  block: the service asks them all with brg_ask, keeps a copy of the
//  request (s_pending_t), and the last callback (reply, error or the
//  BRG__OPERATOR_WAIT_MS deadline) answers it with brg_reply_to. Every
//  callback comes exactly once, also when the service stops (BRG_ECLOSED),
//  so the record is always freed by the last one.
//
//  Sizes: a reply lists at most BRG__OPERATOR_MAX_ACTORS actors and
//  BRG__OPERATOR_MAX_PEERS peers, with the totals, so no request makes the
//  service build a reply past the 16 MiB payload limit.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator.h"

//  ---------------------------------------------------------------------------
//  Helpers.

static uint64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
s_kv_str(brg_msg_t *m, const char *key, const char *value)
{
    return brg_msg_add_str(m, key) | brg_msg_add_str(m, value);
}

static int
s_kv_uint(brg_msg_t *m, const char *key, uint64_t value)
{
    return brg_msg_add_str(m, key) | brg_msg_add_uint(m, value);
}

static int
s_kv_bool(brg_msg_t *m, const char *key, bool value)
{
    return brg_msg_add_str(m, key) | brg_msg_add_bool(m, value);
}

static int
s_kv_ref(brg_msg_t *m, const char *key, brg_ref_t value)
{
    return brg_msg_add_str(m, key) | brg_msg_add_ref(m, value);
}

typedef struct {
    const char *key;
    uint64_t value;
} s_counter_t;

static int
s_add_counters(brg_msg_t *m, const s_counter_t *c, size_t n)
{
    int rc = brg_msg_add_map(m, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        rc |= s_kv_uint(m, c[i].key, c[i].value);
    return rc;
}

int
brg__operator_add_counters(brg_msg_t *m, const brg_node_stats_t *st)
{
    const s_counter_t node[] = {
        {"peers_up", st->peers_up},
        {"sessions_started", st->sessions_started},
        {"sessions_ended", st->sessions_ended},
        {"frames_in", st->frames_in},
        {"frames_out", st->frames_out},
        {"msgs_in", st->msgs_in},
        {"msgs_out", st->msgs_out},
        {"bytes_in", st->bytes_in},
        {"bytes_out", st->bytes_out},
        {"dropped_busy", st->dropped_busy},
        {"busy_waits", st->busy_waits},
        {"dropped_unreachable", st->dropped_unreachable},
        {"dead_on_session_end", st->dead_on_session_end},
        {"lost_in_flight", st->lost_in_flight},
        {"rejected_frames", st->rejected_frames},
        {"handshakes_failed", st->handshakes_failed},
        {"reconnect_attempts", st->reconnect_attempts},
        {"refused_keys", st->refused_keys},
        {"refused_handshakes", st->refused_handshakes},
        {"refused_unauthorized", st->refused_unauthorized},
        {"gossip_learned", st->gossip_learned},
        {"gossip_refused", st->gossip_refused},
    };
    return s_add_counters(m, node, sizeof node / sizeof node[0]);
}

//  A snapshot of every actor (brg_system_actors), at most
//  BRG__OPERATOR_MAX_ACTORS of them, in *all (the caller frees it).
//  Returns how many were listed, *total how many there were, or BRG_ENOMEM.
static int
s_snapshot_actors(brg_system_t *sys, brg_actor_info_t **all_p, int *total_p)
{
    size_t cap = 1024;
    brg_actor_info_t *all = NULL;
    int total;
    for (;;) {
        brg_actor_info_t *t = realloc(all, cap * sizeof *all);
        if (t == NULL) {
            free(all);
            return BRG_ENOMEM;
        }
        all = t;
        total = brg_system_actors(sys, all, cap);
        if ((size_t)total <= cap || cap >= BRG__OPERATOR_MAX_ACTORS)
            break;
        cap = (size_t)total + 64 < BRG__OPERATOR_MAX_ACTORS ? (size_t)total + 64
                                                            : BRG__OPERATOR_MAX_ACTORS;
    }
    *all_p = all;
    *total_p = total;
    return (size_t)total < cap ? total : (int)cap;
}

//  Answer the current request with r (built with rc): BRG_ENOMEM on failure.
static int
s_answer(brg_ctx_t *ctx, const brg_msg_t *request, brg_msg_t *r, int rc)
{
    if (r == NULL || rc != BRG_OK) {
        brg_msg_destroy(&r);
        return brg_reply_error_to(ctx, request, BRG_ENOMEM);
    }
    return brg_reply_to(ctx, request, &r);
}

//  ---------------------------------------------------------------------------
//  actors

static int
s_actors(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_actor_info_t *all;
    int total, listed = s_snapshot_actors(brg_ctx_system(ctx), &all, &total);
    if (listed < 0)
        return brg_reply_error(ctx, listed);
    size_t n = (size_t)listed;
    brg_msg_t *r = brg_msg_new("actors");
    int rc = r ? BRG_OK : BRG_ENOMEM;
    if (r != NULL) {
        rc |= brg_msg_add_map(r, 2);
        rc |= s_kv_uint(r, "total", (uint64_t)total);
        rc |= brg_msg_add_str(r, "actors");
        rc |= brg_msg_add_array(r, (uint32_t)n);
        for (size_t i = 0; i < n && rc == BRG_OK; i++) {
            const brg_actor_info_t *a = &all[i];
            rc |= brg_msg_add_map(r, 8);
            rc |= s_kv_ref(r, "ref", a->ref);
            rc |= s_kv_str(r, "name", a->name);
            rc |= s_kv_str(r, "label", a->label);
            rc |= s_kv_uint(r, "mailbox", a->mailbox);
            rc |= s_kv_uint(r, "processed", a->processed);
            rc |= s_kv_str(r, "state", brg_actor_state_name(a->state));
            rc |= s_kv_bool(r, "blocking", a->blocking);
            rc |= s_kv_bool(r, "hidden", a->hidden);
        }
    }
    free(all);
    return s_answer(ctx, msg, r, rc);
}

//  ---------------------------------------------------------------------------
//  stats

//  The peers worth showing: every node, and the clients that are connected
//  now. A client draws a fresh node UUID per session (PROTOCOL.md section
//  5), so an ended client session never comes back: the I/O thread retires
//  it from the peer table (brg__io_clients_retired counts those), and one
//  not retired yet is left out here too. Returns how many are kept in
//  peers[] (the first ones), *gone how many ended client sessions there were.
static int
s_peers(brg__io_t *io, brg__io_peer_stat_t *peers, int *gone)
{
    int total = brg__io_peer_stats(io, peers, BRG__OPERATOR_MAX_PEERS);
    int n = total < BRG__OPERATOR_MAX_PEERS ? total : BRG__OPERATOR_MAX_PEERS, kept = 0;
    uint64_t retired = brg__io_clients_retired(io);
    *gone = retired > INT32_MAX ? INT32_MAX : (int)retired;
    for (int i = 0; i < n; i++) {
        if (peers[i].client && !peers[i].up)
            (*gone)++;
        else
            peers[kept++] = peers[i];
    }
    return kept;
}

static int
s_add_peer_counters(brg_msg_t *r, const brg__io_peer_stat_t *p)
{
    int rc = brg_msg_add_map(r, 14);
    rc |= s_kv_ref(r, "node", p->node);
    rc |= s_kv_str(r, "name", p->name);
    rc |= s_kv_bool(r, "up", p->up);
    rc |= s_kv_bool(r, "client", p->client);
    rc |= s_kv_bool(r, "in_session", p->in_session);
    rc |= s_kv_uint(r, "msgs_in", p->msgs_in);
    rc |= s_kv_uint(r, "msgs_out", p->msgs_out);
    rc |= s_kv_uint(r, "bytes_in", p->bytes_in);
    rc |= s_kv_uint(r, "bytes_out", p->bytes_out);
    rc |= s_kv_uint(r, "msgs_acked", p->msgs_acked);
    rc |= s_kv_uint(r, "queue_bytes", p->queue_bytes);
    rc |= s_kv_uint(r, "dropped_busy", p->dropped_busy);
    rc |= s_kv_uint(r, "dropped_down", p->dropped_down);
    rc |= s_kv_uint(r, "refused_unauthorized", p->refused_unauthorized);
    return rc;
}

static int
s_stats(brg_ctx_t *ctx, brg__io_t *io, const brg_msg_t *msg)
{
    brg_stats_t rt;
    brg_system_stats(brg_ctx_system(ctx), &rt);
    brg_node_stats_t st;
    brg__io_stats(io, &st, false); // the published snapshot: never blocks a worker
    brg__io_peer_stat_t *peers = calloc(BRG__OPERATOR_MAX_PEERS, sizeof *peers);
    if (peers == NULL)
        return brg_reply_error(ctx, BRG_ENOMEM);
    int gone;
    int n = s_peers(io, peers, &gone);
    const s_counter_t runtime[] = {
        {"actors_alive", rt.actors_alive},
        {"actors_spawned", rt.actors_spawned},
        {"actors_stopped", rt.actors_stopped},
        {"actors_failed", rt.actors_failed},
        {"messages_processed", rt.messages_processed},
        {"dead_letters", rt.dead_letters},
        {"mailbox_hwm", rt.mailbox_hwm},
        {"timers_active", rt.timers_active},
        {"watchdog_reports", rt.watchdog_reports},
        {"workers", rt.workers},
        {"blocking_threads", rt.blocking_threads},
    };
    brg_msg_t *r = brg_msg_new("stats");
    int rc = r ? BRG_OK : BRG_ENOMEM;
    if (r != NULL) {
        rc |= brg_msg_add_map(r, 4);
        rc |= s_kv_uint(r, "clients_gone", (uint64_t)gone);
        rc |= brg_msg_add_str(r, "runtime");
        rc |= s_add_counters(r, runtime, sizeof runtime / sizeof runtime[0]);
        rc |= brg_msg_add_str(r, "node");
        rc |= brg__operator_add_counters(r, &st);
        rc |= brg_msg_add_str(r, "peers");
        rc |= brg_msg_add_array(r, (uint32_t)n);
        for (int i = 0; i < n && rc == BRG_OK; i++)
            rc |= s_add_peer_counters(r, &peers[i]);
    }
    free(peers);
    return s_answer(ctx, msg, r, rc);
}

//  ---------------------------------------------------------------------------
//  stop

static int
s_stop(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_system_t *sys = brg_ctx_system(ctx);
    size_t pos = 0;
    brg_ref_t ref;
    char name[BRG_NAME_MAX + 1];
    brg_type_t t = brg_msg_peek(msg, 0);
    if (t == BRG_TYPE_EXT) {
        if (brg_msg_read_ref(msg, &pos, &ref) != BRG_OK)
            return brg_reply_error(ctx, BRG_EINVAL);
    } else if (t == BRG_TYPE_STR) {
        if (brg_msg_read_str_copy(msg, &pos, name, sizeof name) != BRG_OK || name[0] == '\0')
            return brg_reply_error(ctx, BRG_EINVAL);
        if (brg_whereis(sys, name, &ref) != BRG_OK)
            return brg_reply_error(ctx, BRG_ENOTFOUND);
    } else {
        return brg_reply_error(ctx, BRG_EINVAL);
    }
    brg_ref_t me = brg_self(ctx);
    if (ref.node_hi != me.node_hi || ref.node_lo != me.node_lo)
        return brg_reply_error(ctx, BRG_EINVAL); // only this node's actors
    if (ref.id == me.id)
        return brg_reply_error(ctx, BRG_EPERM); // the service answers stop, it is not stopped
    int rc = brg_actor_stop(sys, ref);
    if (rc != BRG_OK)
        return brg_reply_error(ctx, rc);
    char from[BRG_REF_STRLEN] = "nobody";
    if (!brg_ref_is_none(brg_msg_sender(msg)))
        brg_ref_format(brg_msg_sender(msg), from, sizeof from);
    brg_system_log(sys, BRG_LOG_NOTICE, "node", ref, "stopped by an operator request from %s",
                   from);
    brg_msg_t *r = brg_msg_new("stopped");
    rc = r ? brg_msg_add_ref(r, ref) : BRG_ENOMEM;
    return s_answer(ctx, msg, r, rc);
}

//  ---------------------------------------------------------------------------
//  tree and nodes: ask many, answer once.

typedef struct s_pending s_pending_t;

typedef struct s_part {
    s_pending_t *owner;
    brg_ref_t ref;               // the supervisor (tree) or the peer node (nodes)
    char name[BRG_NAME_MAX + 1]; // its registered name (tree) or node name (nodes)
    bool up, client;             // nodes: the peer's state
    bool asked;                  // an ask went out (its callback will come)
    int status;                  // BRG_OK or why there is no answer
    brg_msg_t *reply;            // tree: the which_children reply, owned
    uint64_t start_ns, rtt_ns;   // nodes: when the ping left, its round trip
} s_part_t;

struct s_pending {
    brg_msg_t *request; // a copy of the operator's request, answered with brg_reply_to
    bool tree;          // else nodes
    size_t n, left;     // parts, parts still waiting
    s_part_t parts[];
};

static void
s_pending_free(s_pending_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        brg_msg_destroy(&p->parts[i].reply);
    brg_msg_destroy(&p->request);
    free(p);
}

static int
s_tree_reply(const s_pending_t *p, brg_msg_t *r)
{
    int rc = brg_msg_add_array(r, (uint32_t)p->n);
    for (size_t i = 0; i < p->n && rc == BRG_OK; i++) {
        const s_part_t *s = &p->parts[i];
        rc |= brg_msg_add_map(r, 3);
        rc |= s_kv_ref(r, "ref", s->ref);
        rc |= s_kv_str(r, "name", s->name);
        if (s->status == BRG_OK && s->reply != NULL) {
            // The supervisor's own answer, [[id, ref|nil, restarts, state,
            // type], ...], byte for byte (supervisor.h BRG_SUP_TAG_WHICH).
            rc |= brg_msg_add_str(r, "children");
            rc |= brg_msg_add_raw(r, brg_msg_data(s->reply), brg_msg_size(s->reply));
        } else {
            rc |= s_kv_str(r, "error", brg_err_name(s->status));
        }
    }
    return rc;
}

static int
s_nodes_reply(const s_pending_t *p, brg_msg_t *r)
{
    int rc = brg_msg_add_array(r, (uint32_t)p->n);
    for (size_t i = 0; i < p->n && rc == BRG_OK; i++) {
        const s_part_t *s = &p->parts[i];
        rc |= brg_msg_add_map(r, 6);
        rc |= s_kv_ref(r, "node", s->ref);
        rc |= s_kv_str(r, "name", s->name);
        rc |= s_kv_bool(r, "up", s->up);
        rc |= s_kv_bool(r, "client", s->client);
        rc |= brg_msg_add_str(r, "rtt_us");
        if (s->status == BRG_OK && s->asked)
            rc |= brg_msg_add_uint(r, (s->rtt_ns + 500) / 1000);
        else
            rc |= brg_msg_add_nil(r);
        // Why there is no rtt: not asked (down, a client) or the ask's error.
        rc |= s_kv_str(r, "rtt_error", s->status == BRG_OK ? "" : brg_err_name(s->status));
    }
    return rc;
}

//  Answer once every part is settled; frees p. Thread: the service's.
static void
s_pending_finish(brg_ctx_t *ctx, s_pending_t *p)
{
    brg_msg_t *r = brg_msg_new(p->tree ? "tree" : "nodes");
    int rc = r ? (p->tree ? s_tree_reply(p, r) : s_nodes_reply(p, r)) : BRG_ENOMEM;
    s_answer(ctx, p->request, r, rc);
    s_pending_free(p);
}

//  brg_reply_fn of every part's ask.
static int
s_on_part(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    s_part_t *s = arg;
    s_pending_t *p = s->owner;
    s->status = status;
    if (status == BRG_OK) {
        if (p->tree)
            s->reply = brg_msg_dup(reply);
        else
            s->rtt_ns = s_now_ns() - s->start_ns;
    }
    if (--p->left > 0)
        return BRG_OK;
    if (status == BRG_ECLOSED)
        s_pending_free(p); // the service is stopping: nobody to answer
    else
        s_pending_finish(ctx, p);
    return BRG_OK;
}

static s_pending_t *
s_pending_new(const brg_msg_t *msg, bool tree, size_t n)
{
    s_pending_t *p = calloc(1, sizeof *p + n * sizeof p->parts[0]);
    if (p == NULL)
        return NULL;
    p->request = brg_msg_dup(msg);
    if (p->request == NULL) {
        free(p);
        return NULL;
    }
    p->tree = tree;
    p->n = n;
    for (size_t i = 0; i < n; i++) {
        p->parts[i].owner = p;
        p->parts[i].status = BRG_OK;
    }
    return p;
}

//  Send every part's ask; parts whose ask fails at once are settled with
//  that error. Answers at once when nothing is left to wait for.
static int
s_pending_start(brg_ctx_t *ctx, s_pending_t *p)
{
    p->left = p->n + 1; // + 1: none finishes it before every ask is out
    for (size_t i = 0; i < p->n; i++) {
        s_part_t *s = &p->parts[i];
        if (!p->tree && (!s->up || s->client)) {
            p->left--; // nothing to ping
            continue;
        }
        brg_msg_t *m = brg_msg_new(p->tree ? BRG_SUP_TAG_WHICH : "ping");
        int rc = BRG_ENOMEM;
        if (m != NULL) {
            s->start_ns = s_now_ns();
            s->asked = true;
            if (p->tree)
                rc = brg_ask(ctx, s->ref, &m, BRG__OPERATOR_WAIT_MS, s_on_part, s);
            else
                rc = brg_ask_named_at(ctx, s->ref, BRG_NODE_SERVICE, &m, BRG__OPERATOR_WAIT_MS,
                                      s_on_part, s);
        }
        if (rc != BRG_OK) {
            s->status = rc; // its callback never comes
            p->left--;
        }
    }
    if (--p->left == 0)
        s_pending_finish(ctx, p);
    return BRG_OK;
}

static int
s_tree(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_system_t *sys = brg_ctx_system(ctx);
    brg_actor_info_t *all;
    int total, listed = s_snapshot_actors(sys, &all, &total);
    if (listed < 0)
        return brg_reply_error(ctx, listed);
    size_t n = (size_t)listed, nsup = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].label, BRG_SUPERVISOR_LABEL) == 0)
            all[nsup++] = all[i];
    s_pending_t *p = s_pending_new(msg, true, nsup);
    if (p == NULL) {
        free(all);
        return brg_reply_error(ctx, BRG_ENOMEM);
    }
    for (size_t i = 0; i < nsup; i++) {
        p->parts[i].ref = all[i].ref;
        memcpy(p->parts[i].name, all[i].name, sizeof p->parts[i].name);
    }
    free(all);
    return s_pending_start(ctx, p);
}

static int
s_nodes(brg_ctx_t *ctx, brg__io_t *io, const brg_msg_t *msg)
{
    brg__io_peer_stat_t *peers = calloc(BRG__OPERATOR_MAX_PEERS, sizeof *peers);
    if (peers == NULL)
        return brg_reply_error(ctx, BRG_ENOMEM);
    int gone;
    size_t n = (size_t)s_peers(io, peers, &gone);
    s_pending_t *p = s_pending_new(msg, false, n);
    if (p == NULL) {
        free(peers);
        return brg_reply_error(ctx, BRG_ENOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        s_part_t *s = &p->parts[i];
        s->ref = peers[i].node;
        snprintf(s->name, sizeof s->name, "%s", peers[i].name);
        s->up = peers[i].up;
        s->client = peers[i].client;
    }
    free(peers);
    return s_pending_start(ctx, p);
}

//  ---------------------------------------------------------------------------

int
brg__operator_handle(brg_ctx_t *ctx, brg__io_t *io, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "actors"))
        return s_actors(ctx, msg);
    if (brg_msg_is(msg, "stats"))
        return s_stats(ctx, io, msg);
    if (brg_msg_is(msg, "stop"))
        return s_stop(ctx, msg);
    if (brg_msg_is(msg, "tree"))
        return s_tree(ctx, msg);
    if (brg_msg_is(msg, "nodes"))
        return s_nodes(ctx, io, msg);
    return BRG_UNHANDLED;
}
