//  zmq_io - the node's I/O thread: every ZeroMQ socket, the peer table,
//  the outbound queue, sessions and reconnects.
//
//  Design notes.
//
//  One thread owns every socket. libzmq forbids using a socket from two
//  threads even behind a mutex (TRANSPORT.md section 2), and per-worker
//  sockets would break per-pair FIFO when an actor migrates between workers.
//  So workers hand outbound messages to this thread through one MPSC queue
//  (outq.c: one CAS per message, an eventfd write only when the thread was
//  idle), and it does everything else: it grabs the queue, buckets the
//  messages per peer in order, has each peer's session encode them into
//  BATCH frames (up to 64 KiB or 1024 envelopes each), sends the frames,
//  reads every inbound frame, runs the session timers, and reconnects seeds.
//
//  I/O on a worker (cfg.io_on_worker, the default). "This thread" below is
//  then worker 0 for the node's whole life between start and stop: the I/O
//  thread binds, dials the seeds, and hands the sockets to worker 0 through
//  the scheduler's park hook (runtime/sched.h, s_hand_to_worker); worker 0
//  runs s_hook_turn (one turn of the loop, s_turn) between activations and
//  whenever it would sleep, and sleeps in s_hook_wait (zmq_poll on every
//  socket, the doorbell and its own wake-up eventfd) instead of on its
//  condition variable. Only one thread ever uses the sockets at a time: the
//  I/O thread before it installs the hook and after brg__io_shutdown has it
//  removed, worker 0 in between; the hook's lock is the full barrier
//  libzmq asks for when a socket moves between threads. What it buys: a
//  frame read by worker 0 makes its actors runnable in worker 0's own LIFO
//  slot, so they run on the thread that read it, and their replies, queued
//  on the same thread, go out in the turn right after the activation
//  (brg__sched_note_remote_send): no thread hand-off in either direction
//  (with the dedicated thread, two per message: worker to I/O thread and
//  I/O thread to worker). What it costs: while worker 0 runs actors, it
//  serves the sockets only between its activations (every 64 at least,
//  and after each one that sent to another node), so a long behaviour call
//  on worker 0 would hold the node's traffic and ticks until it returned.
//  The I/O thread is the backup: it wakes every S_BACKUP_NS (10 ms) and,
//  if the hook's lock is free (worker 0 is neither turning nor waiting in
//  the hook), takes a turn itself under that lock (s_backup_turn; what it
//  delivers goes through the inject queue, as it did before the hook). A
//  stream would have its encoding and its actors share one core: a turn
//  that moved 256 messages or more makes worker 0 I/O-bound (sched.h,
//  "Heavy I/O"): it hands its actors to the other workers and keeps
//  turning while turns stay heavy. cfg.io_on_worker = false keeps the
//  dedicated thread (the loop in s_main) for the node's whole life.
//
//  Sockets (TRANSPORT.md section 3.1). One ROUTER (the inbox) bound to every
//  listen endpoint: ROUTER_MANDATORY (an unroutable reply is an error, not a
//  silent drop), ROUTER_HANDOVER, MAXMSGSIZE = max_frame, no ZMTP heartbeats
//  (see s_setopts_common),
//  LINGER 0. Per peer one DEALER (the outbox) connected to the peer's inbox,
//  with routing id 'B' + our UUID + a connection counter (never reused),
//  RECONNECT_IVL -1 (ZeroMQ's silent reconnect would resume a stream with a
//  hole in it: a session ends on any break, and this thread reconnects with
//  jittered backoff instead), and a monitor PAIR that reports
//  DISCONNECTED / CLOSED / HANDSHAKE_FAILED, which end the session at once.
//  Our frames go out on our outbox; WELCOME (and ERROR answering the peer's
//  frames) go back through the ROUTER to the peer's outbox; a client (no
//  endpoint) gets everything through the ROUTER.
//
//  Objects, all owned by this thread unless said otherwise:
//  - peer (brg__peer_t): one per node UUID ever seen, in an open-addressing
//    table published with release and read by senders with acquire; never
//    freed before the io, so a sender may hold one without a reference. Its
//    state word (CONNECTING / UP / DOWN) and queued_bytes are atomics the
//    senders read; everything else is this thread's.
//  - conn (s_conn_t): one session attempt: the session object, our outbox
//    and its monitor, the routing id of the peer's outbox on our inbox, the
//    frames ZeroMQ refused (EAGAIN) in order. A conn learns its peer from
//    the peer's HELLO or WELCOME.
//  - dial (s_dial_t): an endpoint we connect to (seeds, brg_node_connect,
//    an address of a name): reconnected after every end with full-jitter
//    exponential backoff (100 ms doubling to reconnect_max_ms; reset after
//    30 s up) until brg_node_disconnect (or its name no longer has it).
//  - name (s_name_t): a seed or connect whose host is a DNS name (below).
//  - learned (s_learned_t): a node a peer told us about, waiting for its
//    dial; such a dial is marked learned (section "Mesh", further down).
//
//  Matching the two directions. A dial learns the peer's UUID only from its
//  WELCOME, but the peer's own HELLO (its outbox, dialed back to our
//  advertised endpoint) may reach our inbox first. A HELLO whose advertised
//  endpoint is a pending dial's endpoint joins that dial's session; any
//  other HELLO from a node we do not know waits ("parked", at most
//  handshake_ms) while a dial is pending, and joins the dial whose WELCOME
//  names its node. Otherwise it starts a new session. A HELLO from a node
//  whose session already has an inbound direction replaces that session.
//
//  Names (seeds and brg_node_connect of tcp://HOST:PORT, HOST a DNS name:
//  it has a letter and is not an IP literal, s_dns_name). A name (s_name_t)
//  is resolved to every address (getaddrinfo, AF_UNSPEC, SOCK_STREAM) and
//  each address gets its own dial (tcp://a.b.c.d:PORT, tcp://[v6]:PORT,
//  the name's key), so a name that stands for several nodes (a headless
//  service) reaches them all. getaddrinfo blocks, so it never runs here nor
//  on a worker: one resolver thread per node, started on the first name.
//  Ownership: the I/O thread owns the names and their dials; a request
//  (s_req_t) is malloc'd here and owned by the resolver once queued (under
//  its lock), which frees it after the call; the answer is a RESOLVED item
//  (every address, one per line) pushed on this node's outbound queue, the
//  same MPSC the workers use, owned by this thread once grabbed. The
//  resolver struct is shared and refcounted (the I/O thread and the
//  resolver thread; the last one frees it). At shutdown, before its last
//  grab of the queue, this thread sets stop under the resolver's lock, and
//  the resolver pushes only under that lock while stop is unset, so no
//  answer arrives after the drain; pending requests are dropped, and a
//  resolution in progress gets S_RESOLVE_JOIN_MS (2 s) to end. Past that
//  the thread is detached: it touches only the resolver struct, frees its
//  answer and, as the last owner, the struct. A name is resolved again
//  every reconnect_max_ms, on every brg_node_connect of it, and when none
//  of its addresses has a session (at most once a second); new addresses
//  get dials, vanished ones are not redialed (a session they have stays
//  until it ends). A failed resolution keeps the addresses it had, is
//  retried with the dial backoff, and is logged only when the outcome
//  changes; success is logged when the set of addresses changes.
//
//  Duplicates. Two dials may reach one node (A and AAAA of a host; an IP
//  also dialed under a name; a node bound on several addresses of a name).
//  The session that came up first stays; the others stand by:
//  - A dial's HELLO says "probe" (PROTOCOL.md section 10). An acceptor with
//    a live session with that node (one that has its inbound direction)
//    answers a probe with WELCOME "standby", naming itself, and opens no
//    session; the dial learns the node (dial->hi/lo) and ends quietly
//    (never counted as a session). A HELLO without "probe" still replaces
//    the session (the peer saw the break first).
//  - A dial that knows its node stands by (s_dial_standby) while that node
//    has a live session through another conn, or another dial to it is
//    under way; it looks again every S_STANDBY_NS and dials only when that
//    node's session is down, so there is no replace/flap loop.
//  - A "standby" answer from a node we have no session with (and no dial
//    under way) means the acceptor holds a stale one: the next HELLO of
//    that dial goes without "probe" and replaces it, as before.
//  brg_node_connect waiting on a standing-by dial (or a name) returns as
//  soon as the node it reaches is up, whichever conn carries it.
//
//  Backpressure (TRANSPORT.md section 9). queued_bytes counts a message from
//  brg__io_send until its session has encoded it; a user message that would
//  take it past peer_queue_bytes is refused (BRG_EBUSY); control signals
//  never are. When ZeroMQ refuses a frame (EAGAIN at SNDHWM) the conn keeps
//  it and the frames after it, stops feeding the session, and polls the
//  outbox for POLLOUT: messages wait in the peer's backlog, so the budget
//  fills and senders learn it.
//  Busy peers (runtime/remote.h, as Erlang's busy distribution port): long
//  before the budget, an actor whose user send finds more than
//  peer_busy_bytes queued for the peer (default 1 MiB) is suspended after
//  that behaviour call on the peer's gate (brg__remote_note_busy): its sends
//  all succeed, its worker runs other actors, and it runs again when this
//  thread has drained the peer to half the mark (s_unqueue opens the gate)
//  or dead-lettered its queue (the node was lost, or shut down). So a stream
//  keeps at most the mark plus one behaviour call's sends per sender queued,
//  where it used to run up to the 64 MiB budget ahead: about 170 MB of
//  messages and queue entries, page faults and cache misses on both sides
//  (remote_stream went from 0.6x to about 1x raw ZeroMQ; docs/PERFORMANCE.md).
//  A peer's gate number is its table slot + 1 with a serial above it
//  (S_GATE_SLOT_BITS), so brg__io_gate_wait finds the peer in O(1) and a
//  retired peer's gate is never mistaken for its slot's next tenant.
//
//  Session callbacks are synchronous (session.h): a session never frees
//  itself, and this thread never destroys a session from inside one of its
//  callbacks; an ended conn is reaped after the call returns.
//
//  Synchronization with other threads:
//    peer table slots    written here (release), read by senders (acquire)
//    peer->state         written here (release), read by senders (acquire)
//    peer->queued_bytes  relaxed increments by senders (a budget); the
//                        decrements (s_unqueue) are seq_cst RMWs, each
//                        followed by a seq_cst load of gate_waiters: the
//                        Dekker pair with brg__io_gate_wait, which stores
//                        gate_waiters then loads queued_bytes (seq_cst), so
//                        a suspended sender is always seen and woken
//    peer->gate_waiters  set by a sender being suspended (under the runtime's
//                        bp lock), cleared by whoever opens the gate
//    counters (atomics)  relaxed: they only count
//    io->lock            guards the waiters of brg_node_connect, the
//                        published stats and the started flag; no other
//                        lock is ever taken while it is held.
//    resolver->lock      guards its requests, refs and stop; the answer is
//                        pushed on the outbound queue under it (the queue
//                        takes no lock).
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "brigade.h"
#include "debug.h"
#include "keys.h"
#include "msg.h"
#include "outq.h"
#include "remote.h"
#include "session.h"
#include "wire.h"
#include "zmq_io.h"

#define S_TABLE_SIZE 2048 // peer table slots (power of two)
#define S_PUB_SESSIONS 64 // live sessions whose counters are published for operators
#define S_MAX_PEERS 1024  // live node UUIDs in the table (TRANSPORT.md section 10)
//  A slot whose client peer was retired (s_peer_retire): lookups probe past
//  it, inserts reuse it. Never dereferenced.
#define S_TOMB ((brg__peer_t *)(uintptr_t)1)
#define S_ENV_OVERHEAD 64 // bytes a message's envelope adds to its payload, for the budget
//  A peer's busy gate: its table slot + 1 in the low bits (12: S_TABLE_SIZE
//  is 2^11), which peer of that slot above them (brg__io_gate_wait).
#define S_GATE_SLOT_BITS 12
#define S_RECV_BURST 64 // inbound frames read per socket per turn (up to 64 Ki messages)
#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_RESET_NS (30ull * 1000000000ull)
#define S_SHUTDOWN_LINGER_MS 1000
#define S_PARK_MAX 64
#define S_TURN_ITEMS 4096         // queued items handled per turn of the loop
#define S_HOOK_REPOLL_NS 20000ull // I/O on a worker: its busy turns look at the sockets this often
#define S_BACKUP_NS 10000000ull   // I/O on a worker: the I/O thread's look while worker 0 is busy
#define S_REPOLL_NS 250000ull     // longest run of busy turns without a look at the sockets
#define S_STANDBY_NS 200000000ull // a standing-by dial looks at its node this often
#define S_RESOLVE_GAP_NS 1000000000ull // "all down" re-resolves a name at most this often
#define S_RESOLVE_JOIN_MS 2000         // shutdown waits this long for a resolution
#define S_RESOLVED_MAX 64              // addresses of a name dialed (the first ones)
#define S_GOSSIP_PENDING_MAX 64        // learned nodes waiting for their dial
#define S_GOSSIP_DIALING_MAX 4         // learned nodes in their handshake at once
#define S_GOSSIP_TRIES 3               // attempts of a learned dial that never came up
#define S_GOSSIP_DIALS_MAX 256         // learned dials kept at once
#define S_GOSSIP_LOG_MAX 8             // refusals logged per gossip batch (all are counted)

enum { S_PEER_CONNECTING = 1, S_PEER_UP, S_PEER_DOWN };
enum {
    S_ITEM_MSG,
    S_ITEM_CONNECT,
    S_ITEM_DISCONNECT,
    S_ITEM_STATS,
    S_ITEM_KEYS,
    S_ITEM_STOP,
    S_ITEM_RESOLVED,
    S_ITEM_LEARN
};

typedef struct s_conn s_conn_t;
typedef struct s_dial s_dial_t;
typedef struct s_name s_name_t;

//  One node we know (see the design notes).
typedef struct brg__peer {
    uint64_t hi, lo;                   // node UUID (immutable once published)
    char name[BRG__WIRE_NAME_MAX + 1]; // its name from its first HELLO (immutable)
    _Atomic int state;                 // S_PEER_*: written here, read by senders
    _Atomic size_t queued_bytes;       // budget: senders add, this thread subtracts
    uint32_t gate;                     // its busy gate (s_peer_add; immutable once published)
    _Atomic uint32_t gate_waiters;     // a sender may be suspended on the gate (brg__io_gate_wait)
    _Atomic uint32_t epoch;            // sessions ended so far: written here, read by senders
    //  For operators (brg__io_peer_stats), relaxed: they only count.
    _Atomic bool client_pub;       // client (below), for other threads (written here)
    _Atomic uint64_t dropped_busy; // sends to it refused past peer_queue_bytes
    _Atomic uint64_t dropped_down; // sends to it while it was down
    // I/O thread only:
    s_conn_t *conn;         // its current session, or NULL
    struct s_item *bl_head; // messages waiting for UP or a writable outbox
    struct s_item *bl_tail;
    bool touched; // has a BATCH to flush at the end of this turn
    struct brg__peer *touched_next;
    bool client;                    // its last HELLO said role "client" (never dialed by the mesh)
    struct brg__peer *retired_next; // on io->retired once out of the table (client peers)
} brg__peer_t;

//  A message or a command on the outbound queue.
typedef struct s_item {
    brg__outq_node_t link; // the queue's link (first member)
    struct s_item *next;   // backlog link
    int type;              // S_ITEM_*
    int rc;                // RESOLVED: getaddrinfo's result (0 or EAI_*); LEARN: entries
    brg__peer_t *peer;     // MSG: its peer
    brg_ref_t to;          // MSG: target; DISCONNECT: the peer
    brg_msg_t *msg;        // MSG
    size_t bytes;          // MSG: counted in peer->queued_bytes
    uint32_t epoch;        // MSG: peer->epoch when it was sent
    uint64_t waiter;       // CONNECT: the waiter's id, 0 = none; RESOLVED: the name's id
    char name[];           // MSG: the target name ("" = by id); CONNECT: the endpoint;
                           // RESOLVED: the endpoints, one per line; LEARN: the
                           // entries (brg__wire_peer_t, byte-aligned)

} s_item_t;

//  A message's entry comes from the message free lists (brg__msg_block_alloc:
//  no malloc per remote send, and the I/O thread's frees flow back to the
//  workers in batches); it always fits, target name included. The rare
//  commands (connect, disconnect, stats, stop) are malloc'd.
_Static_assert(sizeof(s_item_t) + BRG_NAME_MAX + 1 <= BRG__MSG_BLOCK,
               "a message's queue entry fits a message block");

static void
s_item_free(s_item_t *it)
{
    if (it->type == S_ITEM_MSG)
        brg__msg_block_free(it);
    else
        free(it);
}

//  A frame ZeroMQ refused (EAGAIN), kept in order until the outbox is writable.
typedef struct s_frame {
    struct s_frame *next;
    size_t len;
    uint8_t data[];
} s_frame_t;

struct s_conn {
    s_conn_t *next;
    brg__io_t *io;
    brg__session_t *sess;
    brg__peer_t *peer;                // once its HELLO or WELCOME named it
    s_dial_t *dial;                   // when we dialed
    void *outbox;                     // our DEALER to the peer's inbox, or NULL
    void *monitor;                    // the outbox's monitor PAIR
    void *inbox;                      // the inbox ROUTER rid is on (plain or CURVE)
    uint8_t rid[256];                 // routing id of the peer's outbox on our inbox
    size_t rid_len;                   // 0: no inbound direction yet
    bool has_key;                     // the peer proved this key (CURVE), or we dialed it
    uint8_t key[BRG__KEY_BYTES];      //   with it as the server key
    bool refusal_logged;              // a refused envelope of this client was logged
    bool admin;                       // the client proved an admin key: it may reach every name
    s_frame_t *pend_head, *pend_tail; // frames refused by ZeroMQ, in order
    bool busy;                        // pend_head != NULL: poll POLLOUT, do not feed the session
    bool out_ready, mon_ready;        // outbox / monitor may hold messages (see "Readiness")
    bool can_write;                   // the last poll saw the outbox writable (busy only)
    bool up;                          // the session came up
    bool need_drain;                  // feed the peer's backlog at the end of this turn
    bool failed;                      // end it after the current call (outbox could not open)
    bool ended;                       // io->ended was called; reap it
    bool marked_down;                 // its peer was marked down (s_mark_down)
    bool probe;                       // its HELLO said "probe" (see "Duplicates")
    bool standby;                     // answered WELCOME "standby": dup_hi/lo is up already
    uint64_t dup_hi, dup_lo;
    brg__end_reason_t reason;
};

struct s_dial {
    s_dial_t *next;
    char ep[BRG__WIRE_EP_MAX + 1]; // without a KEY@ or NAME@ prefix
    bool has_key;                  // tcp over CURVE: the server key the peer must hold
    uint8_t key[BRG__KEY_BYTES];
    bool key_logged;      // "key not allowed" was logged for this dial
    bool stopped;         // brg_node_disconnect: no more attempts
    uint32_t backoff_ms;  // current ceiling of the jittered delay
    uint64_t next_at_ns;  // next attempt, 0 = none scheduled
    uint64_t up_since_ns; // when its last session came up
    s_conn_t *conn;       // the current attempt
    uint64_t hi, lo;      // the node behind it last time (0, 0 = never up)
    uint64_t waiter;      // a brg_node_connect waiting for it, 0 = none
    s_name_t *name;       // the DNS name it is an address of, or NULL (dialed as given)
    bool gone;            // its name no longer resolves to it: not redialed
    bool seen;            // in the answer being handled (s_on_resolved)
    bool force;           // next HELLO without "probe": replace a stale session
    uint8_t standbys;     // "standby" answers in a row with no session of ours to that node
    bool learned;         // dialed by the mesh (gossip), not by the user (see "Mesh")
    uint8_t fails;        // learned: attempts in a row that never came up
};

//  A node learned from gossip, waiting for its dial (see "Mesh").
typedef struct s_learned {
    struct s_learned *next;
    uint64_t hi, lo;
    uint64_t due_ns;
    bool has_key;
    uint8_t key[BRG__KEY_BYTES];
    char ep[BRG__WIRE_EP_MAX + 1];
    char name[BRG__WIRE_NAME_MAX + 1];
} s_learned_t;

//  A tcp:// endpoint to dial whose host is a DNS name (see "Names").
struct s_name {
    s_name_t *next;
    uint64_t id;                     // names the resolver's answers (never reused)
    char text[BRG__WIRE_EP_MAX + 1]; // as given, prefix included (logs)
    char host[256];
    char port[16];
    bool has_key;
    uint8_t key[BRG__KEY_BYTES];
    bool stopped;        // brg_node_disconnect stopped every address of it
    bool resolving;      // a request is with the resolver
    bool resolved_once;  // an answer came (the outcome below is meaningful)
    int last_rc;         // getaddrinfo's last result (0 or EAI_*): logged on change
    uint32_t backoff_ms; // failed resolutions: the dial backoff
    uint64_t next_at_ns; // next resolution, 0 = none scheduled
    uint64_t done_ns;    // when the last answer came
    uint64_t waiter;     // a brg_node_connect waiting for any of its addresses
};

//  The resolver thread (see "Names"): shared by the I/O thread and itself,
//  freed by the last of the two (refs, under lock).
typedef struct s_req {
    struct s_req *next;
    uint64_t id;
    char host[256];
    char port[16];
} s_req_t;

typedef struct s_resolver {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs;      // 2 while both use it, then 1
    bool stop;     // no more answers: q may be gone
    s_req_t *head; // pending requests, FIFO
    s_req_t *tail;
    brg__outq_t *q; // where answers go (only while !stop, under lock)
    pthread_t thread;
} s_resolver_t;

//  A HELLO from an unknown node, waiting for pending dials (design notes).
typedef struct s_parked {
    struct s_parked *next;
    uint64_t deadline_ns;
    void *inbox;
    bool has_key;
    uint8_t key[BRG__KEY_BYTES];
    size_t rid_len;
    uint8_t rid[256];
    size_t len;
    uint8_t data[];
} s_parked_t;

//  A thread waiting in brg_node_connect (on its stack; under io->lock).
typedef struct s_waiter {
    struct s_waiter *next;
    uint64_t id;
    bool done;
    int rc;
    brg_ref_t peer;
} s_waiter_t;

