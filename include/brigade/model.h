//  model - the model backend interface: two protocols, two backends.
//
//  The task protocol (this first part): a task and one text, answered with
//  one text. The chat protocol (the second part, "Chat"): a conversation
//  with tools, tool calls, per-request settings, streaming, errors with
//  their detail, retries and usage. Both backends answer both.
//
//  A model backend is an actor that answers a model request (an ask tagged
//  BRG_MODEL_TAG_REQUEST) with a model reply (BRG_MODEL_TAG_REPLY) or an
//  error status. Agents talk to "the model" through this protocol only, so
//  the backend behind an address can change without touching them, and a
//  limiter (brigade/limiter.h) can sit in front of any backend.
//
//  A request names a task and carries the text to work on:
//    CHAT       answer `text` following `instructions` (a model is needed)
//    SUMMARISE  a short summary of `text`
//    CHECK      style and grammar problems of `text`, one per line
//    KEYWORDS   the main keywords of `text`, most important first
//  `instructions`, when given, replaces the task's built-in system prompt.
//
//  Two backends:
//  - offline (the default): no network; the tasks are done by the text
//    functions of brigade/text.h, exactly and in microseconds. SUMMARISE
//    keeps the BRG_MODEL_SUMMARY_SENTENCES best sentences in order, joined by
//    a space; CHECK writes "line L, column C: message (rule)" per finding,
//    or "No problems found."; KEYWORDS writes "word (count), ..." for the
//    top ten. It has no language model: CHAT is answered with BRG_EINVAL,
//    and `instructions` are ignored. (Chat requests are answered from its
//    script, see "The offline backend's chat script".)
//  - openai: any OpenAI-compatible chat-completions endpoint, over an HTTP
//    actor (brigade/http.h). It POSTs {model, messages: [system, user],
//    max_tokens, temperature} and answers with choices[0].message.content.
//    Errors: those of the HTTP actor (BRG_ETIMEDOUT, BRG_ENETWORK, ...),
//    BRG_EHTTP for a status that is not 2xx, BRG_EPROTO for a body that is
//    not the JSON of a chat completion, BRG_EINVAL for a text or
//    instructions that are not valid UTF-8, BRG_EMSGSIZE for a request body
//    over the message limit, BRG_EBADMSG for a malformed request, BRG_ENOMEM.
//    With log_errors it logs one line per failure (brigade/log.h: category
//    "model", level warning; stderr by default), with the server's error
//    message when it sent one (URLs without their query).
//
//  Both backends answer every request exactly once. When the openai backend
//  stops, the calls it has in flight are answered BRG_ECLOSED at once.
//  Spawned from a behaviour (the non-root spawns), a backend is linked to the
//  spawning actor and ends when it ends, for any reason (it traps exits).
//
//  Configuration from the environment (brg_model_openai_opts_from_env):
//    BRG_MODEL_URL   base URL, e.g. https://api.openai.com/v1 or
//                    http://127.0.0.1:8080/v1; "/chat/completions" is
//                    appended unless the URL already ends with it
//    BRG_MODEL_KEY   API key, sent as "Authorization: Bearer <key>" (optional)
//    BRG_MODEL_NAME  model name (default "gpt-4o-mini")
//  With BRG_MODEL_URL unset, brg_model_spawn_from_env starts the offline one.
//
//  Threads: the backends are actors; the encoders and readers are pure and
//  may run on any thread.
#ifndef BRG_MODEL_H
#define BRG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

#define BRG_MODEL_TAG_REQUEST "brg.model.request" // -> BRG_MODEL_TAG_REPLY or an error
#define BRG_MODEL_TAG_REPLY "brg.model.reply"

//  Sentences the offline backend keeps in a summary.
#define BRG_MODEL_SUMMARY_SENTENCES 3

typedef enum {
    BRG_MODEL_CHAT = 0,
    BRG_MODEL_SUMMARISE,
    BRG_MODEL_CHECK,
    BRG_MODEL_KEYWORDS,
} brg_model_task_t;

//  A request (brg_model_msg_request copies the strings; brg_model_read_request
//  gives views into the message).
typedef struct brg_model_request {
    brg_model_task_t task;
    const char *instructions; // system prompt; NULL: the task's own
    size_t instructions_len;  //   (encoder: 0 means strlen)
    const char *text;         // the input
    size_t len;               //   (encoder: 0 means strlen)
} brg_model_request_t;

