//  session - one peer's session: handshake, sequence numbers, liveness,
//  and the links, monitors and asks that cross it (internal).
//
//  A pure state machine: no sockets, no clock of its own, no threads. The
//  I/O thread (zmq_io.c) owns every session and calls these functions with
//  the time; the tests drive two sessions against each other through the
//  codec with a loopback double. Everything a session wants done comes out
//  through brg__session_io_t callbacks, called synchronously from inside
//  the call that caused them.
//
//  Directions. Between two nodes each direction is its own connection: our
//  outbox (we sent HELLO, the peer answers WELCOME on it) carries our
//  BATCHes and TICKs; the peer's outbox into our inbox (it sent HELLO, we
//  answered WELCOME) carries theirs. The session is UP when both are
//  handshaked (a client session has only the inbound one: our frames to a
//  client go back through the inbox ROUTER). Sequence numbers count BATCH
//  frames per direction from 1; a gap ends the session.
//
//  Tables (the per-node index of links and monitors, PROTOCOL.md
//  "Node loss"). Updated as envelopes cross, in either direction, in the
//  order they cross:
//    links    (local L, remote R)        + LINK out or in; - UNLINK or EXIT either way
//    watching (local W, remote R, mon)   + MONITOR out;    - DEMONITOR out, DOWN in
//    watched  (local T, remote W, mon)   + MONITOR in;     - DEMONITOR in, DOWN out
//    asks     (local A, corr)            + request out;    - REPLY / REPLY_ERROR in
//  When the session ends, every entry is answered once, after everything
//  the peer delivered: EXIT noconnection to each L (from R), DOWN
//  noconnection to each W, DEMONITOR to each T (from W), REPLY_ERROR
//  BRG_ENETWORK to each A. Tables are bounded (cfg.max_table entries each);
//  an ask past the bound loses only its fast failure (it still times out),
//  a LINK or MONITOR past the bound is answered at once as if the session
//  had ended for it (and counted): one going out is not sent and its local
//  sender gets EXIT/DOWN noconnection; one coming in is not delivered and
//  the peer's sender gets EXIT/DOWN noconnection from the target back over
//  the wire.
#ifndef BRG_TRANSPORT_SESSION_H
#define BRG_TRANSPORT_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "remote.h"
#include "wire.h"

typedef enum {
    BRG__SESS_CONNECTING, // our HELLO sent and/or theirs awaited
    BRG__SESS_UP,         // both directions handshaked (client: the inbound one)
    BRG__SESS_ENDED       // sticky: a new session is a new object
} brg__sess_state_t;

//  Why a session ended (logged, counted, and given to node-down watchers).
typedef enum {
    BRG__END_NONE = 0,
    BRG__END_CLOSED,   // the connection closed (peer process gone)
    BRG__END_TIMEOUT,  // nothing heard for timeout_ms, or no WELCOME in time
    BRG__END_PROTOCOL, // malformed frame, sequence gap, refused handshake
    BRG__END_BYE,      // the peer said goodbye (orderly shutdown)
    BRG__END_REPLACED, // a new HELLO from the same node with another session id
    BRG__END_LOCAL,    // we ended it (disconnect, shutdown)
    BRG__END_REVOKED   // the key the peer proved was revoked (ERROR 4 is sent)
} brg__end_reason_t;

const char *brg__end_reason_name(brg__end_reason_t reason);

typedef struct brg__session_cfg {
    uint8_t node[16];                     // our node UUID
    char name[BRG__WIRE_NAME_MAX + 1];    // our node name
    char cluster[BRG__WIRE_NAME_MAX + 1]; // our cluster
    char ep[BRG__WIRE_EP_MAX + 1];        // our advertised endpoint ("" for none)
    uint32_t tick_ms;                     // TICK interval (default 1000)
    uint32_t timeout_ms;                  // silence that ends a session (default 10000)
    uint32_t handshake_ms;                // HELLO without WELCOME (default 5000)
    uint32_t max_table;                   // entries per table (default 1 Mi)
    uint32_t client_idle_ms;              // silence that ends a client session (default 600000)
    uint64_t sess;                        // this session's id: set a fresh random one before
                                          // each brg__session_new (0: derived from the time)
    bool client_key;                      // the peer authenticated with a client key: its
                                          // HELLO must say role "client" (else ERROR 4)
    bool probe;                           // an initiator's HELLO says feature "probe" (a dial
                                          // that must not displace a live session, zmq_io.c)
    brg__wire_limits_t limits;
} brg__session_cfg_t;

void brg__session_cfg_default(brg__session_cfg_t *cfg);