struct brg__io {
    brg_system_t *sys;
    brg_node_config_t cfg; // strings point into the copies below
    char name[BRG_NODE_NAME_MAX + 1];
    char cluster[BRG__WIRE_NAME_MAX + 1];
    char listen[BRG_NODE_MAX_ENDPOINTS][BRG__WIRE_EP_MAX + 1];
    char connect[BRG_NODE_MAX_ENDPOINTS][BRG__WIRE_EP_MAX + 1];
    char advertise[BRG__WIRE_EP_MAX + 1];
    brg__io_event_fn event_fn;
    void *event_arg;
    uint64_t hi, lo;    // our node UUID
    uint8_t uuid[16];   // the same, as bytes
    int peers_up;       // peers in state UP (this thread's; s_peer_set_state)
    bool inbox_ready;   // the inbox may hold frames: read it (see "Readiness")
    uint64_t polled_ns; // when zmq_poll last refreshed the ready flags
    brg__session_cfg_t scfg;
    brg__session_io_t sio;

    // Endpoints as bound (written by the I/O thread before started is set
    // under lock; immutable after).
    char bound[BRG_NODE_MAX_ENDPOINTS][BRG__WIRE_EP_MAX + 1];
    int nbound;

    brg__outq_t q;
    //  I/O on worker 0 (cfg.io_on_worker; "I/O on a worker" in the design
    //  notes): the park hook, installed by the I/O thread after start, and
    //  hook_stop (lock/cond) that tells the I/O thread to take the sockets
    //  back and stop.
    brg__park_hook_t hook;
    uint32_t moved; // messages taken from the queue or delivered (this thread's; a turn's measure)
    bool
        hook_stop; // lock; signalled on hook_cond (its own: cond wakes for every stats publication)
    pthread_cond_t hook_cond;
    pthread_t thread;
    bool thread_started;
    bool shut_down; // brg__io_shutdown ran (the destroying thread)

    // The peer table (see synchronization in the design notes).
    _Atomic(brg__peer_t *) table[S_TABLE_SIZE];
    uint32_t npeers;                // live entries of the table; I/O thread only
    brg__peer_t *retired_peers;     // client peers taken out of the table; freed at destroy
    _Atomic uint64_t retired_count; // how many: written here, relaxed (a count)
    uint32_t gate_serial;           // peers added so far (s_peer_add; their gates)
    size_t busy_low;                // a busy peer's gate opens at or under this (busy/2)
    _Atomic uint64_t busy_waits;    // senders suspended on busy peers (brg__io_gate_wait)

    // Security (PROTOCOL.md section 22). curve and cert are written before
    // the thread starts and immutable after; keys has its own lock.
    bool curve;                        // tcp:// endpoints use CURVE
    bool no_keys;                      // curve, but the key directory was unusable: no tcp://
    brg__cert_t cert;                  // this node's key pair (curve only)
    char key_dir[1024];                // where it and allowed/ live
    char zap_domain[40];               // this node's ZAP domain: its UUID in hex
    brg__keys_t *keys;                 // the allow-list
    pthread_mutex_t exp_lock;          // guards exports
    char (*exports)[BRG_NAME_MAX + 1]; // names clients may reach
    size_t nexports, exports_cap;
    // The ZAP thread's (under s_zap_lock): keys whose refusal was logged.
    uint8_t zap_logged[16][BRG__KEY_BYTES];
    uint32_t zap_nlogged;

    // I/O thread only:
    void *ctx;
    void *router;          // the plain inbox: ipc://, inproc:// (and tcp:// without CURVE)
    void *router_sec;      // the CURVE inbox: tcp://, or NULL
    void *sec_monitor;     // router_sec's monitor PAIR: refused handshakes
    bool sec_ready;        // router_sec may hold frames
    bool sec_mon_ready;    // its monitor may hold events
    char hs_logged[8][64]; // addresses whose failed handshake was logged lately
    uint32_t hs_nlogged;
    uint64_t hs_window_ns;
    s_conn_t *conns;
    s_dial_t *dials;
    s_name_t *names;
    uint64_t next_name_id;
    s_resolver_t *resolver; // started on the first name
    s_parked_t *parked;
    uint32_t nparked;
    s_learned_t *learned; // mesh: learned nodes waiting for their dial
    uint32_t nlearned;
    uint32_t nlearned_dials; // dials with learned set in dials
    bool unparking;          // inside s_unpark
    brg__peer_t *touched;
    brg__outq_node_t *left; // grabbed but not handled yet (FIFO), see s_grab
    uint32_t conn_counter;
    bool stopping;
    uint64_t rng;
    brg__frame_t frame; // decode space (large: a HELLO holds 64 peers)
    brg__wbuf_t wbuf;   // encode space for our own ERROR frames
    uint64_t error_window_ns;
    uint32_t errors_in_window;
    // Totals of ended sessions (their stats are gone with them).
    brg__session_stats_t retired;

    // Counters updated by any thread (relaxed: they only count).
    _Atomic uint64_t dropped_busy, dropped_unreachable, dead_on_end, rejected, handshakes_failed,
        reconnects, sessions_started, sessions_ended, refused_keys, refused_handshakes,
        gossip_learned, gossip_refused;

    pthread_mutex_t lock; // waiters, published stats, startup
    pthread_cond_t cond;
    s_waiter_t *waiters;
    uint64_t next_waiter;
    int start_rc; // 1 = starting, else the result of the binds
    brg_node_stats_t pub;
    uint64_t pub_gen;
    //  The live sessions' counters as last published (under lock), for
    //  brg__io_peer_stats: at most S_PUB_SESSIONS of them.
    brg__io_peer_stat_t pub_sess[S_PUB_SESSIONS];
    int pub_nsess;
};

//  ThreadSanitizer and libzmq. Debian's libzmq is not built with TSan, so
//  the hand-offs inside it (a message buffer passed from the sending thread
//  to libzmq's I/O thread, or between two sockets of one process over
//  inproc://, through its lock-free pipes) are invisible to TSan, which then
//  reports every frame as a race between a write in libzmq (the buffer's
//  malloc and memcpy in zmq_send) and a read or free in another thread.
//  These are libzmq's own synchronisation, not ours: every socket here is
//  used by the I/O thread alone. So a TSan build of anything that links the
//  transport carries these suppressions, scoped to libzmq (and libstdc++,
//  which only libzmq uses in this process): races whose stack shows libzmq,
//  and interceptors (memcpy, malloc, recv) called from inside it. The same
//  for libsodium, which only libzmq calls (CURVE): it decrypts each frame
//  with a memmove on libzmq's I/O thread into the buffer our thread reads
//  next, a hand-off through libzmq's pipes that TSan cannot see, and its
//  stack shows no libzmq frame.
//
//  A stack-scoped suppression is not enough on its own: when TSan's history
//  has lost the writer's stack ("failed to restore the stack"), nothing in
//  the report names libzmq and it fires; and every suppressed report costs a
//  symbolization, which under a flood stalled this thread for seconds (the
//  peer then timed the session out). So the reader side also tells TSan
//  the truth: a buffer zmq_msg_recv hands us is new memory to this thread
//  (AnnotateNewMemory resets its shadow), since libzmq has published it
//  through a pipe TSan cannot see and no other thread touches it until we
//  close the message.
#ifdef BRG__TSAN
__attribute__((visibility("default"))) const char *__tsan_default_suppressions(void);
const char *
__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n"
           "race:libsodium.so\n"
           "called_from_lib:libzmq.so\n"
           "called_from_lib:libsodium.so\n"
           "called_from_lib:libstdc++.so\n";
}
//  Between two sockets of this process (inproc://) both ends of a hand-off
//  are our I/O threads, so TSan can be told the truth instead: the sender
//  fills the message buffer, then releases, then zmq_msg_send publishes it;
//  the receiver acquires after zmq_msg_recv, before it reads.
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static int s_hb; // the address of the annotations (never read)
void AnnotateNewMemory(const char *file, int line, const volatile void *mem, size_t size);
#define S_HB_SEND() __tsan_release(&s_hb)
#define S_HB_RECV(m)                                                                               \
    do {                                                                                           \
        __tsan_acquire(&s_hb);                                                                     \
        AnnotateNewMemory(__FILE__, __LINE__, zmq_msg_data(m), zmq_msg_size(m));                   \
    } while (0)
#else
#define S_HB_SEND() ((void)0)
#define S_HB_RECV(m) ((void)0)
#endif

//  ---------------------------------------------------------------------------
//  The ZeroMQ context: one per process, shared by every node in it, so that
//  inproc:// works between two systems of one process.
//
//  The ZAP handler (RFC 27, TRANSPORT.md section 10). libzmq asks the
//  handler bound at inproc://zeromq.zap.01 in a socket's context whether a
//  CURVE client's key may in; without one it lets every key in. There is
//  one such address per context, so one handler thread per process serves
//  every node in it: each node's CURVE inbox sets ZMQ_ZAP_DOMAIN to the
//  node's UUID, and the handler finds the node's allow-list by that
//  domain. It starts (and is bound) before the first CURVE socket of the
//  process is made, and stops after the last node released the context;
//  if it cannot start, no CURVE node starts. Sockets: its REP is its own;
//  the doorbell is an eventfd. s_zap_lock guards the domain list and the
//  nodes' zap_logged; a node leaves the list before it is freed.

static pthread_mutex_t s_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static void *s_ctx;
static int s_ctx_refs;

typedef struct s_zap_dom {
    struct s_zap_dom *next;
    brg__io_t *io;
} s_zap_dom_t;

static pthread_mutex_t s_zap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_zap_cond = PTHREAD_COND_INITIALIZER;
static s_zap_dom_t *s_zap_doms;
static pthread_t s_zap_thread;
static int s_zap_state; // 0 not running, 1 starting, 2 running, -1 failed (under s_zap_lock)
static int s_zap_efd = -1;

static void s_zap_handle(void *rep);

static void *
s_zap_main(void *arg)
{
    void *ctx = arg;
    pthread_setname_np(pthread_self(), "brg-zap");
    void *rep = zmq_socket(ctx, ZMQ_REP);
    int linger = 0;
    bool ok = rep != NULL && zmq_setsockopt(rep, ZMQ_LINGER, &linger, sizeof linger) == 0 &&
              zmq_bind(rep, "inproc://zeromq.zap.01") == 0;
    pthread_mutex_lock(&s_zap_lock);
    s_zap_state = ok ? 2 : -1;
    pthread_cond_broadcast(&s_zap_cond);
    pthread_mutex_unlock(&s_zap_lock);
    while (ok) {
        zmq_pollitem_t items[2] = {{rep, 0, ZMQ_POLLIN, 0}, {NULL, s_zap_efd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, -1) < 0 && zmq_errno() != EINTR)
            break;
        if (items[1].revents & ZMQ_POLLIN)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            s_zap_handle(rep);
    }
    if (rep != NULL)
        zmq_close(rep);
    return NULL;
}

//  Start the handler if it is not running. Under s_ctx_lock (the context
//  exists). BRG_OK or BRG_ENETWORK.
static int
s_zap_start_locked(void)
{
    pthread_mutex_lock(&s_zap_lock);
    int state = s_zap_state;
    pthread_mutex_unlock(&s_zap_lock);
    if (state == 2)
        return BRG_OK;
    s_zap_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s_zap_efd < 0)
        return BRG_ENETWORK;
    pthread_mutex_lock(&s_zap_lock);
    s_zap_state = 1;
    pthread_mutex_unlock(&s_zap_lock);
    if (pthread_create(&s_zap_thread, NULL, s_zap_main, s_ctx) != 0) {
        pthread_mutex_lock(&s_zap_lock);
        s_zap_state = 0;
        pthread_mutex_unlock(&s_zap_lock);
        close(s_zap_efd);
        s_zap_efd = -1;
        return BRG_ENETWORK;
    }
    pthread_mutex_lock(&s_zap_lock);
    while (s_zap_state == 1)
        pthread_cond_wait(&s_zap_cond, &s_zap_lock);
    state = s_zap_state;
    pthread_mutex_unlock(&s_zap_lock);
    if (state != 2) {
        pthread_join(s_zap_thread, NULL);
        pthread_mutex_lock(&s_zap_lock);
        s_zap_state = 0;
        pthread_mutex_unlock(&s_zap_lock);
        close(s_zap_efd);
        s_zap_efd = -1;
        return BRG_ENETWORK;
    }
    return BRG_OK;
}

//  Under s_ctx_lock, before the context ends.
static void
s_zap_stop_locked(void)
{
    if (s_zap_state != 2)
        return;
    uint64_t one = 1;
    ssize_t n = write(s_zap_efd, &one, sizeof one);
    (void)n; // an eventfd write of 1 cannot fail short of overflow
    pthread_join(s_zap_thread, NULL);
    close(s_zap_efd);
    s_zap_efd = -1;
    pthread_mutex_lock(&s_zap_lock);
    s_zap_state = 0;
    pthread_mutex_unlock(&s_zap_lock);
}

static void *
s_ctx_acquire(void)
{
    pthread_mutex_lock(&s_ctx_lock);
    if (s_ctx == NULL)
        s_ctx = zmq_ctx_new();
    if (s_ctx != NULL)
        s_ctx_refs++;
    void *ctx = s_ctx;
    pthread_mutex_unlock(&s_ctx_lock);
    return ctx;
}

//  A CURVE node joins the handler's domains (starting it first).
static int
s_zap_register(brg__io_t *io)
{
    s_zap_dom_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return BRG_ENOMEM;
    d->io = io;
    pthread_mutex_lock(&s_ctx_lock);
    int rc = s_zap_start_locked();
    pthread_mutex_unlock(&s_ctx_lock);
    if (rc != BRG_OK) {
        free(d);
        return rc;
    }
    pthread_mutex_lock(&s_zap_lock);
    d->next = s_zap_doms;
    s_zap_doms = d;
    pthread_mutex_unlock(&s_zap_lock);
    return BRG_OK;
}

static void
s_zap_unregister(brg__io_t *io)
{
    pthread_mutex_lock(&s_zap_lock);
    for (s_zap_dom_t **pp = &s_zap_doms; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->io == io) {
            s_zap_dom_t *d = *pp;
            *pp = d->next;
            free(d);
            break;
        }
    }
    pthread_mutex_unlock(&s_zap_lock);
}

static void
s_ctx_release(void)
{
    pthread_mutex_lock(&s_ctx_lock);
    if (--s_ctx_refs == 0) {
        // Every socket of every node is closed by now; term waits only for
        // the lingering frames of an orderly shutdown (bounded by LINGER).
        s_zap_stop_locked();
        zmq_ctx_term(s_ctx);
        s_ctx = NULL;
    }
    pthread_mutex_unlock(&s_ctx_lock);
}

//  ---------------------------------------------------------------------------
//  Small helpers.

static uint64_t
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t
s_rand(brg__io_t *self)
{
    // xorshift64*: jitter only, no need for quality.
    uint64_t x = self->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    self->rng = x;
    return x * 2685821657736338717ull;
}

static void
s_uuid_split(const uint8_t uuid[16], uint64_t *hi, uint64_t *lo)
{
    *hi = brg__load_be64(uuid);
    *lo = brg__load_be64(uuid + 8);
}

static brg_ref_t
s_node_ref(uint64_t hi, uint64_t lo)
{
    brg_ref_t r = {hi, lo, 0};
    return r;
}

static void
s_log(brg__io_t *self, brg_log_level_t level, const char *fmt, const char *a, const char *b)
{
    brg_system_log(self->sys, level, "node", BRG_REF_NONE, fmt, a, b);
}

//  ---------------------------------------------------------------------------
//  The peer table.

