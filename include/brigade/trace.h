//  trace - trace context in every message, spans, OTLP/JSON export.
//
//  A trace follows one request through the actors it touches, on this node
//  and on others. Its context (W3C trace-context sizes: a 16-byte trace id,
//  an 8-byte span id, a sampled flag) travels in every message's envelope:
//
//  - The current context. An actor handling a message has that message's
//    context as its current one; a thread outside the system has the one
//    it set with brg_trace_set (none at first); an actor's init runs in
//    its spawner's (brg_spawn, brg_system_spawn, the kind spawns).
//  - Inheritance. Every message sent while a context is current carries it:
//    brg_send (and its shorthands, named sends), brg_ask, brg_reply,
//    brg_reply_error (and the _to forms), brg_forward, brg_system_send,
//    brg_system_ask. Timer messages (brg_send_after, brg_send_every, idle
//    timeouts) and the runtime's signals (EXIT, DOWN, stop) carry none.
//  - Across nodes the context rides in the wire envelope (PROTOCOL.md
//    section 6, "ext map"), to peers that announced the "trace" feature.
//
//  Spans. When tracing is on for the system (brg_config_t.trace_file,
//  trace_hook or the BRG_TRACE_FILE environment variable), spans are
//  recorded and exported: the runtime makes one per brg_ask and
//  brg_system_ask made in a trace (from the ask to its reply, error or
//  timeout; an ask with no context current makes none), brg_gather makes
//  one around its asks, and users make their own with brg_span_start. A
//  reply callback runs in the context its ask was made in. A span started while a context is
//  current is its child; with no current context it starts a new trace. An open span is the current
//  context of the call that started it (its sends are its children) until it ends or
//  brg_span_leave.
//
//  When tracing is off (the default) contexts still travel with messages
//  (one byte tested per send and per message handled: docs/PERFORMANCE.md
//  measures it), but nothing is recorded: the span calls return NULL and
//  every function here accepts a NULL span and does nothing with it.
//
//  Attribute names. Model and tool calls use the OpenTelemetry GenAI
//  semantic conventions (docs/AGENTS.md, "Tracing"); the BRG_ATTR_...
//  macros below spell them.
//
//  Export. Ended spans go to a bounded buffer (brg_config_t.trace_buffer
//  spans; a span that finds it full is dropped and counted) that a thread
//  of the system drains: no worker ever waits on file I/O. Each batch is
//  one OTLP/JSON ExportTraceServiceRequest on one line, appended to the
//  trace file and/or handed to the hook.
//
//  Threads: a span belongs to the thread that uses it, one at a time (an
//  actor may start one in a behaviour and end it in a reply callback: both
//  run on the actor's own thread, in turn). The context functions are
//  thread-safe; brg_trace_set is per thread. End every span before
//  brg_system_destroy of its system (the runtime's own are).
#ifndef BRG_TRACE_H
#define BRG_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "export.h"

typedef struct brg_ctx brg_ctx_t;
typedef struct brg_msg brg_msg_t;
typedef struct brg_system brg_system_t;

//  A trace context. Valid when trace_id is not all zero (W3C).
typedef struct brg_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8]; // the parent of what is made under this context
    uint8_t flags;      // W3C trace-flags: BRG_TRACE_SAMPLED
} brg_trace_ctx_t;

#define BRG_TRACE_SAMPLED 0x01

//  Span kinds: the OTLP values.
typedef enum {
    BRG_SPAN_INTERNAL = 1,
    BRG_SPAN_SERVER = 2,
    BRG_SPAN_CLIENT = 3,
    BRG_SPAN_PRODUCER = 4,
    BRG_SPAN_CONSUMER = 5
} brg_span_kind_t;

typedef struct brg_span brg_span_t;

