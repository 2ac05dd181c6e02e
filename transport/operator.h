//  operator - the node service's operator requests: actors, tree, stats,
//  nodes and stop (docs/PROTOCOL.md section 20; brgctl is their client).
//  Internal to transport/: node.c's service actor hands them over.
#ifndef BRG_TRANSPORT_OPERATOR_H
#define BRG_TRANSPORT_OPERATOR_H

#include "brigade.h"
#include "zmq_io.h"

//  How long the service waits for the supervisors (tree) and the peers'
//  services (nodes) before it answers with what it has.
#define BRG__OPERATOR_WAIT_MS 2000

//  Most actors an "actors" reply lists (its "total" says how many there were).
#define BRG__OPERATOR_MAX_ACTORS 10000

//  Most peers a "stats" or "nodes" reply lists.
#define BRG__OPERATOR_MAX_PEERS 1024 // every peer a node may know (zmq_io.c S_MAX_PEERS)

//  Answer msg if it is an operator request: BRG_OK once answered (or the
//  answer is under way: tree and nodes ask other actors first and answer
//  from their callbacks), BRG_UNHANDLED if its tag is not one of these.
//  "stop" never stops the calling actor (the service). Thread: the node
//  service actor's behaviour.
int brg__operator_handle(brg_ctx_t *ctx, brg__io_t *io, const brg_msg_t *msg);

//  Append the node counters of *st to m as one map {name: uint}, every
//  counter of brg_node_stats_t under the name PROTOCOL.md section 18 gives
//  it: the node service's "info" and the operator's "stats" both use it.
//  BRG_OK or the OR of the msg builders' errors.
int brg__operator_add_counters(brg_msg_t *m, const brg_node_stats_t *st);

#endif
