//  tool - the tool protocol and the ready-made tool behaviour.
//
//  Design notes.
//
//  The protocol is two messages: the call [name, arguments, id] and the
//  result [is_error, text]. The arguments travel as the JSON text the model
//  wrote, unparsed: the tool parses them (brg_tool_arg_* do it with jansson
//  for the flat objects most tools take), so a tool on another node, in
//  another language, sees exactly what the model sent.
//
//  brg_tool_spawn's actor owns nothing but (fn, arg): its state is a small
//  struct allocated at spawn and freed by the state destructor. Each call
//  gets a fresh output buffer on the stack of the behaviour (a heap string
//  grown by the printf helpers), answered and freed before the behaviour
//  returns; so a tool holds no memory between calls.
#include "actors_internal.h"

#include <jansson.h>
#include <stdarg.h>

int
brg_tool_check(const brg_tool_t *tool)
{
    if (!tool || !tool->name)
        return BRG_EINVAL;
    size_t n = strlen(tool->name);
    if (n == 0 || n > BRG_TOOL_NAME_MAX)
        return BRG_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = tool->name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return BRG_EINVAL;
    }
    if (tool->parameters) {
        json_t *schema = json_loads(tool->parameters, 0, NULL);
        bool ok = json_is_object(schema);
        json_decref(schema);
        if (!ok)
            return BRG_EINVAL;
    }
    if (brg_ref_is_none(tool->ref)) {
        if (!tool->actor_name || !tool->actor_name[0] || strlen(tool->actor_name) > BRG_NAME_MAX)
            return BRG_EINVAL;
    }
    return BRG_OK;
}

brg_msg_t *
brg_tool_msg_call(const char *name, const char *arguments, const char *id)
{
    if (!name)
        return NULL;
    if (!arguments || !arguments[0])
        arguments = "{}";
    if (!id)
        id = "";
    if (strlen(name) > BRG_TOOL_TEXT_MAX || strlen(arguments) > BRG_TOOL_TEXT_MAX ||
        strlen(id) > BRG_TOOL_TEXT_MAX)
        return NULL;
    brg_msg_t *msg = brg_msg_new(BRG_TOOL_TAG_CALL);
    if (msg && (brg_msg_add_str(msg, name) != BRG_OK || brg_msg_add_str(msg, arguments) != BRG_OK ||
                brg_msg_add_str(msg, id) != BRG_OK))
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_tool_read_call(const brg_msg_t *msg, brg_tool_call_t *out)
{
    if (!brg_msg_is(msg, BRG_TOOL_TAG_CALL))
        return BRG_ETYPE;
    brg_tool_call_t c;
    size_t pos = 0;
    if (brg_msg_read_str(msg, &pos, &c.name, &c.name_len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &c.arguments, &c.arguments_len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &c.id, &c.id_len) != BRG_OK)
        return BRG_EBADMSG;
    *out = c;
    return BRG_OK;
}

int
brg_tool_msg_result(bool is_error, const char *text, size_t len, brg_msg_t **reply)
{
    if (!text)
        text = "";
    if (len == 0)
        len = strlen(text);
    if (len > BRG_TOOL_TEXT_MAX)
        return BRG_EMSGSIZE;
    brg_msg_t *msg = brg_msg_new(BRG_TOOL_TAG_RESULT);
    if (!msg)
        return BRG_ENOMEM;
    int rc = brg_msg_add_bool(msg, is_error);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, text, len);
    if (rc != BRG_OK) {
        brg_msg_destroy(&msg);
        return rc;
    }
    *reply = msg;
    return BRG_OK;
}

int
brg_tool_read_result(const brg_msg_t *msg, brg_tool_result_t *out)
{
    if (!brg_msg_is(msg, BRG_TOOL_TAG_RESULT))
        return BRG_ETYPE;
    brg_tool_result_t r;
    size_t pos = 0;
    if (brg_msg_read_bool(msg, &pos, &r.is_error) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &r.text, &r.len) != BRG_OK)
        return BRG_EBADMSG;
    *out = r;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Arguments

//  The member `key` of the call's arguments object, with its document
//  (caller decrefs *doc), or NULL.
static json_t *
s_arg(const brg_tool_call_t *call, const char *key, json_t **doc)
{
    *doc = json_loadb(call->arguments, call->arguments_len, 0, NULL);
    if (!json_is_object(*doc))
        return NULL;
    return json_object_get(*doc, key);
}

