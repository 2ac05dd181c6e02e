//  agent - conversations: a chat with a model that calls tools.
//
//  A conversation is an actor. It keeps the message history (the system
//  message, then user, assistant and tool messages) and sends all of it with
//  every step to the model backend (any actor speaking the chat protocol of
//  brigade/model.h, directly or behind a limiter). A user turn is an ask to
//  the conversation (BRG_CONV_TAG_SAY); its answer (BRG_CONV_TAG_ANSWER) is
//  the final assistant text, or an error with its detail.
//
//  One turn: the user message joins the history; the model is asked. When it
//  answers with tool calls, each call goes to its tool's actor
//  (brigade/tool.h) at once, all in parallel and under one deadline
//  (tool_timeout_ms); every result, error text, "tool timed out", "tool
//  not available" or "tool stopped before it answered" (a tool actor the
//  conversation has a ref for is monitored during the call, so its death
//  settles the call at once) joins the history as a tool message, in the
//  order of the calls, and the model is asked again. That repeats until the
//  model answers with text and no tool calls (the answer), or until
//  max_steps model calls have been made without one: the turn then fails
//  with BRG_ERANGE and the text "step limit reached (N model calls without a
//  final answer)". A user text that is not valid UTF-8 is answered with
//  BRG_EINVAL; a tool result's invalid bytes are replaced by '?'.
//  A failed turn (model error, step limit, history error) leaves no trace:
//  the history is as it was before the turn, so the user can try again.
//  Turns are answered one at a time, in the order they arrive; a turn that
//  arrives while one runs waits for it (at most max_queue wait; more are
//  answered with the ask error BRG_EBUSY). When the conversation stops, the
//  running turn and the waiting ones are answered with the ask error
//  BRG_ECLOSED at once.
//
//  Streaming: a turn asked with stream set gets, while it runs, plain
//  messages from the conversation before its answer: BRG_CONV_TAG_EVENT,
//  one per text delta of the model (as the model streams it, for every
//  step), one per tool call sent and one per tool result received (read
//  them with brg_conv_read_event). The answer still comes last, as the
//  reply to the ask. The conversation asks the model with stream_to set to
//  itself (brg_model_chat_set_stream_to), so the fragments come from the
//  backend straight to it also when the model ref is a limiter in front of
//  the backend (the limiter relays the stream's end, the ask's answer).
//
//  History limits (max_messages, max_history_tokens) and the trimming rule:
//  before every model call and after every answered turn, while the
//  history is over a limit, the oldest whole turn (a user message and
//  everything after it up to the next user message) is dropped. The system message is never
//  dropped, nor the turn being answered, so an assistant message with tool calls is never split
//  from its tool results. The token estimate: 4 tokens per message plus one
//  per 4 bytes of its text and of its tool calls' names, arguments and ids
//  (about right for English with the common tokenisers; the real counts come
//  back from the model as usage).
//
//  Threads: the conversation is an actor; the encoders and readers are pure
//  and run on any thread; brg_conv_say blocks (not on a system thread).
#ifndef BRG_AGENT_H
#define BRG_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"
#include "tool.h"

//  A user turn: [text: str, stream: bool] -> BRG_CONV_TAG_ANSWER.
#define BRG_CONV_TAG_SAY "brg.conv.say"
//  [status: int, text: str, steps: int, tool_calls: int,
//   prompt_tokens: int, completion_tokens: int] (of this turn).
#define BRG_CONV_TAG_ANSWER "brg.conv.answer"
//  Streamed to a turn's asker: [kind: int, step: int, text: str, name: str,
//  id: str, is_error: bool].
#define BRG_CONV_TAG_EVENT "brg.conv.event"
//  [] -> BRG_CONV_TAG_CANCEL [was_running: bool]; also as a plain message.
//  Cancels the running turn: it is answered now with BRG_ECANCELED and "the
//  turn was cancelled" and leaves no trace; a model stream in flight is
//  cancelled at the backend (brg_model_msg_cancel, sent to the model ref: a
//  limiter passes it on to the backend with brg_forward), then the model ask
//  itself (brg_cancel: a limiter drops a request still queued); late answers of the
//  model or the tools are ignored. The waiting turns go on.
#define BRG_CONV_TAG_CANCEL "brg.conv.cancel"
//  [] -> BRG_CONV_TAG_STATS with the counters of brg_conv_stats_t, in order.
#define BRG_CONV_TAG_STATS "brg.conv.stats"
//  [] -> BRG_CONV_TAG_HISTORY: [count, then per message: role: int,
//  content: str, name: str, id: str, is_error: bool, calls: [[id, name,
//  arguments] ...]].
#define BRG_CONV_TAG_HISTORY "brg.conv.history"