static uint32_t
s_slot_of(uint64_t hi, uint64_t lo)
{
    uint64_t h = (hi ^ (lo * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return (uint32_t)(h >> 40) & (S_TABLE_SIZE - 1);
}

//  Busy peers (design notes, "Backpressure"). A message left a peer's
//  budget (encoded, or dead-lettered): once the budget is at or under the
//  low-water mark, the senders suspended on the peer's gate go back to work.
//  Seq_cst RMW, then seq_cst load of gate_waiters: the Dekker pair with
//  brg__io_gate_wait (store gate_waiters, load queued_bytes), remote.h. The
//  thread that runs the I/O (this one, or worker 0's turn), and a sender in
//  brg__io_send taking back a refused message's bytes; the gate opens from
//  either (brg__remote_gate_open: any thread).
static inline void
s_unqueue(brg__io_t *self, brg__peer_t *p, size_t bytes)
{
    size_t left = atomic_fetch_sub_explicit(&p->queued_bytes, bytes, memory_order_seq_cst) - bytes;
    if (left <= self->busy_low && atomic_load_explicit(&p->gate_waiters, memory_order_seq_cst) &&
        atomic_exchange_explicit(&p->gate_waiters, 0, memory_order_relaxed))
        brg__remote_gate_open(self->sys, p->gate);
}

static brg__peer_t *
s_peer_find(brg__io_t *self, uint64_t hi, uint64_t lo)
{
    uint32_t i = s_slot_of(hi, lo);
    for (uint32_t n = 0; n < S_TABLE_SIZE; n++, i = (i + 1) & (S_TABLE_SIZE - 1)) {
        // Acquire: the peer's immutable fields (uuid, name) were written
        // before the release store that published it in s_peer_add.
        brg__peer_t *p = atomic_load_explicit(&self->table[i], memory_order_acquire);
        if (p == NULL)
            return NULL;
        if (p != S_TOMB && p->hi == hi && p->lo == lo)
            return p;
    }
    return NULL;
}

//  The peer of a node, added if new. NULL when the table is full. I/O thread.
static brg__peer_t *
s_peer_add(brg__io_t *self, uint64_t hi, uint64_t lo, const char *name)
{
    brg__peer_t *p = s_peer_find(self, hi, lo);
    if (p != NULL)
        return p;
    if (self->npeers >= S_MAX_PEERS)
        return NULL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->hi = hi;
    p->lo = lo;
    snprintf(p->name, sizeof p->name, "%s", name);
    atomic_init(&p->gate_waiters, 0);
    atomic_init(&p->state, S_PEER_DOWN);
    atomic_init(&p->queued_bytes, 0);
    // The first free or retired slot of the probe sequence (there is one:
    // at most S_MAX_PEERS of the S_TABLE_SIZE slots are live).
    uint32_t i = s_slot_of(hi, lo);
    for (;;) {
        brg__peer_t *q = atomic_load_explicit(&self->table[i], memory_order_relaxed);
        if (q == NULL || q == S_TOMB)
            break;
        i = (i + 1) & (S_TABLE_SIZE - 1);
    }
    // The slot says where the peer is, the serial which peer of that slot.
    p->gate = (++self->gate_serial << S_GATE_SLOT_BITS) | (i + 1);
    // Release: publishes the peer's fields; pairs with s_peer_find's acquire.
    atomic_store_explicit(&self->table[i], p, memory_order_release);
    self->npeers++;
    return p;
}

static void
s_peer_set_state(brg__io_t *self, brg__peer_t *p, int state)
{
    // Only this thread writes the state, so the relaxed read is the last
    // value and peers_up (this thread's) follows it exactly.
    int old = atomic_load_explicit(&p->state, memory_order_relaxed);
    self->peers_up += (state == S_PEER_UP) - (old == S_PEER_UP);
    // Release: what this thread did before (the peer's conn, its name) is
    // visible to a sender that reads the new state; pairs with the acquire
    // loads in brg__io_send and brg__io_peer_up.
    atomic_store_explicit(&p->state, state, memory_order_release);
}

//  Take a client peer whose session has ended out of the table: a client
//  draws a fresh node UUID for every session (PROTOCOL.md section 5), so
//  without this every brgctl run or Python client session would keep one
//  of the S_MAX_PEERS entries for good, and the node would refuse new
//  peers after about a thousand. Its slot becomes S_TOMB (release: a
//  sender that still finds the peer reads it down, as before). The memory
//  is not freed until the node is destroyed: other threads may hold the
//  pointer (a sender between its lookup and its push, an item on the
//  outbound queue), and there is no grace period that covers them all; an
//  ended client session costs sizeof(brg__peer_t) bytes until then
//  (retired_count). I/O thread.
static void s_dead_letter_backlog(brg__io_t *self, brg__peer_t *p, brg_dead_reason_t reason);

static void
s_peer_retire(brg__io_t *self, brg__peer_t *p)
{
    uint32_t i = s_slot_of(p->hi, p->lo);
    for (uint32_t n = 0; n < S_TABLE_SIZE; n++, i = (i + 1) & (S_TABLE_SIZE - 1)) {
        if (atomic_load_explicit(&self->table[i], memory_order_relaxed) == p) {
            s_dead_letter_backlog(self, p, BRG_DEAD_REMOTE_DOWN);
            atomic_store_explicit(&self->table[i], S_TOMB, memory_order_release);
            self->npeers--;
            p->retired_next = self->retired_peers;
            self->retired_peers = p;
            atomic_fetch_add_explicit(&self->retired_count, 1, memory_order_relaxed);
            return;
        }
    }
}

//  ---------------------------------------------------------------------------
//  Keys.

//  May a peer holding key in? Our own key always may (nodes of one
//  deployment may share a key directory). role: what it may do.
static bool
s_key_allowed(brg__io_t *self, const uint8_t key[BRG__KEY_BYTES], brg_key_role_t *role)
{
    brg__key_entry_t e;
    if (memcmp(key, self->cert.pub, BRG__KEY_BYTES) == 0) {
        if (role != NULL)
            *role = BRG_KEY_NODE;
        return true;
    }
    if (brg__keys_lookup(self->keys, key, &e) != BRG_OK)
        return false;
    if (role != NULL)
        *role = e.role;
    return true;
}

static bool
s_is_tcp(const char *ep)
{
    return strncmp(ep, "tcp://", 6) == 0;
}

//  A tcp:// endpoint whose host is a loopback address: 127.0.0.0/8, [::1],
//  localhost, or the interface lo. Anything else (a wildcard, a name, an
//  interface;host pair) is not.
bool
brg__io_ep_is_loopback(const char *ep)
{
    if (!s_is_tcp(ep))
        return false;
    const char *host = ep + 6;
    const char *colon = strrchr(host, ':');
    if (colon == NULL || memchr(host, ';', (size_t)(colon - host)) != NULL)
        return false;
    size_t n = (size_t)(colon - host);
    if ((n == 9 && memcmp(host, "localhost", 9) == 0) || (n == 2 && memcmp(host, "lo", 2) == 0) ||
        (n == 5 && memcmp(host, "[::1]", 5) == 0))
        return true;
    if (n < 4 || memcmp(host, "127.", 4) != 0)
        return false;
    for (size_t i = 4; i < n; i++)
        if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
            return false;
    return true;
}

//  Split an endpoint to dial, KEY@tcp://..., NAME@tcp://... or plain, into
//  the endpoint and the server key a CURVE dial needs. BRG_OK; BRG_EINVAL
//  (a malformed KEY, a NAME that is no node key of the allow-list, plain
//  tcp:// to a non-loopback host without CURVE, a key on a non-tcp
//  endpoint): *why says.
static int
s_parse_dial(brg__io_t *self, const char *text, char *ep, size_t ep_len, bool *has_key,
             uint8_t key[BRG__KEY_BYTES], bool *z85_given, const char **why)
{
    *z85_given = false;
    const char *at = strstr(text, "@tcp://");
    if (strlen(text) >= BRG__KEY_Z85 + 7 && strncmp(text + BRG__KEY_Z85, "@tcp://", 7) == 0)
        at = text + BRG__KEY_Z85; // a key may itself hold "@tcp://"
    const char *plain = at != NULL ? at + 1 : text;
    if (strlen(plain) == 0 || strlen(plain) >= ep_len) {
        *why = "endpoint empty or too long";
        return BRG_EINVAL;
    }
    snprintf(ep, ep_len, "%s", plain);
    *has_key = false;
    if (at != NULL) {
        size_t n = (size_t)(at - text);
        char name[BRG_NODE_NAME_MAX + 1];
        brg__key_entry_t e;
        if (n == BRG__KEY_Z85 && brg__z85_decode(key, text, n) == BRG_OK) {
            *has_key = true;
            *z85_given = true;
        } else if (n > 0 && n < sizeof name) {
            memcpy(name, text, n);
            name[n] = '\0';
            if (brg__keys_by_name(self->keys, name, BRG_KEY_NODE, &e) != BRG_OK) {
                *why = "no node key of that name in the allow-list";
                return BRG_EINVAL;
            }
            memcpy(key, e.pub, BRG__KEY_BYTES);
            *has_key = true;
        } else {
            *why = "the part before @ is neither a key (40 characters of Z85) nor a key's name";
            return BRG_EINVAL;
        }
    }
    if (!s_is_tcp(ep))
        return BRG_OK; // ipc://, inproc://: plain (a key given is not needed)
    if (self->no_keys) {
        *why = "this node has no key pair (see the key directory error at its start)";
        return BRG_EINVAL;
    }
    if (!self->curve) {
        if (!brg__io_ep_is_loopback(ep)) {
            *why = "plain tcp:// (insecure_loopback) reaches only loopback addresses";
            return BRG_EINVAL;
        }
        *has_key = false;
        return BRG_OK;
    }
    if (!*has_key) {
        memcpy(key, self->cert.pub, BRG__KEY_BYTES); // a peer of our own deployment
        *has_key = true;
    }
    return BRG_OK;
}

//  One ZAP request (RFC 27): [version "1.0", request id, domain, address,
//  routing id, mechanism, credentials...]. Answered [version, request id,
//  status, status text, user id, metadata]: 200 with the key in Z85 as the
//  user id (the I/O thread reads it back from each HELLO), or 400.
static void
s_zap_handle(void *rep)
{
    enum { N = 8 };
    zmq_msg_t f[N];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, rep, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < N)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (more) { // cut off: a REP must still answer, but there is no request
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
        return;
    }
    const char *status = "400", *text = "not allowed";
    char user[BRG__KEY_Z85 + 1] = "";
    if (n >= 6) {
        char domain[64] = "", address[64] = "", mech[16] = "";
        size_t dl = zmq_msg_size(&f[2]), al = zmq_msg_size(&f[3]), ml = zmq_msg_size(&f[5]);
        if (dl < sizeof domain)
            memcpy(domain, zmq_msg_data(&f[2]), dl);
        if (al < sizeof address)
            memcpy(address, zmq_msg_data(&f[3]), al);
        if (ml < sizeof mech)
            memcpy(mech, zmq_msg_data(&f[5]), ml);
        pthread_mutex_lock(&s_zap_lock);
        brg__io_t *io = NULL;
        for (s_zap_dom_t *d = s_zap_doms; d != NULL; d = d->next)
            if (dl < sizeof domain && strcmp(d->io->zap_domain, domain) == 0)
                io = d->io;
        if (io == NULL && dl == 0 && strcmp(mech, "NULL") == 0) {
            status = "200"; // a plain socket of this process without a domain
            text = "OK";
        } else if (io != NULL && strcmp(mech, "CURVE") == 0 && n == 7 &&
                   zmq_msg_size(&f[6]) == BRG__KEY_BYTES) {
            const uint8_t *key = zmq_msg_data(&f[6]);
            if (s_key_allowed(io, key, NULL)) {
                status = "200";
                text = "OK";
                brg__z85_encode(user, key, BRG__KEY_BYTES);
            } else {
                atomic_fetch_add_explicit(&io->refused_keys, 1, memory_order_relaxed);
                // Logged once per key (the last 16 keys refused): a peer
                // that retries every 100 ms must not flood the log.
                bool seen = false;
                for (uint32_t i = 0; i < io->zap_nlogged && i < 16; i++)
                    seen |= memcmp(io->zap_logged[i], key, BRG__KEY_BYTES) == 0;
                if (!seen) {
                    memcpy(io->zap_logged[io->zap_nlogged++ % 16], key, BRG__KEY_BYTES);
                    char z[BRG__KEY_Z85 + 1];
                    brg__z85_encode(z, key, BRG__KEY_BYTES);
                    brg_system_log(io->sys, BRG_LOG_WARNING, "node", BRG_REF_NONE,
                                   "refused a connection from %s: key %s is not allowed", address,
                                   z);
                }
            }
        }
        pthread_mutex_unlock(&s_zap_lock);
    }
    static const char *const version = "1.0";
    const char *parts[4] = {status, text, user, ""};
    zmq_send(rep, version, 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(rep, "", 0, ZMQ_SNDMORE);
    for (int i = 0; i < 4; i++)
        zmq_send(rep, parts[i], strlen(parts[i]), i < 3 ? ZMQ_SNDMORE : 0);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

//  ---------------------------------------------------------------------------
//  Waiters of brg_node_connect.

static void
s_waiter_wake(brg__io_t *self, uint64_t id, int rc, brg_ref_t peer)
{
    if (id == 0)
        return;
    pthread_mutex_lock(&self->lock);
    for (s_waiter_t *w = self->waiters; w != NULL; w = w->next) {
        if (w->id == id && !w->done) {
            w->done = true;
            w->rc = rc;
            w->peer = peer;
        }
    }
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
}

//  ---------------------------------------------------------------------------
//  Sending frames.

//  zmq_send, with the buffer filled here (see S_HB_SEND). 0 or -1 (errno
//  in zmq_errno()).
static int
s_zsend(void *sock, const void *data, size_t len, int flags)
{
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, len) != 0)
        return -1;
    if (len > 0)
        memcpy(zmq_msg_data(&m), data, len);
    S_HB_SEND();
    if (zmq_msg_send(&m, sock, flags) < 0) {
        int err = zmq_errno();
        zmq_msg_close(&m);
        errno = err;
        return -1;
    }
    return 0;
}

//  zmq_msg_recv, then the acquire that pairs with S_HB_SEND.
static int
s_zrecv(zmq_msg_t *m, void *sock, int flags)
{
    int rc = zmq_msg_recv(m, sock, flags);
    if (rc >= 0)
        S_HB_RECV(m);
    return rc;
}

static void
s_router_send(brg__io_t *self, void *inbox, const uint8_t *rid, size_t rid_len, const void *data,
              size_t len)
{
    if (rid_len == 0 || inbox == NULL ||
        s_zsend(inbox, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        s_zsend(inbox, data, len, ZMQ_DONTWAIT) < 0) {
        // EHOSTUNREACH: the peer's outbox is gone (its session ends by its
        // own signals); EAGAIN: a client that does not read. Counted.
        atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
    }
}

//  An ERROR frame to the sender of an inbound frame, at most 10 a second
//  per node (a peer that sends garbage must not make us flood it).
static void
s_router_error(brg__io_t *self, void *inbox, const uint8_t *rid, size_t rid_len, int code,
               const char *text)
{
    uint64_t now = s_now();
    if (now - self->error_window_ns > 1000000000ull) {
        self->error_window_ns = now;
        self->errors_in_window = 0;
    }
    if (++self->errors_in_window > 10)
        return;
    brg__wbuf_reset(&self->wbuf);
    if (brg__wire_encode_error(&self->wbuf, code, text) == BRG_OK)
        s_router_send(self, inbox, rid, rid_len, self->wbuf.data, self->wbuf.size);
}

static int
s_setopt_int(void *sock, int opt, int value)
{
    return zmq_setsockopt(sock, opt, &value, sizeof value);
}

//  No ZMTP heartbeats, on any socket: libzmq 4.3.4 aborts the process
//  (stream_engine_base.cpp, assert !_io_error in out_event) when its
//  engine writes a heartbeat PING or the PONG answering one on a connection
//  whose input was stopped at RCVHWM and then flagged as an I/O error
//  (libzmq #4841, #4852), which a stream into a busy inbox reaches; a PING
//  from our outbox makes the peer's inbox answer, so neither side may use
//  them. The sessions' TICKs and silence timeout (session.c) and the
//  outbox monitors (a closed connection) give liveness instead.
//
//  What inboxes and outboxes share: LINGER 0 (a broken session drops what
//  ZeroMQ holds; an orderly one sets a linger before close), 1000 frames of
//  HWM each way, frames of at most
//  max_frame (ZeroMQ drops a peer that sends more, before buffering it),
//  and a connection that has not finished ZeroMQ's handshake (greeting,
//  CURVE, ZAP) within handshake_ms is closed by libzmq.
static void
s_setopts_common(brg__io_t *self, void *sock)
{
    int64_t maxmsg = (int64_t)self->cfg.max_frame;
    s_setopt_int(sock, ZMQ_LINGER, 0);
    s_setopt_int(sock, ZMQ_SNDHWM, 1000);
    s_setopt_int(sock, ZMQ_RCVHWM, 1000);
    s_setopt_int(sock, ZMQ_HANDSHAKE_IVL, (int)self->cfg.handshake_ms);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
}

//  Our outbox to the peer's inbox at ep, with its monitor; over CURVE
//  (tcp:// when the node uses it) the peer must hold server_key. BRG_OK or
//  BRG_ENETWORK (a bad endpoint: logged).
static int
s_open_outbox(s_conn_t *conn, const char *ep, const uint8_t *server_key)
{
    brg__io_t *self = conn->io;
    uint32_t n = ++self->conn_counter;
    uint8_t rid[21];
    rid[0] = 'B'; // a routing id must not start with a zero byte
    memcpy(rid + 1, self->uuid, 16);
    rid[17] = (uint8_t)(n >> 24);
    rid[18] = (uint8_t)(n >> 16);
    rid[19] = (uint8_t)(n >> 8);
    rid[20] = (uint8_t)n;
    void *s = zmq_socket(self->ctx, ZMQ_DEALER);
    if (s == NULL)
        return BRG_ENETWORK;
    zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, sizeof rid);
    s_setopts_common(self, s);
    s_setopt_int(s, ZMQ_RECONNECT_IVL, -1);
    s_setopt_int(s, ZMQ_IMMEDIATE, 0);

    if (self->curve && s_is_tcp(ep)) {
        // We are the CURVE client: our key pair proves who we are to the
        // peer's ZAP handler, its public key proves who it is to us.
        const uint8_t *sk = server_key != NULL ? server_key : self->cert.pub;
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, sk, BRG__KEY_BYTES) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, self->cert.pub, BRG__KEY_BYTES) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, self->cert.sec, BRG__KEY_BYTES) != 0) {
            s_log(self, BRG_LOG_ERROR, "cannot set CURVE keys to connect to %s: %s", ep,
                  zmq_strerror(zmq_errno()));
            zmq_close(s);
            return BRG_ENETWORK;
        }
        conn->has_key = true;
        memcpy(conn->key, sk, BRG__KEY_BYTES);
    }
    char mon_ep[96];
    snprintf(mon_ep, sizeof mon_ep, "inproc://brg-mon-%016" PRIx64 "%016" PRIx64 "-%u", self->hi,
             self->lo, n);
    void *m = NULL;
    if (zmq_socket_monitor(
            s, mon_ep,
            ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
        m = zmq_socket(self->ctx, ZMQ_PAIR);
        // The PAIR connects before the outbox does, so no event is missed.
        if (m != NULL && zmq_connect(m, mon_ep) != 0) {
            zmq_close(m);
            m = NULL;
        }
    }
    if (m == NULL || zmq_connect(s, ep) != 0) {
        s_log(self, BRG_LOG_WARNING, "cannot connect to %s: %s", ep, zmq_strerror(zmq_errno()));
        if (m != NULL) {
            zmq_socket_monitor(s, NULL, 0);
            zmq_close(m);
        }
        zmq_close(s);
        return BRG_ENETWORK;
    }
    if (m != NULL)
        s_setopt_int(m, ZMQ_LINGER, 0);
    conn->outbox = s;
    conn->out_ready = conn->mon_ready = true; // look once; then the poll says
    conn->monitor = m;
    return BRG_OK;
}

static void
s_close_outbox(s_conn_t *conn, int linger_ms)
{
    if (conn->outbox == NULL)
        return;
    zmq_socket_monitor(conn->outbox, NULL, 0);
    if (conn->monitor != NULL)
        zmq_close(conn->monitor);
    s_setopt_int(conn->outbox, ZMQ_LINGER, linger_ms);
    zmq_close(conn->outbox);
    conn->outbox = NULL;
    conn->monitor = NULL;
}

//  Send on the outbox, keeping order with frames refused earlier.
static void
s_outbox_send(s_conn_t *conn, const void *data, size_t len)
{
    if (!conn->busy && s_zsend(conn->outbox, data, len, ZMQ_DONTWAIT) >= 0)
        return;
    if (!conn->busy && zmq_errno() != EAGAIN) {
        // ETERM or a closed socket: the session is ending anyway.
        conn->failed = true;
        return;
    }
    s_frame_t *f = malloc(sizeof *f + len);
    if (f == NULL) {
        // A frame we cannot keep is a gap: end the session (its messages
        // are counted lost by the session's acked sequence).
        conn->failed = true;
        return;
    }
    f->next = NULL;
    f->len = len;
    memcpy(f->data, data, len);
    if (conn->pend_tail != NULL)
        conn->pend_tail->next = f;
    else
        conn->pend_head = f;
    conn->pend_tail = f;
    conn->busy = true;
}

//  Send what ZeroMQ refused before; clears busy when all went out.
static bool
s_outbox_retry(s_conn_t *conn)
{
    bool sent = false;
    while (conn->pend_head != NULL) {
        s_frame_t *f = conn->pend_head;
        if (s_zsend(conn->outbox, f->data, f->len, ZMQ_DONTWAIT) < 0) {
            if (zmq_errno() != EAGAIN)
                conn->failed = true;
            return sent;
        }
        sent = true;
        conn->pend_head = f->next;
        if (conn->pend_head == NULL)
            conn->pend_tail = NULL;
        free(f);
    }
    conn->busy = false;
    conn->need_drain = true;
    return sent;
}

static void
s_pend_free(s_conn_t *conn)
{
    while (conn->pend_head != NULL) {
        s_frame_t *f = conn->pend_head;
        conn->pend_head = f->next;
        free(f);
    }
    conn->pend_tail = NULL;
    conn->busy = false;
}

static void s_wake_for_node(brg__io_t *self, uint64_t hi, uint64_t lo);
static void s_name_dial_ended(brg__io_t *self, s_dial_t *d, bool refused);

//  ---------------------------------------------------------------------------
//  Session callbacks (session.h). Called on this thread from inside a
//  session call; they never destroy the session.

static void
s_cb_send_frame(void *arg, bool inbound, const void *data, size_t len)
{
    s_conn_t *conn = arg;
    brg__io_t *self = conn->io;
    if (inbound) {
        s_router_send(self, conn->inbox, conn->rid, conn->rid_len, data, len);
        return;
    }
    if (conn->outbox == NULL) {
        // The reverse direction of a session the peer started: dial back to
        // the endpoint its HELLO advertised.
        const brg__hello_t *h = brg__session_peer(conn->sess);
        // Over CURVE the peer's server key is the key it proved on this
        // connection (a node uses one key pair both ways); a peer that came
        // in plain (ipc://) and advertises tcp:// must hold our own key.
        const char *why = NULL;
        if (h != NULL && s_is_tcp(h->ep) &&
            (self->no_keys || (!self->curve && !brg__io_ep_is_loopback(h->ep)))) {
            why = self->no_keys ? "this node has no key pair" : "plain tcp:// only to loopback";
            s_log(self, BRG_LOG_WARNING, "cannot connect back to %s: %s", h->ep, why);
        }
        if (h == NULL || h->ep[0] == '\0' || conn->failed || why != NULL ||
            s_open_outbox(conn, h->ep, conn->has_key ? conn->key : NULL) != BRG_OK) {
            conn->failed = true;
            return;
        }
    }
    s_outbox_send(conn, data, len);
}

//  Mark conn's peer down (once): from here new sends to it fail at once,
//  and what was sent during this session but not grabbed yet carries the
//  old epoch, so it can never leave in a later session (no gaps).
static void
s_mark_down(s_conn_t *conn)
{
    brg__peer_t *p = conn->peer;
    if (conn->marked_down || p == NULL || p->conn != conn)
        return;
    conn->marked_down = true;
    atomic_fetch_add_explicit(&p->epoch, 1, memory_order_relaxed);
    s_peer_set_state(conn->io, p, S_PEER_DOWN);
}

static void
s_cb_deliver(void *arg, const brg__remote_target_t *to, brg_msg_t **msgs, size_t n)
{
    s_conn_t *conn = arg;
    // An ended session delivers its tables' answers (EXIT/DOWN noconnection,
    // BRG_ENETWORK) before it calls ended: the peer is down before any
    // local actor learns it, so an actor restarted on such an EXIT never
    // sees the lost node as up.
    if (brg__session_state(conn->sess) == BRG__SESS_ENDED)
        s_mark_down(conn);
    conn->io->moved += (uint32_t)n;
    brg__remote_deliver(conn->io->sys, to, msgs, n);
}

//  May a client of this node send to `name`? (session.h may_reach.) The
//  first refusal of each client is logged.
static bool
s_cb_may_reach(void *arg, const char *name, size_t len)
{
    s_conn_t *conn = arg;
    brg__io_t *self = conn->io;
    if (conn->admin)
        return true; // an operator (brgctl): every name, the node service included
    bool ok = false;
    pthread_mutex_lock(&self->exp_lock);
    for (size_t i = 0; i < self->nexports && !ok; i++)
        ok = strlen(self->exports[i]) == len && memcmp(self->exports[i], name, len) == 0;
    pthread_mutex_unlock(&self->exp_lock);
    if (!ok && !conn->refusal_logged) {
        conn->refusal_logged = true;
        char n[BRG__WIRE_NAME_MAX + 1];
        snprintf(n, sizeof n, "%.*s", (int)len, name);
        const brg__hello_t *h = brg__session_peer(conn->sess);
        s_log(self, BRG_LOG_WARNING, "client %s may not reach %s: the name is not exported",
              h != NULL ? h->name : "?", n);
    }
    return ok;
}

static void s_gossip_announce(brg__io_t *self, s_conn_t *conn);
static bool s_gossip_dial_ended(brg__io_t *self, s_dial_t *d, const s_conn_t *c);

//  Tie conn to the peer its HELLO or WELCOME named. Returns false when that
//  peer already has another live session (the caller ends this one).
static bool
s_attach(s_conn_t *conn)
{
    brg__io_t *self = conn->io;
    if (conn->peer != NULL)
        return true;
    const brg__hello_t *h = brg__session_peer(conn->sess);
    uint64_t hi, lo;
    s_uuid_split(h->node, &hi, &lo);
    brg__peer_t *p = s_peer_add(self, hi, lo, h->name);
    if (p == NULL) {
        s_log(self, BRG_LOG_WARNING, "peer table full: refusing %s%s", h->name, "");
        return false;
    }
    if (p->conn != NULL && p->conn != conn && !p->conn->ended)
        return false;
    conn->peer = p;
    p->conn = conn;
    p->client = h->client;
    atomic_store_explicit(&p->client_pub, h->client, memory_order_relaxed);
    if (conn->dial != NULL) {
        conn->dial->hi = hi;
        conn->dial->lo = lo;
    }
    if (atomic_load_explicit(&p->state, memory_order_relaxed) != S_PEER_UP)
        s_peer_set_state(conn->io, p, S_PEER_CONNECTING);
    return true;
}

static void
s_cb_up(void *arg)
{
    s_conn_t *conn = arg;
    brg__io_t *self = conn->io;
    if (!s_attach(conn)) {
        conn->failed = true;
        return;
    }
    conn->up = true;
    conn->need_drain = true;
    brg__peer_t *p = conn->peer;
    s_peer_set_state(conn->io, p, S_PEER_UP);
    brg_ref_t ref = s_node_ref(p->hi, p->lo);
    if (conn->dial != NULL)
        conn->dial->up_since_ns = s_now();
    s_wake_for_node(self, p->hi, p->lo);
    self->event_fn(self->event_arg, true, ref, p->name, "up");
    if (self->cfg.mesh && !p->client)
        s_gossip_announce(self, conn);
}

static void
s_dead_letter_backlog(brg__io_t *self, brg__peer_t *p, brg_dead_reason_t reason)
{
    while (p->bl_head != NULL) {
        s_item_t *it = p->bl_head;
        p->bl_head = it->next;
        s_unqueue(self, p, it->bytes);
        atomic_fetch_add_explicit(&self->dead_on_end, 1, memory_order_relaxed);
        brg__remote_dead_letter(self->sys, it->to, it->msg, reason, BRG_ENETWORK);
        s_item_free(it);
    }
    p->bl_tail = NULL;
}

static void
s_cb_ended(void *arg, brg__end_reason_t reason)
{
    s_conn_t *conn = arg;
    brg__io_t *self = conn->io;
    conn->ended = true;
    conn->reason = reason;
    if (!conn->standby)
        atomic_fetch_add_explicit(&self->sessions_ended, 1, memory_order_relaxed);
    if (!conn->up && (reason == BRG__END_PROTOCOL || reason == BRG__END_TIMEOUT))
        atomic_fetch_add_explicit(&self->handshakes_failed, 1, memory_order_relaxed);
    brg__peer_t *p = conn->peer;
    if (p == NULL || p->conn != conn)
        return;
    s_mark_down(conn); // if no answer of the tables did it already
    // What still waits for this peer never left: dead letters, asks
    // answered BRG_ENETWORK, LINK/MONITOR answered noconnection. The
    // session answered its tables before calling us, so all of this comes
    // after everything the peer delivered.
    s_dead_letter_backlog(self, p, BRG_DEAD_REMOTE_DOWN);
    if (conn->up)
        self->event_fn(self->event_arg, false, s_node_ref(p->hi, p->lo), p->name,
                       brg__end_reason_name(reason));
}

//  ---------------------------------------------------------------------------
//  Conns.

