//  node - a system on the network: listen, connect, and the same send, ask,
//  names, links and monitors across processes and machines (ZeroMQ).
//
//  A node is a brg_system_t with a transport plugged in. Once it exists,
//  every ref whose node part is another node (a ref read from a message, a
//  reply's sender, brg_node_find) works with brg_send, brg_ask, brg_reply,
//  brg_forward, brg_link, brg_monitor, brg_exit and brg_actor_stop exactly
//  as a local one. A node itself is named by a ref whose id is 0 (its
//  "node ref"): brg_ref_t{node UUID, 0}.
//
//  Guarantees (docs/PROTOCOL.md "Guarantees"): messages from one actor to
//  another arrive in the order sent; each at most once; nothing is lost
//  without a count (dead letters with a reason, lost_in_flight); when a
//  connection to a node is lost every local actor linked to or monitoring
//  an actor there gets EXIT/DOWN with reason noconnection after everything
//  that node had delivered, and every pending ask to it fails at once with
//  BRG_ENETWORK. A send never blocks: past the per-node outbound budget it
//  returns BRG_EBUSY (a counted dead letter); control signals are never
//  dropped for space.
//
//  Threads. brg_node_new and brg_node_stats may be called from any thread
//  that is not one of the system's own; the other calls from any thread. One
//  thread at a time owns every socket of a node: its I/O thread, or worker 0
//  (cfg.io_on_worker). The node is destroyed with its
//  system (brg_system_destroy flushes, says BYE to every peer, joins the
//  I/O thread); there is no separate destroy.

#ifndef BRG_NODE_H
#define BRG_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "kind.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

typedef struct brg_node brg_node_t;

#define BRG_NODE_MAX_ENDPOINTS 8
#define BRG_NODE_NAME_MAX 63

//  The name of the node service actor every node runs. It answers asks
//  tagged "ping" (reply "pong"), "info" (a map: name, node, endpoints,
//  peers, counters), "whereis" with a name (reply: the ref, or error
//  BRG_ENOTFOUND), "spawn" (brg_spawn_remote, below), and the operator
//  requests "actors", "tree", "stats", "nodes" and "stop"
//  (docs/PROTOCOL.md section 20), which clients reach only with an admin
//  key.
#define BRG_NODE_SERVICE "brg.node"

//  Tags of node events (brg_node_subscribe, brg_monitor_node): payload
//  [node ref, node name, reason text]. Reasons of nodedown: "closed",
//  "timeout", "protocol", "bye", "replaced", "local".
#define BRG_TAG_NODEUP "brg.nodeup"
#define BRG_TAG_NODEDOWN "brg.nodedown"

