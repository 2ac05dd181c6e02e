//  log - one line per event: crash and supervisor reports, dead-letter
//  summaries, the watchdog, and the user's own lines.
//
//  Every event has a level, a category, the system and (when one is
//  concerned) an actor, and a one-line text. A system passes the events at or
//  above cfg.log_level (brigade/system.h) to cfg.log_fn, or, without a hook,
//  to brg_log_stderr, which writes each one to stderr as one line with one
//  write(2) call. Events below the level cost one comparison.
//
//  What the runtime reports (the category, then the level):
//    "crash"        error    an actor failed by itself: a negative behaviour
//                            or init result, brg_fail, a failed reply
//                            callback, the watchdog, an unhandled message
//                            under BRG_SPAWN_FAIL_UNHANDLED. The text names
//                            the reason (code name and brg_fail's text) and
//                            the tag of the message it was handling. Normal
//                            and shutdown exits, and exits caused by exit
//                            signals (links, brg_exit), are not reported,
//                            as in Erlang/OTP.
//    "supervisor"   error    a child terminated abnormally; a child could not
//                            be restarted; a supervisor gave up (max restart
//                            intensity); a child did not stop within its
//                            shutdown time and was killed, or failed while
//                            being shut down
//                   notice   a child (or its group) is restarted
//    "dead_letter"  notice   a summary of dead letters, at most one line per
//                            second per system, with counts per reason; with
//                            cfg.log_dead_letters one line per dead letter
//                            instead
//    "watchdog"     warning  a behaviour call holds its thread too long
//    "http", "model" warning a request of the HTTP actor or of the model
//                            backend failed
//  User code logs with brg_log (from a behaviour) and brg_system_log.
//
//  Lines. The text holds no control characters: each one (newline, tab,
//  escape, ...) is written as \n, \t, \r or \xHH, so a reason or a tag can
//  never forge a line. A text longer than BRG_LOG_TEXT_MAX bytes is cut and
//  ends in "...". No event allocates memory.
//
//  Threads. Events are made on the thread where they happen (a worker, a
//  blocking-pool thread, the timer thread, an I/O thread or a caller's
//  thread), and the hook is called there, concurrently from several threads,
//  with no lock of Brigade held. The facility itself takes no lock but the
//  registry's, briefly, to find an actor's name (and, at most once a second,
//  the timer's, to wake the timer thread for a dead-letter summary).
#ifndef BRG_LOG_H
#define BRG_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "export.h"
#include "ref.h"

typedef struct brg_system brg_system_t;
typedef struct brg_ctx brg_ctx_t;

//  Levels, most severe first. The values are syslog(3)'s priorities
//  (LOG_ERR ... LOG_DEBUG), so a hook can pass them to syslog as they are.
typedef enum {
    BRG_LOG_ERROR = 3,   // something failed: a crash, a supervisor giving up
    BRG_LOG_WARNING = 4, // something went wrong and was handled
    BRG_LOG_NOTICE = 5,  // a normal but significant event: a restart (the default level)
    BRG_LOG_INFO = 6,    // informational
    BRG_LOG_DEBUG = 7    // details for debugging
} brg_log_level_t;

//  Longest text of an event, in bytes, without the NUL.
#define BRG_LOG_TEXT_MAX 480

//  One event. Borrowed by the hook: every pointer in it is valid only during
//  the call; copy what must outlive it.
typedef struct brg_log_event {
    brg_log_level_t level;
    const char *category;   // "crash", "supervisor", "dead_letter", "watchdog", "http",
                            // "model", "user" (brg_log), or the caller's (brg_system_log)
    brg_system_t *system;   // the system the event belongs to
    brg_ref_t actor;        // the actor concerned, or BRG_REF_NONE
    const char *actor_name; // its registered name (escaped as text is), or NULL
    const char *text;       // one line: no newline, no control characters, NUL-terminated
    size_t len;             // strlen(text), at most BRG_LOG_TEXT_MAX
} brg_log_event_t;

//  A log hook (cfg.log_fn). arg is cfg.log_arg. Thread: the thread where the
//  event happened, possibly several at once, so the hook must be thread-safe.
//  It may run inside a Brigade call of any thread (a send that becomes a dead
//  letter logs on the sender's thread). It should not block for long (it may
//  run on a worker) and must not call brg_system_destroy; it may call
//  brg_log_stderr and brg_log_level_name. It is never called after
//  brg_system_destroy returns.
typedef void (*brg_log_fn)(void *arg, const brg_log_event_t *event);

//  The default sink: write "brigade: <level> <category>: [actor <ref>
//  [\"<name>\"]: ]<text>\n" to stderr with one write(2) call (a line is
//  under 1 KiB, far below PIPE_BUF, so lines from different threads do not
//  interleave on a pipe). arg is ignored. A hook may call it to keep the
//  stderr line as well. Thread: any.
BRG_EXPORT void brg_log_stderr(void *arg, const brg_log_event_t *event);

//  "error", "warning", "notice", "info", "debug"; "unknown" for other values.
//  Static string.
BRG_EXPORT const char *brg_log_level_name(brg_log_level_t level);

//  Log a line about this actor (category "user", actor = this actor), if
//  level is at or above the system's cfg.log_level. printf format.
BRG_EXPORT void brg_log(brg_ctx_t *ctx, brg_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

//  Log a line from anywhere: category (NULL means "user") and actor
//  (BRG_REF_NONE if none) are the caller's. category must be a short static
//  string without spaces. Thread: any.
BRG_EXPORT void brg_system_log(brg_system_t *sys, brg_log_level_t level, const char *category,
                               brg_ref_t actor, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

//  True if an event of this level would be passed on (so a caller can skip
//  work that only builds a log line). Thread: any.
BRG_EXPORT bool brg_log_enabled(brg_system_t *sys, brg_log_level_t level);

#endif