//  A reply as brg_model_read_reply sees it: views into the message, valid
//  while the caller keeps it. Token counts are -1 when the backend has none.
typedef struct brg_model_reply {
    const char *text; // the answer (not NUL-terminated)
    size_t len;       //
    const char *backend;
    size_t backend_len; // "offline" or "openai"
    const char *model;
    size_t model_len; // the model that answered ("text" for offline)
    int64_t prompt_tokens, completion_tokens;
} brg_model_reply_t;

//  The task's name ("chat", "summarise", "check", "keywords"), "unknown"
//  otherwise. Static string.
BRG_EXPORT const char *brg_model_task_name(brg_model_task_t task);

//  Encode a request. NULL if out of memory, for a task out of range, a NULL
//  text or a text longer than BRG_TEXT_MAX. Caller owns the message.
BRG_EXPORT brg_msg_t *brg_model_msg_request(const brg_model_request_t *req);

//  Read a request (views into msg): BRG_OK, BRG_ETYPE (another tag) or
//  BRG_EBADMSG (fields missing or of the wrong type, task out of range).
//  instructions is NULL when the request has none.
BRG_EXPORT int brg_model_read_request(const brg_msg_t *msg, brg_model_request_t *out);

//  Encode a reply, for backends: BRG_OK or BRG_ENOMEM; *reply is the new
//  message (caller owns it).
BRG_EXPORT int brg_model_msg_reply(const brg_model_reply_t *in, brg_msg_t **reply);

//  Read a reply (views into reply): BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_model_read_reply(const brg_msg_t *reply, brg_model_reply_t *out);

//  Spawn the offline backend from inside a behaviour, linked to the calling
//  actor, under an optional registered name. Errors as brg_spawn. On BRG_OK
//  *model (if not NULL) is its address.
BRG_EXPORT int brg_model_offline_spawn(brg_ctx_t *ctx, const char *name, brg_ref_t *model);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_model_offline_spawn_root(brg_system_t *sys, const char *name, brg_ref_t *model);

//  OpenAI-compatible backend options. Start from brg_model_openai_opts_init;
//  the backend copies the strings.
typedef struct brg_model_openai_opts {
    const char *url;     // base URL or full .../chat/completions URL (required)
    const char *api_key; // optional bearer token
    const char *model;   // default "gpt-4o-mini"
    int max_tokens;      // per answer (default 512, 1 .. 100000)
    double temperature;  // default 0.2 (0 .. 2)
    int timeout_ms;      // each call's deadline (default 60000)
    brg_ref_t http;      // an HTTP actor to use; BRG_REF_NONE: spawn one, linked
    bool log_errors;     // one log line per failed call (default true)
    const char *name;    // optional registered name of the backend
    // Retries of chat requests (see "The openai backend and chat" below; the
    // old tasks are not retried).
    int max_attempts;          // attempts per call, the first included (default 3, 1 .. 10)
    int retry_base_ms;         // backoff base (default 500, 1 .. 60000)
    int retry_max_ms;          // cap of one wait and of a Retry-After honoured
                               //   (default 20000, >= retry_base_ms, <= 600000)
    double retry_budget_ratio; // retries allowed per request in the window (default 0.1, 0 .. 1)
    int retry_budget_min;      // plus this many retries per window (default 10, 0 .. 1000000)
    int retry_window_ms;       // the budget's window (default 60000, 1000 .. 3600000)
} brg_model_openai_opts_t;

BRG_EXPORT void brg_model_openai_opts_init(brg_model_openai_opts_t *opts);

//  Fill url, api_key and model from BRG_MODEL_URL, BRG_MODEL_KEY and
//  BRG_MODEL_NAME (the pointers point into the environment). BRG_OK when
//  BRG_MODEL_URL is set and not empty, else BRG_ENOTFOUND (opts unchanged).
BRG_EXPORT int brg_model_openai_opts_from_env(brg_model_openai_opts_t *opts);

//  Spawn the OpenAI-compatible backend from inside a behaviour, linked to
//  the calling actor. Errors: BRG_EINVAL (no URL or not http(s), a value
//  out of range, a string too long), BRG_ENOMEM, then as brg_spawn; its own
//  HTTP actor is spawned by the backend's init, linked to it (if that fails
//  the backend fails at once with the error of brg_http_spawn). On BRG_OK
//  *model (if not NULL) is its address.
BRG_EXPORT int brg_model_openai_spawn(brg_ctx_t *ctx, const brg_model_openai_opts_t *opts,
                                      brg_ref_t *model);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_model_openai_spawn_root(brg_system_t *sys, const brg_model_openai_opts_t *opts,
                                           brg_ref_t *model);