typedef struct brg_node_config {
    const char *name;    // this node's name (required, 1..63 bytes)
    const char *cluster; // peers of another cluster are refused (default "brigade")
    //  Endpoints to bind: "tcp://127.0.0.1:7400", "tcp://*:0" (a free port:
    //  read the bound one with brg_node_endpoint), "ipc:///path",
    //  "inproc://name". NULL-terminated early or BRG_NODE_MAX_ENDPOINTS.
    const char *listen[BRG_NODE_MAX_ENDPOINTS];
    //  The endpoint peers are told to connect back to (NAT, containers);
    //  default: the first bound endpoint.
    const char *advertise;
    //  Seeds to connect to at start, as brg_node_connect takes them. A
    //  tcp:// seed whose host is a DNS name (it has a letter and is not an
    //  IP literal, "*" or libzmq's "source;host" form) is resolved to every
    //  address (IPv4 and IPv6) and each is dialed with the same key, so a
    //  name that stands for several nodes reaches them all; it is resolved
    //  again every reconnect_max_ms and when none of its addresses is up
    //  (new addresses are dialed, vanished ones are not redialed). Names
    //  are resolved on a thread of the node, never on the caller's.
    const char *connect[BRG_NODE_MAX_ENDPOINTS];
    uint32_t tick_ms;          // heartbeat interval (default 1000)
    uint32_t timeout_ms;       // silence that means the node is down (default 10000)
    uint32_t handshake_ms;     // connect + HELLO without WELCOME (default 5000)
    uint32_t reconnect_max_ms; // backoff ceiling for seeds (default 30000)
    size_t peer_queue_bytes;   // outbound budget per peer (default 64 MiB)
    //  Busy mark per peer (default 1 MiB; 0: off; at most half of
    //  peer_queue_bytes: a larger value acts as that), as Erlang's
    //  dist_buf_busy_limit: an actor whose send finds more than this queued
    //  for the peer is suspended after that behaviour call (its worker runs
    //  other actors) until the peer's queue drains to half of it, or the
    //  peer is lost. Its sends succeed meanwhile (they are checked against
    //  the budget as always: one call that sends more than the budget by
    //  itself still meets BRG_EBUSY). Not held back, so meeting the budget
    //  and BRG_EBUSY instead: threads outside actors (brg_system_send from
    //  the caller's threads), and an actor that other actors are suspended
    //  on by mailbox backpressure (it must run to drain for them).
    //  docs/PROTOCOL.md section 21.
    size_t peer_busy_bytes;
    size_t max_frame; // largest inbound frame (default 16 MiB + 64 KiB)
    //  Security (docs/PROTOCOL.md section 22). Every tcp:// endpoint, bound
    //  or dialed, uses CURVE: encrypted, and only keys on the allow-list get
    //  in. ipc:// and inproc:// stay plain (the file system's permissions
    //  and the process boundary guard them).
    //  key_dir: this node's key pair (node.key, node.key_secret: made on
    //  first start, reused after) and its allow-list (allowed/*.key).
    //  Default: $BRG_KEY_DIR, else $XDG_CONFIG_HOME/brigade, else
    //  $HOME/.config/brigade: one per user, so a user's nodes on one machine
    //  share a key pair and admit each other with no setup. Only read when
    //  a tcp:// endpoint is used and CURVE is on.
    const char *key_dir;
    //  Plain tcp:// instead of CURVE: refused (brg_node_new fails, logged)
    //  unless every tcp:// endpoint, bound or dialed, is a loopback address
    //  (127.0.0.0/8, [::1], localhost).
    bool insecure_loopback;
    //  Full mesh (default true, like Erlang's default; false is Erlang's
    //  `-connect_all false`): nodes tell each other the nodes they have
    //  sessions with, and this node dials every node it learns of that it
    //  has no session with (docs/PROTOCOL.md section 13, "Mesh"). A
    //  learned node is dialed after a random delay, at most 4 dials at a
    //  time, and dropped after 3 attempts that never came up. Over tcp://
    //  the learned node must hold a key this node trusts: the node key of
    //  the allow-list named like the node, else this node's own key (one
    //  key directory per user: the default). false: this node neither
    //  tells its peers about others nor dials what it is told; it still
    //  accepts every session a peer opens to it.
    bool mesh;
    //  Run the node's I/O on worker 0 instead of on the node's own I/O
    //  thread (default true; docs/ARCHITECTURE.md section 10d, "I/O on a
    //  worker"): when worker 0 has nothing to run it waits in the poll on
    //  the node's sockets, so a message from the network runs on the thread
    //  that read it and its reply is written by that thread, one thread
    //  hand-off less each way (a remote round trip 1.6x faster,
    //  docs/PERFORMANCE.md). While worker 0 runs actors it serves the
    //  sockets between activations (every 64 at least, and after each one
    //  that sent to another node); while the traffic is heavy (a stream) it
    //  hands its actors to the other workers and serves the sockets only.
    //  While worker 0 is inside a long behaviour call, the node's I/O
    //  thread serves the sockets every 10 ms, so such a call delays the
    //  node's traffic by up to 10 ms instead of by its length (one wake-up
    //  of that thread every 10 ms is the idle cost). false: the node's I/O
    //  thread keeps the sockets for the node's whole life. Ignored (logged)
    //  on a system without worker threads (deterministic mode).
    bool io_on_worker;
} brg_node_config_t;

BRG_EXPORT void brg_node_config_init(brg_node_config_t *cfg);

//  Make sys a node: start its I/O thread, bind cfg->listen, dial
//  cfg->connect, start the node service actor. Returns NULL on failure
//  (bad config, an endpoint that cannot be bound: logged with the reason),
//  or if sys already is a node. sys must outlive nothing: the node ends with
//  sys.
BRG_EXPORT brg_node_t *brg_node_new(brg_system_t *sys, const brg_node_config_t *cfg);

