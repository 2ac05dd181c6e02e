//  zmq_io - the node's I/O thread: every ZeroMQ socket, the peer table,
//  the outbound queue, sessions and reconnects (internal).
//
//  zmq_io.c is the only file of Brigade that includes <zmq.h>. node.c (the
//  public node API) drives it through these calls; the runtime reaches it
//  through the remote ops node.c plugs in (brg__io_send).
//
//  Threads. brg__io_new and brg__io_shutdown/destroy: the node's creating or
//  destroying thread. brg__io_send, find, peers, peer_up, endpoint, and the
//  published stats: any thread. brg__io_connect with a wait, and the fresh
//  stats: any thread that may block. The event callback runs on the I/O
//  thread, or on worker 0 while it runs the I/O loop (cfg.io_on_worker;
//  zmq_io.c, "I/O on a worker").
#ifndef BRG_TRANSPORT_ZMQ_IO_H
#define BRG_TRANSPORT_ZMQ_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brigade/node.h"
#include "wire.h"

typedef struct brg__io brg__io_t;

//  A peer's session came up (up = true) or ended (reason: the
//  brg__end_reason_name text). Called on the I/O thread, in the order the
//  sessions changed, after everything the peer delivered. It must not block.
typedef void (*brg__io_event_fn)(void *arg, bool up, brg_ref_t peer, const char *name,
                                 const char *reason);

//  Start the I/O thread: bind every cfg->listen endpoint (all on one ROUTER)
//  and dial every cfg->connect seed. cfg has been validated and its
//  defaults filled in (node.c). Returns NULL (logged) if a bind failed or
//  out of resources. The strings of cfg are copied.
brg__io_t *brg__io_new(brg_system_t *sys, const brg_node_config_t *cfg, brg__io_event_fn fn,
                       void *arg);

//  Flush what is queued (bounded by a linger of one second per peer), say
//  BYE to every peer, stop reconnecting, join the I/O thread. Idempotent.
void brg__io_shutdown(brg__io_t *self);

//  Shut down if not done, then free everything; *self_p = NULL.
void brg__io_destroy(brg__io_t **self_p);

//  The remote ops' send (runtime/remote.h): queue msg for `to` (or the name
//  to_name on node `to`). Takes ownership of *msg_p and sets it to NULL.
//  BRG_OK, BRG_EBUSY (over the peer's budget, a user message: dead letter
//  BRG_DEAD_REMOTE_BUSY), BRG_ENETWORK (node unknown or down: dead letter
//  BRG_DEAD_REMOTE_DOWN). Never blocks. Thread: any.
int brg__io_send(brg__io_t *self, brg_ref_t to, const char *to_name, brg_msg_t **msg_p);

//  The remote ops' gate_wait (runtime/remote.h, "Busy peers"): a sender is
//  about to be suspended on a peer's gate; record it and say whether the
//  peer is still over the low-water mark (half of peer_busy_bytes). false
//  for a peer that is gone. Takes no lock. Thread: any (a worker, under the
//  runtime's bp lock).
bool brg__io_gate_wait(brg__io_t *self, uint32_t gate);

//  As brg_node_endpoint, brg_node_connect, brg_node_disconnect,
//  brg_node_find and brg_node_peers (node.h).
int brg__io_endpoint(brg__io_t *self, int i, char *buf, size_t len);
int brg__io_connect(brg__io_t *self, const char *endpoint, int timeout_ms, brg_ref_t *peer);
int brg__io_disconnect(brg__io_t *self, brg_ref_t peer);
int brg__io_find(brg__io_t *self, const char *name, brg_ref_t *peer);
int brg__io_peers(brg__io_t *self, brg_ref_t *peers, int max);

//  Mesh: nodes a peer told this node about (its node service got a
//  "brg.peers" message; PROTOCOL.md section 13). The entries are copied
//  and checked on the I/O thread (ignored when cfg.mesh is false).
//  BRG_EINVAL past BRG__WIRE_PEERS_MAX entries, BRG_ENOMEM. Thread: any.
int brg__io_learn(brg__io_t *self, const brg__wire_peer_t *peers, uint32_t n);
//  Count n gossip entries refused before they reached the I/O thread
//  (malformed "brg.peers" messages). Thread: any.
void brg__io_gossip_refused(brg__io_t *self, uint32_t n);

//  True when the session with the node of `peer` is up now. Thread: any.
bool brg__io_peer_up(brg__io_t *self, brg_ref_t peer);

//  One peer as an operator sees it (brgctl stats and nodes).
typedef struct brg__io_peer_stat {
    brg_ref_t node; // its node ref (id 0)
    char name[BRG_NODE_NAME_MAX + 1];
    bool up;               // its session is up now
    bool client;           // its last session was a client's (role "client")
    uint64_t queue_bytes;  // queued for it, within peer_queue_bytes
    uint64_t dropped_busy; // sends to it refused past peer_queue_bytes
    uint64_t dropped_down; // sends to it while it was down
    //  Its current session, as the I/O thread last published it (before its
    //  last sleep); all 0 and in_session false when it has none.
    bool in_session;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out, msgs_acked, refused_unauthorized;
} brg__io_peer_stat_t;

//  True when `node`'s session is (or last was) a client's: an admin client
//  reaches the node service, which refuses it what only nodes may ask
//  (remote spawn, the mesh's brg.peers). Thread: any.
bool brg__io_peer_is_client(brg__io_t *self, brg_ref_t node);

//  Every peer this node has known (up or down, clients included): writes at
//  most max entries, returns how many there are. Never blocks (the per-
//  session counters are the last published ones). Thread: any.
int brg__io_peer_stats(brg__io_t *self, brg__io_peer_stat_t *out, int max);

//  Ended client sessions taken out of the peer table so far (zmq_io.c,
//  s_peer_retire). Thread: any.
uint64_t brg__io_clients_retired(brg__io_t *self);

//  The counters. fresh: ask the I/O thread for a snapshot taken now and wait
//  for it (a thread that may block); else the one it published last (any
//  thread, never blocks).
void brg__io_stats(brg__io_t *self, brg_node_stats_t *stats, bool fresh);

//  Keys and exports, as brg_node_public_key, brg_node_allow_key,
//  brg_node_revoke_key, brg_node_reload_keys and brg_node_export (node.h).
//  Thread: any.
int brg__io_public_key(brg__io_t *self, char *buf, size_t len);
int brg__io_allow_key(brg__io_t *self, const char *name, const char *key, brg_key_role_t role);
int brg__io_revoke_key(brg__io_t *self, const char *what);
int brg__io_reload_keys(brg__io_t *self);
int brg__io_export(brg__io_t *self, const char *name, bool on);

//  A CURVE key pair (libsodium through libzmq): 0, or -1 when libzmq has no
//  CURVE. Thread: any.
int brg__io_keygen(uint8_t pub[32], uint8_t sec[32]);

//  A tcp:// endpoint whose host is a loopback address (127.0.0.0/8, [::1],
//  localhost, lo).
bool brg__io_ep_is_loopback(const char *ep);

#endif