static s_conn_t *
s_conn_new(brg__io_t *self, bool initiator, s_dial_t *dial)
{
    s_conn_t *conn = calloc(1, sizeof *conn);
    if (conn == NULL)
        return NULL;
    conn->io = self;
    conn->dial = dial;
    if (dial != NULL && s_open_outbox(conn, dial->ep, dial->has_key ? dial->key : NULL) != BRG_OK) {
        free(conn);
        return NULL;
    }
    conn->next = self->conns;
    self->conns = conn;
    // An initiator's HELLO goes out from inside brg__session_new, so the
    // outbox exists first and conn is in the list. Every session has its
    // own random id.
    self->scfg.sess = s_rand(self) | 1;
    // A dial's HELLO says "probe" (design notes: duplicates), unless it
    // follows a "standby" answer from a node we have no session with: then
    // the peer holds a stale session, which this HELLO replaces.
    conn->probe = dial != NULL && !dial->force;
    self->scfg.probe = conn->probe;
    if (dial != NULL && dial->force) {
        dial->force = false;
        dial->standbys = 0;
    }
    conn->sess = brg__session_new(&self->scfg, &self->sio, conn, initiator, s_now());
    self->scfg.probe = false;
    if (conn->sess == NULL) {
        self->conns = conn->next;
        s_close_outbox(conn, 0);
        free(conn);
        return NULL;
    }
    atomic_fetch_add_explicit(&self->sessions_started, 1, memory_order_relaxed);
    return conn;
}

static s_conn_t *
s_conn_by_rid(brg__io_t *self, void *inbox, const uint8_t *rid, size_t len)
{
    for (s_conn_t *c = self->conns; c != NULL; c = c->next)
        if (!c->ended && c->inbox == inbox && c->rid_len == len && memcmp(c->rid, rid, len) == 0)
            return c;
    return NULL;
}

static void s_dial_schedule(brg__io_t *self, s_dial_t *d, bool was_up);
static bool s_dial_standby(brg__io_t *self, const s_dial_t *d);
static bool s_dial_pending(brg__io_t *self);

//  Fold a session's counters into the retired totals.
static void
s_retire_stats(brg__io_t *self, const brg__session_t *sess)
{
    brg__session_stats_t st;
    brg__session_stats(sess, &st);
    brg__session_stats_t *r = &self->retired;
    r->frames_in += st.frames_in;
    r->frames_out += st.frames_out;
    r->msgs_in += st.msgs_in;
    r->msgs_out += st.msgs_out;
    r->bytes_in += st.bytes_in;
    r->bytes_out += st.bytes_out;
    r->dead_on_end += st.dead_on_end;
    r->lost_in_flight += st.lost_in_flight;
    r->refused_unauthorized += st.refused_unauthorized;
}

//  Free the conns whose session ended (never from inside a session call).
static void
s_reap(brg__io_t *self)
{
    s_conn_t **pp = &self->conns;
    while (*pp != NULL) {
        s_conn_t *c = *pp;
        if (!c->ended) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        if (c->peer != NULL && c->peer->conn == c) {
            c->peer->conn = NULL;
            // A client never comes back with the same node UUID.
            if (c->peer->client &&
                atomic_load_explicit(&c->peer->state, memory_order_relaxed) == S_PEER_DOWN)
                s_peer_retire(self, c->peer);
        }
        if (c->dial != NULL && c->standby) {
            // Its node is up already (design notes: duplicates): stand by.
            s_dial_t *d = c->dial;
            d->conn = NULL;
            d->hi = c->dup_hi;
            d->lo = c->dup_lo;
            // No session of ours with that node: the peer holds a stale one,
            // which the next HELLO replaces. (Unless another dial is under
            // way, which may be ours to that node: then look once more.)
            if (s_dial_standby(self, d))
                d->standbys = 0;
            else if (++d->standbys >= 2 || !s_dial_pending(self))
                d->force = true;
            d->next_at_ns = d->force ? s_now() + 1 : s_now() + S_STANDBY_NS;
            s_wake_for_node(self, d->hi, d->lo);
            s_gossip_dial_ended(self, d, c);
        } else if (c->dial != NULL) {
            s_dial_t *d = c->dial;
            d->conn = NULL;
            bool refused = !c->up && c->reason == BRG__END_PROTOCOL;
            if (refused) {
                s_waiter_wake(self, d->waiter, BRG_ENETWORK, BRG_REF_NONE);
                d->waiter = 0;
            }
            s_dial_schedule(self, d, c->up);
            if (d->name != NULL)
                s_name_dial_ended(self, d, refused);
            s_gossip_dial_ended(self, d, c);
        }
        // An orderly end lets the BYE and the last BATCHes out; a broken
        // session drops what ZeroMQ still holds (counted lost_in_flight by
        // the session: it was never acked).
        s_close_outbox(c, c->reason == BRG__END_LOCAL ? S_SHUTDOWN_LINGER_MS : 0);
        s_pend_free(c);
        s_retire_stats(self, c->sess);
        brg__session_destroy(&c->sess);
        free(c);
    }
}

//  After every call into a session: attach its peer once known, end it if
//  a callback asked to.
static void
s_after_call(s_conn_t *conn)
{
    if (conn->ended)
        return;
    if (conn->peer == NULL && !brg_ref_is_none(brg__session_peer_node(conn->sess)) &&
        !s_attach(conn))
        conn->failed = true;
    if (conn->failed)
        brg__session_end(conn->sess, BRG__END_LOCAL);
}

//  ---------------------------------------------------------------------------
//  Dials.

static void
s_dial_start(brg__io_t *self, s_dial_t *d)
{
    d->next_at_ns = 0;
    if (s_dial_standby(self, d)) {
        // Its node has a session (or another dial to it is under way): no
        // HELLO that could displace it; look again soon.
        d->next_at_ns = s_now() + S_STANDBY_NS;
        return;
    }
    if (d->has_key && !s_key_allowed(self, d->key, NULL)) {
        // Revoked since it was given: no session with it, but keep trying
        // (with backoff) in case it is allowed again.
        if (!d->key_logged) {
            char z[BRG__KEY_Z85 + 1];
            brg__z85_encode(z, d->key, BRG__KEY_BYTES);
            s_log(self, BRG_LOG_WARNING, "not connecting to %s: its key %s is not allowed", d->ep,
                  z);
            d->key_logged = true;
        }
        s_dial_schedule(self, d, false);
        return;
    }
    d->key_logged = false;
    s_conn_t *conn = s_conn_new(self, true, d);
    if (conn == NULL) {
        s_dial_schedule(self, d, false);
        return;
    }
    d->conn = conn;
    s_after_call(conn);
}

static void
s_dial_schedule(brg__io_t *self, s_dial_t *d, bool was_up)
{
    if (d->stopped || d->gone || self->stopping)
        return;
    uint64_t now = s_now();
    if (was_up && now - d->up_since_ns >= S_BACKOFF_RESET_NS)
        d->backoff_ms = S_BACKOFF_MIN_MS; // it stayed up: not flapping
    else if (d->backoff_ms == 0)
        d->backoff_ms = S_BACKOFF_MIN_MS;
    else if (d->backoff_ms < self->cfg.reconnect_max_ms)
        d->backoff_ms = d->backoff_ms * 2 > self->cfg.reconnect_max_ms ? self->cfg.reconnect_max_ms
                                                                       : d->backoff_ms * 2;
    // Full jitter: uniform in [0, backoff], so peers that lost each other
    // at the same moment do not all come back at the same moment.
    uint64_t delay_ms = s_rand(self) % ((uint64_t)d->backoff_ms + 1);
    d->next_at_ns = now + delay_ms * 1000000ull + 1;
    atomic_fetch_add_explicit(&self->reconnects, 1, memory_order_relaxed);
}

//  A key the operator wrote into an endpoint is trusted as a node key (the
//  peer dials back with it), named after the endpoint.
static void
s_trust_key(brg__io_t *self, bool z85, const uint8_t key[BRG__KEY_BYTES], const char *ep)
{
    if (z85 && self->curve && brg__keys_lookup(self->keys, key, NULL) != BRG_OK) {
        char name[BRG_NODE_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.63s", ep);
        brg__keys_allow(self->keys, key, name, BRG_KEY_NODE, false);
    }
}

//  The dial of endpoint ep (no prefix) for name (NULL: dialed as given),
//  added if new, with the latest key given for it. NULL: out of memory.
static s_dial_t *
s_dial_add(brg__io_t *self, const char *ep, s_name_t *name, bool has_key,
           const uint8_t key[BRG__KEY_BYTES])
{
    for (s_dial_t *d = self->dials; d != NULL; d = d->next) {
        if (d->name == name && strcmp(d->ep, ep) == 0) {
            d->stopped = false;
            d->has_key = has_key;
            memcpy(d->key, key, BRG__KEY_BYTES);
            return d;
        }
    }
    s_dial_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    snprintf(d->ep, sizeof d->ep, "%s", ep);
    d->name = name;
    d->has_key = has_key;
    memcpy(d->key, key, BRG__KEY_BYTES);
    d->next = self->dials;
    self->dials = d;
    return d;
}

static bool
s_dial_pending(brg__io_t *self)
{
    for (s_dial_t *d = self->dials; d != NULL; d = d->next)
        if (d->conn != NULL && !d->conn->ended && d->conn->peer == NULL)
            return true;
    return false;
}

//  Whether d must stand by (design notes: duplicates): the node it reached
//  last time has a live session through another conn, or another dial to
//  that node is under way.
static bool
s_dial_standby(brg__io_t *self, const s_dial_t *d)
{
    if (d->hi == 0 && d->lo == 0)
        return false;
    brg__peer_t *p = s_peer_find(self, d->hi, d->lo);
    if (p != NULL && p->conn != NULL && !p->conn->ended && p->conn != d->conn)
        return true;
    for (s_dial_t *o = self->dials; o != NULL; o = o->next)
        if (o != d && o->hi == d->hi && o->lo == d->lo && o->conn != NULL && !o->conn->ended)
            return true;
    return false;
}

//  The node hi/lo is up: wake every brg_node_connect waiting on a dial that
//  reaches it, or on a name one of whose addresses does.
static void
s_wake_for_node(brg__io_t *self, uint64_t hi, uint64_t lo)
{
    brg__peer_t *p = s_peer_find(self, hi, lo);
    if (p == NULL || atomic_load_explicit(&p->state, memory_order_relaxed) != S_PEER_UP)
        return;
    brg_ref_t ref = s_node_ref(hi, lo);
    for (s_dial_t *d = self->dials; d != NULL; d = d->next) {
        if (d->hi != hi || d->lo != lo)
            continue;
        s_waiter_wake(self, d->waiter, BRG_OK, ref);
        d->waiter = 0;
        if (d->name != NULL) {
            s_waiter_wake(self, d->name->waiter, BRG_OK, ref);
            d->name->waiter = 0;
        }
    }
}

//  ---------------------------------------------------------------------------
//  Mesh (PROTOCOL.md section 13, "Mesh"; cfg.mesh).
//
//  What a node tells: its WELCOME lists the other nodes it has a session
//  with (up, not clients, with an advertised endpoint), and when a node's
//  session comes up it sends a SEND tagged "brg.peers" to the node service
//  of the new peer (listing the others) and of every other node peer
//  (listing the new one): so a node that joins later is learned by every
//  node, whichever side dialed. Entries: [bin(16) node, endpoint, name].
//
//  What a node does with it (s_gossip_learn): an entry for a node we have
//  a session or a dial with is known (skipped); one that cannot be dialed
//  (nil or own UUID, a known client, an endpoint that is not tcp://, ipc://
//  or inproc://, a wildcard, a KEY@ prefix, one of our own endpoints, tcp
//  without a trusted key) is refused, counted (gossip_refused) and logged
//  (the first S_GOSSIP_LOG_MAX of a batch). The rest waits (at most
//  S_GOSSIP_PENDING_MAX) for a random delay in [0, tick_ms] (partisan
//  #114: no storm when a node joins a large mesh); of two nodes that learn
//  each other at once, the one with the larger UUID waits handshake_ms
//  more, so usually only one dials and the other finds the session up.
//  Due entries are dialed (s_gossip_dial) with at most S_GOSSIP_DIALING_MAX
//  handshakes of learned dials at a time; the dial (learned) says "probe"
//  as every dial and stands by like every dial (design notes:
//  duplicates). A learned dial is not the user's: it is dropped after
//  S_GOSSIP_TRIES attempts in a row that never came up, after a BYE, when
//  it would only stand by (the node is up through another session), and
//  on brg_node_disconnect; while its sessions come up it reconnects with
//  the usual backoff. brg_node_connect of its endpoint makes it the user's.
//
//  Keys: a gossiped tcp:// endpoint carries no key (and a node's word is
//  not enough to trust one), so it is dialed with a key this node already
//  trusts: the node key of the allow-list whose name is the entry's name,
//  else this node's own key (one key directory per user, the default). A
//  peer that holds neither fails the CURVE handshake: refused_handshakes,
//  and the dial is dropped after S_GOSSIP_TRIES.

//  Whether node hi/lo or endpoint ep has a session or a dial of ours.
static bool
s_gossip_have(brg__io_t *self, uint64_t hi, uint64_t lo, const char *ep)
{
    brg__peer_t *p = s_peer_find(self, hi, lo);
    if (p != NULL && p->conn != NULL && !p->conn->ended)
        return true;
    for (s_dial_t *d = self->dials; d != NULL; d = d->next)
        if ((d->hi == hi && d->lo == lo) || (!d->gone && !d->stopped && strcmp(d->ep, ep) == 0))
            return true;
    return false;
}

//  Why entry e (its node hi/lo) cannot be dialed, or NULL; *has_key/key:
//  the server key to dial it with.
static const char *
s_gossip_check(brg__io_t *self, const brg__wire_peer_t *e, uint64_t hi, uint64_t lo, bool *has_key,
               uint8_t key[BRG__KEY_BYTES])
{
    *has_key = false;
    if (hi == 0 && lo == 0)
        return "nil node";
    if (hi == self->hi && lo == self->lo)
        return "this node";
    brg__peer_t *p = s_peer_find(self, hi, lo);
    if (p != NULL && p->client)
        return "a client";
    const char *ep = e->ep;
    if (strchr(ep, '@') != NULL)
        return "an endpoint with a key prefix";
    bool tcp = s_is_tcp(ep);
    if (!tcp && strncmp(ep, "ipc://", 6) != 0 && strncmp(ep, "inproc://", 9) != 0)
        return "not a tcp://, ipc:// or inproc:// endpoint";
    if (!tcp && ep[ep[0] == 'i' && ep[1] == 'p' ? 6 : 9] == '\0')
        return "no path";
    if (tcp) {
        const char *host = ep + 6;
        const char *colon = strrchr(host, ':');
        if (colon == NULL || colon == host || colon[1] == '\0' ||
            memchr(host, ';', (size_t)(colon - host)) != NULL)
            return "not tcp://HOST:PORT";
        size_t hn = (size_t)(colon - host);
        if ((hn == 1 && host[0] == '*') || (hn == 7 && memcmp(host, "0.0.0.0", 7) == 0) ||
            (hn == 4 && memcmp(host, "[::]", 4) == 0))
            return "a wildcard address";
        char *end = NULL;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (end == NULL || *end != '\0' || port == 0 || port > 65535 || colon[1] == '+' ||
            colon[1] == '-' || colon[1] == ' ')
            return "not a port number";
    }
    for (int i = 0; i < self->nbound; i++)
        if (strcmp(self->bound[i], ep) == 0)
            return "this node's endpoint";
    if (strcmp(self->scfg.ep, ep) == 0)
        return "this node's endpoint";
    if (!tcp)
        return NULL;
    if (self->no_keys)
        return "this node has no key pair";
    if (!self->curve)
        return brg__io_ep_is_loopback(ep) ? NULL
                                          : "plain tcp:// (insecure_loopback) to a "
                                            "non-loopback address";
    brg__key_entry_t ke;
    if (e->name[0] != '\0' && brg__keys_by_name(self->keys, e->name, BRG_KEY_NODE, &ke) == BRG_OK)
        memcpy(key, ke.pub, BRG__KEY_BYTES);
    else
        memcpy(key, self->cert.pub, BRG__KEY_BYTES); // a peer of our own deployment
    *has_key = true;
    return NULL;
}

static void
s_gossip_refuse(brg__io_t *self, const brg__wire_peer_t *e, const char *from, const char *why,
                uint32_t *logged)
{
    atomic_fetch_add_explicit(&self->gossip_refused, 1, memory_order_relaxed);
    if ((*logged)++ >= S_GOSSIP_LOG_MAX)
        return;
    char what[BRG__WIRE_NAME_MAX + BRG__WIRE_EP_MAX + 128];
    snprintf(what, sizeof what, "mesh: not dialing node %s at %s (told by %s)", e->name, e->ep,
             from);
    s_log(self, BRG_LOG_WARNING, "%s: %s", what, why);
}

//  Entries of a WELCOME or a "brg.peers" message from `from` (design notes
//  above). Validated here: the wire or the node service checked only their
//  shape and sizes.
static void
s_gossip_learn(brg__io_t *self, const brg__wire_peer_t *peers, uint32_t n, const char *from)
{
    if (!self->cfg.mesh || self->stopping)
        return;
    uint32_t logged = 0;
    uint64_t now = s_now();
    for (uint32_t i = 0; i < n; i++) {
        const brg__wire_peer_t *e = &peers[i];
        uint64_t hi, lo;
        s_uuid_split(e->node, &hi, &lo);
        brg__peer_t *p = s_peer_find(self, hi, lo);
        bool node_ok = !(hi == 0 && lo == 0) && !(hi == self->hi && lo == self->lo) &&
                       !(p != NULL && p->client);
        bool known = node_ok && s_gossip_have(self, hi, lo, e->ep);
        for (s_learned_t *l = self->learned; l != NULL && node_ok && !known; l = l->next)
            known = (l->hi == hi && l->lo == lo) || strcmp(l->ep, e->ep) == 0;
        if (known)
            continue; // a node we have (or will dial): nothing to do, nothing wrong
        bool has_key;
        uint8_t key[BRG__KEY_BYTES];
        const char *why = s_gossip_check(self, e, hi, lo, &has_key, key);
        if (why == NULL && self->nlearned >= S_GOSSIP_PENDING_MAX)
            why = "too many learned nodes waiting";
        if (why != NULL) {
            s_gossip_refuse(self, e, from, why, &logged);
            continue;
        }
        s_learned_t *l = calloc(1, sizeof *l);
        if (l == NULL) {
            s_gossip_refuse(self, e, from, "out of memory", &logged);
            continue;
        }
        l->hi = hi;
        l->lo = lo;
        l->has_key = has_key;
        memcpy(l->key, key, BRG__KEY_BYTES);
        snprintf(l->ep, sizeof l->ep, "%s", e->ep);
        snprintf(l->name, sizeof l->name, "%s", e->name);
        bool first = self->hi < hi || (self->hi == hi && self->lo < lo);
        uint64_t delay_ms = s_rand(self) % ((uint64_t)self->cfg.tick_ms + 1);
        if (!first)
            delay_ms += self->cfg.handshake_ms;
        l->due_ns = now + delay_ms * 1000000ull;
        l->next = self->learned;
        self->learned = l;
        self->nlearned++;
        atomic_fetch_add_explicit(&self->gossip_learned, 1, memory_order_relaxed);
        s_log(self, BRG_LOG_INFO, "mesh: learned node %s at %s", l->name, l->ep);
    }
}

//  Dial the learned nodes that are due (s_timers); *next: when to look again.
static void
s_gossip_dial(brg__io_t *self, uint64_t now, uint64_t *next)
{
    if (self->learned == NULL)
        return;
    uint32_t dialing = 0;
    for (s_dial_t *d = self->dials; d != NULL; d = d->next)
        if (d->learned && d->conn != NULL && !d->conn->up && !d->conn->ended)
            dialing++;
    s_learned_t **pp = &self->learned;
    while (*pp != NULL) {
        s_learned_t *l = *pp;
        if (!self->stopping && !self->cfg.mesh)
            break;
        bool drop = self->stopping || s_gossip_have(self, l->hi, l->lo, l->ep);
        if (!drop && now < l->due_ns) {
            if (l->due_ns < *next)
                *next = l->due_ns;
            pp = &l->next;
            continue;
        }
        if (!drop && dialing >= S_GOSSIP_DIALING_MAX) {
            if (now + S_STANDBY_NS < *next)
                *next = now + S_STANDBY_NS;
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        self->nlearned--;
        if (!drop && self->nlearned_dials >= S_GOSSIP_DIALS_MAX) {
            uint32_t logged = 0;
            brg__wire_peer_t e;
            memset(&e, 0, sizeof e);
            snprintf(e.ep, sizeof e.ep, "%s", l->ep);
            snprintf(e.name, sizeof e.name, "%s", l->name);
            s_gossip_refuse(self, &e, "the mesh", "too many learned dials", &logged);
            drop = true;
        }
        s_dial_t *d = drop ? NULL : s_dial_add(self, l->ep, NULL, l->has_key, l->key);
        if (d != NULL) {
            d->learned = true;
            d->hi = l->hi; // the node it should reach: stands by while that one is up
            d->lo = l->lo;
            self->nlearned_dials++;
            s_log(self, BRG_LOG_INFO, "mesh: connecting to node %s at %s", l->name, l->ep);
            s_dial_start(self, d);
            dialing++;
        }
        free(l);
    }
}

//  A conn of dial d was reaped: a learned dial that will not be needed is
//  dropped (see "Mesh"). Returns true when d was freed.
static bool
s_gossip_dial_ended(brg__io_t *self, s_dial_t *d, const s_conn_t *c)
{
    if (!d->learned)
        return false;
    const char *why = NULL;
    if (c->standby) {
        if (s_dial_standby(self, d))
            d->stopped = true; // up through another session: nothing to do
    } else if (c->up) {
        d->fails = 0;
        if (c->reason == BRG__END_BYE)
            d->stopped = true; // it left in order
    } else if (++d->fails >= S_GOSSIP_TRIES) {
        why = "no session after 3 attempts";
        d->stopped = true;
    }
    if (!self->cfg.mesh || self->stopping)
        d->stopped = true;
    if (!d->stopped || d->conn != NULL || d->waiter != 0)
        return false;
    if (why != NULL)
        s_log(self, BRG_LOG_WARNING, "mesh: giving up on %s: %s", d->ep, why);
    for (s_dial_t **pp = &self->dials; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    }
    self->nlearned_dials--;
    free(d);
    return true;
}

//  The peers to tell about: every other node with a session up and an
//  endpoint; not `except` (NULL: none). Returns how many were written.
static uint32_t
s_gossip_list(brg__io_t *self, const brg__peer_t *except, brg__wire_peer_t *out, uint32_t max)
{
    uint32_t n = 0;
    for (s_conn_t *c = self->conns; c != NULL && n < max; c = c->next) {
        brg__peer_t *p = c->peer;
        if (!c->up || c->ended || p == NULL || p->conn != c || p->client || p == except)
            continue;
        const brg__hello_t *h = brg__session_peer(c->sess);
        if (h == NULL || h->ep[0] == '\0')
            continue;
        memcpy(out[n].node, h->node, 16);
        memcpy(out[n].ep, h->ep, sizeof out[n].ep);
        memcpy(out[n].name, h->name, sizeof out[n].name);
        n++;
    }
    return n;
}

//  A "brg.peers" message with entries, to the node service of node p.
static void
s_gossip_send(brg__io_t *self, const brg__peer_t *p, const brg__wire_peer_t *e, uint32_t n)
{
    brg_msg_t *m = brg_msg_new("brg.peers");
    if (m == NULL)
        return;
    int rc = brg_msg_add_array(m, n);
    for (uint32_t i = 0; i < n; i++) {
        rc |= brg_msg_add_array(m, 3);
        rc |= brg_msg_add_bin(m, e[i].node, 16);
        rc |= brg_msg_add_str(m, e[i].ep);
        rc |= brg_msg_add_str(m, e[i].name);
    }
    if (rc != BRG_OK) {
        brg_msg_destroy(&m);
        return;
    }
    // Queued like any send (it leaves after what was queued before it);
    // past the peer's budget it is a counted dead letter.
    brg__io_send(self, s_node_ref(p->hi, p->lo), BRG_NODE_SERVICE, &m);
}

//  conn's node session came up: tell it the others, and the others it.
static void
s_gossip_announce(brg__io_t *self, s_conn_t *conn)
{
    brg__wire_peer_t *list = malloc(BRG__WIRE_PEERS_MAX * sizeof *list);
    if (list == NULL)
        return;
    uint32_t n = s_gossip_list(self, conn->peer, list, BRG__WIRE_PEERS_MAX);
    if (n > 0)
        s_gossip_send(self, conn->peer, list, n);
    const brg__hello_t *h = brg__session_peer(conn->sess);
    if (n > 0 && h != NULL && h->ep[0] != '\0') {
        brg__wire_peer_t e;
        memcpy(e.node, h->node, 16);
        memcpy(e.ep, h->ep, sizeof e.ep);
        memcpy(e.name, h->name, sizeof e.name);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t hi, lo;
            s_uuid_split(list[i].node, &hi, &lo);
            brg__peer_t *p = s_peer_find(self, hi, lo);
            if (p != NULL)
                s_gossip_send(self, p, &e, 1);
        }
    }
    free(list);
}

//  Our WELCOME (session io welcome_peers): the other nodes we have.
static void
s_cb_welcome_peers(void *arg, brg__hello_t *h)
{
    s_conn_t *conn = arg;
    brg__io_t *self = conn->io;
    if (!self->cfg.mesh)
        return;
    const brg__hello_t *peer = brg__session_peer(conn->sess);
    uint64_t hi = 0, lo = 0;
    if (peer == NULL || peer->client)
        return; // a client is never told the topology
    s_uuid_split(peer->node, &hi, &lo);
    h->npeers = s_gossip_list(self, s_peer_find(self, hi, lo), h->peers, BRG__WIRE_PEERS_MAX);
}

//  The peer's WELCOME listed peers (session io gossip).
static void
s_cb_gossip(void *arg, const brg__hello_t *h)
{
    s_conn_t *conn = arg;
    s_gossip_learn(conn->io, h->peers, h->npeers, h->name);
}

//  ---------------------------------------------------------------------------
//  Names (design notes): the resolver thread.

static void
s_resolver_unref(s_resolver_t *r)
{
    pthread_mutex_lock(&r->lock);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&r->lock);
    if (!last)
        return;
    while (r->head != NULL) {
        s_req_t *q = r->head;
        r->head = q->next;
        free(q);
    }
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

//  Resolve one name (blocking: this is the resolver thread). The answer is
//  a RESOLVED item: its endpoints tcp://ADDR:PORT, one per line, at most
//  S_RESOLVED_MAX, duplicates removed. NULL: out of memory.
static s_item_t *
s_resolve(const s_req_t *req)
{
    enum { LINE = 72 }; // "tcp://[" + 45 + "]:" + 5 + "\n" fits
    s_item_t *it = calloc(1, sizeof *it + (size_t)S_RESOLVED_MAX * LINE + 1);
    if (it == NULL)
        return NULL;
    it->type = S_ITEM_RESOLVED;
    it->waiter = req->id;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    it->rc = getaddrinfo(req->host, req->port, &hints, &res);
    if (it->rc != 0)
        return it;
    size_t len = 0;
    int n = 0;
    for (struct addrinfo *ai = res; ai != NULL && n < S_RESOLVED_MAX; ai = ai->ai_next) {
        char addr[INET6_ADDRSTRLEN], line[LINE + 1];
        if (ai->ai_family == AF_INET &&
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, addr,
                      sizeof addr) != NULL)
            snprintf(line, sizeof line, "tcp://%s:%s\n", addr, req->port);
        else if (ai->ai_family == AF_INET6 &&
                 ((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_scope_id == 0 &&
                 inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr, addr,
                           sizeof addr) != NULL)
            snprintf(line, sizeof line, "tcp://[%s]:%s\n", addr, req->port);
        else
            continue; // another family, or a link-local address (needs a scope)
        // A line is unique when it starts the list or follows a newline.
        size_t ll = strlen(line);
        bool dup = false;
        for (const char *f = strstr(it->name, line); f != NULL && !dup; f = strstr(f + 1, line))
            dup = f == it->name || f[-1] == '\n';
        if (dup)
            continue;
        memcpy(it->name + len, line, ll + 1);
        len += ll;
        n++;
    }
    freeaddrinfo(res);
    return it;
}

static void *
s_resolver_main(void *arg)
{
    s_resolver_t *r = arg;
    pthread_setname_np(pthread_self(), "brg-resolve");
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->stop && r->head == NULL)
            pthread_cond_wait(&r->cond, &r->lock);
        if (r->stop)
            break;
        s_req_t *req = r->head;
        r->head = req->next;
        if (r->head == NULL)
            r->tail = NULL;
        pthread_mutex_unlock(&r->lock);
        s_item_t *it = s_resolve(req);
        free(req);
        pthread_mutex_lock(&r->lock);
        // Pushed under the lock, and only before stop: after the I/O thread
        // set stop, its queue may be gone.
        if (it != NULL && !r->stop)
            brg__outq_push(r->q, &it->link);
        else
            free(it);
    }
    pthread_mutex_unlock(&r->lock);
    s_resolver_unref(r);
    return NULL;
}

