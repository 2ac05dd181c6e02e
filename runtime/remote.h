//  remote - the seam between the runtime and a transport (internal).
//
//  runtime/ never includes ZeroMQ. A transport (transport/, the only user of
//  this header besides runtime/ itself) plugs a table of operations into a
//  system; from then on every message or signal addressed to a ref of
//  another node (brg_send, brg_ask, brg_reply, brg_forward, brg_link,
//  brg_unlink, brg_monitor, brg_demonitor, exit signals, EXIT/DOWN of a
//  dying actor, brg_exit, brg_actor_stop) reaches ops->send through the one
//  send path, brg__system_deliver. Inbound messages decoded by the
//  transport come back through brg__remote_deliver; when a connection to a
//  node is lost the transport builds the signals the runtime's actors must
//  see (EXIT/DOWN with reason noconnection, error replies BRG_ENETWORK) with
//  brg__remote_signal and delivers them the same way.
//
//  Threads and ownership.
//  - brg__system_set_remote_ops: once, before any actor can send to another
//    node (the transport calls it from brg_node_new, on the creating
//    thread), never while the system runs traffic; ops and arg then stay
//    valid and unchanged until ops->destroy has returned.
//  - ops->send: any thread (workers, blocking pool, timer thread, outside
//    callers). It takes ownership of *msg_p and sets it to NULL whatever it
//    returns; it never blocks and never calls back into the sender's actor.
//  - brg__remote_deliver and brg__remote_signal: any thread, in practice the
//    transport's I/O thread. deliver takes ownership of every message.
//  - Re-entry: brg__remote_deliver (an error reply or a noproc answer to a
//    peer's actor) and brg__remote_dead_letter (an answer owed to an actor
//    on a third node) call ops->send again on the calling thread, so the
//    transport calls them holding no lock that its ops->send takes.
//  - ops->shutdown then ops->destroy: called by brg_system_destroy on the
//    destroying thread, in that order: shutdown after every actor has stopped
//    (their last EXIT/DOWN signals have been handed to ops->send) and before
//    the workers and the timer thread are joined; destroy after they are
//    joined. After shutdown, ops->send is not called again (a late remote
//    send is a dead letter BRG_DEAD_SHUTDOWN).
#ifndef BRG_RUNTIME_REMOTE_H
#define BRG_RUNTIME_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brigade/actor.h"
#include "brigade/link.h"
#include "brigade/msg.h"
#include "brigade/ref.h"
#include "brigade/system.h"
#include "sched.h"

typedef struct brg__remote_ops {
    //  A message or signal for another node's actor `to` (its kind, sender,
    //  corr, status, tag and payload as the runtime built them; see msg.h).
    //  Returns BRG_OK (queued for the node), BRG_EBUSY (the node's outbound
    //  budget is spent: the transport counted it as a dead letter
    //  BRG_DEAD_REMOTE_BUSY and answered an ask), or BRG_ENETWORK (the node
    //  is unknown or down: dead letter BRG_DEAD_REMOTE_DOWN, an ask answered
    //  with BRG_ENETWORK, a LINK answered with EXIT noconnection, a MONITOR
    //  with DOWN noconnection). Control signals are never refused for space.
    //  With to_name != NULL the target is that name in the registry of node
    //  `to` (to.id is 0): brg_send_named_at and friends.
    int (*send)(void *arg, brg_ref_t to, const char *to_name, brg_msg_t **msg_p);
    //  Flush what is queued (bounded), say goodbye to every peer, stop the
    //  I/O thread. See the thread contract above.
    void (*shutdown)(void *arg);
    //  Free the transport.
    void (*destroy)(void *arg);
    //  Busy peers (may be NULL: senders are never held back). An actor
    //  whose send went to a congested gate (brg__remote_note_busy) is about
    //  to be suspended on it: record a waiter on the gate with a seq_cst RMW,
    //  then say with a seq_cst load whether the gate is still congested.
    //  The transport, after any change that leaves the gate uncongested
    //  (a seq_cst RMW), looks for a recorded waiter (a seq_cst load) and
    //  then opens the gate (brg__remote_gate_open): so either it sees the
    //  waiter, or the waiter sees the gate open and is not suspended.
    //  Called under the runtime's bp lock: it must take no lock and never
    //  call back into the runtime.
    bool (*gate_wait)(void *arg, uint32_t gate);
} brg__remote_ops_t;