//  The roles of the history's messages.
typedef enum {
    BRG_CONV_SYSTEM = 0,
    BRG_CONV_USER,
    BRG_CONV_ASSISTANT,
    BRG_CONV_TOOL,
} brg_conv_role_t;

//  "system", "user", "assistant", "tool"; "unknown" otherwise. Static.
BRG_EXPORT const char *brg_conv_role_name(brg_conv_role_t role);

//  Conversation options. Start from brg_conv_opts_init; brg_conv_spawn
//  copies every string and the tools array.
typedef struct brg_conv_opts {
    brg_ref_t model;         // the model backend (or its limiter)
    const char *model_name;  // or: its registered name, looked up at every step
    const char *system;      // the system message (NULL: none)
    const brg_tool_t *tools; // the tools the model may call (brg_tool_check each)
    size_t n_tools;          //   (at most BRG_CONV_TOOLS_MAX)
    int max_steps;           // model calls per turn (default 8, 1 .. 100)
    int max_messages;        // history limit in messages (default 100; 0: none)
    int max_history_tokens;  // history limit in estimated tokens (default 8000; 0: none)
    int model_timeout_ms;    // each model call's deadline (default 60000)
    int tool_timeout_ms;     // the deadline of one step's tool calls (default 10000)
    int max_queue;           // turns waiting behind the running one (default 16)
    int max_tokens;          // per model answer (0: the backend's default)
    double temperature;      // < 0: the backend's default (default -1)
    const char *name;        // optional registered name of the conversation
} brg_conv_opts_t;

#define BRG_CONV_TOOLS_MAX 64
//  Tool calls one model answer may make; more fail the turn (BRG_ERANGE).
#define BRG_CONV_CALLS_MAX 16

BRG_EXPORT void brg_conv_opts_init(brg_conv_opts_t *opts);

//  Spawn a conversation from inside a behaviour, linked to the calling
//  actor. Errors: BRG_EINVAL (no model, a value out of range, a tool that
//  brg_tool_check refuses, two tools of one name, too many tools),
//  BRG_ENOMEM, then as brg_spawn. On BRG_OK *conv (if not NULL) is its
//  address.
BRG_EXPORT int brg_conv_spawn(brg_ctx_t *ctx, const brg_conv_opts_t *opts, brg_ref_t *conv);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_conv_spawn_root(brg_system_t *sys, const brg_conv_opts_t *opts, brg_ref_t *conv);

//  ---------------------------------------------------------------------------
//  Messages

//  Encode a user turn. NULL if out of memory or text is NULL or longer than
//  BRG_TOOL_TEXT_MAX. Caller owns the returned message and must destroy it.
BRG_EXPORT brg_msg_t *brg_conv_msg_say(const char *text, bool stream);

//  A turn's answer as brg_conv_read_answer sees it (views into the message).
typedef struct brg_conv_answer {
    int status;       // BRG_OK: text is the answer; else the error and text its detail
    const char *text; // not NUL-terminated
    size_t len;
    int64_t steps;                            // model calls made in the turn
    int64_t tool_calls;                       // tool calls made in the turn
    int64_t prompt_tokens, completion_tokens; // the model's usage in the turn (0 if none)
} brg_conv_answer_t;

//  BRG_OK, BRG_ETYPE (another tag) or BRG_EBADMSG.
BRG_EXPORT int brg_conv_read_answer(const brg_msg_t *msg, brg_conv_answer_t *out);