//  The node of a system, or NULL.
BRG_EXPORT brg_node_t *brg_system_node_of(brg_system_t *sys);

//  This node's ref (id 0).
BRG_EXPORT brg_ref_t brg_node_self(brg_node_t *node);

//  The i-th bound endpoint as bound (ports resolved). BRG_ENOTFOUND past the end.
BRG_EXPORT int brg_node_endpoint(brg_node_t *node, int i, char *buf, size_t len);

//  Dial a peer at endpoint (asynchronous: the result is a nodeup event).
//  With a timeout_ms > 0 and *peer non-NULL, wait until the session is up
//  and set *peer to its node ref: BRG_ETIMEDOUT, BRG_ENETWORK (refused),
//  BRG_EDEADLK on one of the system's own threads. A DNS name (see
//  cfg.connect) dials every address it resolves to; the wait ends when the
//  first of them is up (*peer: that node), or BRG_ENETWORK when the name
//  does not resolve or every address refused. Two endpoints that reach
//  one node never fight: the session that came up first stays, the other
//  dial stands by until that node's session is down.
BRG_EXPORT int brg_node_connect(brg_node_t *node, const char *endpoint, int timeout_ms,
                                brg_ref_t *peer);

//  End the session with a peer (BYE) and stop reconnecting to it.
BRG_EXPORT int brg_node_disconnect(brg_node_t *node, brg_ref_t peer);

//  The node ref of a connected peer by its name. BRG_ENOTFOUND.
BRG_EXPORT int brg_node_find(brg_node_t *node, const char *name, brg_ref_t *peer);

//  Peers whose session is up: writes at most max refs, returns how many are up.
BRG_EXPORT int brg_node_peers(brg_node_t *node, brg_ref_t *peers, int max);

//  This actor receives BRG_TAG_NODEUP / BRG_TAG_NODEDOWN for every peer
//  (until it stops, or on=false).
BRG_EXPORT int brg_node_subscribe(brg_ctx_t *ctx, bool on);

//  Watch one node: exactly one BRG_TAG_NODEDOWN comes when its session
//  ends (at once if it is not up now).
BRG_EXPORT int brg_monitor_node(brg_ctx_t *ctx, brg_ref_t node);

//  Names on other nodes: brg_send_named_at, brg_ask_named_at and
//  brg_system_ask_named_at (registry.h) take a node ref from here.

//  Look up `name` on `node` from outside the system's threads (an ask to its
//  node service). BRG_ENOTFOUND, BRG_ETIMEDOUT, BRG_ENETWORK, BRG_EDEADLK.
BRG_EXPORT int brg_node_whereis(brg_node_t *node, brg_ref_t peer, const char *name, int timeout_ms,
                                brg_ref_t *ref);

//  ---------------------------------------------------------------------------
//  Remote spawn (docs/PROTOCOL.md section 20, "spawn").
//
//  Only kinds (brigade/kind.h) the other node registered with
//  BRG_KIND_REMOTE can be spawned there, by name, with init arguments; the
//  request is an ask to that node's service, so only a peer with a node key
//  may make it (a client key is refused with BRG_EPERM).

//  The result of brg_spawn_remote. Called exactly once, in the spawning
//  actor, as a brg_ask callback is: status BRG_OK and child the new actor's
//  ref, or an error and child BRG_REF_NONE: BRG_ENOTFOUND (no such kind
//  there), BRG_EPERM (the kind is not remote-spawnable, or this node may
//  not ask), BRG_EEXIST (the name is taken there), BRG_EINVAL (the peer
//  found the request malformed), BRG_ENOMEM, BRG_EBUSY, BRG_ENETWORK (the
//  node is unreachable or was lost), BRG_ETIMEDOUT, BRG_ECLOSED (this
//  actor is stopping), BRG_EPROTO (a malformed reply).
//  A negative return fails the actor.
typedef int (*brg_spawn_fn)(brg_ctx_t *ctx, int status, brg_ref_t child, void *arg);

