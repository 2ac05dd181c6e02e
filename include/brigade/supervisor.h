//  supervisor - OTP-style supervisors: actors that start, watch and restart
//  other actors (their children) from child specs.
//
//  A supervisor is an actor. It traps exits, starts its children in order
//  when it starts, links to each one and, when one exits, decides from the
//  child's restart type and the exit reason whether to restart it, and from
//  its strategy which siblings go with it:
//
//                       permanent     transient                temporary
//    exit normal        restart       -                        - (removed)
//    exit shutdown      restart       -                        - (removed)
//    killed/failed/     restart       restart                  - (removed)
//      noproc
//
//    one_for_one        only the child that exited is restarted
//    one_for_all        every child is stopped (reverse start order), then
//                       all but the temporary ones are started (start order)
//    rest_for_one       the child and those started after it: likewise
//    dynamic            one_for_one over children of one spec that are added
//                       at run time (OTP's simple_one_for_one)
//
//  A child that is not restarted changes nothing for its siblings. A
//  restarted child gets fresh state from its start function and its
//  registered name back: the restart waits until the old incarnation is dead
//  and its name released. A restart whose start fails leaves the child
//  "restarting" (BRG_CHILD_RESTARTING) and is retried through the same table.
//  More than `intensity` restarts within `period_ms` make the supervisor give
//  up: it stops every child (reverse start order) and exits with reason
//  shutdown, as OTP's does (reached_max_restart_intensity): its parent sees
//  an EXIT (or DOWN) with reason shutdown, so a parent supervisor restarts
//  it if its child spec there is permanent, not if it is transient. See docs/SUPERVISION.md for the
//  whole decision table, the shutdown sequence and the message protocol.
//
//  Stopping a supervisor: brg_exit(sys, sup, BRG_EXIT_SHUTDOWN) (or its
//  parent exiting): it stops its children in reverse start order, each with
//  its spec's shutdown, then exits with reason shutdown. Do not use
//  brg_actor_stop on a supervisor: that ends it at once with reason normal,
//  which does not stop its children (normal exits do not propagate).
#ifndef BRG_SUPERVISOR_H
#define BRG_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "registry.h"
#include "system.h"

//  When a child is restarted (see the table above).
typedef enum {
    BRG_RESTART_PERMANENT = 0, // always
    BRG_RESTART_TRANSIENT = 1, // only after an abnormal exit other than shutdown
    BRG_RESTART_TEMPORARY = 2  // never; the child is forgotten when it exits
} brg_restart_t;

//  Which children a restart takes along (see the table above).
typedef enum {
    BRG_STRATEGY_ONE_FOR_ONE = 0,
    BRG_STRATEGY_ONE_FOR_ALL = 1,
    BRG_STRATEGY_REST_FOR_ONE = 2,
    BRG_STRATEGY_DYNAMIC = 3 // OTP's simple_one_for_one
} brg_strategy_t;

//  What a child is (OTP's child type): it sets the default shutdown and is
//  what brg_supervisor_counts_t counts. A nested supervisor is
//  BRG_CHILD_SUPERVISOR.
typedef enum {
    BRG_CHILD_WORKER = 0,    // default
    BRG_CHILD_SUPERVISOR = 1 // started with brg_supervisor_start, or one of yours
} brg_child_type_t;

//  Shutdown of a child: ms to wait after asking it to stop (brg_exit with
//  BRG_EXIT_SHUTDOWN) before killing it (BRG_EXIT_KILLED), or one of these.
//  While it stops, the supervisor monitors it: a child that unlinked itself
//  cannot make the supervisor wait for an EXIT that never comes.
#define BRG_SHUTDOWN_BRUTAL 0    // kill at once
#define BRG_SHUTDOWN_INFINITY -1 // wait as long as it takes (nested supervisors)
#define BRG_SHUTDOWN_DEFAULT -2  // by type (OTP): 5000 ms for a worker, infinity for a supervisor
#define BRG_SHUTDOWN_WORKER_DEFAULT 5000

