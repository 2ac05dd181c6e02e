//  tool - tools for model agents are actors.
//
//  A tool is an actor that answers a tool call (an ask tagged
//  BRG_TOOL_TAG_CALL: the tool's name and its arguments, a JSON object as
//  text, as the model wrote them) with a tool result (BRG_TOOL_TAG_RESULT:
//  the text the model will read, and whether it is an error). A tool error is
//  an answer, not a failure: its text ("division by zero", "no document
//  matches") goes back to the model so it can correct itself. An actor that
//  answers with brg_reply_error, dies, or stays silent past the deadline is
//  reported to the model by the conversation (brigade/agent.h) as an error
//  text of its own.
//
//  Because a tool is only an address, it can live anywhere an actor can:
//  in this system (a ref, or a registered name) or on another node (a ref
//  from there, or a (node, name) address, resolved on that node as
//  brg_ask_named_at does). brg_tool_t describes one to the model (name,
//  description, JSON-schema parameters) and says where it lives.
//
//  brg_tool_spawn writes the common tool in a few lines: a function from the
//  arguments to a result text, run by a ready-made behaviour:
//
//    static void
//    upper(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out)
//    {
//        char text[256];
//        if (brg_tool_arg_str(call, "text", text, sizeof(text)) != BRG_OK) {
//            brg_tool_errorf(out, "missing string argument 'text'");
//            return;
//        }
//        for (char *p = text; *p; p++)
//            *p = (char)toupper((unsigned char)*p);
//        brg_tool_printf(out, "%s", text);
//    }
//    ...
//    brg_tool_spawn_root(sys, "tool.upper", upper, NULL, 0, &ref);
//
//  Threads: the encoders, readers and argument helpers are pure and may run
//  on any thread; a tool function runs on the tool actor's thread, one call
//  at a time (spawn it with BRG_SPAWN_BLOCKING if it blocks).
#ifndef BRG_TOOL_H
#define BRG_TOOL_H

#include <stdbool.h>
#include <stddef.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  The ask to a tool: [name: str, arguments: str (JSON), call id: str].
#define BRG_TOOL_TAG_CALL "brg.tool.call" // -> BRG_TOOL_TAG_RESULT
//  Its answer: [is_error: bool, text: str].
#define BRG_TOOL_TAG_RESULT "brg.tool.result"

//  Longest tool name, in bytes (the OpenAI API's limit: [a-zA-Z0-9_-]{1,64}).
#define BRG_TOOL_NAME_MAX 64

//  Longest arguments text and result text, in bytes.
#define BRG_TOOL_TEXT_MAX (1024u * 1024)

//  A tool as the model sees it and where it lives. Plain value; the strings
//  are borrowed by whoever reads it (brg_conv_spawn copies them).
//  Address: `ref` if it is set; otherwise the registered name `actor_name`,
//  on the node `node` (a node ref: id 0, see brg_ask_named_at) or, if node
//  is BRG_REF_NONE, in the conversation's own system (looked up at each
//  call, so a tool restarted by its supervisor under its name is found).
typedef struct brg_tool {
    const char *name;        // the name the model calls it by ([a-zA-Z0-9_-], 1..64 bytes)
    const char *description; // what it does, for the model (may be NULL)
    const char *parameters;  // JSON schema of its arguments object (NULL: no arguments)
    brg_ref_t ref;           // the tool actor, or BRG_REF_NONE
    brg_ref_t node;          // with actor_name: the node it is registered on, or BRG_REF_NONE
    const char *actor_name;  // with ref BRG_REF_NONE: the registered name
} brg_tool_t;

//  A tool call as brg_tool_read_call sees it: views into the message, not
//  NUL-terminated, valid while the caller keeps the message.
typedef struct brg_tool_call {
    const char *name;
    size_t name_len;
    const char *arguments; // a JSON object, as the model wrote it ("{}" when empty)
    size_t arguments_len;
    const char *id; // the model's id for this call ("" when it gave none)
    size_t id_len;
} brg_tool_call_t;