//  The backend the environment asks for: openai when BRG_MODEL_URL is set,
//  offline otherwise, from inside a behaviour and linked to the calling actor.
//  *backend (if not NULL) is set to "openai" or "offline". Errors as the two
//  spawns.
BRG_EXPORT int brg_model_spawn_from_env(brg_ctx_t *ctx, const char *name, brg_ref_t *model,
                                        const char **backend);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_model_spawn_from_env_root(brg_system_t *sys, const char *name, brg_ref_t *model,
                                             const char **backend);

//  ===========================================================================
//  Chat: message history, tools, settings, tool calls, streaming.
//
//  A chat request (BRG_MODEL_TAG_CHAT) carries the whole conversation: the
//  messages in order (roles system, user, assistant, tool), the tools the
//  model may call, and settings that override the backend's defaults for
//  this request only. Build it with brg_model_chat_new / _add_* / _set_* and
//  encode it with brg_model_chat_msg; a backend reads it with
//  brg_model_read_chat and the view functions. C code never touches msgpack.
//
//  Answers, not streaming (stream off, the default): ask the backend
//  (brg_ask / brg_system_ask). The reply is one message, either
//    BRG_MODEL_TAG_CHAT_REPLY  text, tool calls, finish reason, usage, model,
//                              backend (brg_model_read_chat_reply), or
//    BRG_MODEL_TAG_ERROR       the failure with its detail: code, HTTP status,
//                              the server's error type and message,
//                              Retry-After, attempts (brg_model_read_error).
//  Both come with ask status BRG_OK; brg_model_chat_status(status, reply)
//  gives one code for all three cases (the ask's own error such as
//  BRG_ETIMEDOUT, the error message's code, or BRG_OK). A malformed chat
//  request is answered with an ask error (BRG_EBADMSG), as the old tasks are.
//
//  Streaming (brg_model_chat_set_stream(chat, id), id > 0): send the request
//  from an actor (brg_send, or brg_ask: then the ask is answered with the
//  end message). The fragments go to the request's stream_to
//  (brg_model_chat_set_stream_to), else to its sender; the end is the
//  answer to the request, so it goes where any answer goes: to the asker
//  (through a limiter: to the limiter, which relays it), or for a plain
//  send to the sender. The backend sends, as plain messages, in this order:
//    BRG_MODEL_TAG_DELTA  zero or more: a text fragment, or a tool-call
//                         fragment (index; id and name in the first fragment
//                         of a call, argument text in any), brg_model_read_delta
//    BRG_MODEL_TAG_END    exactly one, last: status BRG_OK with the finish
//                         reason ("stop", "length", "tool_calls",
//                         "content_filter", or "cancelled" after a cancel)
//                         and the usage; or an error status with the same
//                         detail as BRG_MODEL_TAG_ERROR (brg_model_read_end).
//  Every one carries the request's stream id, so one actor may run several
//  streams at once. Cancel a running stream with brg_model_msg_cancel(id)
//  sent to the backend from the request's sender or from its stream_to: the
//  transfer is aborted and the stream ends at once with finish reason
//  "cancelled" (status BRG_OK); a cancel for a stream that is not running
//  (already ended, unknown id, from another actor) is ignored. A limiter
//  passes a BRG_MODEL_TAG_CANCEL on to its target at once with brg_forward
//  (never limited or queued), so the backend sees the canceller as its
//  sender: an actor that asked through a limiter with stream_to = itself
//  sends its cancel to the limiter, as it sent the request. (A cancel that
//  reaches the backend before the request, one still queued in the
//  limiter, finds no stream and is ignored; also send the limiter a
//  brg_cancel for the ask (brigade/cancel.h), which drops a queued request.)
//  Order: the fragments go straight to stream_to and the end through the
//  asker's path. When the asker is stream_to and the limiter runs on the
//  node of either of them, every fragment arrives before the end (messages
//  between two actors keep their order, and a limiter relays the end only
//  after the backend sent the fragments). With the limiter on a third node
//  that order is not guaranteed.
//
//  The generic cancel (brigade/cancel.h): both backends honour a
//  BRG_TAG_CANCEL of a request they are still working on, from its asker (a
//  limiter past request_timeout_ms, a gather past its deadline, or any
//  actor with brg_ask_id and brg_cancel), for old tasks and chats, streamed
//  or not. The asker has given up, so the work stops and nothing answers
//  it: no reply, no end message, no further fragment. The openai backend
//  cancels its HTTP call (the HTTP actor aborts the transfer, the
//  connection is closed), makes no retry of it (a retry that was waiting
//  is dropped), and counts it `cancelled`, not in `errors`. The offline
//  backend stops a paced stream (stream_interval_ms) where it is; its other
//  answers are made at once, so a cancel then comes too late and is
//  ignored, as is any cancel that matches nothing running.
//
//  The openai backend and chat. It POSTs {model, messages (role, content,
//  tool_calls [{id, type "function", function {name, arguments}}],
//  tool_call_id), tools [{type "function", function {name, description,
//  parameters}}], max_tokens, temperature, response_format {type
//  json_object} in JSON mode, stream and stream_options {include_usage:
//  true} when streaming} and reads choices[0] (message, or delta pieces),
//  finish_reason, usage and model. A stream is read as server-sent events
//  (data: lines, blank-line separated, ending with data: [DONE]; the usage
//  chunk has empty or null choices); an "error" event, a chunk that is not
//  JSON, or a close before [DONE] with no finish reason ends it with
//  BRG_EPROTO. Tool parameters that are not a JSON object, or text that is
//  not UTF-8, are answered BRG_EINVAL without a call.
//  Retries: 429, 5xx, and failures where nothing was sent (no connection,
//  the HTTP actor full) are tried again, up to max_attempts (the request's,
//  else the backend's), after a wait drawn uniformly from [0, min(
//  retry_max_ms, retry_base_ms x 2^(attempt-1))] (full jitter) and raised to
//  the server's Retry-After, capped at retry_max_ms. A timeout or a transfer
//  broken after the request was sent is retried only with retry_unsafe; a
//  stream that delivered a fragment is never retried. The call's deadline
//  (the request's timeout, else timeout_ms) covers all attempts and waits:
//  a retry whose wait would pass it is not made. The retry budget: in each
//  retry_window_ms, at most retry_budget_min + retry_budget_ratio x requests
//  retries; a retry over it is not made (stats: retries_throttled) and the
//  call fails with its last error.
//
//  Usage: token counts are -1 when unknown. The openai backend reports the
//  server's usage; the offline backend estimates (see its section).
//  Stats: every backend answers BRG_MODEL_TAG_STATS (brg_model_stats).
//
//  Threads: builders, encoders and readers are pure (no shared state) and
//  may run on any thread; one builder must not be used by two threads at
//  once.