//  A start function's answer "do not start this child" (OTP's ignore): no
//  actor is started and nothing is an error. A static child stays listed, not
//  running (BRG_CHILD_STOPPED) and is not restarted (unless it is temporary:
//  then it is forgotten); a dynamic child is not kept at all. A positive
//  value, so it is never mistaken for a BRG_E... code.
#define BRG_CHILD_IGNORE 1

//  Longest child id, in bytes, without the NUL.
#define BRG_CHILD_ID_MAX 63

//  Most children of a static supervisor (dynamic ones have no limit but memory).
#define BRG_SUPERVISOR_CHILDREN_MAX 1024

//  Largest restart intensity, the "max" of brg_supervisor_opts_t.intensity
//  (the supervisor keeps intensity + 1 restart times).
#define BRG_SUPERVISOR_INTENSITY_MAX 1000000

//  Start one child. Called on the supervisor's thread, inside its behaviour
//  or init: sup_ctx is the supervisor's context, so spawn the child with
//  brg_spawn(sup_ctx, ...). arg is the spec's arg. args is NULL for a static
//  child; for a dynamic child it is the start request (Borrowed: valid until
//  the start function returns), whose payload holds the start arguments; a
//  restart passes the same arguments again. On BRG_OK set *child to the new
//  actor; return BRG_CHILD_IGNORE to start nothing, or a negative BRG_E...
//  code if it could not be started.
//  Spawn the child with BRG_SPAWN_LINK. The supervisor also links to it
//  after this returns, but without the flag a child that ends before that
//  link reaches it (it fails at once, or an exit signal, which overtakes the
//  link request, stops it) is seen as exiting with reason noproc, which is
//  abnormal: even a transient child is then restarted. Do not give the child
//  the spec's name in the spawn options: the supervisor registers it.
//  Thread: the supervisor's; it must not block.
typedef int (*brg_child_start_fn)(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args,
                                  brg_ref_t *child);

//  A child spec. Start from brg_child_spec_init(&spec). The supervisor
//  copies the spec and its strings; arg is not copied and must stay valid as
//  long as the supervisor lives.
//  A child on another node: start = brg_child_start_remote with arg a
//  brg_remote_child_t (brigade/node.h; docs/SUPERVISION.md section 13).
typedef struct brg_child_spec {
    const char *id;           // required: unique among the supervisor's children
    brg_child_start_fn start; // required
    void *arg;                // passed to start
    brg_restart_t restart;    // default BRG_RESTART_PERMANENT
    int shutdown_ms;          // default BRG_SHUTDOWN_DEFAULT (by type); ms, _BRUTAL, _INFINITY
    const char *name;         // optional: registered name, restored after each restart
    brg_child_type_t type;    // default BRG_CHILD_WORKER
} brg_child_spec_t;
//  A child with a name starts only once the name is free: while another
//  actor holds it (the old incarnation under a nested supervisor that was
//  killed, say), the child waits, restarting, for that actor to end, at most
//  its shutdown time (brutal: BRG_SHUTDOWN_WORKER_DEFAULT; infinity: no
//  bound); then the start fails with BRG_EEXIST (docs/SUPERVISION.md, 5).

//  Supervisor options. Start from brg_supervisor_opts_init(&opts).
typedef struct brg_supervisor_opts {
    brg_strategy_t strategy;          // default BRG_STRATEGY_ONE_FOR_ONE
    int intensity;                    // restarts allowed per period (default 1; 0 .. max)
    int period_ms;                    // the period (default 5000, > 0)
    const brg_child_spec_t *children; // static: the children, in start order;
    size_t n_children;                //   dynamic: exactly one spec (no name)
    const char *name;                 // optional registered name of the supervisor
    //  Synchronous start (default false): start each child only once the one
    //  before has run its init (brg_ask_ready, for local children; nested
    //  supervisors are always waited for), as OTP's start_link does. Also
    //  for restarts. Nested supervisors started by such a supervisor start
    //  synchronously too.
    bool sync_start;
} brg_supervisor_opts_t;