//  Called by the system's export thread with one OTLP/JSON line (an
//  ExportTraceServiceRequest, no newline; borrowed for the call). It may
//  block (it holds only the export thread) but must not call
//  brg_system_destroy.
typedef void (*brg_trace_hook_fn)(void *arg, const char *json, size_t len);

//  Export counters (brg_trace_stats).
typedef struct brg_trace_stats {
    uint64_t spans_ended;    // spans ended while tracing was on
    uint64_t spans_exported; // written to the file or handed to the hook
    uint64_t spans_dropped;  // the buffer was full (or a span out of memory)
    uint64_t batches;        // lines written / hook calls
    uint64_t write_errors;   // failed writes to the trace file
} brg_trace_stats_t;

//  OpenTelemetry GenAI semantic conventions (attribute names of model and
//  tool spans; see docs/AGENTS.md, "Tracing").
#define BRG_ATTR_GEN_AI_OPERATION_NAME "gen_ai.operation.name" // "chat", "execute_tool"
#define BRG_ATTR_GEN_AI_PROVIDER_NAME "gen_ai.provider.name"   // "openai", ...
#define BRG_ATTR_GEN_AI_REQUEST_MODEL "gen_ai.request.model"
#define BRG_ATTR_GEN_AI_RESPONSE_MODEL "gen_ai.response.model"
#define BRG_ATTR_GEN_AI_RESPONSE_ID "gen_ai.response.id"
#define BRG_ATTR_GEN_AI_RESPONSE_FINISH_REASONS "gen_ai.response.finish_reasons"
#define BRG_ATTR_GEN_AI_USAGE_INPUT_TOKENS "gen_ai.usage.input_tokens"
#define BRG_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS "gen_ai.usage.output_tokens"
#define BRG_ATTR_GEN_AI_REQUEST_MAX_TOKENS "gen_ai.request.max_tokens"
#define BRG_ATTR_GEN_AI_REQUEST_TEMPERATURE "gen_ai.request.temperature"
#define BRG_ATTR_GEN_AI_TOOL_NAME "gen_ai.tool.name"
#define BRG_ATTR_GEN_AI_TOOL_CALL_ID "gen_ai.tool.call.id"
#define BRG_ATTR_GEN_AI_TOOL_TYPE "gen_ai.tool.type"
#define BRG_ATTR_ERROR_TYPE "error.type"

//  ---------------------------------------------------------------------------
//  Context.

//  The current context: ctx's (the message being handled, or the span open
//  in this call), or with ctx NULL the calling thread's (brg_trace_set).
//  Returns true and fills *out if there is one; false (and *out zeroed)
//  otherwise. Thread: ctx's, or any.
BRG_EXPORT bool brg_trace_current(const brg_ctx_t *ctx, brg_trace_ctx_t *out);

//  The context msg carries (what its sender's current context was). Same
//  return and *out as brg_trace_current.
BRG_EXPORT bool brg_msg_trace(const brg_msg_t *msg, brg_trace_ctx_t *out);

//  Make tc the calling thread's current context for its brg_system_send and
//  brg_system_ask and the parent of its brg_system_span_start; NULL (or an
//  invalid tc) clears it. Borrowed: copied. For threads outside the system
//  (a behaviour's context is its message's; this does not change it).
BRG_EXPORT void brg_trace_set(const brg_trace_ctx_t *tc);

//  Make tc ctx's current context for the rest of this behaviour call (NULL
//  or an invalid tc: none): for a context that came another way than the
//  message (a traceparent header an actor parsed, a helper's caller). What
//  the call sends from now on carries it. Thread: ctx's.
BRG_EXPORT void brg_trace_enter(brg_ctx_t *ctx, const brg_trace_ctx_t *tc);

//  W3C traceparent text ("00-<32 hex>-<16 hex>-<2 hex>", 55 chars and NUL)
//  of tc, for HTTP headers. BRG_EINVAL if tc is not valid.
BRG_EXPORT int brg_trace_format(const brg_trace_ctx_t *tc, char out[56]);