#define BRG_MODEL_TAG_CHAT "brg.model.chat"             // -> CHAT_REPLY or ERROR, or a stream
#define BRG_MODEL_TAG_CHAT_REPLY "brg.model.chat_reply" //
#define BRG_MODEL_TAG_ERROR "brg.model.error"           //
#define BRG_MODEL_TAG_DELTA "brg.model.delta"           // a stream's fragment
#define BRG_MODEL_TAG_END "brg.model.end"               // a stream's last message
#define BRG_MODEL_TAG_CANCEL "brg.model.cancel"         // [stream id], to the backend
#define BRG_MODEL_TAG_STATS "brg.model.stats"           // -> the counters, in field order

//  Most messages and tools in one request, tool calls in one message.
#define BRG_MODEL_MESSAGES_MAX 10000
#define BRG_MODEL_TOOLS_MAX 256
#define BRG_MODEL_TOOL_CALLS_MAX 128

typedef enum {
    BRG_MODEL_SYSTEM = 0,
    BRG_MODEL_USER,
    BRG_MODEL_ASSISTANT,
    BRG_MODEL_TOOL,
} brg_model_role_t;

//  The role's wire name ("system", "user", "assistant", "tool"), "unknown"
//  otherwise. Static string.
BRG_EXPORT const char *brg_model_role_name(brg_model_role_t role);

//  A tool call the model asked for: an id (to answer with a tool message),
//  the tool's name and its arguments as a JSON text. Given to the builder:
//  the strings are copied (a length 0 means strlen). From a reader: views
//  into the message (not NUL-terminated), valid while the message lives.
typedef struct brg_model_tool_call {
    const char *id;
    size_t id_len;
    const char *name;
    size_t name_len;
    const char *arguments; // JSON text, e.g. {"city":"Oslo"}
    size_t arguments_len;
} brg_model_tool_call_t;

//  A tool offered to the model: name, description and its parameters as a
//  JSON-schema text. Same ownership rules as brg_model_tool_call_t.
typedef struct brg_model_tool {
    const char *name;
    size_t name_len;
    const char *description;
    size_t description_len;
    const char *parameters; // JSON schema of the arguments, e.g. {"type":"object",...}
    size_t parameters_len;
} brg_model_tool_t;