//  What a session asks its owner to do. Each callback is called on the
//  owner's thread, inside the session call that caused it.
typedef struct brg__session_io {
    //  Send one frame to the peer. inbound true: on the connection the
    //  peer dialed (our inbox ROUTER, to the peer's routing id): WELCOME
    //  and ERROR answering the peer's HELLO, and every frame to a client;
    //  false: on our outbox (our HELLO, BATCH, TICK, BYE, and ERROR
    //  answering a WELCOME). The bytes are borrowed for the call.
    void (*send_frame)(void *arg, bool inbound, const void *data, size_t len);
    //  Deliver decoded messages to local actors in order: to[i] is the
    //  target of msgs[i] (takes every msgs[i]); brg__remote_deliver in
    //  production. A BATCH is delivered in one call, the answers of an
    //  ended session in calls of up to 256. A target id 0 is a dead letter
    //  (an envelope whose `to` names another node, or a control kind
    //  addressed by name: the session keeps no table entry for it).
    void (*deliver)(void *arg, const brg__remote_target_t *to, brg_msg_t **msgs, size_t n);
    //  The session is UP (once).
    void (*up)(void *arg);
    //  The session ended (once, after its tables were answered through
    //  deliver). The owner closes the connections.
    void (*ended)(void *arg, brg__end_reason_t reason);
    //  May the client of this session send to the actor registered as
    //  name (name_len bytes, not NUL-terminated)? NULL: every name may be
    //  reached. Asked for each SEND a client addresses by name; a client's
    //  SEND to an id or a ref is always refused, its REPLY and
    //  REPLY_ERROR only when they answer an ask in the session's asks
    //  table (PROTOCOL.md section 22). A refused request is
    //  answered REPLY_ERROR BRG_EPERM, a refused send dropped; both are
    //  counted (refused_unauthorized).
    bool (*may_reach)(void *arg, const char *name, size_t name_len);
    //  Our WELCOME is about to go out: fill h->peers and h->npeers with
    //  the other nodes we know (gossip for the mesh, PROTOCOL.md section
    //  5). NULL: a WELCOME lists no peers.
    void (*welcome_peers)(void *arg, brg__hello_t *h);
    //  The peer's WELCOME was accepted and lists peers (h->npeers > 0):
    //  the owner may dial them. Called before up. NULL: ignored.
    void (*gossip)(void *arg, const brg__hello_t *h);
} brg__session_io_t;
//  A callback may push to, flush or end the session; it must not destroy it.

typedef struct brg__session brg__session_t;

//  A session toward one peer. initiator: we dial (our outbox sends HELLO
//  now); else it starts from the peer's HELLO on our inbox (pass that
//  frame to brg__session_on_frame next). Returns NULL if out of memory.
brg__session_t *brg__session_new(const brg__session_cfg_t *cfg, const brg__session_io_t *io,
                                 void *io_arg, bool initiator, uint64_t now_ns);
void brg__session_destroy(brg__session_t **self_p);

brg__sess_state_t brg__session_state(const brg__session_t *self);
//  The peer's HELLO (valid once it arrived) and its node as a ref (id 0).
const brg__hello_t *brg__session_peer(const brg__session_t *self);
brg_ref_t brg__session_peer_node(const brg__session_t *self);

//  A decoded frame from the peer, `inbound` true for frames on our inbox
//  (the peer's outbox) and false for frames on our outbox (WELCOME, ERROR).
//  Validates it against the session state (HELLO checks: version, cluster,
//  self-connection, role), answers (WELCOME, ERROR), checks sequence,
//  updates tables, delivers BATCH envelopes through io->deliver. A
//  violation sends ERROR and ends the session (reason PROTOCOL). Returns
//  BRG_OK; BRG_EPROTO (the session ended); BRG_EEXIST for a HELLO from the
//  same node with another session id (this session ended REPLACED: create
//  a new one, initiator false, and give it the same frame); BRG_ENETWORK
//  if the session had already ended (the frame is ignored).
int brg__session_on_frame(brg__session_t *self, const brg__frame_t *frame, bool inbound,
                          uint64_t now_ns);

//  brg__session_on_frame for the frame's bytes: decodes them with the
//  session's limits first; a frame that does not decode is answered with
//  ERROR (1 for a version other than 1, else 3) and ends the session.
int brg__session_on_bytes(brg__session_t *self, const void *data, size_t len, bool inbound,
                          uint64_t now_ns);

//  Messages going to the peer: append msg's envelope to the pending BATCH
//  (updating the tables for control kinds and requests). Takes *msg_p on
//  BRG_OK. Otherwise the message is given back in *msg_p for the caller to
//  dead-letter (brg__remote_dead_letter): BRG_ENETWORK if the session has
//  ended; BRG_EINVAL for a kind that never leaves a node, or a control
//  kind whose target is a name or whose sender is not a local actor (STOP
//  and exit signals may have no sender: brg_actor_stop, brg_exit);
//  BRG_EMSGSIZE if its envelope exceeds the peer's max_frame; BRG_ENOMEM.
//  Call it only once the session has taken the peer's HELLO or sent its
//  own (initiator).
int brg__session_push(brg__session_t *self, brg_ref_t to, const char *to_name, brg_msg_t **msg_p);

//  Seal the pending BATCH (if any) and send it through io->send_frame.
//  The owner calls it at the end of each grab, and the session itself
//  does when the batch reaches 64 KiB or 1024 envelopes.
void brg__session_flush(brg__session_t *self);

//  Time passes: send a TICK when one is due, end the session on silence
//  (timeout) or a handshake that did not finish. Returns the time in ns
//  of the next deadline, for the owner's poll timeout.
uint64_t brg__session_timer(brg__session_t *self, uint64_t now_ns);

//  End the session now (connection closed, local disconnect, shutdown):
//  sends BYE when reason is LOCAL, answers every table entry, calls
//  io->ended. Idempotent.
void brg__session_end(brg__session_t *self, brg__end_reason_t reason);

//  Counters of one session (PROTOCOL.md "Counters").
typedef struct brg__session_stats {
    uint64_t frames_in, frames_out, msgs_in, msgs_out, bytes_in, bytes_out;
    uint64_t msgs_acked;                     // sent in frames the peer acked (TICK)
    uint64_t dead_on_end;                    // messages pushed but never sent when it ended
    uint64_t lost_in_flight;                 // sent in frames the peer had not acked when it ended
                                             // (after the end: msgs_out = msgs_acked + lost)
    uint64_t links, watching, watched, asks; // current table sizes
    uint64_t table_full;                     // LINK/MONITOR/asks refused by the table bound
    uint64_t refused_unauthorized;           // a client's envelopes refused (may_reach)
} brg__session_stats_t;

void brg__session_stats(const brg__session_t *self, brg__session_stats_t *stats);

#endif