//  Ask the resolver about nm (starting it on first use).
static int
s_name_resolve(brg__io_t *self, s_name_t *nm)
{
    nm->next_at_ns = 0;
    if (self->resolver == NULL) {
        s_resolver_t *r = calloc(1, sizeof *r);
        if (r == NULL)
            return BRG_ENOMEM;
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->cond, NULL);
        r->refs = 2;
        r->q = &self->q;
        if (pthread_create(&r->thread, NULL, s_resolver_main, r) != 0) {
            pthread_cond_destroy(&r->cond);
            pthread_mutex_destroy(&r->lock);
            free(r);
            return BRG_ESYS;
        }
        self->resolver = r;
    }
    s_req_t *req = calloc(1, sizeof *req);
    if (req == NULL)
        return BRG_ENOMEM;
    req->id = nm->id;
    memcpy(req->host, nm->host, sizeof req->host);
    memcpy(req->port, nm->port, sizeof req->port);
    s_resolver_t *r = self->resolver;
    pthread_mutex_lock(&r->lock);
    if (r->tail != NULL)
        r->tail->next = req;
    else
        r->head = req;
    r->tail = req;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    nm->resolving = true;
    return BRG_OK;
}

//  The I/O thread's end: no answer is pushed after this; a resolution in
//  progress gets S_RESOLVE_JOIN_MS to finish, then the thread is left to
//  end on its own (it frees what it holds).
static void
s_resolver_stop(brg__io_t *self)
{
    s_resolver_t *r = self->resolver;
    if (r == NULL)
        return;
    self->resolver = NULL;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += S_RESOLVE_JOIN_MS / 1000;
    until.tv_nsec += (long)(S_RESOLVE_JOIN_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(r->thread, NULL, &until) != 0) {
        s_log(self, BRG_LOG_WARNING, "a name resolution is still under way at shutdown: %s%s",
              "left to end on its own", "");
        pthread_detach(r->thread);
    }
    s_resolver_unref(r);
}

//  ---------------------------------------------------------------------------
//  Names: what the I/O thread does with them.

//  Whether ep (no prefix) is tcp://HOST:PORT whose HOST is a DNS name (the
//  rule node.h states): HOST has a letter, is not an IPv4 literal, not an
//  IPv6 one ([...]), not "*", has no ';' (libzmq's source;destination
//  form); PORT is a number. Fills host and port.
static bool
s_dns_name(const char *ep, char *host, size_t host_len, char *port, size_t port_len)
{
    if (!s_is_tcp(ep))
        return false;
    const char *h = ep + 6;
    const char *colon = strrchr(h, ':');
    if (colon == NULL || colon == h || colon[1] == '\0')
        return false;
    size_t n = (size_t)(colon - h);
    if (n >= host_len || strlen(colon + 1) >= port_len || h[0] == '[' ||
        memchr(h, ';', n) != NULL || memchr(h, '*', n) != NULL)
        return false;
    for (const char *c = colon + 1; *c != '\0'; c++)
        if (*c < '0' || *c > '9')
            return false;
    bool letter = false;
    for (size_t i = 0; i < n; i++)
        letter |= (h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z');
    if (!letter)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) == 1)
        return false;
    snprintf(port, port_len, "%s", colon + 1);
    return true;
}

//  The node one of nm's addresses reaches, if it is up.
static bool
s_name_up(brg__io_t *self, const s_name_t *nm, brg_ref_t *ref)
{
    for (s_dial_t *d = self->dials; d != NULL; d = d->next) {
        if (d->name != nm || (d->hi == 0 && d->lo == 0))
            continue;
        brg__peer_t *p = s_peer_find(self, d->hi, d->lo);
        if (p != NULL && atomic_load_explicit(&p->state, memory_order_relaxed) == S_PEER_UP) {
            *ref = s_node_ref(d->hi, d->lo);
            return true;
        }
    }
    return false;
}

//  brg_node_connect (or a seed) of a name: its addresses are dialed when
//  the resolver answers; a connect resolves it again now.
static void
s_name_connect(brg__io_t *self, const char *text, const char *host, const char *port, bool has_key,
               const uint8_t key[BRG__KEY_BYTES], uint64_t waiter)
{
    s_name_t *nm = self->names;
    while (nm != NULL && !(strcmp(nm->host, host) == 0 && strcmp(nm->port, port) == 0))
        nm = nm->next;
    if (nm == NULL) {
        nm = calloc(1, sizeof *nm);
        if (nm == NULL) {
            s_waiter_wake(self, waiter, BRG_ENOMEM, BRG_REF_NONE);
            return;
        }
        nm->id = ++self->next_name_id;
        snprintf(nm->host, sizeof nm->host, "%s", host);
        snprintf(nm->port, sizeof nm->port, "%s", port);
        nm->next = self->names;
        self->names = nm;
    }
    snprintf(nm->text, sizeof nm->text, "%s", text);
    nm->has_key = has_key; // the latest key given for it, for every address
    memcpy(nm->key, key, BRG__KEY_BYTES);
    for (s_dial_t *d = self->dials; d != NULL; d = d->next) {
        if (d->name == nm) {
            d->has_key = has_key;
            memcpy(d->key, key, BRG__KEY_BYTES);
            if (d->stopped && !d->gone) {
                // brg_node_disconnect stopped it; a connect dials again.
                d->stopped = false;
                if (d->conn == NULL)
                    s_dial_start(self, d);
            }
        }
    }
    if (waiter != 0) {
        s_waiter_wake(self, nm->waiter, BRG_ETIMEDOUT, BRG_REF_NONE); // superseded
        nm->waiter = waiter;
    }
    brg_ref_t ref;
    if (nm->waiter != 0 && s_name_up(self, nm, &ref)) {
        s_waiter_wake(self, nm->waiter, BRG_OK, ref);
        nm->waiter = 0;
    }
    if (!nm->resolving && s_name_resolve(self, nm) != BRG_OK) {
        s_log(self, BRG_LOG_ERROR, "cannot resolve %s: %s", nm->text, "no resolver thread");
        nm->next_at_ns = s_now() + (uint64_t)self->cfg.reconnect_max_ms * 1000000ull;
    }
}

//  Schedule nm's next resolution after a failure: the dial backoff.
static void
s_name_backoff(brg__io_t *self, s_name_t *nm)
{
    uint32_t max = self->cfg.reconnect_max_ms;
    if (nm->backoff_ms == 0)
        nm->backoff_ms = S_BACKOFF_MIN_MS;
    else if (nm->backoff_ms < max)
        nm->backoff_ms = nm->backoff_ms * 2 > max ? max : nm->backoff_ms * 2;
    uint64_t delay_ms = s_rand(self) % ((uint64_t)nm->backoff_ms + 1);
    nm->next_at_ns = s_now() + delay_ms * 1000000ull + 1;
}

//  The resolver's answer for a name: dial new addresses, stop redialing
//  vanished ones; log the outcome when it changed.
static void
s_on_resolved(brg__io_t *self, s_item_t *it)
{
    s_name_t *nm = self->names;
    while (nm != NULL && nm->id != it->waiter)
        nm = nm->next;
    if (nm == NULL || self->stopping)
        return;
    nm->resolving = false;
    nm->done_ns = s_now();
    int rc = it->rc;
    if (rc == 0 && it->name[0] == '\0')
        rc = EAI_NONAME; // nothing we can dial (no IPv4 or global IPv6 address)
    bool changed = !nm->resolved_once || nm->last_rc != rc;
    nm->resolved_once = true;
    nm->last_rc = rc;
    if (rc != 0) {
        // Its addresses so far stay as they are (a resolver that failed
        // once says nothing about them); retried with the dial backoff.
        if (changed) {
            const char *why = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
            s_log(self, BRG_LOG_WARNING, "cannot resolve %s: %s", nm->text, why);
        }
        s_waiter_wake(self, nm->waiter, BRG_ENETWORK, BRG_REF_NONE);
        nm->waiter = 0;
        s_name_backoff(self, nm);
        return;
    }
    nm->backoff_ms = 0;
    nm->next_at_ns = nm->done_ns + (uint64_t)self->cfg.reconnect_max_ms * 1000000ull;
    char list[512];
    size_t ll = 0;
    list[0] = '\0';
    for (s_dial_t *d = self->dials; d != NULL; d = d->next)
        d->seen = false;
    for (char *line = it->name; *line != '\0';) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        const char *ep = line;
        line = nl + 1;
        int n = snprintf(list + ll, sizeof list - ll, "%s%s", ll ? ", " : "", ep + 6);
        if (n > 0 && (size_t)n < sizeof list - ll)
            ll += (size_t)n;
        if (!self->curve && !brg__io_ep_is_loopback(ep)) {
            // insecure_loopback: plain tcp:// reaches only loopback addresses.
            if (changed)
                s_log(self, BRG_LOG_WARNING, "not connecting to %s: %s", ep,
                      "plain tcp:// (insecure_loopback) reaches only loopback addresses");
            continue;
        }
        s_dial_t *d = NULL;
        for (d = self->dials; d != NULL; d = d->next)
            if (d->name == nm && strcmp(d->ep, ep) == 0)
                break;
        if (d != NULL) {
            d->seen = true;
            if (d->gone) {
                // Back again: dialed again.
                changed = true;
                d->gone = false;
                if (d->conn == NULL && !d->stopped)
                    s_dial_start(self, d);
            }
            continue;
        }
        changed = true;
        d = s_dial_add(self, ep, nm, nm->has_key, nm->key);
        if (d != NULL) {
            d->seen = true;
            s_dial_start(self, d);
        }
    }
    for (s_dial_t *d = self->dials; d != NULL; d = d->next) {
        if (d->name == nm && !d->seen && !d->gone) {
            // Vanished: not redialed (a session it has stays until it ends).
            d->gone = true;
            d->next_at_ns = 0;
            changed = true;
        }
    }
    if (changed)
        s_log(self, BRG_LOG_NOTICE, "%s resolves to %s", nm->text, list);
}

//  A dial of a name ended: when none of the name's addresses has a session
//  any more, resolve it again (at most once per S_RESOLVE_GAP_NS). A
//  waiter on the name learns a refusal when no other address is under way.
static void
s_name_dial_ended(brg__io_t *self, s_dial_t *d, bool refused)
{
    s_name_t *nm = d->name;
    bool live = false;
    for (s_dial_t *o = self->dials; o != NULL && !live; o = o->next) {
        if (o->name != nm)
            continue;
        if (o->conn != NULL && !o->conn->ended)
            live = true;
        brg__peer_t *p = o->hi || o->lo ? s_peer_find(self, o->hi, o->lo) : NULL;
        if (p != NULL && p->conn != NULL && !p->conn->ended)
            live = true;
    }
    if (live || self->stopping)
        return;
    if (refused) {
        s_waiter_wake(self, nm->waiter, BRG_ENETWORK, BRG_REF_NONE);
        nm->waiter = 0;
    }
    if (nm->resolving)
        return;
    uint64_t at = nm->done_ns + S_RESOLVE_GAP_NS;
    if (at < s_now())
        at = s_now();
    if (nm->next_at_ns == 0 || at < nm->next_at_ns)
        nm->next_at_ns = at;
}

//  brg_node_connect or a seed: a name is resolved, anything else dialed.
static void
s_connect(brg__io_t *self, const char *text, uint64_t waiter)
{
    char ep[BRG__WIRE_EP_MAX + 1], host[256], port[16];
    bool has_key, z85;
    uint8_t key[BRG__KEY_BYTES];
    const char *why = NULL;
    if (s_parse_dial(self, text, ep, sizeof ep, &has_key, key, &z85, &why) != BRG_OK) {
        s_log(self, BRG_LOG_ERROR, "cannot connect to %s: %s", text, why);
        s_waiter_wake(self, waiter, BRG_EINVAL, BRG_REF_NONE);
        return;
    }
    s_trust_key(self, z85, key, ep);
    if (s_dns_name(ep, host, sizeof host, port, sizeof port)) {
        s_name_connect(self, text, host, port, has_key, key, waiter);
        return;
    }
    s_dial_t *d = s_dial_add(self, ep, NULL, has_key, key);
    if (d == NULL) {
        s_waiter_wake(self, waiter, BRG_ENOMEM, BRG_REF_NONE);
        return;
    }
    if (d->learned) {
        // The user dials it now: it is theirs (reconnected until
        // brg_node_disconnect), no longer the mesh's.
        d->learned = false;
        self->nlearned_dials--;
    }
    if (d->conn != NULL && d->conn->up) {
        s_waiter_wake(self, waiter, BRG_OK, s_node_ref(d->hi, d->lo));
        return;
    }
    if (waiter != 0) {
        s_waiter_wake(self, d->waiter, BRG_ETIMEDOUT, BRG_REF_NONE); // superseded
        d->waiter = waiter;
    }
    if (d->conn == NULL)
        s_dial_start(self, d);
    s_wake_for_node(self, d->hi, d->lo); // standing by for a node that is up
}

//  ---------------------------------------------------------------------------
//  Inbound frames.

//  Where an inbound frame came from: the inbox, the routing id of the
//  peer's connection on it, and on the CURVE inbox the key it proved (the
//  ZAP handler's user id).
typedef struct s_from {
    void *inbox;
    const uint8_t *rid;
    size_t rid_len;
    bool has_key;
    uint8_t key[BRG__KEY_BYTES];
} s_from_t;

//  Feed one inbound frame to conn's session. Returns the session's answer
//  (BRG_EEXIST: it ended REPLACED, start a new one from this frame).
static int
s_feed_inbound(s_conn_t *conn, const void *data, size_t len)
{
    int rc = brg__session_on_bytes(conn->sess, data, len, true, s_now());
    s_after_call(conn);
    return rc;
}

static void s_accept(brg__io_t *self, const s_from_t *from, const void *data, size_t len,
                     bool may_park);

static void
s_park(brg__io_t *self, const s_from_t *from, const void *data, size_t len)
{
    if (self->nparked >= S_PARK_MAX || from->rid_len > sizeof self->parked->rid) {
        atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
        return;
    }
    s_parked_t *pk = malloc(sizeof *pk + len);
    if (pk == NULL)
        return;
    pk->deadline_ns = s_now() + (uint64_t)self->cfg.handshake_ms * 1000000ull;
    pk->inbox = from->inbox;
    pk->has_key = from->has_key;
    memcpy(pk->key, from->key, BRG__KEY_BYTES);
    pk->rid_len = from->rid_len;
    memcpy(pk->rid, from->rid, from->rid_len);
    pk->len = len;
    memcpy(pk->data, data, len);
    pk->next = self->parked;
    self->parked = pk;
    self->nparked++;
}

//  Re-dispatch parked HELLOs: those whose node a dial now knows, those past
//  their deadline, and all of them once no dial is pending.
static void
s_unpark(brg__io_t *self, bool all)
{
    if (self->unparking)
        return; // s_accept called from the loop below
    self->unparking = true;
    uint64_t now = s_now();
    s_parked_t **pp = &self->parked;
    while (*pp != NULL) {
        s_parked_t *pk = *pp;
        bool go = all || now >= pk->deadline_ns || !s_dial_pending(self);
        brg__frame_t *f = &self->frame;
        int werr = 0;
        if (brg__wire_decode(pk->data, pk->len, &self->scfg.limits, f, &werr) != BRG_OK) {
            go = true; // cannot happen: it decoded before
        } else if (!go) {
            uint64_t hi, lo;
            s_uuid_split(f->hello.node, &hi, &lo);
            brg__peer_t *p = s_peer_find(self, hi, lo);
            go = p != NULL && p->conn != NULL;
        }
        if (!go) {
            pp = &pk->next;
            continue;
        }
        *pp = pk->next;
        self->nparked--;
        if (werr == 0) {
            s_from_t from = {pk->inbox, pk->rid, pk->rid_len, pk->has_key, {0}};
            memcpy(from.key, pk->key, BRG__KEY_BYTES);
            s_accept(self, &from, pk->data, pk->len, false);
        }
        free(pk);
    }
    self->unparking = false;
}