//  The chat request builder (opaque). It owns copies of all it is given.
typedef struct brg_model_chat brg_model_chat_t;

//  A new empty request (no messages, no tools, the backend's settings).
//  NULL if out of memory. Caller owns it (brg_model_chat_destroy).
BRG_EXPORT brg_model_chat_t *brg_model_chat_new(void);

//  Free the builder and set *chat_p to NULL. NULL is fine.
BRG_EXPORT void brg_model_chat_destroy(brg_model_chat_t **chat_p);

//  Append a system, user or tool-less assistant message (content copied;
//  len 0 means strlen). BRG_OK, BRG_EINVAL (role out of range or TOOL, NULL
//  content, content over BRG_TEXT_MAX or not valid UTF-8, too many
//  messages) or BRG_ENOMEM.
BRG_EXPORT int brg_model_chat_add_message(brg_model_chat_t *chat, brg_model_role_t role,
                                          const char *content, size_t len);

//  Append an assistant message that asked for tool calls (content may be
//  NULL; calls copied). BRG_OK, BRG_EINVAL (no content and no call, a call
//  without id or name, arguments or strings not valid UTF-8, more than
//  BRG_MODEL_TOOL_CALLS_MAX calls, too many messages) or BRG_ENOMEM.
BRG_EXPORT int brg_model_chat_add_assistant(brg_model_chat_t *chat, const char *content,
                                            const brg_model_tool_call_t *calls, size_t n_calls);

//  Append a tool message: the result of the call `tool_call_id` (both
//  copied; len 0 means strlen). Errors as brg_model_chat_add_message.
BRG_EXPORT int brg_model_chat_add_tool_result(brg_model_chat_t *chat, const char *tool_call_id,
                                              const char *content, size_t len);

//  Offer a tool (copied; parameters NULL means {"type":"object"}). BRG_OK,
//  BRG_EINVAL (no name, a name other than [A-Za-z0-9_-]{1,64}, not valid
//  UTF-8, more than BRG_MODEL_TOOLS_MAX tools) or BRG_ENOMEM.
BRG_EXPORT int brg_model_chat_add_tool(brg_model_chat_t *chat, const brg_model_tool_t *tool);

//  Per-request settings; each overrides the backend's default when set.
//  model: copied, NULL back to the default; BRG_EINVAL if longer than 256.
BRG_EXPORT int brg_model_chat_set_model(brg_model_chat_t *chat, const char *model);
//  temperature 0 .. 2 (BRG_EINVAL otherwise).
BRG_EXPORT int brg_model_chat_set_temperature(brg_model_chat_t *chat, double temperature);
//  max_tokens 1 .. 1000000 (BRG_EINVAL otherwise).
BRG_EXPORT int brg_model_chat_set_max_tokens(brg_model_chat_t *chat, int max_tokens);
//  JSON mode: response_format {"type": "json_object"} on the wire.
BRG_EXPORT void brg_model_chat_set_json_mode(brg_model_chat_t *chat, bool on);
//  Stream the answer under stream_id (> 0); 0 turns streaming off.
BRG_EXPORT void brg_model_chat_set_stream(brg_model_chat_t *chat, uint64_t stream_id);
//  Send the stream's fragments to `to` instead of the request's sender (a
//  caller that asks through a limiter or a proxy sets it to itself); the
//  end still answers the request. BRG_REF_NONE: back to the sender (the
//  default). Written on the wire only when set (an optional last field).
BRG_EXPORT void brg_model_chat_set_stream_to(brg_model_chat_t *chat, brg_ref_t to);
//  The whole call's deadline, retries included (ms, 1 .. 3600000; BRG_EINVAL
//  otherwise). Default: the backend's timeout_ms.
BRG_EXPORT int brg_model_chat_set_timeout(brg_model_chat_t *chat, int timeout_ms);
//  Most attempts (1 .. 10; 1 = no retry; BRG_EINVAL otherwise). Default:
//  the backend's max_attempts.
BRG_EXPORT int brg_model_chat_set_max_attempts(brg_model_chat_t *chat, int max_attempts);
//  The request may be sent twice (idempotent for the caller): the backend
//  may then also retry a timeout or a transfer broken after the body was
//  sent. Default false.
BRG_EXPORT void brg_model_chat_set_retry_unsafe(brg_model_chat_t *chat, bool on);