//  Spawn an actor of kind `kind` on node `node` (a node ref; its id is
//  ignored), from inside a behaviour. args: the init arguments (its
//  payload is copied into the request; NULL for none). opts (may be NULL):
//  - BRG_SPAWN_LINK: the child is linked to this actor before it can run
//    (it sends its LINK ahead of anything else), so an init that fails
//    gives this actor the child's EXIT, after fn's call;
//  - BRG_SPAWN_MONITOR: the child is watched by this actor from before it
//    runs; the monitor id is written to *opts->monitor now, and the DOWN
//    (real reason, or noconnection if the node is lost) comes after fn's
//    call with BRG_OK; if fn gets an error, no DOWN comes;
//  - name: the child is registered under it on that node.
//  Deadline: if timeout_ms passes before the answer, fn gets
//  BRG_ETIMEDOUT, yet the child may exist. With BRG_SPAWN_LINK, the reply
//  that comes late ends it (OTP's spawn_request_abandon): this actor
//  unlinks it and sends it BRG_EXIT_KILLED, so no EXIT of it comes, and
//  logs a notice. Without a link it lives on (named, it can be found); a
//  monitor is not set up (its DOWN is dropped). Returns BRG_OK (fn will be called) or, and
//  fn is never called: BRG_EINVAL (a kind name not 1..BRG_KIND_NAME_MAX
//  bytes, a bad name, flags other than LINK/MONITOR, timeout_ms < 0, or
//  node is this node: use brg_spawn_kind), BRG_ENOMEM, BRG_ECLOSED.
BRG_EXPORT int brg_spawn_remote(brg_ctx_t *ctx, brg_ref_t node, const char *kind,
                                const brg_msg_t *args, const brg_kind_spawn_opts_t *opts,
                                int timeout_ms, brg_spawn_fn fn, void *arg);

//  Spawn a kind on node from outside the system's threads and wait for the
//  result (no link or monitor: there is no actor to link). On BRG_OK
//  *child (if not NULL) is the new actor. Errors as brg_spawn_fn's, plus
//  BRG_EDEADLK on one of the system's own threads. Thread: any thread that
//  is not the system's; blocks up to timeout_ms.
BRG_EXPORT int brg_system_spawn_remote(brg_system_t *sys, brg_ref_t node, const char *kind,
                                       const brg_msg_t *args, const char *name, int timeout_ms,
                                       brg_ref_t *child);

//  A supervisor's child on another node (brigade/supervisor.h). Give a
//  child spec start = brg_child_start_remote and arg = a brg_remote_child_t
//  (not copied: keep it, and args, valid while the supervisor lives):
//
//      brg_remote_child_t rc;                  // static, or in the caller's state
//      brg_remote_child_init(&rc);
//      rc.node = peer;  rc.kind = "worker";
//      spec.start = brg_child_start_remote;  spec.arg = &rc;
//
//  The supervisor's child is then a local proxy (its ref is what
//  brg_supervisor_which reports), linked to the supervisor, which spawns
//  the kind on rc.node with BRG_SPAWN_LINK | BRG_SPAWN_MONITOR and lives
//  exactly as long as the remote child: the remote child's exit reason
//  (noconnection when its node is lost) is the proxy's, so the supervisor
//  restarts per its strategy; stopping the proxy stops the remote child
//  with the same reason. A remote spawn that fails (node unreachable, kind
//  unknown or not remote-spawnable) fails the proxy with that code: each
//  attempt counts against the supervisor's intensity, so a node that stays
//  unreachable makes the supervisor give up. Messages sent to the proxy
//  (by the spec's local name, say) are forwarded to the remote child once
//  it exists, and are unhandled dead letters before. docs/SUPERVISION.md.
typedef struct brg_remote_child {
    brg_ref_t node;        // the node (its id is ignored)
    const char *kind;      // a kind registered there with BRG_KIND_REMOTE
    const brg_msg_t *args; // init arguments (payload), or NULL
    const char *name;      // optional: registered name of the child on that node
    int timeout_ms;        // the spawn's deadline (0: 5000)
} brg_remote_child_t;

BRG_EXPORT void brg_remote_child_init(brg_remote_child_t *rc);