//  A tool result as brg_tool_read_result sees it (views into the message).
typedef struct brg_tool_result {
    bool is_error;
    const char *text;
    size_t len;
} brg_tool_result_t;

//  Check a description: BRG_OK, or BRG_EINVAL (name missing, empty, too
//  long or with a byte outside [a-zA-Z0-9_-]; parameters that are not a JSON
//  object; no address: ref none and actor_name NULL or empty, or longer than
//  BRG_NAME_MAX). Thread: any.
BRG_EXPORT int brg_tool_check(const brg_tool_t *tool);

//  Encode a tool call (arguments NULL or "" mean "{}"; id may be NULL). NULL
//  if out of memory or a text is longer than BRG_TOOL_TEXT_MAX.
//  Caller owns the returned message and must destroy it.
BRG_EXPORT brg_msg_t *brg_tool_msg_call(const char *name, const char *arguments, const char *id);

//  Read a tool call (views into msg): BRG_OK, BRG_ETYPE (another tag) or
//  BRG_EBADMSG (fields missing or of the wrong type).
BRG_EXPORT int brg_tool_read_call(const brg_msg_t *msg, brg_tool_call_t *out);

//  Encode a result: BRG_OK with *reply the new message (Caller owns it), or
//  BRG_ENOMEM, BRG_EMSGSIZE (len > BRG_TOOL_TEXT_MAX). len 0 with a non-empty
//  text means strlen.
BRG_EXPORT int brg_tool_msg_result(bool is_error, const char *text, size_t len, brg_msg_t **reply);

//  Read a result (views into msg): BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_tool_read_result(const brg_msg_t *msg, brg_tool_result_t *out);

//  ---------------------------------------------------------------------------
//  Reading the arguments: the arguments are a JSON object; these read one
//  top-level member. Errors: BRG_ENOTFOUND (no such member, or the arguments
//  are not a JSON object), BRG_ETYPE (the member has another type),
//  BRG_EMSGSIZE (the string does not fit in len bytes with its NUL).

BRG_EXPORT int brg_tool_arg_str(const brg_tool_call_t *call, const char *key, char *buf,
                                size_t len);
//  A JSON number (integer or real).
BRG_EXPORT int brg_tool_arg_double(const brg_tool_call_t *call, const char *key, double *out);

//  ---------------------------------------------------------------------------
//  A tool in a few lines.

//  The output of one call: printf-like appends to the result text. Borrowed
//  by the tool function for the duration of the call.
typedef struct brg_tool_out brg_tool_out_t;

//  Append to the result text. BRG_OK, BRG_ENOMEM or BRG_EMSGSIZE (past
//  BRG_TOOL_TEXT_MAX); a failed append makes the whole call answer with
//  BRG_ENOMEM / BRG_EMSGSIZE as an error status.
BRG_EXPORT int brg_tool_printf(brg_tool_out_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

//  Make the result an error the model will read: the text so far is
//  replaced by this one, and the answer has is_error set.
BRG_EXPORT int brg_tool_errorf(brg_tool_out_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

//  The tool function: read call, write the answer to out. call and out are
//  borrowed for the call. An empty, non-error answer is sent as "(no
//  output)". Thread: the tool actor's.
typedef void (*brg_tool_fn)(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out);

//  Spawn a tool actor whose behaviour answers each BRG_TOOL_TAG_CALL ask
//  with fn's result (other messages are unhandled; a malformed call is
//  answered with BRG_EBADMSG). arg is passed to fn and stays the caller's:
//  it must outlive the actor. name: optional registered name. flags:
//  BRG_SPAWN_BLOCKING for a function that blocks. From a behaviour the tool
//  is linked to the calling actor. Errors as brg_spawn, BRG_EINVAL for a
//  NULL fn. On BRG_OK *ref (if not NULL) is its address.
BRG_EXPORT int brg_tool_spawn(brg_ctx_t *ctx, const char *name, brg_tool_fn fn, void *arg,
                              unsigned flags, brg_ref_t *ref);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_tool_spawn_root(brg_system_t *sys, const char *name, brg_tool_fn fn, void *arg,
                                   unsigned flags, brg_ref_t *ref);

#endif