//  What a streamed event is.
typedef enum {
    BRG_CONV_EV_TEXT = 0,    // text: a piece of the model's answer
    BRG_CONV_EV_TOOL_CALL,   // name, id, text (the arguments): a call sent to a tool
    BRG_CONV_EV_TOOL_RESULT, // name, id, text, is_error: its result
} brg_conv_event_kind_t;

//  A streamed event (views into the message).
typedef struct brg_conv_event {
    brg_conv_event_kind_t kind;
    int step; // 1-based model call of the turn it belongs to
    const char *text;
    size_t len;
    const char *name; // tool events: the tool
    size_t name_len;
    const char *id; // tool events: the call's id
    size_t id_len;
    bool is_error; // tool result: an error text
} brg_conv_event_t;

//  BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_conv_read_event(const brg_msg_t *msg, brg_conv_event_t *out);

//  The conversation's counters since it started.
typedef struct brg_conv_stats {
    uint64_t turns;             // answered with a final text
    uint64_t failed_turns;      // answered with an error
    uint64_t steps;             // model calls
    uint64_t tool_calls;        // tool calls sent (or answered at once: unknown tool)
    uint64_t tool_errors;       // of which ended in an error text, timeout or dead tool
    uint64_t prompt_tokens;     // the model's usage, summed
    uint64_t completion_tokens; //
    uint64_t messages;          // in the history now (with the system message)
    uint64_t history_tokens;    // the estimate of the history now
    uint64_t dropped;           // messages dropped by trimming
    uint64_t waiting;           // turns waiting now behind the running one
} brg_conv_stats_t;

//  BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_conv_read_stats(const brg_msg_t *msg, brg_conv_stats_t *out);

//  Ask for the counters from a thread outside the system. Errors as
//  brg_system_ask, or of the reader. Thread: any but the system's own.
BRG_EXPORT int brg_conv_stats(brg_system_t *sys, brg_ref_t conv, int timeout_ms,
                              brg_conv_stats_t *out);

//  One message of a history reply (views into the message).
typedef struct brg_conv_entry {
    brg_conv_role_t role;
    const char *content;
    size_t len;
    const char *name; // tool message: the tool ("" otherwise)
    size_t name_len;
    const char *id; // tool message: the call it answers ("" otherwise)
    size_t id_len;
    bool is_error;  // tool message: an error text
    size_t n_calls; // assistant message: its tool calls
    brg_tool_call_t calls[BRG_CONV_CALLS_MAX];
} brg_conv_entry_t;

//  Read a history reply: brg_conv_history_count gives the number of
//  messages (and sets *pos to the first), brg_conv_history_next reads one
//  and advances *pos. BRG_OK, BRG_ETYPE, BRG_EBADMSG.
BRG_EXPORT int brg_conv_history_count(const brg_msg_t *msg, size_t *pos, size_t *count);
BRG_EXPORT int brg_conv_history_next(const brg_msg_t *msg, size_t *pos, brg_conv_entry_t *out);

//  ---------------------------------------------------------------------------
//  From main(): one turn, blocking.

//  Called for each streamed event, on the thread that called brg_conv_say,
//  in order. ev is borrowed for the call.
typedef void (*brg_conv_event_fn)(void *arg, const brg_conv_event_t *ev);

//  Say text to the conversation and wait up to timeout_ms for the answer.
//  With on_event, the turn is streamed and on_event sees every event as it
//  arrives. On return *text (if not NULL) is the answer, or the error's
//  detail (malloc'ed, NUL-terminated: Caller frees it; NULL if out of
//  memory), and *turn (if not NULL) the turn's counters. Returns BRG_OK or
//  the turn's error (BRG_ERANGE: step limit; the model's error, as
//  BRG_ETIMEDOUT, BRG_EHTTP, ...), or BRG_ETIMEDOUT (no answer in time),
//  BRG_ENOACTOR, BRG_EINVAL (also for a deterministic system: nothing would
//  run it while the caller waits), BRG_ENOMEM, BRG_EDEADLK (on a system
//  thread).
//  Thread: any but the system's own; blocks.
BRG_EXPORT int brg_conv_say(brg_system_t *sys, brg_ref_t conv, const char *text, int timeout_ms,
                            brg_conv_event_fn on_event, void *arg, char **text_out,
                            brg_conv_answer_t *turn);

#endif