//  Busy peers, as Erlang's busy distribution port (dist_buf_busy_limit):
//  a transport that finds a peer's outbound queue over its busy mark while
//  an actor sends to it calls brg__remote_note_busy from ops->send; the
//  actor's activation then ends after that behaviour call and the actor is
//  suspended on the gate (backpressure, ARCHITECTURE section 6) until the
//  transport opens it (brg__remote_gate_open), or a stop or kill comes. A
//  send from outside any actor (a thread of the caller's, a blocking call)
//  is never held back: it meets the hard budget (BRG_EBUSY) instead. Gates
//  are the transport's numbers, 1..2^32-1, unique within the system.
//  note: thread: the sender's, inside ops->send. open: thread: any.
void brg__remote_note_busy(brg_system_t *sys, uint32_t gate);
void brg__remote_gate_open(brg_system_t *sys, uint32_t gate);

//  The one send path for a name on another node (brg_send_named_at,
//  brg_ask_named_at): ops->send with the name, or a dead letter
//  BRG_DEAD_REMOTE when no transport is plugged in. Takes *msg_p.
int brg__system_deliver_named(brg_system_t *sys, brg_ref_t node, const char *name,
                              brg_msg_t **msg_p);

//  brg_system_spawn for an actor the transport runs for itself (a node's
//  service): brg_system_await_actors does not wait for it, as CAF's
//  await_all_actors_done skips hidden actors; brg_system_destroy stops it
//  with the others. Thread: any.
int brg__system_spawn_hidden(brg_system_t *sys, brg_behaviour_fn fn, const brg_spawn_opts_t *opts,
                             brg_ref_t *ref);

//  Run the transport's I/O loop on worker 0 (the park hook, sched.h):
//  install it, or remove it (returns once worker 0 has let go of it for
//  good). Thread: the transport's own thread, never a worker. set returns
//  as brg__sched_set_park_hook.
int brg__system_set_park_hook(brg_system_t *sys, const brg__park_hook_t *hook);
void brg__system_clear_park_hook(brg_system_t *sys);
//  As brg__sched_park_hook_try (sched.h). Thread: the transport's own.
bool brg__system_park_hook_try(brg_system_t *sys, void (*fn)(void *arg), void *arg);

//  Plug a transport into sys. Returns BRG_OK, or BRG_EEXIST if one is
//  already plugged in. ops and its three functions must not be NULL.
int brg__system_set_remote_ops(brg_system_t *sys, const brg__remote_ops_t *ops, void *arg);

//  Where an inbound message goes: a local id of this node, or a name in its
//  registry (name != NULL; then id is ignored).
typedef struct brg__remote_target {
    uint64_t id;
    const char *name; // NUL-terminated, borrowed for the call
} brg__remote_target_t;

//  Deliver n messages decoded from the network, in order, to this node's
//  actors. Each msg has kind, sender (a ref on the peer node or a third
//  one), corr, status, tag and payload set. Takes every msgs[i] (the array
//  itself stays the caller's). An unknown target or name is a dead letter
//  (BRG_DEAD_NO_ACTOR) and, for a request, an error reply BRG_ENOACTOR back
//  to its sender (through ops->send); a LINK or MONITOR to a dead target is
//  answered EXIT/DOWN noproc as locally, a reply is a late reply, other
//  signals are dropped uncounted (as locally). A kind that never crosses
//  nodes (timer tick, idle check, ask timeout) or a KILL whose status is not
//  shutdown, killed or failed is a counted dead letter, never applied.
//  Actors made runnable are scheduled with one round on the inject queue
//  and at most one wake-up per call. Returns the number of messages that
//  reached a mailbox.
size_t brg__remote_deliver(brg_system_t *sys, const brg__remote_target_t *to, brg_msg_t **msgs,
                           size_t n);

