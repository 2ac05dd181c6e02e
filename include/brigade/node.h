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
//  I/O thread per node owns every socket. The node is destroyed with its
//  system (brg_system_destroy flushes, says BYE to every peer, joins the
//  I/O thread); there is no separate destroy.

#ifndef BRG_NODE_H
#define BRG_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

typedef struct brg_node brg_node_t;

#define BRG_NODE_MAX_ENDPOINTS 8
#define BRG_NODE_NAME_MAX 63

//  The name of the node service actor every node runs. It answers asks
//  tagged "ping" (reply "pong"), "info" (a map: name, node, endpoints,
//  peers, counters) and "whereis" with a name (reply: the ref, or error
//  BRG_ENOTFOUND).
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
    //  Seeds to connect to at start (host names resolve to every address).
    const char *connect[BRG_NODE_MAX_ENDPOINTS];
    uint32_t tick_ms;          // heartbeat interval (default 1000)
    uint32_t timeout_ms;       // silence that means the node is down (default 10000)
    uint32_t handshake_ms;     // connect + HELLO without WELCOME (default 5000)
    uint32_t reconnect_max_ms; // backoff ceiling for seeds (default 30000)
    size_t peer_queue_bytes;   // outbound budget per peer (default 64 MiB)
    size_t max_frame;          // largest inbound frame (default 16 MiB + 64 KiB)
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
//  BRG_EDEADLK on one of the system's own threads.
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

typedef struct brg_node_stats {
    uint32_t peers_up;
    uint64_t sessions_started, sessions_ended;
    uint64_t frames_in, frames_out, msgs_in, msgs_out, bytes_in, bytes_out;
    uint64_t dropped_busy;        // sends refused past peer_queue_bytes
    uint64_t dropped_unreachable; // sends to unknown or down nodes
    uint64_t dead_on_session_end; // queued, never sent, when a session ended
    uint64_t lost_in_flight;      // sent, never acked, when a session ended
    uint64_t rejected_frames;     // malformed or out-of-session frames
    uint64_t handshakes_failed;
    uint64_t reconnect_attempts;
} brg_node_stats_t;

BRG_EXPORT void brg_node_stats(brg_node_t *node, brg_node_stats_t *stats);

#endif