//  Parse a W3C traceparent (version 00). BRG_EINVAL if malformed or an id
//  is all zero. *out is unchanged on error.
BRG_EXPORT int brg_trace_parse(const char *traceparent, brg_trace_ctx_t *out);

//  True when tracing is on for sys (spans are recorded and exported).
BRG_EXPORT bool brg_trace_enabled(brg_system_t *sys);

//  Export counters of sys (all zero when tracing is off).
BRG_EXPORT void brg_trace_stats(brg_system_t *sys, brg_trace_stats_t *stats);

//  ---------------------------------------------------------------------------
//  Spans. Each start returns NULL when tracing is off for the system, when
//  the parent context is not sampled, or out of memory; every other call
//  accepts NULL and then does nothing.

//  Start a span named name (copied, cut to 127 bytes) as a child of ctx's
//  current context, or the root of a new trace if there is none. It
//  becomes ctx's current context for the rest of this call, until
//  brg_span_end or brg_span_leave. Caller owns the span and must end it
//  (on the same actor; it may outlive the call, e.g. ended in a reply
//  callback). Thread: ctx's.
BRG_EXPORT brg_span_t *brg_span_start(brg_ctx_t *ctx, const char *name, brg_span_kind_t kind);

//  Start the root span of a new trace (sampled), whatever is current; it
//  becomes ctx's current context as brg_span_start's.
BRG_EXPORT brg_span_t *brg_trace_start(brg_ctx_t *ctx, const char *name, brg_span_kind_t kind);

//  The same for a thread outside the system: the parent is the thread's
//  current context (brg_trace_set), and the span becomes it until ended.
BRG_EXPORT brg_span_t *brg_system_span_start(brg_system_t *sys, const char *name,
                                             brg_span_kind_t kind);
BRG_EXPORT brg_span_t *brg_system_trace_start(brg_system_t *sys, const char *name,
                                              brg_span_kind_t kind);

//  Attributes: key and value copied. Setting a key again replaces its
//  value. At most 32 keys per span: a new key beyond is not recorded
//  (BRG_EMSGSIZE). BRG_OK, BRG_ENOMEM, BRG_EINVAL (NULL key or value).
//  NULL span: BRG_OK, nothing recorded.
BRG_EXPORT int brg_span_set_str(brg_span_t *span, const char *key, const char *value);
BRG_EXPORT int brg_span_set_int(brg_span_t *span, const char *key, int64_t value);
BRG_EXPORT int brg_span_set_double(brg_span_t *span, const char *key, double value);
//  An array of n strings (OTLP arrayValue), e.g.
//  gen_ai.response.finish_reasons. n at most 32.
BRG_EXPORT int brg_span_set_strs(brg_span_t *span, const char *key, const char *const *values,
                                 size_t n);

//  Mark the span failed (OTLP status ERROR) with the code (a BRG_E...
//  code, recorded as attribute "error.type" = its name unless set) and a
//  message (copied, may be NULL: the code's text).
BRG_EXPORT void brg_span_set_error(brg_span_t *span, int code, const char *message);

//  The span's own context (its id as span_id): for a message made outside
//  the inheritance rules, or a traceparent header.
BRG_EXPORT void brg_span_context(const brg_span_t *span, brg_trace_ctx_t *out);

//  Stop the span being ctx's current context (NULL ctx: the calling
//  thread's) without ending it: what the call sends from now on is no
//  longer its child. Nothing happens if it is not current there.
BRG_EXPORT void brg_span_leave(brg_ctx_t *ctx, brg_span_t *span);

//  End the span now: it is queued for export and freed, *span_p set to
//  NULL. If it is ctx's current context (NULL ctx: the calling thread's),
//  the context current before it comes back. Accepts a pointer to NULL.
BRG_EXPORT void brg_span_end(brg_ctx_t *ctx, brg_span_t **span_p);

#endif