int
brg_tool_arg_str(const brg_tool_call_t *call, const char *key, char *buf, size_t len)
{
    json_t *doc;
    json_t *v = s_arg(call, key, &doc);
    int rc;
    if (!v)
        rc = BRG_ENOTFOUND;
    else if (!json_is_string(v))
        rc = BRG_ETYPE;
    else if (json_string_length(v) >= len)
        rc = BRG_EMSGSIZE;
    else {
        memcpy(buf, json_string_value(v), json_string_length(v) + 1);
        rc = BRG_OK;
    }
    json_decref(doc);
    return rc;
}

int
brg_tool_arg_double(const brg_tool_call_t *call, const char *key, double *out)
{
    json_t *doc;
    json_t *v = s_arg(call, key, &doc);
    int rc;
    if (!v)
        rc = BRG_ENOTFOUND;
    else if (!json_is_number(v))
        rc = BRG_ETYPE;
    else {
        *out = json_number_value(v);
        rc = BRG_OK;
    }
    json_decref(doc);
    return rc;
}

//  ---------------------------------------------------------------------------
//  The ready-made tool actor

struct brg_tool_out {
    char *text;
    size_t len, cap;
    bool is_error;
    int status; // the first failed append, or BRG_OK
};

static int
s_vappend(brg_tool_out_t *out, const char *fmt, va_list ap)
{
    if (out->status != BRG_OK)
        return out->status;
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return out->status = BRG_EINVAL;
    if (out->len + (size_t)n > BRG_TOOL_TEXT_MAX)
        return out->status = BRG_EMSGSIZE;
    if (out->len + (size_t)n + 1 > out->cap) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->len + (size_t)n + 1)
            cap *= 2;
        char *text = realloc(out->text, cap);
        if (!text)
            return out->status = BRG_ENOMEM;
        out->text = text;
        out->cap = cap;
    }
    vsnprintf(out->text + out->len, (size_t)n + 1, fmt, ap);
    out->len += (size_t)n;
    return BRG_OK;
}

int
brg_tool_printf(brg_tool_out_t *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = s_vappend(out, fmt, ap);
    va_end(ap);
    return rc;
}

int
brg_tool_errorf(brg_tool_out_t *out, const char *fmt, ...)
{
    out->is_error = true;
    out->len = 0;
    if (out->text)
        out->text[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    int rc = s_vappend(out, fmt, ap);
    va_end(ap);
    return rc;
}

typedef struct {
    brg_tool_fn fn;
    void *arg;
} s_tool_t;

static int
s_tool_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    const s_tool_t *self = brg_state(ctx);
    if (!brg_msg_is(msg, BRG_TOOL_TAG_CALL))
        return BRG_UNHANDLED;
    brg_tool_call_t call;
    if (brg_tool_read_call(msg, &call) != BRG_OK) {
        brg_reply_error(ctx, BRG_EBADMSG);
        return BRG_OK;
    }
    brg_tool_out_t out = {NULL, 0, 0, false, BRG_OK};
    self->fn(self->arg, &call, &out);
    brg_msg_t *reply = NULL;
    int rc = out.status;
    if (rc == BRG_OK) {
        const char *text = out.len ? out.text : (out.is_error ? "error" : "(no output)");
        rc = brg_tool_msg_result(out.is_error, text, out.len ? out.len : strlen(text), &reply);
    }
    free(out.text);
    if (rc != BRG_OK)
        brg_reply_error(ctx, rc);
    else
        brg_reply(ctx, &reply);
    return BRG_OK;
}

static int
s_tool_spawn(brg_system_t *sys, brg_ctx_t *ctx, const char *name, brg_tool_fn fn, void *arg,
             unsigned flags, brg_ref_t *ref)
{
    if (!fn)
        return BRG_EINVAL;
    s_tool_t *self = malloc(sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    self->fn = fn;
    self->arg = arg;
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = self;
    so.state_destroy = free;
    so.name = name;
    so.label = "brg.tool";
    so.flags = flags & BRG_SPAWN_BLOCKING;
    int rc;
    if (ctx) {
        so.flags |= BRG_SPAWN_LINK;
        rc = brg_spawn(ctx, s_tool_behaviour, &so, ref);
    } else {
        rc = brg_system_spawn(sys, s_tool_behaviour, &so, ref);
    }
    if (rc != BRG_OK)
        free(self);
    return rc;
}

int
brg_tool_spawn(brg_ctx_t *ctx, const char *name, brg_tool_fn fn, void *arg, unsigned flags,
               brg_ref_t *ref)
{
    return s_tool_spawn(brg_ctx_system(ctx), ctx, name, fn, arg, flags, ref);
}

int
brg_tool_spawn_root(brg_system_t *sys, const char *name, brg_tool_fn fn, void *arg, unsigned flags,
                    brg_ref_t *ref)
{
    return s_tool_spawn(sys, NULL, name, fn, arg, flags, ref);
}