//  Encode the request (tag BRG_MODEL_TAG_CHAT). NULL if out of memory or
//  over BRG_MSG_MAX. The builder is unchanged and may be used again (add the
//  answer, encode the next turn). Caller owns the message.
BRG_EXPORT brg_msg_t *brg_model_chat_msg(const brg_model_chat_t *chat);

//  A chat request as brg_model_read_chat sees it: views into the message,
//  valid while the caller keeps it. Unset settings: model NULL, temperature
//  -1, max_tokens 0, timeout_ms 0, max_attempts 0.
typedef struct brg_model_chat_view {
    uint64_t stream_id;  // 0: not streaming
    brg_ref_t stream_to; // where fragments go; BRG_REF_NONE: the sender
    const char *model;   // NULL: the backend's
    size_t model_len;    //
    double temperature;
    int max_tokens;
    bool json_mode;
    bool retry_unsafe;
    int timeout_ms;
    int max_attempts;
    uint32_t n_messages;
    uint32_t n_tools;
    // Private: where the message and tool arrays start.
    const brg_msg_t *msg_;
    size_t messages_pos_, tools_pos_;
} brg_model_chat_view_t;

//  One message of a request: views into the request message.
typedef struct brg_model_message {
    brg_model_role_t role;
    const char *content; // NULL: none (an assistant message with tool calls only)
    size_t content_len;
    const char *tool_call_id; // role TOOL: the call answered; else NULL
    size_t tool_call_id_len;
    uint32_t n_tool_calls; // role ASSISTANT: the calls it asked for
    // Private.
    const brg_msg_t *msg_;
    size_t calls_pos_;
} brg_model_message_t;

//  Read and check a whole chat request (every message, call and tool, so the
//  view functions below cannot fail on it later): BRG_OK, BRG_ETYPE (another
//  tag) or BRG_EBADMSG (malformed, a role out of range, a tool message
//  without tool_call_id, counts over the limits).
BRG_EXPORT int brg_model_read_chat(const brg_msg_t *msg, brg_model_chat_view_t *out);

//  Message i (0-based, < n_messages) of a read request; O(i) (it skips the
//  ones before). BRG_OK or BRG_ERANGE.
BRG_EXPORT int brg_model_chat_message(const brg_model_chat_view_t *chat, uint32_t i,
                                      brg_model_message_t *out);

//  Tool call i (< n_tool_calls) of a message. BRG_OK or BRG_ERANGE.
BRG_EXPORT int brg_model_message_tool_call(const brg_model_message_t *m, uint32_t i,
                                           brg_model_tool_call_t *out);

//  Tool i (< n_tools) of a read request. BRG_OK or BRG_ERANGE.
BRG_EXPORT int brg_model_chat_tool(const brg_model_chat_view_t *chat, uint32_t i,
                                   brg_model_tool_t *out);

//  A chat reply (and, without tool calls, a stream's end) as the readers see
//  it: views into the message. Token counts are -1 when unknown.
typedef struct brg_model_chat_reply {
    const char *text; // the answer ("" when the model only called tools)
    size_t len;
    const char *finish_reason; // "stop", "length", "tool_calls", "content_filter", ...
    size_t finish_reason_len;
    uint32_t n_tool_calls;
    int64_t prompt_tokens, completion_tokens, total_tokens;
    const char *model; // the model that answered
    size_t model_len;
    const char *backend; // "offline" or "openai"
    size_t backend_len;
    int attempts; // HTTP attempts it took (1 without retries; 0 offline)
    // Private.
    const brg_msg_t *msg_;
    size_t calls_pos_;
} brg_model_chat_reply_t;

//  Encode a reply, for backends: in's text, finish reason, usage, model,
//  backend, attempts, and the n_calls calls (strings copied; len 0 means
//  strlen). NULL if out of memory. Caller owns the message.
BRG_EXPORT brg_msg_t *brg_model_msg_chat_reply(const brg_model_chat_reply_t *in,
                                               const brg_model_tool_call_t *calls, size_t n_calls);

//  Read a chat reply: BRG_OK, BRG_ETYPE (another tag: check
//  brg_model_read_error) or BRG_EBADMSG.
BRG_EXPORT int brg_model_read_chat_reply(const brg_msg_t *reply, brg_model_chat_reply_t *out);

//  Tool call i (< n_tool_calls) of a read reply. BRG_OK or BRG_ERANGE.
BRG_EXPORT int brg_model_chat_reply_tool_call(const brg_model_chat_reply_t *r, uint32_t i,
                                              brg_model_tool_call_t *out);

