//  tracing - trace context propagation and the span exporter (internal).
//
//  The public side is include/brigade/trace.h; the design notes are in
//  trace.c. This header holds what the send paths inline: the stamp that
//  copies the current context into an outgoing message. With no context
//  current that is one byte loaded, one stored and a branch not taken.
#ifndef BRG_RUNTIME_TRACING_H
#define BRG_RUNTIME_TRACING_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "brigade/trace.h"
#include "msg.h"

//  msg->trace_flags and brg__tctx_t.flags: a context is there. The low
//  bits are the W3C trace-flags (BRG_TRACE_SAMPLED; the 6 low bits are kept).
#define BRG__TRACE_PRESENT 0x80
#define BRG__TRACE_W3C_MASK 0x3f
//  A ctx's trace_flags only (actor.h): the current context is ctx->trace,
//  not the message's.
#define BRG__TRACE_OWN 0x40

//  A context in the envelope's layout: flags, then trace id and span id.
typedef struct brg__tctx {
    uint8_t flags;   // 0: none; else BRG__TRACE_PRESENT | W3C flags
    uint8_t ids[24]; // trace id (16), span id (8)
} brg__tctx_t;

typedef struct brg__tracer brg__tracer_t;

//  The current context of a thread outside the system (brg_trace_set).
//  Thread: its own.
extern _Thread_local brg__tctx_t brg__trace_tls __attribute__((tls_model("initial-exec")));

//  Copy tc (flags 0: none) into msg.
static inline void
brg__trace_put(brg_msg_t *msg, const brg__tctx_t *tc)
{
    msg->trace_flags = tc->flags;
    if (__builtin_expect(tc->flags != 0, 0))
        memcpy(msg->trace_ids, tc->ids, sizeof msg->trace_ids);
}

//  The context msg carries, into *out.
static inline void
brg__trace_get(const brg_msg_t *msg, brg__tctx_t *out)
{
    out->flags = msg->trace_flags;
    if (msg->trace_flags)
        memcpy(out->ids, msg->trace_ids, sizeof out->ids);
}

//  Stamp msg, about to be sent from a behaviour call, with ctx's current
//  context (actor.h's struct brg_ctx: the open span's, else the message's).
//  Defined in actor.h, which knows the ctx layout.

//  Stamp msg, about to be sent from outside the system, with the thread's.
static inline void
brg__trace_stamp_tls(brg_msg_t *msg)
{
    brg__trace_put(msg, &brg__trace_tls);
}

//  The system's exporter, or NULL when tracing is off. Made by system new
//  (cfg, node UUID text and sys for its log), destroyed by system destroy
//  after every worker has stopped: what is still queued is written first.
brg__tracer_t *brg__tracer_new(brg_system_t *sys, const brg_config_t *cfg, const char *node);
void brg__tracer_destroy(brg__tracer_t **self_p);

//  A span as a child of parent (flags 0: a new trace), or a new trace's
//  root when root. NULL when tracer is NULL, parent is present and not
//  sampled, or out of memory. The span is not made anyone's current.
brg_span_t *brg__span_new(brg__tracer_t *tracer, const brg__tctx_t *parent, bool root,
                          const char *name, brg_span_kind_t kind);

//  The span's own context (its id as span id).
void brg__span_tctx(const brg_span_t *span, brg__tctx_t *out);

//  End and queue the span with status (BRG_OK, or a code: OTLP ERROR).
void brg__span_finish(brg_span_t *span, int status);

//  What an ask keeps for tracing: the context current when it was made
//  (restored for its callback) and its span (NULL when not recording).
typedef struct brg__ask_trace {
    brg__tctx_t parent;
    brg_span_t *span;
} brg__ask_trace_t;

#endif
