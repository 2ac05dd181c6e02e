//  session_driver - runs one session (transport/session.c) through a
//  script of operations read from arbitrary bytes, checking its invariants
//  after every step. Shared by the libFuzzer target fuzz_session and the
//  seeded loop of tests/transport/test_session.c, which both feed it
//  mutations of the seeds fz_session_seeds builds.
//
//  The input (every byte string is a valid script; whatever is missing at
//  the end reads as zeros, a truncated operation ends the script):
//
//    config byte   bit 0: we dial (initiator), else we accept; bits 1-2:
//                  max_table 1 Mi, 1, 2 or 4; bit 3: small decoder limits
//                  (4 envelopes, 64 payload bytes, 512-byte frames)
//    operations    one opcode byte (low nibble: the operation, high
//                  nibble: its flags), then the operation's bytes:
//      0 RAW       len (2 bytes, big-endian) and len bytes: a frame fed with
//                  brg__session_on_bytes, on the inbox (flag 1: the outbox)
//      1 HELLO     2 bytes: a HELLO or WELCOME built by the encoder (which
//                  node, cluster, role, session id, peers: see s_op_hello)
//      2 BATCH     seq offset (int8, 0 = the next one), count, then 6
//                  bytes per envelope: a BATCH built byte by byte here
//      3 TICK      1 byte: acks our last BATCH minus 0..3, or a seq never sent
//      4 TIME      2 bytes of milliseconds (flag 1: times 64), then the timer
//      5 PUSH      5 bytes: a message from one of our actors (or none) to
//                  one of the peer's (or a name) through brg__session_push
//      6 FLUSH     brg__session_flush
//      7 END       1 byte: brg__session_end with one of the six reasons
//      8 REPLAY    1 byte: one of the last 4 frames the session sent, fed
//                  back to it (inbox or outbox)
//      9 BYE/ERROR 1 byte: a BYE, or an ERROR with code 1..8
//      10-15       FLUSH
//
//  Invariants (a violation calls the failure hook, which must not return):
//  every frame the session sends decodes; our BATCH seqs go 1, 2, 3...;
//  a TICK acks exactly the last BATCH seq the session took; an ERROR sent
//  ends the session (PROTOCOL) in the same call, and a call that refuses a
//  frame (BRG_EPROTO) sent one; the session's frame and byte counters match
//  what was fed and sent; up at most once, ended exactly once, nothing
//  called back after ended, an ended session stays ended and refuses every
//  frame with BRG_ENETWORK; after the end the tables are empty, each of
//  their entries was answered once (EXIT, DOWN, DEMONITOR, REPLY_ERROR
//  from the peer's node), msgs_out == msgs_acked + lost_in_flight, and
//  every message push took was sent, dead on the end, or answered at once
//  by the table bound; brg__session_timer's next deadline is in the future.
//  Leaks are LeakSanitizer's (every delivered message is freed here).
#ifndef BRG_TESTS_FUZZ_SESSION_DRIVER_H
#define BRG_TESTS_FUZZ_SESSION_DRIVER_H

#include <stddef.h>
#include <stdint.h>

//  Called on a broken invariant; must not return (abort, ck_abort_msg).
typedef void (*fz_fail_fn)(const char *file, int line, const char *what);

//  Set the failure hook (default: print to stderr and abort). Not thread-safe.
void fz_session_on_fail(fz_fail_fn fn);

//  Run one script. Not reentrant (the driver keeps its state in statics).
void fz_session_run(const uint8_t *data, size_t len);

//  What the scripts run so far reached, summed over every run (so a loop
//  can check that its mutations do more than get refused).
typedef struct {
    uint64_t runs, ups, delivered, answers, refused, replaced, timeouts;
} fz_totals_t;

void fz_session_totals(fz_totals_t *totals);

//  The seed scripts. *seeds_p gets an array the caller frees with
//  fz_session_seeds_free; returns how many.
typedef struct {
    const char *name; // file name stem for the corpus
    uint8_t *data;
    size_t len;
} fz_seed_t;

size_t fz_session_seeds(fz_seed_t **seeds_p);
void fz_session_seeds_free(fz_seed_t *seeds, size_t n);

#endif