//  A brg_child_start_fn (brigade/supervisor.h) for a brg_remote_child_t arg.
//  Errors: BRG_EINVAL (no kind), then those of brg_spawn.
//  Thread: the supervisor's.
BRG_EXPORT int brg_child_start_remote(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args,
                                      brg_ref_t *child);

//  ---------------------------------------------------------------------------
//  Crash isolation: a kind run in a child process of its own, as a
//  supervisor's child (docs/SUPERVISION.md section 14).
//
//  Give a child spec start = brg_child_start_isolated and arg = a
//  brg_isolated_child_t (not copied: keep it, and args, valid while the
//  supervisor lives). Every start runs a fresh process (a proc actor,
//  brigade/proc.h) from argv, waits for the node it starts to connect to
//  this one, and spawns `kind` there, linked (brg_spawn_remote). The
//  supervisor's child is a local proxy, linked to the supervisor, that
//  forwards what it is sent to the remote actor (the spec's local name
//  reaches it), and exits:
//  - when the process ends: with the proc actor's reason, which names the
//    status or signal ("process 4242 killed by signal 11 (SIGSEGV)"); the
//    node session's noconnection that comes with it waits up to 1 s for
//    that reason, then is taken as is;
//  - when the remote actor exits: with its reason (then the process is
//    sent SIGTERM, and SIGKILL after term_timeout_ms);
//  - when the supervisor stops it: with that reason, which also reaches the
//    remote actor (link) and the process (SIGTERM, then SIGKILL);
//  - when the start fails: no node within start_timeout_ms
//    (BRG_ETIMEDOUT), or the spawn is refused (its code): a failed start,
//    counted against the supervisor's intensity, as OTP counts one.
//  The child program makes its node with brg_node_config_from_parent, then
//  registers `kind` with BRG_KIND_REMOTE. This node must listen on an
//  ipc:// or tcp:// endpoint (its first one is given to the child).
typedef struct brg_isolated_child {
    brg_node_t *node;        // this node
    const char *const *argv; // the child program and its arguments, NULL-terminated
    const char *const *env;  // optional: extra "NAME=value" entries
    const char *kind;        // the kind to run there (BRG_KIND_REMOTE)
    const brg_msg_t *args;   // its init arguments (payload), or NULL
    const char *name;        // optional: the actor's registered name in the child
    int start_timeout_ms;    // process, node and spawn (0: 10000)
    int term_timeout_ms;     // SIGTERM to SIGKILL (0: 5000)
} brg_isolated_child_t;

BRG_EXPORT void brg_isolated_child_init(brg_isolated_child_t *ic);

//  A brg_child_start_fn for a brg_isolated_child_t arg. Errors: BRG_EINVAL
//  (no node, argv or kind; this node has no ipc:// or tcp:// endpoint),
//  then those of brg_spawn and brg_proc_spawn. Thread: the supervisor's.
BRG_EXPORT int brg_child_start_isolated(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args,
                                        brg_ref_t *child);

//  In a program started by brg_child_start_isolated: fill cfg (after
//  brg_node_config_init) with the node name, listen endpoint and seed (the
//  parent) the parent chose, and watch the parent's lifeline
//  (brg_proc_lifeline). Returns BRG_OK, BRG_ENOTFOUND (not started that
//  way), BRG_EINVAL (a malformed environment). The strings cfg points to
//  are static. Thread: call it once, from main, before other threads read
//  the environment.
BRG_EXPORT int brg_node_config_from_parent(brg_node_config_t *cfg);

typedef struct brg_node_stats {
    uint32_t peers_up;
    uint64_t sessions_started, sessions_ended;
    uint64_t frames_in, frames_out, msgs_in, msgs_out, bytes_in, bytes_out;
    uint64_t dropped_busy;        // sends refused past peer_queue_bytes
    uint64_t busy_waits;          // actors suspended on a peer past peer_busy_bytes
    uint64_t dropped_unreachable; // sends to unknown or down nodes
    uint64_t dead_on_session_end; // queued, never sent, when a session ended
    uint64_t lost_in_flight;      // sent, never acked, when a session ended
    uint64_t rejected_frames;     // malformed or out-of-session frames
    uint64_t handshakes_failed;
    uint64_t reconnect_attempts;
    uint64_t refused_keys;         // CURVE handshakes refused: the key is not allowed
    uint64_t refused_handshakes;   // tcp handshakes that failed: plaintext to a CURVE
                                   // listener, a wrong server key, a mechanism mismatch
    uint64_t refused_unauthorized; // envelopes refused for the key's role (not exported)
    uint64_t gossip_learned;       // mesh: nodes learned from peers and queued to be dialed
    uint64_t gossip_refused;       // mesh: gossip entries refused (own node, a client, an
                                   // endpoint that cannot be dialed, no trusted key, limits)
} brg_node_stats_t;