//  Answer a probe HELLO from a node that has a session with us already:
//  WELCOME with feature "standby" (PROTOCOL.md section 10), on no session.
static void
s_send_standby(brg__io_t *self, const s_from_t *from)
{
    brg__hello_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return;
    memcpy(w->node, self->uuid, 16);
    w->sess = s_rand(self) | 1;
    memcpy(w->name, self->scfg.name, sizeof w->name);
    memcpy(w->cluster, self->scfg.cluster, sizeof w->cluster);
    memcpy(w->ep, self->scfg.ep, sizeof w->ep);
    w->max_frame = self->cfg.max_frame;
    w->tick_ms = self->cfg.tick_ms;
    w->timeout_ms = self->cfg.timeout_ms;
    w->standby = true;
    brg__wbuf_reset(&self->wbuf);
    if (brg__wire_encode_hello(&self->wbuf, BRG__FRAME_WELCOME, w) == BRG_OK)
        s_router_send(self, from->inbox, from->rid, from->rid_len, self->wbuf.data,
                      self->wbuf.size);
    free(w);
}

//  A HELLO from a routing id we do not know (design notes: matching). The
//  frame has been decoded into self->frame.
static void
s_accept(brg__io_t *self, const s_from_t *from, const void *data, size_t len, bool may_park)
{
    const brg__hello_t *h = &self->frame.hello;
    brg_key_role_t role = BRG_KEY_NODE;
    if (from->has_key && !s_key_allowed(self, from->key, &role)) {
        // Revoked between its handshake and this HELLO.
        atomic_fetch_add_explicit(&self->refused_keys, 1, memory_order_relaxed);
        s_router_error(self, from->inbox, from->rid, from->rid_len, BRG__WERR_NOT_ALLOWED,
                       "key not allowed");
        return;
    }
    uint64_t hi, lo;
    s_uuid_split(h->node, &hi, &lo);
    bool client = h->client;
    s_conn_t *conn = NULL;
    brg__peer_t *p = s_peer_find(self, hi, lo);
    if (p != NULL && p->conn != NULL && !p->conn->ended)
        conn = p->conn;
    if (conn == NULL && !client && h->ep[0] != '\0') {
        for (s_dial_t *d = self->dials; d != NULL; d = d->next)
            if (d->conn != NULL && !d->conn->ended && d->conn->peer == NULL &&
                d->conn->rid_len == 0 && strcmp(d->ep, h->ep) == 0)
                conn = d->conn;
    }
    if (conn == NULL && may_park && !client && s_dial_pending(self)) {
        s_park(self, from, data, len);
        return;
    }
    if (conn != NULL && conn->rid_len != 0 && h->probe && !client) {
        // A dial of that node that does not know it reaches us (another
        // address of ours, design notes: duplicates): the live session
        // stays; the answer names us so the dial stands by.
        s_send_standby(self, from);
        return;
    }
    if (conn != NULL && conn->rid_len != 0) {
        // The node already has an inbound direction: this HELLO is a new
        // incarnation of its outbox (it reconnected before we noticed the
        // break). The old session ends, the new one starts.
        brg__session_end(conn->sess, BRG__END_REPLACED);
        s_reap(self);
        conn = NULL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (conn == NULL) {
            // A client or admin key's HELLO must say "client" (the
            // session checks).
            self->scfg.client_key = role != BRG_KEY_NODE;
            conn = s_conn_new(self, false, NULL);
            self->scfg.client_key = false;
            if (conn == NULL) {
                s_router_error(self, from->inbox, from->rid, from->rid_len, BRG__WERR_BUSY,
                               "out of resources");
                return;
            }
            conn->admin = role == BRG_KEY_ADMIN;
        } else if (role != BRG_KEY_NODE) {
            // A dial's session joined by a client key: not a node's HELLO.
            s_router_error(self, from->inbox, from->rid, from->rid_len, BRG__WERR_NOT_ALLOWED,
                           "a client key may not act as a node");
            return;
        }
        conn->inbox = from->inbox;
        memcpy(conn->rid, from->rid, from->rid_len);
        conn->rid_len = from->rid_len;
        if (from->has_key) {
            conn->has_key = true;
            memcpy(conn->key, from->key, BRG__KEY_BYTES);
        }
        if (s_feed_inbound(conn, data, len) != BRG_EEXIST)
            break;
        // The session we joined was an older one of the same node (its id
        // differs): it ended REPLACED; a new one starts from this HELLO.
        s_reap(self);
        conn = NULL;
    }
    s_reap(self);
    if (self->parked != NULL)
        s_unpark(self, false);
}

static void
s_on_inbox_frame(brg__io_t *self, s_from_t *from, zmq_msg_t *body)
{
    const void *data = zmq_msg_data(body);
    size_t len = zmq_msg_size(body);
    s_conn_t *conn = s_conn_by_rid(self, from->inbox, from->rid, from->rid_len);
    if (conn != NULL) {
        // The session validates and answers (ERROR, end) what it gets.
        if (s_feed_inbound(conn, data, len) == BRG_EPROTO)
            atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
        return;
    }
    if (from->inbox == self->router_sec) {
        // The key this connection proved: the ZAP handler's user id, the
        // key in Z85 (s_zap_handle). Read once per session, not per frame.
        const char *uid = zmq_msg_gets(body, "User-Id");
        from->has_key = uid != NULL && brg__key_from_text(from->key, uid) == BRG_OK;
        if (!from->has_key) {
            atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
            return;
        }
    }
    brg__frame_t *f = &self->frame;
    int werr = 0;
    if (brg__wire_decode(data, len, &self->scfg.limits, f, &werr) != BRG_OK) {
        // Untrusted input from a stranger: count and answer, rate-limited.
        atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
        s_router_error(self, from->inbox, from->rid, from->rid_len, werr, "malformed frame");
        return;
    }
    if (f->type != BRG__FRAME_HELLO) {
        // A frame of a session that ended, or from a stranger.
        atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
        if (f->type != BRG__FRAME_BYE && f->type != BRG__FRAME_ERROR)
            s_router_error(self, from->inbox, from->rid, from->rid_len, BRG__WERR_NO_SESSION,
                           "no session");
        return;
    }
    s_accept(self, from, data, len, true);
}

//  Read an inbox (the plain or the CURVE one). Returns the number of frames
//  read.
static int
s_read_inbox(brg__io_t *self, void *inbox)
{
    int n = 0;
    while (n < S_RECV_BURST) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (s_zrecv(&rid, inbox, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            break;
        }
        n++;
        bool ok = zmq_msg_more(&rid);
        zmq_msg_init(&body);
        if (ok)
            ok = s_zrecv(&body, inbox, ZMQ_DONTWAIT) >= 0;
        bool extra = ok && zmq_msg_more(&body);
        while (ok && zmq_msg_more(&body)) {
            // One frame per message: drain and refuse the rest.
            zmq_msg_close(&body);
            zmq_msg_init(&body);
            if (s_zrecv(&body, inbox, ZMQ_DONTWAIT) < 0)
                break;
        }
        s_from_t from = {inbox, zmq_msg_data(&rid), zmq_msg_size(&rid), false, {0}};
        if (ok && !extra)
            s_on_inbox_frame(self, &from, &body);
        else
            atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
    return n;
}

//  The next event of a socket monitor while *ready: its number, value
//  (an fd, an errno or a protocol error code) and address (where, if
//  given: "?" when absent). Clears *ready and returns false when none is
//  left.
static bool
s_monitor_event(void *mon, bool *ready, uint16_t *event, uint32_t *value, char *where,
                size_t where_len)
{
    if (!*ready)
        return false;
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&ev);
        *ready = false;
        return false;
    }
    *event = 0;
    *value = 0;
    if (zmq_msg_size(&ev) >= 6) {
        memcpy(event, zmq_msg_data(&ev), 2);
        memcpy(value, (const uint8_t *)zmq_msg_data(&ev) + 2, 4);
    }
    if (where != NULL)
        snprintf(where, where_len, "?");
    if (zmq_msg_more(&ev)) {
        zmq_msg_init(&addr);
        if (zmq_msg_recv(&addr, mon, ZMQ_DONTWAIT) >= 0 && where != NULL)
            snprintf(where, where_len, "%.*s", (int)zmq_msg_size(&addr),
                     (const char *)zmq_msg_data(&addr));
        zmq_msg_close(&addr);
    }
    zmq_msg_close(&ev);
    return true;
}

//  Frames on our outbox (WELCOME, ERROR) and its monitor's events.
//  Whether m answers conn's probe HELLO with a WELCOME "standby" (design
//  notes: duplicates); then conn->dup_hi/lo name the node.
static bool
s_standby_answer(brg__io_t *self, s_conn_t *conn, zmq_msg_t *m)
{
    if (!conn->probe || conn->peer != NULL || conn->dial == NULL)
        return false;
    brg__frame_t *f = &self->frame;
    int werr = 0;
    if (brg__wire_decode(zmq_msg_data(m), zmq_msg_size(m), &self->scfg.limits, f, &werr) !=
            BRG_OK ||
        f->type != BRG__FRAME_WELCOME || !f->hello.standby)
        return false;
    conn->standby = true;
    s_uuid_split(f->hello.node, &conn->dup_hi, &conn->dup_lo);
    return true;
}

static int
s_read_outbox(brg__io_t *self, s_conn_t *conn)
{
    int n = 0;
    while (conn->out_ready && !conn->ended && conn->outbox != NULL && n < S_RECV_BURST) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (s_zrecv(&m, conn->outbox, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            conn->out_ready = false;
            break;
        }
        n++;
        if (zmq_msg_more(&m)) {
            atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
            brg__session_end(conn->sess, BRG__END_PROTOCOL);
        } else if (s_standby_answer(self, conn, &m)) {
            // Its node is up already: this conn ends quietly (s_reap), and
            // was never a session (not counted started, nor ended).
            atomic_fetch_sub_explicit(&self->sessions_started, 1, memory_order_relaxed);
            brg__session_end(conn->sess, BRG__END_CLOSED);
        } else if (brg__session_on_bytes(conn->sess, zmq_msg_data(&m), zmq_msg_size(&m), false,
                                         s_now()) == BRG_EPROTO) {
            atomic_fetch_add_explicit(&self->rejected, 1, memory_order_relaxed);
        }
        s_after_call(conn);
        zmq_msg_close(&m);
    }
    uint16_t event;
    uint32_t value;
    while (!conn->ended && conn->monitor != NULL &&
           s_monitor_event(conn->monitor, &conn->mon_ready, &event, &value, NULL, 0)) {
        n++;
        if (event & (ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED))
            brg__session_end(conn->sess, BRG__END_CLOSED);
        else if (event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))
            brg__session_end(conn->sess, BRG__END_PROTOCOL);
    }
    if (!conn->ended && conn->busy && conn->can_write) {
        conn->can_write = false; // until the next poll says so again
        if (s_outbox_retry(conn))
            n++;
    }
    s_after_call(conn);
    return n;
}

//  Failed handshakes on the CURVE inbox: a plaintext peer, a wrong server
//  key, a mechanism mismatch, a malformed CURVE command. (A key the ZAP
//  handler refused is counted and logged there.) Each address is logged at
//  most once a minute.
static int
s_read_sec_monitor(brg__io_t *self)
{
    int n = 0;
    uint16_t event;
    uint32_t value;
    char where[64];
    while (self->sec_monitor != NULL && s_monitor_event(self->sec_monitor, &self->sec_mon_ready,
                                                        &event, &value, where, sizeof where)) {
        n++;
        if (!(event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)))
            continue;
        atomic_fetch_add_explicit(&self->refused_handshakes, 1, memory_order_relaxed);
        uint64_t now = s_now();
        if (now - self->hs_window_ns > 60ull * 1000000000ull) {
            self->hs_window_ns = now;
            self->hs_nlogged = 0;
        }
        bool seen = false;
        for (uint32_t i = 0; i < self->hs_nlogged && i < 8; i++)
            seen |= strcmp(self->hs_logged[i], where) == 0;
        if (seen || self->hs_nlogged >= 8)
            continue;
        snprintf(self->hs_logged[self->hs_nlogged++], sizeof self->hs_logged[0], "%s", where);
        const char *why = "no detail";
        switch (value) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            why = "security mechanism mismatch (a plaintext peer?)";
            break;
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            why = "cryptographic error (the peer expects another server key?)";
            break;
        case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_HELLO:
        case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_INITIATE:
        case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_UNSPECIFIED:
        case ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND:
        case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_SEQUENCE:
            why = "malformed handshake";
            break;
        default:
            break;
        }
        s_log(self, BRG_LOG_WARNING, "refused a connection on a CURVE listener (%s): %s", where,
              why);
    }
    return n;
}

//  ---------------------------------------------------------------------------
//  Outbound messages.

static void
s_touch(brg__io_t *self, brg__peer_t *p)
{
    if (!p->touched) {
        p->touched = true;
        p->touched_next = self->touched;
        self->touched = p;
    }
}

//  Hand one message to its session (the session encodes it; it leaves the
//  budget here).
static void
s_push(brg__io_t *self, s_conn_t *conn, s_item_t *it)
{
    brg__peer_t *p = it->peer;
    s_unqueue(self, p, it->bytes);
    int rc = brg__session_push(conn->sess, it->to, it->name[0] ? it->name : NULL, &it->msg);
    if (rc == BRG_ENETWORK) {
        atomic_fetch_add_explicit(&self->dead_on_end, 1, memory_order_relaxed);
        brg__remote_dead_letter(self->sys, it->to, it->msg, BRG_DEAD_REMOTE_DOWN, BRG_ENETWORK);
    } else if (rc != BRG_OK) {
        // A message that cannot cross (a local-only kind, a control signal
        // by name, too large for the peer): the sender is answered with why.
        brg__remote_dead_letter(self->sys, it->to, it->msg, BRG_DEAD_NO_ACTOR, rc);
    }
    s_item_free(it);
    s_touch(self, p);
}

static bool
s_can_push(const brg__peer_t *p)
{
    const s_conn_t *c = p->conn;
    return c != NULL && c->up && !c->ended && !c->busy && !c->failed;
}

//  Feed a peer's backlog to its session while ZeroMQ takes the frames, at
//  most S_TURN_ITEMS per turn (a long backlog must not keep the thread from
//  reading and ticking); what is left is drained in the next turns.
static void
s_drain_backlog(brg__io_t *self, brg__peer_t *p)
{
    for (int k = 0; p->bl_head != NULL && s_can_push(p); k++) {
        if (k == S_TURN_ITEMS) {
            p->conn->need_drain = true;
            return;
        }
        s_item_t *it = p->bl_head;
        p->bl_head = it->next;
        if (p->bl_head == NULL)
            p->bl_tail = NULL;
        s_push(self, p->conn, it);
        s_after_call(p->conn);
    }
}

static void
s_on_msg(brg__io_t *self, s_item_t *it)
{
    brg__peer_t *p = it->peer;
    if (it->epoch != atomic_load_explicit(&p->epoch, memory_order_relaxed) ||
        atomic_load_explicit(&p->state, memory_order_relaxed) == S_PEER_DOWN) {
        // Accepted while the peer was up or connecting; its session ended
        // before the message left.
        s_unqueue(self, p, it->bytes);
        atomic_fetch_add_explicit(&self->dead_on_end, 1, memory_order_relaxed);
        brg__remote_dead_letter(self->sys, it->to, it->msg, BRG_DEAD_REMOTE_DOWN, BRG_ENETWORK);
        s_item_free(it);
        return;
    }
    if (p->bl_head == NULL && s_can_push(p)) {
        s_push(self, p->conn, it);
        s_after_call(p->conn);
        return;
    }
    it->next = NULL;
    if (p->bl_tail != NULL)
        p->bl_tail->next = it;
    else
        p->bl_head = it;
    p->bl_tail = it;
}

static void s_publish_stats(brg__io_t *self);

//  The allow-list changed: every session whose peer proved a key that is
//  not allowed any more (or that we dialed with one) ends now.
static void
s_keys_changed(brg__io_t *self)
{
    for (s_conn_t *c = self->conns; c != NULL; c = c->next) {
        if (c->ended)
            continue;
        bool revoked =
            (c->has_key && !s_key_allowed(self, c->key, NULL)) ||
            (c->dial != NULL && c->dial->has_key && !s_key_allowed(self, c->dial->key, NULL));
        if (revoked) {
            char z[BRG__KEY_Z85 + 1];
            brg__z85_encode(z, c->has_key ? c->key : c->dial->key, BRG__KEY_BYTES);
            s_log(self, BRG_LOG_NOTICE, "ending the session with %s: key %s was revoked",
                  c->peer != NULL ? c->peer->name : "a peer", z);
            brg__session_end(c->sess, BRG__END_REVOKED);
        }
    }
    s_reap(self);
}

static void
s_on_command(brg__io_t *self, s_item_t *it)
{
    switch (it->type) {
    case S_ITEM_CONNECT:
        s_connect(self, it->name, it->waiter);
        break;
    case S_ITEM_RESOLVED:
        s_on_resolved(self, it);
        break;
    case S_ITEM_LEARN:
        s_gossip_learn(self, (const brg__wire_peer_t *)(const void *)it->name, (uint32_t)it->rc,
                       "a peer's node service");
        break;
    case S_ITEM_DISCONNECT: {
        for (s_dial_t *d = self->dials; d != NULL; d = d->next) {
            if (d->hi == it->to.node_hi && d->lo == it->to.node_lo) {
                d->stopped = true;
                d->next_at_ns = 0;
            }
        }
        brg__peer_t *p = s_peer_find(self, it->to.node_hi, it->to.node_lo);
        if (p != NULL && p->conn != NULL && !p->conn->ended)
            brg__session_end(p->conn->sess, BRG__END_LOCAL);
        break;
    }
    case S_ITEM_STATS:
        s_publish_stats(self);
        break;
    case S_ITEM_KEYS:
        s_keys_changed(self);
        break;
    case S_ITEM_STOP:
        self->stopping = true;
        break;
    default:
        break;
    }
    s_item_free(it);
}

//  Take what was queued and handle at most S_TURN_ITEMS of it; the rest
//  waits, in order, for the next turn, so a flood never keeps the thread
//  from reading, ticking and timing out for long.
static bool
s_grab(brg__io_t *self)
{
    if (self->left == NULL)
        self->left = brg__outq_grab(&self->q);
    bool any = self->left != NULL;
    for (int k = 0; self->left != NULL && k < S_TURN_ITEMS; k++) {
        s_item_t *it = (s_item_t *)self->left;
        self->left = self->left->next;
        if (it->type == S_ITEM_MSG) {
            self->moved++;
            s_on_msg(self, it);
        } else
            s_on_command(self, it);
    }
    return any;
}

//  End of a turn: drain backlogs that may move again, seal every open BATCH.
//  Returns true when a backlog still has messages to feed next turn.
static bool
s_flush(brg__io_t *self)
{
    bool more = false;
    for (s_conn_t *c = self->conns; c != NULL; c = c->next) {
        if (c->need_drain && !c->ended && c->peer != NULL) {
            c->need_drain = false;
            s_drain_backlog(self, c->peer);
            more |= c->need_drain;
        }
    }
    while (self->touched != NULL) {
        brg__peer_t *p = self->touched;
        self->touched = p->touched_next;
        p->touched = false;
        if (p->conn != NULL && !p->conn->ended) {
            brg__session_flush(p->conn->sess);
            s_after_call(p->conn);
        }
    }
    return more;
}

//  ---------------------------------------------------------------------------
//  Stats.

static void
s_publish_stats(brg__io_t *self)
{
    brg__session_stats_t sum = self->retired;
    // Per live session too, for operators (brg__io_peer_stats): filled here,
    // copied under the lock below.
    brg__io_peer_stat_t sess[S_PUB_SESSIONS];
    int nsess = 0;
    for (s_conn_t *c = self->conns; c != NULL; c = c->next) {
        brg__session_stats_t st;
        brg__session_stats(c->sess, &st);
        if (c->peer != NULL && !c->ended && nsess < S_PUB_SESSIONS) {
            brg__io_peer_stat_t *e = &sess[nsess++];
            memset(e, 0, sizeof *e);
            e->node = s_node_ref(c->peer->hi, c->peer->lo);
            e->msgs_in = st.msgs_in;
            e->msgs_out = st.msgs_out;
            e->bytes_in = st.bytes_in;
            e->bytes_out = st.bytes_out;
            e->msgs_acked = st.msgs_acked;
            e->refused_unauthorized = st.refused_unauthorized;
        }
        sum.frames_in += st.frames_in;
        sum.frames_out += st.frames_out;
        sum.msgs_in += st.msgs_in;
        sum.msgs_out += st.msgs_out;
        sum.bytes_in += st.bytes_in;
        sum.bytes_out += st.bytes_out;
        sum.dead_on_end += st.dead_on_end;
        sum.lost_in_flight += st.lost_in_flight;
        sum.refused_unauthorized += st.refused_unauthorized;
    }
    brg_node_stats_t s;
    memset(&s, 0, sizeof s);
    // A count kept by s_peer_set_state: this runs before every sleep (once per
    // round trip under a ping-pong), where a scan of the 2048-slot table cost
    // a cache miss per slot.
    s.peers_up = (uint32_t)self->peers_up;
    s.sessions_started = atomic_load_explicit(&self->sessions_started, memory_order_relaxed);
    s.sessions_ended = atomic_load_explicit(&self->sessions_ended, memory_order_relaxed);
    s.frames_in = sum.frames_in;
    s.frames_out = sum.frames_out;
    s.msgs_in = sum.msgs_in;
    s.msgs_out = sum.msgs_out;
    s.bytes_in = sum.bytes_in;
    s.bytes_out = sum.bytes_out;
    s.dropped_busy = atomic_load_explicit(&self->dropped_busy, memory_order_relaxed);
    s.busy_waits = atomic_load_explicit(&self->busy_waits, memory_order_relaxed);
    s.dropped_unreachable = atomic_load_explicit(&self->dropped_unreachable, memory_order_relaxed);
    s.dead_on_session_end =
        sum.dead_on_end + atomic_load_explicit(&self->dead_on_end, memory_order_relaxed);
    s.lost_in_flight = sum.lost_in_flight;
    s.rejected_frames = atomic_load_explicit(&self->rejected, memory_order_relaxed);
    s.handshakes_failed = atomic_load_explicit(&self->handshakes_failed, memory_order_relaxed);
    s.reconnect_attempts = atomic_load_explicit(&self->reconnects, memory_order_relaxed);
    s.refused_keys = atomic_load_explicit(&self->refused_keys, memory_order_relaxed);
    s.refused_handshakes = atomic_load_explicit(&self->refused_handshakes, memory_order_relaxed);
    s.refused_unauthorized = sum.refused_unauthorized;
    s.gossip_learned = atomic_load_explicit(&self->gossip_learned, memory_order_relaxed);
    s.gossip_refused = atomic_load_explicit(&self->gossip_refused, memory_order_relaxed);
    pthread_mutex_lock(&self->lock);
    memcpy(self->pub_sess, sess, (size_t)nsess * sizeof sess[0]);
    self->pub_nsess = nsess;
    self->pub = s;
    self->pub_gen++;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
}