//  Build a signal as the runtime would: kind is BRG__MSG_SYS_EXIT (from =
//  the exited actor, reason), BRG__MSG_SYS_DOWN (corr = the monitor id),
//  BRG__MSG_SYS_DEMONITOR (from = the watcher, corr = monitor id, no
//  reason), BRG__MSG_SYS_UNLINK (from = the linked actor, no reason) or
//  BRG__MSG_REPLY_ERROR (corr = the ask id, status, no reason); any other
//  kind is a caller bug (assert). Returns NULL if out of memory.
brg_msg_t *brg__remote_signal(int kind, brg_ref_t from, uint64_t corr, int status,
                              const brg_exit_reason_t *reason);

//  Count and report an undeliverable message of the transport's (it owns
//  msg): a dead letter with reason, and the answer its local sender is owed:
//  for a request an error reply `status` (BRG_ENETWORK, BRG_EBUSY); for a
//  LINK an EXIT, for a MONITOR a DOWN, both with reason noconnection (a
//  signal is exactly-once: whatever did not reach the peer is answered here).
//  A status >= 0 counts as BRG_ENETWORK. Without a transport, or once its
//  shutdown has begun, the runtime calls this itself for every remote send
//  (status BRG_ENETWORK, reason BRG_DEAD_REMOTE or BRG_DEAD_SHUTDOWN).
void brg__remote_dead_letter(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg,
                             brg_dead_reason_t reason, int status);

//  ---------------------------------------------------------------------------
//  Remote spawn (kind.c, link.c): what a node's service and brg_spawn_remote
//  need of the runtime.

//  Called by brg__kind_spawn_remote once the child exists and is wired,
//  before it can run: whatever it sends (the spawn's reply) goes out ahead
//  of anything the child sends. It must not fail the spawn.
typedef void (*brg__spawned_fn)(void *arg, brg_ref_t child);

//  Spawn kind for `parent`, an actor of another node, from this node's
//  service: the kind must exist (else BRG_ENOTFOUND) and be flagged
//  BRG_KIND_REMOTE (else BRG_EPERM). With link, parent is in the child's
//  links and a LINK from the child to parent is sent before the child runs;
//  with mon != 0, (mon, parent) is among the child's watchers. Then
//  spawned(arg, child), then the child is scheduled. args: the init
//  message (taken, *args_p set to NULL; NULL for none). name: register the
//  child under it (BRG_EEXIST if taken). Other errors: those of brg_spawn.
//  On error nothing is spawned and spawned is not called. Thread: any.
int brg__kind_spawn_remote(brg_system_t *sys, const char *kind, brg_msg_t **args_p,
                           brg_ref_t parent, bool link, uint64_t mon, const char *name,
                           brg__spawned_fn spawned, void *arg, brg_ref_t *ref);

//  The tag of a remote spawn's reply (PROTOCOL.md section 20.1).
#define BRG__SPAWNED_TAG "spawned"

//  A reply that found no ask waiting in the running actor (its deadline
//  passed): if it is a remote spawn's reply naming a child this actor is
//  linked to, the spawn was abandoned, as OTP's spawn_request_abandon
//  treats a late spawn_reply: unlink it and end it (BRG_EXIT_KILLED), and
//  log it. Returns true if it did. Thread: the actor's. (kind.c)
bool brg__kind_late_spawn_reply(brg_ctx_t *ctx, const brg_msg_t *reply);

//  A monitor id of the running actor, for a monitor that a remote spawn
//  sets up: never handed out again by brg_monitor. 0 if out of memory.
uint64_t brg__monitor_reserve(brg_ctx_t *ctx);

//  The running actor's half of a monitor `mon` (brg__monitor_reserve) that
//  a remote spawn made target watch already: (mon, target) among its
//  monitors, and a MONITOR sent to target so that the nodes' tables hold
//  it. BRG_ENOMEM.
int brg__monitor_adopt(brg_ctx_t *ctx, brg_ref_t target, uint64_t mon);

#endif