//  Where a child stands (OTP's which_children shows a pid, `restarting` or
//  `undefined`).
typedef enum {
    BRG_CHILD_STOPPED = 0,   // not running and not to be restarted (undefined)
    BRG_CHILD_RUNNING = 1,   // ref is the running incarnation (also while it stops)
    BRG_CHILD_RESTARTING = 2 // to be restarted: its last start failed and is being
                             // retried, or it waits for its old incarnation to
                             // release its name
} brg_child_state_t;

//  One child as a query reports it (a plain value: read its fields freely).
typedef struct brg_child_info {
    char id[BRG_CHILD_ID_MAX + 1]; // the spec's id (every dynamic child has its spec's)
    brg_ref_t ref;                 // the running child, or BRG_REF_NONE if it is not running
    uint64_t restarts;             // times this child was started again
    brg_child_state_t state;       // running, restarting or stopped
    brg_child_type_t type;         // the spec's type
} brg_child_info_t;

//  Counters as a query reports them (a plain value). OTP's count_children:
//  specs = children, active = running, supervisors and workers.
typedef struct brg_supervisor_counts {
    uint64_t children;    // children known (running or not; temporary ones leave)
    uint64_t running;     // children alive now
    uint64_t restarts;    // children started again since the supervisor started
    uint64_t exits;       // child exits seen, any reason (stops it asked for too)
    uint64_t supervisors; // children of type BRG_CHILD_SUPERVISOR (running or not)
    uint64_t workers;     // children of type BRG_CHILD_WORKER (running or not)
} brg_supervisor_counts_t;

//  A child's spec as brg_supervisor_get_childspec reports it (a plain value).
//  The start function and its arg are not in it: a message cannot carry
//  pointers safely.
typedef struct brg_child_about {
    char id[BRG_CHILD_ID_MAX + 1];
    char name[BRG_NAME_MAX + 1]; // "" if the child has no registered name
    brg_restart_t restart;
    int shutdown_ms; // as the supervisor uses it: BRG_SHUTDOWN_DEFAULT resolved by type
    brg_child_type_t type;
} brg_child_about_t;

//  The label of every supervisor (brg_spawn_opts_t.label, brg_system_actors):
//  how a node's service finds the supervisors for brgctl's tree.
#define BRG_SUPERVISOR_LABEL "brg.supervisor"

//  Tags of the supervisor's message protocol (docs/SUPERVISION.md). Requests
//  are answered with brg_reply, so they work with brg_ask and brg_system_ask;
//  a request the supervisor cannot serve gets brg_reply_error.
//  Error codes for OTP's errors: not_found BRG_ENOTFOUND, running BRG_EEXIST,
//  restarting BRG_EBUSY, simple_one_for_one (a call that does not fit the
//  strategy) BRG_EINVAL; and BRG_ECLOSED once the supervisor is shutting down.
#define BRG_SUP_TAG_WHICH "brg.sup.which" // -> [[id, ref|nil, restarts, state, type], ...]
#define BRG_SUP_TAG_COUNT                                                                          \
    "brg.sup.count"                               // -> children, running, restarts, exits,
                                                  //    supervisors, workers
#define BRG_SUP_TAG_START "brg.sup.start"         // args... -> BRG_SUP_TAG_STARTED, ref | nil
#define BRG_SUP_TAG_STARTED "brg.sup.started"     //
#define BRG_SUP_TAG_TERMINATE "brg.sup.terminate" // ref (dynamic) | id (static) -> BRG_SUP_TAG_OK
#define BRG_SUP_TAG_RESTART "brg.sup.restart"     // id -> BRG_SUP_TAG_STARTED, ref | nil
#define BRG_SUP_TAG_DELETE "brg.sup.delete"       // id -> BRG_SUP_TAG_OK
#define BRG_SUP_TAG_SPEC "brg.sup.spec"           // id -> id, name|nil, restart, shutdown, type
#define BRG_SUP_TAG_ADD "brg.sup.add"             // token -> BRG_SUP_TAG_STARTED, ref | nil
#define BRG_SUP_TAG_OK "brg.sup.ok"               //