//  ---------------------------------------------------------------------------
//  The loop.

//  Session timers, reconnects and parked HELLOs. Returns the next deadline.
static uint64_t
s_timers(brg__io_t *self, uint64_t now)
{
    uint64_t next = now + 1000000000ull; // wake at least once a second
    for (s_conn_t *c = self->conns; c != NULL; c = c->next) {
        if (c->ended)
            continue;
        uint64_t t = brg__session_timer(c->sess, now);
        s_after_call(c);
        if (t != 0 && t < next)
            next = t;
    }
    s_reap(self);
    for (s_dial_t *d = self->dials; d != NULL; d = d->next) {
        if (d->next_at_ns == 0 || d->conn != NULL || d->stopped || d->gone)
            continue;
        if (now >= d->next_at_ns)
            s_dial_start(self, d);
        else if (d->next_at_ns < next)
            next = d->next_at_ns;
    }
    for (s_name_t *nm = self->names; nm != NULL; nm = nm->next) {
        if (nm->next_at_ns == 0 || nm->resolving)
            continue;
        if (now >= nm->next_at_ns) {
            if (s_name_resolve(self, nm) != BRG_OK)
                s_name_backoff(self, nm);
        }
        if (nm->next_at_ns != 0 && nm->next_at_ns < next)
            next = nm->next_at_ns;
    }
    s_gossip_dial(self, now, &next);
    if (self->parked != NULL) {
        s_unpark(self, false);
        for (s_parked_t *pk = self->parked; pk != NULL; pk = pk->next)
            if (pk->deadline_ns < next)
                next = pk->deadline_ns;
    }
    return next;
}

//  Block in zmq_poll until a socket, the doorbell or the next deadline
//  (deadline 0: do not block), and set the ready flags from what it saw.
static bool
s_poll(brg__io_t *self, uint64_t deadline, int wake_fd)
{
    size_t n = 5;
    for (s_conn_t *c = self->conns; c != NULL; c = c->next)
        n += c->outbox != NULL ? 2 : 0;
    zmq_pollitem_t stack_items[64];
    zmq_pollitem_t *items = n <= 64 ? stack_items : malloc(n * sizeof *items);
    if (items == NULL) {
        // Cannot poll this turn: look at every socket instead.
        self->inbox_ready = self->sec_ready = self->sec_mon_ready = true;
        for (s_conn_t *c = self->conns; c != NULL; c = c->next)
            c->out_ready = c->mon_ready = c->can_write = true;
        return wake_fd >= 0;
    }
    items[0] = (zmq_pollitem_t){NULL, self->q.efd, ZMQ_POLLIN, 0};
    items[1] = (zmq_pollitem_t){self->router, 0, ZMQ_POLLIN, 0};
    size_t i = 2;
    size_t wake_i = 0; // 0: no wake fd
    if (wake_fd >= 0) {
        wake_i = i;
        items[i++] = (zmq_pollitem_t){NULL, wake_fd, ZMQ_POLLIN, 0};
    }
    size_t sec_i = i;
    if (self->router_sec != NULL) {
        items[i++] = (zmq_pollitem_t){self->router_sec, 0, ZMQ_POLLIN, 0};
        items[i++] = (zmq_pollitem_t){self->sec_monitor, 0, ZMQ_POLLIN, 0};
    }
    size_t first_conn = i;
    for (s_conn_t *c = self->conns; c != NULL; c = c->next) {
        if (c->outbox == NULL)
            continue;
        short ev = ZMQ_POLLIN | (c->busy ? ZMQ_POLLOUT : 0);
        items[i++] = (zmq_pollitem_t){c->outbox, 0, ev, 0};
        items[i++] = (zmq_pollitem_t){c->monitor, 0, ZMQ_POLLIN, 0};
    }
    uint64_t now = s_now();
    long timeout = deadline > now ? (long)((deadline - now + 999999) / 1000000) : 0;
    if (zmq_poll(items, (int)i, timeout) < 0) {
        // EINTR or ETERM: look at every socket next turn.
        for (size_t k = 1; k < i; k++)
            items[k].revents = (short)(items[k].events);
    }
    self->polled_ns = s_now();
    if (items[0].revents & ZMQ_POLLIN)
        brg__outq_drain_bell(&self->q);
    self->inbox_ready |= (items[1].revents & ZMQ_POLLIN) != 0;
    if (self->router_sec != NULL) {
        self->sec_ready |= (items[sec_i].revents & ZMQ_POLLIN) != 0;
        self->sec_mon_ready |= (items[sec_i + 1].revents & ZMQ_POLLIN) != 0;
    }
    bool woke = wake_i != 0 && (items[wake_i].revents & ZMQ_POLLIN) != 0;
    i = first_conn;
    for (s_conn_t *c = self->conns; c != NULL; c = c->next) {
        if (c->outbox == NULL)
            continue;
        c->out_ready |= (items[i].revents & ZMQ_POLLIN) != 0;
        c->can_write = (items[i].revents & ZMQ_POLLOUT) != 0;
        c->mon_ready |= (items[i + 1].revents & ZMQ_POLLIN) != 0;
        i += 2;
    }
    if (items != stack_items)
        free(items);
    return woke;
}

static bool
s_all_quiet(brg__io_t *self)
{
    for (s_conn_t *c = self->conns; c != NULL; c = c->next)
        if (!c->ended)
            return false;
    return true;
}

//  Orderly end: every session says BYE after what is queued went out.
static void
s_stop_all(brg__io_t *self)
{
    while (s_grab(self))
        s_flush(self);
    for (s_conn_t *c = self->conns; c != NULL; c = c->next) {
        if (c->ended)
            continue;
        while (c->peer != NULL && c->peer->bl_head != NULL && s_can_push(c->peer))
            s_drain_backlog(self, c->peer);
        if (!c->ended) {
            brg__session_flush(c->sess);
            brg__session_end(c->sess, BRG__END_LOCAL);
        }
    }
    s_reap(self);
    // What the ends made (error replies to local askers, signals) or what
    // came meanwhile: no session is left for it.
    for (;;) {
        brg__outq_node_t *n = brg__outq_grab(&self->q);
        if (n == NULL)
            break;
        while (n != NULL) {
            s_item_t *it = (s_item_t *)n;
            n = n->next;
            if (it->type == S_ITEM_MSG) {
                s_unqueue(self, it->peer, it->bytes);
                atomic_fetch_add_explicit(&self->dead_on_end, 1, memory_order_relaxed);
                brg__remote_dead_letter(self->sys, it->to, it->msg, BRG_DEAD_SHUTDOWN, BRG_ECLOSED);
            }
            s_item_free(it);
        }
    }
    for (uint32_t i = 0; i < S_TABLE_SIZE; i++) {
        brg__peer_t *p = atomic_load_explicit(&self->table[i], memory_order_relaxed);
        if (p != NULL && p != S_TOMB)
            s_dead_letter_backlog(self, p, BRG_DEAD_SHUTDOWN);
    }
    (void)s_all_quiet;
}

//  An inbox ROUTER with the options of the design notes; with curve, a
//  CURVE server in this node's ZAP domain.
static void *
s_inbox_new(brg__io_t *self, bool curve)
{
    void *r = zmq_socket(self->ctx, ZMQ_ROUTER);
    if (r == NULL)
        return NULL;
    s_setopts_common(self, r);
    s_setopt_int(r, ZMQ_ROUTER_MANDATORY, 1);
    s_setopt_int(r, ZMQ_ROUTER_HANDOVER, 1);
    if (curve &&
        (s_setopt_int(r, ZMQ_CURVE_SERVER, 1) != 0 ||
         zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, self->cert.sec, BRG__KEY_BYTES) != 0 ||
         zmq_setsockopt(r, ZMQ_ZAP_DOMAIN, self->zap_domain, strlen(self->zap_domain)) != 0)) {
        s_log(self, BRG_LOG_ERROR, "cannot make a CURVE listener: %s%s", zmq_strerror(zmq_errno()),
              "");
        zmq_close(r);
        return NULL;
    }
    return r;
}

static int
s_bind_all(brg__io_t *self)
{
    self->router = s_inbox_new(self, false);
    if (self->router == NULL)
        return BRG_ENETWORK;
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS && self->cfg.listen[i] != NULL; i++) {
        const char *ep = self->cfg.listen[i];
        void *r = self->router;
        if (self->curve && s_is_tcp(ep)) {
            if (self->router_sec == NULL) {
                self->router_sec = s_inbox_new(self, true);
                if (self->router_sec == NULL)
                    return BRG_ENETWORK;
                char mon_ep[96];
                snprintf(mon_ep, sizeof mon_ep, "inproc://brg-secmon-%016" PRIx64 "%016" PRIx64,
                         self->hi, self->lo);
                if (zmq_socket_monitor(self->router_sec, mon_ep,
                                       ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0 ||
                    (self->sec_monitor = zmq_socket(self->ctx, ZMQ_PAIR)) == NULL ||
                    zmq_connect(self->sec_monitor, mon_ep) != 0) {
                    s_log(self, BRG_LOG_ERROR, "cannot monitor the CURVE listener: %s%s",
                          zmq_strerror(zmq_errno()), "");
                    return BRG_ENETWORK;
                }
                s_setopt_int(self->sec_monitor, ZMQ_LINGER, 0);
                self->sec_ready = self->sec_mon_ready = true;
            }
            r = self->router_sec;
        }
        if (zmq_bind(r, ep) != 0) {
            s_log(self, BRG_LOG_ERROR, "cannot listen on %s: %s", ep, zmq_strerror(zmq_errno()));
            return BRG_ENETWORK;
        }
        size_t len = sizeof self->bound[0];
        if (zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, self->bound[self->nbound], &len) != 0)
            snprintf(self->bound[self->nbound], sizeof self->bound[0], "%s", ep);
        self->nbound++;
    }
    return BRG_OK;
}

//  Close the inboxes (the I/O thread, at its end or a failed start).
static void
s_close_inboxes(brg__io_t *self)
{
    if (self->router_sec != NULL) {
        zmq_socket_monitor(self->router_sec, NULL, 0);
        zmq_close(self->router_sec);
        self->router_sec = NULL;
    }
    if (self->sec_monitor != NULL) {
        zmq_close(self->sec_monitor);
        self->sec_monitor = NULL;
    }
    if (self->router != NULL) {
        zmq_close(self->router);
        self->router = NULL;
    }
}

//  One turn of the I/O loop without its sleep: take what the workers
//  queued, read every socket that may hold frames, run the timers, send.
//  *next: the next timer deadline. True if anything was done.
static bool
s_turn(brg__io_t *self, uint64_t *next)
{
    bool busy = s_grab(self);
    if (self->inbox_ready) {
        int n = s_read_inbox(self, self->router);
        // A full burst may have left frames behind; fewer means empty.
        self->inbox_ready = n == S_RECV_BURST;
        busy |= n > 0;
    }
    if (self->sec_ready) {
        int n = s_read_inbox(self, self->router_sec);
        self->sec_ready = n == S_RECV_BURST;
        busy |= n > 0;
    }
    if (self->sec_mon_ready)
        busy |= s_read_sec_monitor(self) > 0;
    for (s_conn_t *c = self->conns; c != NULL; c = c->next)
        busy |= s_read_outbox(self, c) > 0;
    s_reap(self);
    *next = s_timers(self, s_now());
    busy |= s_flush(self);
    s_reap(self);
    return busy;
}

//  The park hook's turn (runtime/sched.h), on worker 0: s_turn, and when
//  it did nothing and may sleep, the queue goes idle (so producers ring
//  the doorbell) and the stats are published, as before the I/O thread's
//  sleep. Busy, or between activations: a look at the sockets at least
//  every S_REPOLL_NS; between activations the look comes with every call
//  (the inbound frames that came meanwhile are seen only by a poll).
static bool
s_hook_turn(void *arg, bool may_sleep, uint64_t *deadline_ns, uint32_t *moved)
{
    brg__io_t *self = arg;
    *deadline_ns = 0;
    *moved = 0;
    if (self->stopping)
        return false; // the I/O thread takes over (s_hand_to_worker)
    uint64_t next;
    self->moved = 0;
    bool busy = s_turn(self, &next);
    *moved = self->moved;
    if (self->stopping)
        return false;
    if (!may_sleep) {
        if (s_now() - self->polled_ns >= S_HOOK_REPOLL_NS)
            s_poll(self, 0, -1);
        return busy;
    }
    if (busy || !brg__outq_try_idle(&self->q)) {
        if (s_now() - self->polled_ns >= S_REPOLL_NS)
            s_poll(self, 0, -1);
        return true;
    }
    s_publish_stats(self);
    // The runtime's clock and ours are both CLOCK_MONOTONIC nanoseconds.
    *deadline_ns = next;
    return false;
}

//  The park hook's wait: block in zmq_poll on every socket, the doorbell
//  and worker 0's wake-up fd, until one is ready or the deadline.
static bool
s_hook_wait(void *arg, int wake_fd, uint64_t deadline_ns)
{
    brg__io_t *self = arg;
    // No deadline (the stop): a second at most; the hook's removal wakes us.
    return s_poll(self, deadline_ns == 0 ? s_now() + 1000000000ull : deadline_ns, wake_fd);
}

//  The backup's turn (s_hand_to_worker), on the I/O thread under the
//  hook's lock while worker 0 runs actors: look at the sockets, then one
//  turn; what it delivers goes through the inject queue, as from any thread
//  that is not a worker.
static void
s_backup_turn(void *arg)
{
    brg__io_t *self = arg;
    if (self->stopping)
        return;
    s_poll(self, 0, -1);
    uint64_t next;
    self->moved = 0;
    s_turn(self, &next);
}

//  I/O on a worker (design notes): hand the sockets to worker 0 through
//  the park hook and wait until brg__io_shutdown asks for them back; the
//  stop then runs here as in the thread's own loop. If the system has no
//  worker threads, the loop stays on this thread (logged).
static void
s_hand_to_worker(brg__io_t *self)
{
    self->hook = (brg__park_hook_t){s_hook_turn, s_hook_wait, self};
    int rc = brg__system_set_park_hook(self->sys, &self->hook);
    if (rc != BRG_OK) {
        // Expected without worker threads (deterministic mode): informational.
        s_log(self, rc == BRG_EINVAL ? BRG_LOG_INFO : BRG_LOG_WARNING,
              "io_on_worker: %s; the node's I/O stays on its own thread%s",
              rc == BRG_EINVAL ? "the system has no worker threads" : brg_strerror(rc), "");
        return;
    }
    // The backup: every S_BACKUP_NS this thread serves the sockets itself if
    // worker 0 is not (it holds the hook's lock while it turns or waits in
    // the hook): a long behaviour call on worker 0 then delays the node's
    // traffic and ticks by S_BACKUP_NS at most, not until it returns.
    pthread_mutex_lock(&self->lock);
    while (!self->hook_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + S_BACKUP_NS;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&self->hook_cond, &self->lock, &until);
        if (self->hook_stop)
            break;
        pthread_mutex_unlock(&self->lock);
        brg__system_park_hook_try(self->sys, s_backup_turn, self);
        pthread_mutex_lock(&self->lock);
    }
    pthread_mutex_unlock(&self->lock);
    // Returns once worker 0 will never call the hook again; hook_lock's
    // hand-over is the full barrier ZeroMQ asks for to move sockets back.
    brg__system_clear_park_hook(self->sys);
}

static void *
s_main(void *arg)
{
    brg__io_t *self = arg;
    pthread_setname_np(pthread_self(), "brg-node-io");
    self->inbox_ready = true;
    int rc = s_bind_all(self);
    if (rc == BRG_OK) {
        const char *adv = self->cfg.advertise ? self->cfg.advertise : self->bound[0];
        snprintf(self->scfg.ep, sizeof self->scfg.ep, "%s", adv);
    }
    pthread_mutex_lock(&self->lock);
    self->start_rc = rc;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
    if (rc != BRG_OK) {
        s_close_inboxes(self);
        return NULL;
    }
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS && self->cfg.connect[i] != NULL; i++)
        s_connect(self, self->cfg.connect[i], 0);
    s_reap(self);
    if (self->cfg.io_on_worker)
        s_hand_to_worker(self);
    while (!self->stopping) {
        uint64_t next;
        bool busy = s_turn(self, &next);
        if (self->stopping)
            break;
        if (busy || !brg__outq_try_idle(&self->q)) {
            // More work: no sleep, but a look at the sockets at least every
            // S_REPOLL_NS, so a long outbound stream still reads the peer's
            // acks, ticks and replies.
            if (s_now() - self->polled_ns >= S_REPOLL_NS)
                s_poll(self, 0, -1);
            continue;
        }
        s_publish_stats(self);
        s_poll(self, next, -1);
    }
    s_resolver_stop(self); // before s_stop_all's last grab: no answer comes after it
    s_stop_all(self);
    s_publish_stats(self);
    s_close_inboxes(self);
    return NULL;
}

//  ---------------------------------------------------------------------------
//  API.

static int
s_keygen(uint8_t pub[BRG__KEY_BYTES], uint8_t sec[BRG__KEY_BYTES])
{
    char zp[BRG__KEY_Z85 + 1], zs[BRG__KEY_Z85 + 1];
    if (zmq_curve_keypair(zp, zs) != 0)
        return -1;
    int rc = brg__z85_decode(pub, zp, BRG__KEY_Z85) == BRG_OK &&
                     brg__z85_decode(sec, zs, BRG__KEY_Z85) == BRG_OK
                 ? 0
                 : -1;
    memset(zs, 0, sizeof zs);
    return rc;
}

int
brg__io_keygen(uint8_t pub[BRG__KEY_BYTES], uint8_t sec[BRG__KEY_BYTES])
{
    return zmq_has("curve") ? s_keygen(pub, sec) : -1;
}

static void
s_bad_cert(void *arg, const char *path, const char *why)
{
    s_log(arg, BRG_LOG_WARNING, "skipping the key file %s: %s", path, why);
}

//  Decide plain or CURVE for tcp://, and with CURVE load this node's key
//  pair and allow-list and join the ZAP handler. Before the I/O thread
//  starts; every refusal is logged with its reason.
static int
s_security_init(brg__io_t *self, const brg_node_config_t *cfg)
{
    bool any_tcp = false, all_loopback = true;
    const char *bad = NULL;
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS && cfg->listen[i] != NULL; i++) {
        if (s_is_tcp(cfg->listen[i])) {
            any_tcp = true;
            if (!brg__io_ep_is_loopback(cfg->listen[i])) {
                all_loopback = false;
                bad = cfg->listen[i];
            }
        }
    }
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS && cfg->connect[i] != NULL; i++) {
        const char *ep = strstr(cfg->connect[i], "tcp://");
        if (ep != NULL) {
            any_tcp = true;
            if (!brg__io_ep_is_loopback(ep)) {
                all_loopback = false;
                bad = cfg->connect[i];
            }
        }
    }
    if (cfg->insecure_loopback) {
        if (!all_loopback) {
            s_log(self, BRG_LOG_ERROR,
                  "refusing plain tcp to %s: insecure_loopback allows only loopback addresses "
                  "(127.0.0.0/8, [::1], localhost)%s",
                  bad, "");
            return BRG_EINVAL;
        }
        self->curve = false;
    } else {
        // Also a node without tcp:// endpoints of its own: a peer that
        // dials it over ipc:// may advertise tcp:// for the way back.
        self->curve = true;
    }
    if (self->curve) {
        if (!zmq_has("curve")) {
            s_log(self, BRG_LOG_ERROR, "libzmq was built without CURVE: cannot secure tcp%s%s", "",
                  "");
            return BRG_EINVAL;
        }
        snprintf(self->key_dir, sizeof self->key_dir, "%s", cfg->key_dir ? cfg->key_dir : "");
        char why[512];
        if (brg__keydir_open(self->key_dir, self->name, s_keygen, &self->cert, why, sizeof why) !=
            BRG_OK) {
            if (any_tcp) {
                s_log(self, BRG_LOG_ERROR, "%s%s", why, "");
                return BRG_EINVAL;
            }
            // No tcp:// of its own: it runs, and refuses tcp:// later.
            s_log(self, BRG_LOG_WARNING, "%s: this node will not reach tcp:// peers%s", why, "");
            self->no_keys = true;
        }
    }
    if (self->curve && !self->no_keys) {
        char dir[sizeof self->key_dir + 16];
        snprintf(dir, sizeof dir, "%s/allowed", self->key_dir);
        int n = brg__keys_load_dir(self->keys, dir, s_bad_cert, self);
        if (n < 0 && n != BRG_ENOTFOUND) {
            s_log(self, BRG_LOG_ERROR, "cannot read %s: %s", dir, brg_strerror(n));
            return BRG_EINVAL;
        }
        snprintf(self->zap_domain, sizeof self->zap_domain, "%016" PRIx64 "%016" PRIx64, self->hi,
                 self->lo);
        char z[BRG__KEY_Z85 + 1];
        brg__z85_encode(z, self->cert.pub, BRG__KEY_BYTES);
        s_log(self, BRG_LOG_INFO, "tcp is CURVE-secured: this node's key is %s (key directory %s)",
              z, self->key_dir);
        if (s_zap_register(self) != BRG_OK) {
            s_log(self, BRG_LOG_ERROR, "cannot start the ZAP handler: %s%s",
                  zmq_strerror(zmq_errno()), "");
            return BRG_ENETWORK;
        }
    }
    // Seeds must parse now (KEY@ and NAME@ included), not fail later.
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS && cfg->connect[i] != NULL; i++) {
        char ep[BRG__WIRE_EP_MAX + 1];
        bool has_key, z85;
        uint8_t key[BRG__KEY_BYTES];
        const char *why = NULL;
        if (s_parse_dial(self, cfg->connect[i], ep, sizeof ep, &has_key, key, &z85, &why) !=
            BRG_OK) {
            s_log(self, BRG_LOG_ERROR, "cannot connect to %s: %s", cfg->connect[i], why);
            return BRG_EINVAL;
        }
    }
    return BRG_OK;
}

static void
s_security_fini(brg__io_t *self)
{
    brg__keys_free(&self->keys);
    free(self->exports);
    self->exports = NULL;
    pthread_mutex_destroy(&self->exp_lock);
    memset(&self->cert, 0, sizeof self->cert); // the secret key does not outlive the node
}