BRG_EXPORT void brg_node_stats(brg_node_t *node, brg_node_stats_t *stats);

//  ---------------------------------------------------------------------------
//  Keys and permissions (docs/PROTOCOL.md section 22).
//
//  A key is a CURVE public key, 32 bytes, written as 40 characters of Z85.
//  Its role says what a peer holding it may do: a node key may do
//  everything (the node's own key always may: nodes of one deployment may
//  share a key directory); a client key may only send and ask (kinds 0-2)
//  to the names brg_node_export made reachable, never the node service,
//  and its HELLO must say role "client". An admin key (an operator's:
//  brgctl) is a client key that may also send and ask to every name,
//  the node service included, so it may use the operator requests
//  (actors, tree, stats, nodes, stop; docs/PROTOCOL.md section 20); it
//  may not send to actors by id nor send control kinds, and its HELLO must
//  say role "client" too.
//
//  Dialing over CURVE needs the peer's public key: an endpoint may be
//  written KEY@tcp://host:port (40 characters of Z85) or NAME@tcp://host:port
//  (a node key of the allow-list by its name); without one, the peer is
//  expected to hold this node's own key.

typedef enum { BRG_KEY_NODE = 1, BRG_KEY_CLIENT = 2, BRG_KEY_ADMIN = 3 } brg_key_role_t;

#define BRG_KEY_TEXT 41 // a key in Z85 with its terminating zero

//  This node's public key in Z85 (buf of BRG_KEY_TEXT bytes). BRG_ENOTFOUND
//  when the node uses no CURVE (no tcp:// endpoint, or insecure_loopback).
BRG_EXPORT int brg_node_public_key(brg_node_t *node, char *buf, size_t len);

//  Let a key in, as `role`, named `name` (1..63 bytes, no '@'); a key that
//  is in already gets the new name and role. Takes effect for the next
//  connection handshake. BRG_EINVAL (not a key, a bad name or role).
//  Thread: any.
BRG_EXPORT int brg_node_allow_key(brg_node_t *node, const char *name, const char *key,
                                  brg_key_role_t role);

//  Take a key out (`what`: the key in Z85, or a name: every key of that
//  name). Every session authenticated with it ends now (its peer is down,
//  reason "revoked") and its next handshake is refused. Returns the number
//  of keys removed, or BRG_ENOTFOUND. Thread: any.
BRG_EXPORT int brg_node_revoke_key(brg_node_t *node, const char *what);

//  Read key_dir/allowed again: new certificates are let in, keys whose file
//  is gone are revoked (as brg_node_revoke_key); keys allowed by API stay.
//  brigade-node calls it on SIGHUP. Returns the number of certificates
//  read, or BRG_ENOTFOUND (no such directory). Thread: any.
BRG_EXPORT int brg_node_reload_keys(brg_node_t *node);

//  Clients may (on) or may not (off) send and ask to the actor registered
//  as `name` on this node. Nothing is exported at first; BRG_NODE_SERVICE
//  and other names that start with "brg." cannot be (BRG_EPERM).
//  Thread: any.
BRG_EXPORT int brg_node_export(brg_node_t *node, const char *name, bool on);

//  Make a key pair and write it as a certificate (CZMQ's zcert format, so
//  other ZeroMQ tools read it): `path` gets the public certificate, `path`
//  + "_secret" the secret one (mode 0600). name and role go into its
//  metadata. key (optional, BRG_KEY_TEXT bytes) receives the public key in
//  Z85. BRG_ESYS (cannot write), BRG_EINVAL. Thread: any.
BRG_EXPORT int brg_keygen(const char *path, const char *name, brg_key_role_t role, char *key,
                          size_t key_len);

#endif