//  Fill with the defaults (see the fields).
BRG_EXPORT void brg_child_spec_init(brg_child_spec_t *spec);
BRG_EXPORT void brg_supervisor_opts_init(brg_supervisor_opts_t *opts);

//  Spawn a supervisor from inside a behaviour, linked to the calling actor
//  (its parent): when the parent exits, for any reason, the supervisor stops
//  its children and exits with that reason; when the supervisor fails, the
//  parent gets the exit signal. The children start in the supervisor's first
//  activation, after this returns; if one fails to start, the supervisor
//  stops those already started and fails (code: the start function's,
//  text "failed to start child <id>"). Errors: BRG_EINVAL (bad options:
//  missing or duplicate id, no start function, a value out of range, a
//  dynamic supervisor without exactly one spec or with a named spec), then
//  as brg_spawn; on error nothing is spawned. On BRG_OK *sup (if not NULL)
//  is its address. opts is copied.
BRG_EXPORT int brg_supervisor_spawn(brg_ctx_t *ctx, const brg_supervisor_opts_t *opts,
                                    brg_ref_t *sup);

//  The same from any thread, as the root of a tree: no parent. Thread: any.
BRG_EXPORT int brg_supervisor_spawn_root(brg_system_t *sys, const brg_supervisor_opts_t *opts,
                                         brg_ref_t *sup);

//  Why brg_supervisor_spawn_sync failed (a plain value).
typedef struct brg_supervisor_start_error {
    char child_id[BRG_CHILD_ID_MAX + 1]; // the child that did not start, or "" (not a child's)
    int code; // the start function's error, the child's exit code, or the call's error
} brg_supervisor_start_error_t;

//  Start a root supervisor (as brg_supervisor_spawn_root, with sync_start
//  on) and return once every static child is up: each child's init has run,
//  in start order, nested supervisors' children included (OTP's
//  supervisor:start_link). On BRG_OK *sup (if not NULL) is its address.
//  If a child does not start (its start function fails, or it fails or
//  stops in its init), the supervisor stops the children already started
//  and exits, as an asynchronous one does; this call returns after that
//  (waiting at most timeout_ms more for it), with the child's code
//  (negative) and error->child_id naming it.
//  Other errors: BRG_ETIMEDOUT (not up within timeout_ms; the supervisor is
//  asked to shut down, brg_exit shutdown, and not waited for), BRG_EINVAL
//  (bad options, timeout_ms < 0), BRG_EDEADLK (on one of sys's own
//  threads: nothing is started), then as brg_supervisor_spawn_root; the code
//  is also in error->code. error may be NULL. opts is copied.
//  Thread: any thread but sys's own; blocks (an inbox, brigade/inbox.h).
BRG_EXPORT int brg_supervisor_spawn_sync(brg_system_t *sys, const brg_supervisor_opts_t *opts,
                                         int timeout_ms, brg_ref_t *sup,
                                         brg_supervisor_start_error_t *error);

//  A ready-made start function for a nested supervisor: arg is a
//  const brg_supervisor_opts_t * (not copied: keep it valid while the parent
//  lives). Give such a child type BRG_CHILD_SUPERVISOR (its shutdown then
//  defaults to BRG_SHUTDOWN_INFINITY, as OTP's does). A parent
//  supervisor waits until a supervisor it started has started all its own
//  children (recursively) before it starts its next child, as OTP's
//  synchronous start does; ordinary children start in spawn order, each one's
//  init possibly still running when the next is spawned.
BRG_EXPORT int brg_supervisor_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args,
                                    brg_ref_t *child);

