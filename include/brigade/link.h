//  link - exit reasons, links, monitors and exit signals (Erlang semantics).
//
//  Every actor ends with an exit reason: normal (brg_stop, init/behaviour
//  done), shutdown (asked to by a supervisor), killed (untrappable), failed
//  (a negative behaviour result, brg_fail, a failed reply callback, or the
//  watchdog), noproc (given to those who link to or monitor an actor that
//  is already gone), or noconnection (given to those linked to or monitoring
//  an actor on another node that cannot be reached: no transport, the node
//  unknown or down, or its connection lost).
//
//  Links are bidirectional: when a linked actor exits with an abnormal
//  reason, the other one exits with the same reason too, unless it traps
//  exits, in which case it receives a BRG_TAG_EXIT message instead. Normal
//  exits do not propagate (a trapping actor still receives them).
//  Monitors are one-way: the watcher receives exactly one BRG_TAG_DOWN message
//  with the reason, also when the target was already dead when the monitor
//  was set (reason noproc).
//  Ordering: EXIT and DOWN arrive after every message the exiting actor sent
//  to the receiver before it exited (Erlang's signal order), so a result sent
//  just before a normal exit is never overtaken by its DOWN.
#ifndef BRG_LINK_H
#define BRG_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

typedef enum {
    BRG_EXIT_NORMAL = 0,      // finished its work
    BRG_EXIT_SHUTDOWN = 1,    // asked to stop by brg_exit / a supervisor
    BRG_EXIT_KILLED = 2,      // brg_exit with BRG_EXIT_KILLED: cannot be trapped
    BRG_EXIT_FAILED = 3,      // failed: see code and text
    BRG_EXIT_NOPROC = 4,      // the actor did not exist (link or monitor to a dead ref)
    BRG_EXIT_NOCONNECTION = 5 // its node could not be reached, or the connection was lost
} brg_exit_kind_t;

#define BRG_EXIT_TEXT_MAX 95

//  An exit reason: a plain value (read its fields freely).
typedef struct brg_exit_reason {
    brg_exit_kind_t kind;
    int code;                         // BRG_E... code of a failure, else 0
    char text[BRG_EXIT_TEXT_MAX + 1]; // short description, NUL-terminated; may be empty
} brg_exit_reason_t;

//  Tags of the messages a trapping actor or a watcher receives.
#define BRG_TAG_EXIT "brg.exit"
#define BRG_TAG_DOWN "brg.down"

//  True for reasons that propagate along links: shutdown, killed, failed,
//  noproc, noconnection.
BRG_EXPORT bool brg_exit_is_abnormal(const brg_exit_reason_t *reason);

//  "normal", "shutdown", "killed", "failed", "noproc", "noconnection".
//  Static string.
BRG_EXPORT const char *brg_exit_kind_name(brg_exit_kind_t kind);

//  Fail this actor once the behaviour returns, with code (negative BRG_E...
//  or any negative number of the user's) and a short text (may be NULL;
//  truncated to BRG_EXIT_TEXT_MAX).
BRG_EXPORT void brg_fail(brg_ctx_t *ctx, int code, const char *text);

//  Link this actor and `other`. BRG_ENOACTOR if other is known to be dead now
//  (no link is made); if it dies before the link reaches it, this actor gets
//  the exit signal with reason noproc. For `other` on another node that
//  cannot be reached (no transport, node unknown or down) the link is made
//  (BRG_OK) and the exit signal with reason noconnection follows, as it does
//  when the connection is lost later. Linking twice is one link.
BRG_EXPORT int brg_link(brg_ctx_t *ctx, brg_ref_t other);

//  Remove the link, if any. Exit signals already in flight from `other` for
//  this link are ignored.
BRG_EXPORT int brg_unlink(brg_ctx_t *ctx, brg_ref_t other);

//  Whether this actor holds a link to `other` now: made by either end and
//  not yet removed by either (an UNLINK from `other` counts once this actor
//  has handled it; signals from one actor arrive in the order it sent them).
BRG_EXPORT bool brg_is_linked(brg_ctx_t *ctx, brg_ref_t other);

//  Watch `target`: exactly one BRG_TAG_DOWN message will come, with *monitor
//  as its id (brg_msg_read_down): reason noproc if target is already gone,
//  noconnection if it is on another node that cannot be reached or whose
//  connection is lost. Always BRG_OK unless out of memory.
BRG_EXPORT int brg_monitor(brg_ctx_t *ctx, brg_ref_t target, uint64_t *monitor);

//  Stop watching; a DOWN for this monitor that is already in flight is
//  dropped, never delivered. BRG_ENOTFOUND if there is no such monitor.
BRG_EXPORT int brg_demonitor(brg_ctx_t *ctx, uint64_t monitor);

//  Trap exits: receive exit signals from links (and brg_exit with shutdown)
//  as BRG_TAG_EXIT messages instead of exiting.
BRG_EXPORT void brg_trap_exits(brg_ctx_t *ctx, bool on);

//  Send an exit signal to `target` (Erlang exit/2): BRG_EXIT_SHUTDOWN (or
//  FAILED) makes it exit with that reason unless it traps exits, then it gets
//  a BRG_TAG_EXIT message; BRG_EXIT_KILLED always makes it exit. The signal
//  travels in the system lane, ahead of ordinary messages; to another node,
//  through its transport. Returns BRG_OK, BRG_ENOACTOR, or for another node
//  BRG_ENETWORK (unreachable; counted as a dead letter). Thread: any.
BRG_EXPORT int brg_exit(brg_system_t *sys, brg_ref_t target, brg_exit_kind_t kind);

//  Read a BRG_TAG_EXIT message: who exited and why. BRG_ETYPE if msg is not one.
BRG_EXPORT int brg_msg_read_exit(const brg_msg_t *msg, brg_ref_t *from, brg_exit_reason_t *reason);

//  Read a BRG_TAG_DOWN message: who, which monitor, why. BRG_ETYPE if not one.
BRG_EXPORT int brg_msg_read_down(const brg_msg_t *msg, brg_ref_t *from, uint64_t *monitor,
                                 brg_exit_reason_t *reason);

#endif