brg__io_t *
brg__io_new(brg_system_t *sys, const brg_node_config_t *cfg, brg__io_event_fn fn, void *arg)
{
    brg__io_t *self = calloc(1, sizeof *self);
    if (self == NULL)
        return NULL;
    self->sys = sys;
    self->event_fn = fn;
    self->event_arg = arg;
    self->cfg = *cfg;
    // node.h: at most half the budget, so that a held-back actor is
    // suspended well before its sends could meet BRG_EBUSY.
    if (self->cfg.peer_busy_bytes > self->cfg.peer_queue_bytes / 2)
        self->cfg.peer_busy_bytes = self->cfg.peer_queue_bytes / 2;
    self->busy_low = self->cfg.peer_busy_bytes / 2;
    snprintf(self->name, sizeof self->name, "%s", cfg->name);
    snprintf(self->cluster, sizeof self->cluster, "%s", cfg->cluster);
    self->cfg.name = self->name;
    self->cfg.cluster = self->cluster;
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS; i++) {
        self->cfg.listen[i] = NULL;
        self->cfg.connect[i] = NULL;
    }
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS && cfg->listen[i] != NULL; i++) {
        snprintf(self->listen[i], sizeof self->listen[i], "%s", cfg->listen[i]);
        self->cfg.listen[i] = self->listen[i];
    }
    for (int i = 0; i < BRG_NODE_MAX_ENDPOINTS && cfg->connect[i] != NULL; i++) {
        snprintf(self->connect[i], sizeof self->connect[i], "%s", cfg->connect[i]);
        self->cfg.connect[i] = self->connect[i];
    }
    if (cfg->advertise != NULL) {
        snprintf(self->advertise, sizeof self->advertise, "%s", cfg->advertise);
        self->cfg.advertise = self->advertise;
    }
    // The node UUID as bytes, from its text form (brg_system_node).
    char uuid[37];
    brg_system_node(sys, uuid);
    for (int i = 0, j = 0; i < 16; j++) {
        if (uuid[j] == '-')
            continue;
        unsigned v;
        sscanf(uuid + j, "%2x", &v);
        self->uuid[i++] = (uint8_t)v;
        j++;
    }
    s_uuid_split(self->uuid, &self->hi, &self->lo);
    self->rng = self->hi ^ self->lo ^ s_now() ^ 0x9e3779b97f4a7c15ull;
    if (self->rng == 0)
        self->rng = 1;

    brg__session_cfg_default(&self->scfg);
    memcpy(self->scfg.node, self->uuid, 16);
    snprintf(self->scfg.name, sizeof self->scfg.name, "%s", self->name);
    snprintf(self->scfg.cluster, sizeof self->scfg.cluster, "%s", self->cluster);
    self->scfg.tick_ms = cfg->tick_ms;
    self->scfg.timeout_ms = cfg->timeout_ms;
    self->scfg.handshake_ms = cfg->handshake_ms;
    self->scfg.limits.max_frame = cfg->max_frame;
    self->sio.send_frame = s_cb_send_frame;
    self->sio.deliver = s_cb_deliver;
    self->sio.up = s_cb_up;
    self->sio.ended = s_cb_ended;
    self->sio.may_reach = s_cb_may_reach;
    self->sio.welcome_peers = s_cb_welcome_peers;
    self->sio.gossip = s_cb_gossip;

    pthread_mutex_init(&self->exp_lock, NULL);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->cond, NULL);
    // hook_cond's timed waits (the backup, s_hand_to_worker) use the
    // monotonic clock.
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->hook_cond, &ca);
    pthread_condattr_destroy(&ca);
    self->start_rc = 1;
    self->next_waiter = 1;
    if (brg__outq_init(&self->q) != BRG_OK)
        goto fail_q;
    self->ctx = s_ctx_acquire();
    if (self->ctx == NULL)
        goto fail_ctx;
    // The ZAP handler needs the context; the I/O thread needs the keys.
    self->keys = brg__keys_new();
    if (self->keys == NULL || s_security_init(self, cfg) != BRG_OK)
        goto fail_thread;
    if (pthread_create(&self->thread, NULL, s_main, self) != 0)
        goto fail_thread;
    self->thread_started = true;
    pthread_mutex_lock(&self->lock);
    while (self->start_rc == 1)
        pthread_cond_wait(&self->cond, &self->lock);
    int rc = self->start_rc;
    pthread_mutex_unlock(&self->lock);
    if (rc != BRG_OK) {
        pthread_join(self->thread, NULL);
        self->thread_started = false;
        goto fail_thread;
    }
    return self;

fail_thread:
    s_zap_unregister(self);
    s_ctx_release();
fail_ctx:
    brg__outq_fini(&self->q);
fail_q:
    pthread_cond_destroy(&self->hook_cond);
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->lock);
    s_security_fini(self);
    free(self);
    return NULL;
}

static void
s_push_item(brg__io_t *self, s_item_t *it)
{
    brg__outq_push(&self->q, &it->link);
}

void
brg__io_shutdown(brg__io_t *self)
{
    if (self == NULL || self->shut_down)
        return;
    self->shut_down = true;
    if (self->thread_started) {
        s_item_t *it = calloc(1, sizeof *it);
        if (it != NULL) {
            it->type = S_ITEM_STOP;
            s_push_item(self, it);
        }
        // With the I/O on worker 0, the I/O thread waits for this to take
        // the sockets back and stop (s_hand_to_worker).
        pthread_mutex_lock(&self->lock);
        self->hook_stop = true;
        pthread_cond_signal(&self->hook_cond);
        pthread_mutex_unlock(&self->lock);
        pthread_join(self->thread, NULL);
        self->thread_started = false;
    }
}

void
brg__io_destroy(brg__io_t **self_p)
{
    brg__io_t *self = *self_p;
    if (self == NULL)
        return;
    brg__io_shutdown(self);
    for (uint32_t i = 0; i < S_TABLE_SIZE; i++) {
        brg__peer_t *p = atomic_load_explicit(&self->table[i], memory_order_relaxed);
        if (p != S_TOMB)
            free(p);
    }
    while (self->retired_peers != NULL) {
        brg__peer_t *p = self->retired_peers;
        self->retired_peers = p->retired_next;
        free(p);
    }
    while (self->learned != NULL) {
        s_learned_t *l = self->learned;
        self->learned = l->next;
        free(l);
    }
    while (self->dials != NULL) {
        s_dial_t *d = self->dials;
        self->dials = d->next;
        free(d);
    }
    while (self->names != NULL) {
        s_name_t *nm = self->names;
        self->names = nm->next;
        free(nm);
    }
    while (self->parked != NULL) {
        s_parked_t *pk = self->parked;
        self->parked = pk->next;
        free(pk);
    }
    brg__wbuf_free(&self->wbuf);
    s_zap_unregister(self); // the CURVE inbox is closed: no request names us now
    s_ctx_release();
    s_security_fini(self);
    brg__outq_fini(&self->q);
    pthread_cond_destroy(&self->hook_cond);
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

int
brg__io_send(brg__io_t *self, brg_ref_t to, const char *to_name, brg_msg_t **msg_p)
{
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    brg__peer_t *p = s_peer_find(self, to.node_hi, to.node_lo);
    // The epoch before the state: the state store (release) follows the
    // epoch increment, so a sender that sees a live state with the old
    // epoch sent during the old session, which the I/O thread then drops.
    // Acquire: pairs with s_peer_set_state's release.
    uint32_t epoch = p != NULL ? atomic_load_explicit(&p->epoch, memory_order_acquire) : 0;
    if (p == NULL || atomic_load_explicit(&p->state, memory_order_acquire) == S_PEER_DOWN) {
        atomic_fetch_add_explicit(&self->dropped_unreachable, 1, memory_order_relaxed);
        if (p != NULL)
            atomic_fetch_add_explicit(&p->dropped_down, 1, memory_order_relaxed);
        brg__remote_dead_letter(self->sys, to, msg, BRG_DEAD_REMOTE_DOWN, BRG_ENETWORK);
        return BRG_ENETWORK;
    }
    size_t name_len = to_name != NULL ? strlen(to_name) : 0;
    assert(name_len <= BRG_NAME_MAX); // the seam checked it (brg__system_deliver_named)
    size_t bytes = (size_t)msg->size + S_ENV_OVERHEAD + name_len;
    bool user = msg->kind == BRG__MSG_USER || msg->kind == BRG__MSG_REPLY ||
                msg->kind == BRG__MSG_REPLY_ERROR;
    size_t old = atomic_fetch_add_explicit(&p->queued_bytes, bytes, memory_order_relaxed);
    s_item_t *it = NULL;
    if (!user || old + bytes <= self->cfg.peer_queue_bytes)
        it = brg__msg_block_alloc();
    if (it == NULL) {
        // Over the budget (or out of memory for the queue entry, which is
        // the same condition for the sender: no room now, try later). A
        // sender that met the budget with this message on it may be waiting
        // for the gate: taken off, it may be open now.
        s_unqueue(self, p, bytes);
        atomic_fetch_add_explicit(&self->dropped_busy, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->dropped_busy, 1, memory_order_relaxed);
        brg__remote_dead_letter(self->sys, to, msg, BRG_DEAD_REMOTE_BUSY, BRG_EBUSY);
        return BRG_EBUSY;
    }
    it->type = S_ITEM_MSG;
    it->next = NULL;
    it->peer = p;
    it->to = to;
    it->msg = msg;
    it->bytes = bytes;
    it->epoch = epoch;
    it->waiter = 0;
    memcpy(it->name, to_name != NULL ? to_name : "", name_len + 1);
    s_push_item(self, it);
    // Busy (design notes, "Backpressure"): an actor that sends a user
    // message past the busy mark is suspended after this behaviour call
    // until the peer drains to half of it.
    if (user && old + bytes > self->cfg.peer_busy_bytes && self->cfg.peer_busy_bytes != 0)
        brg__remote_note_busy(self->sys, p->gate);
    return BRG_OK;
}

bool
brg__io_gate_wait(brg__io_t *self, uint32_t gate)
{
    uint32_t slot = (gate & ((1u << S_GATE_SLOT_BITS) - 1)) - 1;
    if (slot >= S_TABLE_SIZE)
        return false;
    // Acquire: p->gate was written before the release store of s_peer_add.
    brg__peer_t *p = atomic_load_explicit(&self->table[slot], memory_order_acquire);
    if (p == NULL || p == S_TOMB || p->gate != gate)
        return false; // retired: whatever it had queued is dead-lettered already
    // The waiter, then the level, both seq_cst: s_unqueue's pair.
    atomic_exchange_explicit(&p->gate_waiters, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&p->queued_bytes, memory_order_seq_cst) <= self->busy_low)
        return false;
    atomic_fetch_add_explicit(&self->busy_waits, 1, memory_order_relaxed);
    return true;
}

int
brg__io_endpoint(brg__io_t *self, int i, char *buf, size_t len)
{
    if (i < 0 || i >= self->nbound)
        return BRG_ENOTFOUND;
    int n = snprintf(buf, len, "%s", self->bound[i]);
    return n < 0 || (size_t)n >= len ? BRG_EMSGSIZE : BRG_OK;
}

int
brg__io_connect(brg__io_t *self, const char *endpoint, int timeout_ms, brg_ref_t *peer)
{
    size_t len = strlen(endpoint);
    if (len == 0 || len > BRG__WIRE_EP_MAX)
        return BRG_EINVAL;
    bool wait = timeout_ms > 0 && peer != NULL;
    if (wait && brg_system_is_own_thread(self->sys))
        return BRG_EDEADLK;
    {
        // Refuse what the I/O thread would refuse, here, with the reason.
        char ep[BRG__WIRE_EP_MAX + 1];
        bool has_key, z85;
        uint8_t key[BRG__KEY_BYTES];
        const char *why = NULL;
        if (s_parse_dial(self, endpoint, ep, sizeof ep, &has_key, key, &z85, &why) != BRG_OK) {
            s_log(self, BRG_LOG_WARNING, "cannot connect to %s: %s", endpoint, why);
            return BRG_EINVAL;
        }
    }
    s_item_t *it = calloc(1, sizeof *it + len + 1);
    if (it == NULL)
        return BRG_ENOMEM;
    it->type = S_ITEM_CONNECT;
    memcpy(it->name, endpoint, len + 1);
    s_waiter_t w = {0};
    if (wait) {
        pthread_mutex_lock(&self->lock);
        w.id = self->next_waiter++;
        w.next = self->waiters;
        self->waiters = &w;
        pthread_mutex_unlock(&self->lock);
        it->waiter = w.id;
    }
    s_push_item(self, it);
    if (!wait)
        return BRG_OK;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&self->lock);
    while (!w.done && pthread_cond_timedwait(&self->cond, &self->lock, &until) != ETIMEDOUT)
        ;
    // Unlink the waiter before it goes out of scope: the I/O thread only
    // touches waiters it finds in the list, under the lock.
    for (s_waiter_t **pp = &self->waiters; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == &w) {
            *pp = w.next;
            break;
        }
    }
    pthread_mutex_unlock(&self->lock);
    if (!w.done)
        return BRG_ETIMEDOUT;
    if (w.rc == BRG_OK)
        *peer = w.peer;
    return w.rc;
}

int
brg__io_learn(brg__io_t *self, const brg__wire_peer_t *peers, uint32_t n)
{
    if (n == 0)
        return BRG_OK;
    if (n > BRG__WIRE_PEERS_MAX)
        return BRG_EINVAL;
    s_item_t *it = calloc(1, sizeof *it + n * sizeof *peers);
    if (it == NULL)
        return BRG_ENOMEM;
    it->type = S_ITEM_LEARN;
    it->rc = (int)n;
    memcpy(it->name, peers, n * sizeof *peers);
    s_push_item(self, it);
    return BRG_OK;
}

void
brg__io_gossip_refused(brg__io_t *self, uint32_t n)
{
    atomic_fetch_add_explicit(&self->gossip_refused, n, memory_order_relaxed);
}

int
brg__io_disconnect(brg__io_t *self, brg_ref_t peer)
{
    if (s_peer_find(self, peer.node_hi, peer.node_lo) == NULL)
        return BRG_ENOTFOUND;
    s_item_t *it = calloc(1, sizeof *it + 1);
    if (it == NULL)
        return BRG_ENOMEM;
    it->type = S_ITEM_DISCONNECT;
    it->to = peer;
    s_push_item(self, it);
    return BRG_OK;
}

uint64_t
brg__io_clients_retired(brg__io_t *self)
{
    return atomic_load_explicit(&self->retired_count, memory_order_relaxed);
}

int
brg__io_find(brg__io_t *self, const char *name, brg_ref_t *peer)
{
    for (uint32_t i = 0; i < S_TABLE_SIZE; i++) {
        brg__peer_t *p = atomic_load_explicit(&self->table[i], memory_order_acquire);
        if (p != NULL && p != S_TOMB &&
            atomic_load_explicit(&p->state, memory_order_acquire) == S_PEER_UP &&
            strcmp(p->name, name) == 0) {
            *peer = s_node_ref(p->hi, p->lo);
            return BRG_OK;
        }
    }
    return BRG_ENOTFOUND;
}

int
brg__io_peers(brg__io_t *self, brg_ref_t *peers, int max)
{
    int n = 0;
    for (uint32_t i = 0; i < S_TABLE_SIZE; i++) {
        brg__peer_t *p = atomic_load_explicit(&self->table[i], memory_order_acquire);
        if (p != NULL && p != S_TOMB &&
            atomic_load_explicit(&p->state, memory_order_acquire) == S_PEER_UP) {
            if (n < max)
                peers[n] = s_node_ref(p->hi, p->lo);
            n++;
        }
    }
    return n;
}

bool
brg__io_peer_is_client(brg__io_t *self, brg_ref_t node)
{
    brg__peer_t *p = s_peer_find(self, node.node_hi, node.node_lo);
    // Relaxed: written at the session's HELLO, before any of its envelopes
    // is decoded and delivered (same thread), so before the asking message.
    return p != NULL && atomic_load_explicit(&p->client_pub, memory_order_relaxed);
}

int
brg__io_peer_stats(brg__io_t *self, brg__io_peer_stat_t *out, int max)
{
    int n = 0;
    for (uint32_t i = 0; i < S_TABLE_SIZE; i++) {
        // Acquire: pairs with the release store that published the peer
        // (its name and UUID are immutable after it).
        brg__peer_t *p = atomic_load_explicit(&self->table[i], memory_order_acquire);
        if (p == NULL || p == S_TOMB)
            continue;
        if (n < max) {
            brg__io_peer_stat_t *e = &out[n];
            memset(e, 0, sizeof *e);
            e->node = s_node_ref(p->hi, p->lo);
            snprintf(e->name, sizeof e->name, "%s", p->name);
            e->up = atomic_load_explicit(&p->state, memory_order_acquire) == S_PEER_UP;
            e->client = atomic_load_explicit(&p->client_pub, memory_order_relaxed);
            e->queue_bytes = atomic_load_explicit(&p->queued_bytes, memory_order_relaxed);
            e->dropped_busy = atomic_load_explicit(&p->dropped_busy, memory_order_relaxed);
            e->dropped_down = atomic_load_explicit(&p->dropped_down, memory_order_relaxed);
        }
        n++;
    }
    int filled = n < max ? n : max;
    pthread_mutex_lock(&self->lock);
    for (int s = 0; s < self->pub_nsess; s++) {
        const brg__io_peer_stat_t *ps = &self->pub_sess[s];
        for (int i = 0; i < filled; i++) {
            brg__io_peer_stat_t *e = &out[i];
            if (e->node.node_hi != ps->node.node_hi || e->node.node_lo != ps->node.node_lo)
                continue;
            e->in_session = true;
            e->msgs_in = ps->msgs_in;
            e->msgs_out = ps->msgs_out;
            e->bytes_in = ps->bytes_in;
            e->bytes_out = ps->bytes_out;
            e->msgs_acked = ps->msgs_acked;
            e->refused_unauthorized = ps->refused_unauthorized;
        }
    }
    pthread_mutex_unlock(&self->lock);
    return n;
}

bool
brg__io_peer_up(brg__io_t *self, brg_ref_t peer)
{
    brg__peer_t *p = s_peer_find(self, peer.node_hi, peer.node_lo);
    return p != NULL && atomic_load_explicit(&p->state, memory_order_acquire) == S_PEER_UP;
}

void
brg__io_stats(brg__io_t *self, brg_node_stats_t *stats, bool fresh)
{
    pthread_mutex_lock(&self->lock);
    uint64_t gen = self->pub_gen;
    pthread_mutex_unlock(&self->lock);
    if (fresh && self->thread_started && !self->shut_down) {
        s_item_t *it = calloc(1, sizeof *it);
        if (it != NULL) {
            it->type = S_ITEM_STATS;
            s_push_item(self, it);
            pthread_mutex_lock(&self->lock);
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 5;
            // gen + 1 may be a snapshot published just before the request
            // was grabbed; gen + 2 comes after it was.
            while (self->pub_gen < gen + 2 &&
                   pthread_cond_timedwait(&self->cond, &self->lock, &until) != ETIMEDOUT)
                ;
            pthread_mutex_unlock(&self->lock);
        }
    }
    pthread_mutex_lock(&self->lock);
    *stats = self->pub;
    pthread_mutex_unlock(&self->lock);
}

//  ---------------------------------------------------------------------------
//  Keys and exports (node.h "Keys and permissions").

static void
s_push_keys_changed(brg__io_t *self)
{
    if (!self->thread_started || self->shut_down)
        return;
    s_item_t *it = calloc(1, sizeof *it);
    if (it != NULL) {
        it->type = S_ITEM_KEYS;
        s_push_item(self, it);
    }
}

int
brg__io_public_key(brg__io_t *self, char *buf, size_t len)
{
    if (!self->curve || self->no_keys)
        return BRG_ENOTFOUND;
    if (len < BRG__KEY_Z85 + 1)
        return BRG_EMSGSIZE;
    return brg__z85_encode(buf, self->cert.pub, BRG__KEY_BYTES);
}

int
brg__io_allow_key(brg__io_t *self, const char *name, const char *key, brg_key_role_t role)
{
    uint8_t k[BRG__KEY_BYTES];
    if (name == NULL || key == NULL || name[0] == '\0' || strlen(name) > BRG_NODE_NAME_MAX ||
        strchr(name, '@') != NULL ||
        (role != BRG_KEY_NODE && role != BRG_KEY_CLIENT && role != BRG_KEY_ADMIN) ||
        brg__key_from_text(k, key) != BRG_OK)
        return BRG_EINVAL;
    int rc = brg__keys_allow(self->keys, k, name, role, false);
    // A role that went from node to client (or admin) takes effect for live sessions
    // at their next handshake; the role is checked when a session starts.
    return rc;
}

int
brg__io_revoke_key(brg__io_t *self, const char *what)
{
    if (what == NULL)
        return BRG_EINVAL;
    int n = brg__keys_revoke(self->keys, what);
    if (n > 0)
        s_push_keys_changed(self);
    return n;
}

int
brg__io_reload_keys(brg__io_t *self)
{
    if (self->key_dir[0] == '\0')
        return BRG_ENOTFOUND;
    char dir[sizeof self->key_dir + 16];
    snprintf(dir, sizeof dir, "%s/allowed", self->key_dir);
    int n = brg__keys_load_dir(self->keys, dir, s_bad_cert, self);
    if (n >= 0)
        s_push_keys_changed(self);
    return n;
}

int
brg__io_export(brg__io_t *self, const char *name, bool on)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > BRG_NAME_MAX)
        return BRG_EINVAL;
    if (strncmp(name, "brg.", 4) == 0)
        return BRG_EPERM; // the node service and other reserved names stay private
    int rc = BRG_OK;
    pthread_mutex_lock(&self->exp_lock);
    size_t i = 0;
    while (i < self->nexports && strcmp(self->exports[i], name) != 0)
        i++;
    if (on && i == self->nexports) {
        if (self->nexports == self->exports_cap) {
            size_t cap = self->exports_cap ? self->exports_cap * 2 : 8;
            void *v = realloc(self->exports, cap * sizeof *self->exports);
            if (v == NULL) {
                rc = BRG_ENOMEM;
                goto out;
            }
            self->exports = v;
            self->exports_cap = cap;
        }
        snprintf(self->exports[self->nexports++], sizeof self->exports[0], "%s", name);
    } else if (!on && i < self->nexports) {
        memcpy(self->exports[i], self->exports[--self->nexports], sizeof self->exports[0]);
    }
out:
    pthread_mutex_unlock(&self->exp_lock);
    return rc;
}