//  ---------------------------------------------------------------------------
//  Requests and replies, for actors that ask a supervisor with brg_ask.

//  A request for the children, the counters, or a new dynamic child (add the
//  start arguments to it with the brg_msg_add_... builders), to stop one
//  dynamic child (by ref) or static child (by id), to restart or delete a
//  static child, or for a child's spec. NULL if out of memory (or, for the
//  by-id requests, an id longer than BRG_CHILD_ID_MAX).
//  Caller owns the returned message and must destroy it.
BRG_EXPORT brg_msg_t *brg_supervisor_msg_which(void);
BRG_EXPORT brg_msg_t *brg_supervisor_msg_count(void);
BRG_EXPORT brg_msg_t *brg_supervisor_msg_start(void);
BRG_EXPORT brg_msg_t *brg_supervisor_msg_terminate(brg_ref_t child);
BRG_EXPORT brg_msg_t *brg_supervisor_msg_terminate_id(const char *id);
BRG_EXPORT brg_msg_t *brg_supervisor_msg_restart(const char *id);
BRG_EXPORT brg_msg_t *brg_supervisor_msg_delete(const char *id);
BRG_EXPORT brg_msg_t *brg_supervisor_msg_get_childspec(const char *id);

//  Read the reply to a which request: fills out[0 .. min(count, max)) in
//  start order and returns count, the number of children (which may exceed
//  max). BRG_ETYPE or BRG_EBADMSG if reply is not such a reply.
BRG_EXPORT int brg_supervisor_read_which(const brg_msg_t *reply, brg_child_info_t *out, size_t max);

//  Read the reply to a count request. BRG_OK, or BRG_ETYPE / BRG_EBADMSG.
BRG_EXPORT int brg_supervisor_read_count(const brg_msg_t *reply, brg_supervisor_counts_t *out);

//  Read the reply to a start or restart request: the new child, or
//  BRG_REF_NONE if its start function said BRG_CHILD_IGNORE. BRG_OK, or
//  BRG_ETYPE / BRG_EBADMSG.
BRG_EXPORT int brg_supervisor_read_started(const brg_msg_t *reply, brg_ref_t *child);

//  Read the reply to a get-childspec request. BRG_OK, or BRG_ETYPE / BRG_EBADMSG.
BRG_EXPORT int brg_supervisor_read_childspec(const brg_msg_t *reply, brg_child_about_t *out);

//  ---------------------------------------------------------------------------
//  Blocking helpers for threads outside the system (built on brg_system_ask).
//  Errors: those of brg_system_ask (BRG_ETIMEDOUT, BRG_ENOACTOR: the
//  supervisor is gone, BRG_EDEADLK: called on the system's own thread),
//  BRG_ENOMEM, and the supervisor's own answer.

//  The children, as brg_supervisor_read_which: returns their number.
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_which(brg_system_t *sys, brg_ref_t sup, int timeout_ms,
                                    brg_child_info_t *out, size_t max);

//  The counters. Thread: any thread but the system's own (there: BRG_EDEADLK at once, as
//  brg_system_ask); blocks up to timeout_ms.
BRG_EXPORT int brg_supervisor_count(brg_system_t *sys, brg_ref_t sup, int timeout_ms,
                                    brg_supervisor_counts_t *out);

//  Start a child of a dynamic supervisor. *args_p (may be NULL: no
//  arguments) is a message whose payload is the start arguments; its tag is
//  ignored. Takes ownership of *args_p and sets it to NULL. On BRG_OK *child
//  (if not NULL) is the new child, or BRG_REF_NONE if the start function said
//  BRG_CHILD_IGNORE (nothing is kept). Errors besides the above: BRG_EINVAL
//  (not a dynamic supervisor), BRG_ECLOSED (it is shutting down), or the start
//  function's code (nothing was started).
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_start_child(brg_system_t *sys, brg_ref_t sup, brg_msg_t **args_p,
                                          int timeout_ms, brg_ref_t *child);

