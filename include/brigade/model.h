//  model - the model backend interface: one protocol, two backends.
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
//    and `instructions` are ignored.
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

#endif