//  A failure with its detail (a BRG_MODEL_TAG_ERROR message, or the error of
//  a stream's end). The strings are views into the message ("" if none).
//    code          BRG_EHTTP (the server answered a status not 2xx),
//                  BRG_ETIMEDOUT (the call's deadline passed, retries
//                  included), BRG_ENETWORK, BRG_EPROTO (the answer is not a
//                  chat completion or the stream broke its format),
//                  BRG_EINVAL (a text or argument that cannot go on the
//                  wire), BRG_EMSGSIZE, BRG_EBUSY (the HTTP actor is full),
//                  BRG_ENOMEM, BRG_ECLOSED (the backend stopped)
//    http_status   the last HTTP status, 0 if none came
//    type          the server's error.type (or error.code when it has no
//                  type), e.g. "rate_limit_exceeded"; "" if none
//    message       the server's error.message, else our explanation
//                  (curl's, the parser's); "" if none
//    retry_after_ms the server's Retry-After (seconds or an HTTP date, in
//                  ms from when it came), -1 if none
//    attempts      HTTP attempts made (0: none was sent)
typedef struct brg_model_error {
    int code;
    int http_status;
    const char *type;
    size_t type_len;
    const char *message;
    size_t message_len;
    int64_t retry_after_ms;
    int attempts;
    uint64_t stream_id; // the stream's id; 0 for an answer that is not streamed
} brg_model_error_t;

//  Encode an error message (tag BRG_MODEL_TAG_ERROR), for backends (strings
//  copied; NULL is ""). NULL if out of memory. Caller owns it.
BRG_EXPORT brg_msg_t *brg_model_msg_error(const brg_model_error_t *err);

//  Read an error message: BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_model_read_error(const brg_msg_t *msg, brg_model_error_t *out);

//  The outcome of a chat ask in one code: status if it is an error (the
//  ask's own), else the code of a BRG_MODEL_TAG_ERROR reply, else BRG_OK for
//  a chat reply or stream end with status BRG_OK, else the end's error, else
//  BRG_EBADMSG (another message).
BRG_EXPORT int brg_model_chat_status(int status, const brg_msg_t *reply);

//  A stream fragment (views into the message).
//    tool_index -1: a text fragment in `text`.
//    tool_index >= 0: a fragment of tool call tool_index; id and name are
//      set (non-empty) in the call's first fragment only, arguments carries
//      the next piece of its JSON arguments text (may be "").
typedef struct brg_model_delta {
    uint64_t stream_id;
    const char *text;
    size_t len;
    int tool_index;
    const char *id;
    size_t id_len;
    const char *name;
    size_t name_len;
    const char *arguments;
    size_t arguments_len;
} brg_model_delta_t;

//  Encode a fragment, for backends (strings copied; NULL is ""). NULL if out
//  of memory. Caller owns it.
BRG_EXPORT brg_msg_t *brg_model_msg_delta(const brg_model_delta_t *delta);

//  Read a fragment: BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_model_read_delta(const brg_msg_t *msg, brg_model_delta_t *out);

//  A stream's end: status BRG_OK with finish reason and usage in `reply`
//  (its text is "" and it has no tool calls: those came as deltas), or an
//  error status with its detail in `error` (then reply's strings are "").
typedef struct brg_model_end {
    uint64_t stream_id;
    int status;
    brg_model_chat_reply_t reply;
    brg_model_error_t error;
} brg_model_end_t;

//  Encode an end, for backends: status BRG_OK with reply (text and calls
//  ignored), or an error with err (its code is status). NULL if out of
//  memory. Caller owns it.
BRG_EXPORT brg_msg_t *brg_model_msg_end(uint64_t stream_id, int status,
                                        const brg_model_chat_reply_t *reply,
                                        const brg_model_error_t *err);

//  Read an end: BRG_OK (whatever the end's status), BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_model_read_end(const brg_msg_t *msg, brg_model_end_t *out);

//  A cancel for stream_id, to send to the backend. NULL if out of memory.
BRG_EXPORT brg_msg_t *brg_model_msg_cancel(uint64_t stream_id);

//  Per-backend counters (a plain value).
typedef struct brg_model_stats {
    uint64_t requests;          // requests taken (old tasks and chats, streamed or not)
    uint64_t errors;            // of those, answered with an error (or an error end)
    uint64_t retries;           // HTTP attempts after the first (openai)
    uint64_t retries_throttled; // retries refused by the retry budget (openai)
    uint64_t prompt_tokens;     // sums of the known usage counts
    uint64_t completion_tokens; //
    uint64_t streams;           // of the requests, streamed
    uint64_t cancelled;         // calls stopped by a cancel: streams ended by
                                //   brg_model_msg_cancel, requests by brg.cancel
    uint64_t in_flight;         // calls running now
} brg_model_stats_t;