//  Add a child to a static supervisor and start it (OTP's start_child with a
//  child spec): it becomes the last child in start order. spec is copied
//  (its arg is not: keep it valid while the supervisor lives). On BRG_OK
//  *child (if not NULL) is the new child, or BRG_REF_NONE if its start
//  function said BRG_CHILD_IGNORE (then the spec is kept, stopped, unless
//  the child is temporary). If the start fails nothing is kept. Errors
//  besides the above: BRG_EINVAL (a bad spec, a dynamic supervisor, or
//  BRG_SUPERVISOR_CHILDREN_MAX reached), BRG_EEXIST (the id is taken: OTP's
//  already_started or already_present; or the spec's name is held),
//  BRG_ECLOSED (shutting down), or the start function's code. The spec
//  travels by a token, not in the message: only this process can add one.
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_add_child(brg_system_t *sys, brg_ref_t sup,
                                        const brg_child_spec_t *spec, int timeout_ms,
                                        brg_ref_t *child);

//  Stop one child of a dynamic supervisor (with its spec's shutdown) and
//  forget it: it is not restarted. Returns once the child is dead and
//  removed (OTP). A child that is restarting (its last start failed) is found
//  by the ref it had, and forgotten. BRG_OK too for a ref that is no longer
//  alive (already gone: nothing to do). Errors besides the above: BRG_EINVAL
//  (not a dynamic supervisor: use brg_supervisor_terminate_child_id),
//  BRG_ENOTFOUND (a live actor that is not its child).
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_terminate_child(brg_system_t *sys, brg_ref_t sup, brg_ref_t child,
                                              int timeout_ms);

//  Stop the static child `id` (with its spec's shutdown), once it is dead:
//  its spec is kept, not running (BRG_CHILD_STOPPED), and it is not restarted
//  until brg_supervisor_restart_child (or a later group restart) starts it;
//  a temporary child is forgotten. A child not running is fine (BRG_OK); a
//  restarting one stops being restarted. Errors besides the above:
//  BRG_ENOTFOUND (no such id), BRG_EINVAL (a dynamic supervisor).
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_terminate_child_id(brg_system_t *sys, brg_ref_t sup, const char *id,
                                                 int timeout_ms);

//  Start the static child `id` again, which must not be running: on BRG_OK
//  *child (if not NULL) is the new incarnation, or BRG_REF_NONE if the start
//  function said BRG_CHILD_IGNORE. Not counted against the intensity. Errors
//  besides the above: BRG_ENOTFOUND, BRG_EEXIST (running), BRG_EBUSY
//  (restarting), BRG_EINVAL (a dynamic supervisor), BRG_ECLOSED (shutting
//  down), or the start function's code; BRG_EEXIST also if its registered
//  name is held by another actor (this call does not wait for it).
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_restart_child(brg_system_t *sys, brg_ref_t sup, const char *id,
                                            int timeout_ms, brg_ref_t *child);

//  Forget the static child `id`, which must not be running (terminate it
//  first). Errors besides the above: BRG_ENOTFOUND, BRG_EEXIST (running),
//  BRG_EBUSY (restarting), BRG_EINVAL (a dynamic supervisor).
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_delete_child(brg_system_t *sys, brg_ref_t sup, const char *id,
                                           int timeout_ms);

//  The spec of child `id` (a dynamic supervisor's one spec by its id).
//  Errors besides the above: BRG_ENOTFOUND.
//  Thread: any thread but the system's own (there: BRG_EDEADLK at once, as brg_system_ask); blocks
//  up to timeout_ms.
BRG_EXPORT int brg_supervisor_get_childspec(brg_system_t *sys, brg_ref_t sup, const char *id,
                                            int timeout_ms, brg_child_about_t *out);

#endif