//  A stats request, for brg_ask. NULL if out of memory. Caller owns it.
BRG_EXPORT brg_msg_t *brg_model_msg_stats(void);

//  Read the reply to a stats request: BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_model_read_stats(const brg_msg_t *reply, brg_model_stats_t *out);

//  The counters, blocking. Errors: those of brg_system_ask, BRG_ENOMEM and
//  the reader's. Thread: any thread but the system's own (there:
//  BRG_EDEADLK, as brg_system_ask).
BRG_EXPORT int brg_model_stats(brg_system_t *sys, brg_ref_t model, int timeout_ms,
                               brg_model_stats_t *out);

//  ---------------------------------------------------------------------------
//  The offline backend's chat script.
//
//  The offline backend answers chat requests with no network and no model,
//  deterministically, from an ordered list of rules: the first rule whose
//  conditions all hold answers. Conditions (each optional):
//    contains    the last user message contains this text (case-sensitive)
//    turn        N > 0: this is the N-th assistant answer of the conversation
//                (1 + the assistant messages in the history)
//    after_tool  true: the last message is a tool result
//    tool_offered the request offers a tool with this name
//  The answer: `text` (may be NULL with tool calls) and/or `tool_calls`.
//  In text, "{user}" is replaced by the last user message and "{tool}" by
//  the last tool result ("" if none). finish_reason: "tool_calls" when the
//  rule has calls, else "stop". With no rule matching, the default answer is
//  "You said: {user}" (or "Tool result: {tool}" right after a tool result),
//  finish reason "stop".
//  Streaming: the answer goes as text fragments of stream_chunk bytes (never
//  splitting a UTF-8 character), then per call one fragment with index, id
//  and name and fragments of its arguments, then the end. By default all at
//  once (a cancel then comes after the end and is ignored); with
//  stream_interval_ms > 0 one fragment per interval (a timer), so a cancel
//  can come mid-stream: the rest is dropped and the end says "cancelled"
//  (prompt tokens counted, completion -1). Streams running when the backend
//  stops get no end.
//  Usage estimate: prompt tokens = the sum over all message contents, tool
//  call arguments and tool definitions of (bytes + 3) / 4; completion tokens
//  = (bytes of the answer text and call arguments + 3) / 4; total = both.
//  model is opts.model ("offline-script" by default), backend "offline",
//  attempts 0. JSON mode, temperature, max_tokens, timeout, retries are
//  accepted and ignored (the answer is the script's).

//  One rule. Strings are copied by the spawn (len fields: 0 means strlen).
typedef struct brg_model_rule {
    const char *contains;     // NULL: any
    int turn;                 // 0: any
    bool after_tool;          // false: any
    const char *tool_offered; // NULL: any
    const char *text;         // NULL: no text
    const brg_model_tool_call_t *tool_calls;
    size_t n_tool_calls;
} brg_model_rule_t;

typedef struct brg_model_offline_opts {
    const brg_model_rule_t *rules; // checked in order; may be NULL (n_rules 0)
    size_t n_rules;                //   (at most 1024)
    const char *model;             // model name in replies (default "offline-script")
    size_t stream_chunk;           // bytes per text or argument fragment (default 16, 1 .. 65536)
    int stream_interval_ms;        // 0: a stream's fragments all at once (default); > 0: one
                                   //   per interval (0 .. 60000), so a cancel can land mid-stream
    const char *name;              // optional registered name
} brg_model_offline_opts_t;

BRG_EXPORT void brg_model_offline_opts_init(brg_model_offline_opts_t *opts);

//  Spawn the offline backend with a chat script, from inside a behaviour and
//  linked to the calling actor (as brg_model_offline_spawn; the old tasks are
//  answered as there). Errors: BRG_EINVAL (too many rules, a rule without
//  text and calls, a call without id or name, stream_chunk or
//  stream_interval_ms out of range),
//  BRG_ENOMEM, then as brg_spawn.
BRG_EXPORT int brg_model_offline_spawn_opts(brg_ctx_t *ctx, const brg_model_offline_opts_t *opts,
                                            brg_ref_t *model);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_model_offline_spawn_opts_root(brg_system_t *sys,
                                                 const brg_model_offline_opts_t *opts,
                                                 brg_ref_t *model);

#endif
