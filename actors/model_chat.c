//  model_chat - the chat protocol's codec: the request builder, the readers
//  and the encoders of replies, errors, stream fragments and ends, stats.
//
//  Design notes.
//  Wire layout (msgpack values after the tag; see brigade/model.h for the
//  meaning of each field):
//    chat       stream_id, model|nil, temperature (double, -1 unset),
//               max_tokens, json_mode, retry_unsafe, timeout_ms,
//               max_attempts, [message...], [tool...], then optionally
//               stream_to (a ref; written only when set, so a reader
//               that predates it ignores it and one that knows it reads
//               a request without it as "the sender")
//      message  [role, content|nil, tool_call_id|nil, [call...]]
//      call     [id, name, arguments]
//      tool     [name, description, parameters]
//    chat_reply text, finish_reason, [call...], prompt, completion, total,
//               model, backend, attempts
//    error      code, http_status, type, message, retry_after_ms, attempts,
//               stream_id
//    delta      stream_id, text, tool_index, id, name, arguments
//    end        stream_id, status, finish_reason, prompt, completion, total,
//               model, backend, attempts, http_status, type, message,
//               retry_after_ms
//    cancel     stream_id
//    stats      the brg_model_stats_t fields in order (uints)
//  brg_model_read_chat walks the whole request once and checks every value,
//  so the view functions (which walk again from a saved position) cannot
//  meet a malformed value; they still check and answer BRG_EBADMSG rather
//  than trust that.
#include "actors_internal.h"

#define S_MODEL_NAME_MAX 256

static const char *const s_role_names[] = {"system", "user", "assistant", "tool"};

const char *
brg_model_role_name(brg_model_role_t role)
{
    return (unsigned)role < 4 ? s_role_names[role] : "unknown";
}

//  ---------------------------------------------------------------------------
//  Helpers

//  Valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF), as JSON
//  strings must be.
bool
brg__model_utf8_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p++;
        if (c < 0x80)
            continue;
        unsigned need, min, cp;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1, min = 0x80, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            need = 2, min = 0x800, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            need = 3, min = 0x10000, cp = c & 0x07;
        else
            return false;
        if ((size_t)(end - p) < need)
            return false;
        for (unsigned k = 0; k < need; k++, p++) {
            if ((*p & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (*p & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
    }
    return true;
}

//  A copied string with its length.
typedef struct {
    char *s;
    size_t len;
} s_str_t;

//  Copy s (len 0: strlen) into out; s NULL gives NULL. BRG_OK, BRG_EINVAL
//  (over BRG_TEXT_MAX or not UTF-8) or BRG_ENOMEM.
static int
s_copy(s_str_t *out, const char *s, size_t len)
{
    out->s = NULL;
    out->len = 0;
    if (!s)
        return BRG_OK;
    if (!len)
        len = strlen(s);
    if (len > BRG_TEXT_MAX || !brg__model_utf8_ok(s, len))
        return BRG_EINVAL;
    if (!(out->s = malloc(len + 1)))
        return BRG_ENOMEM;
    memcpy(out->s, s, len);
    out->s[len] = '\0';
    out->len = len;
    return BRG_OK;
}

static int
s_add_str(brg_msg_t *msg, const s_str_t *s)
{
    return s->s ? brg_msg_add_strn(msg, s->s, s->len) : brg_msg_add_nil(msg);
}

//  Add a string (NULL: "", len 0: strlen).
static int
s_add_text(brg_msg_t *msg, const char *s, size_t len)
{
    if (!s)
        return brg_msg_add_strn(msg, "", 0);
    return brg_msg_add_strn(msg, s, len ? len : strlen(s));
}

//  Read a string or nil (NULL, 0).
static int
s_read_str_or_nil(const brg_msg_t *msg, size_t *pos, const char **s, size_t *len)
{
    if (brg_msg_peek(msg, *pos) == BRG_TYPE_NIL) {
        *s = NULL;
        *len = 0;
        return brg_msg_read_nil(msg, pos);
    }
    return brg_msg_read_str(msg, pos, s, len);
}

static int
s_read_int_range(const brg_msg_t *msg, size_t *pos, int64_t lo, int64_t hi, int64_t *out)
{
    if (brg_msg_read_int(msg, pos, out) != BRG_OK || *out < lo || *out > hi)
        return BRG_EBADMSG;
    return BRG_OK;
}

//  A tool name as the OpenAI API accepts: [A-Za-z0-9_-]{1,64}.
static bool
s_tool_name_ok(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

//  ---------------------------------------------------------------------------
//  The builder

typedef struct {
    s_str_t id, name, arguments;
} s_call_t;

typedef struct {
    brg_model_role_t role;
    s_str_t content;      // s NULL: none
    s_str_t tool_call_id; // role TOOL only
    s_call_t *calls;
    size_t n_calls;
} s_message_t;

typedef struct {
    s_str_t name, description, parameters;
} s_tool_t;

struct brg_model_chat {
    s_message_t *messages;
    size_t n_messages, cap_messages;
    s_tool_t *tools;
    size_t n_tools, cap_tools;
    s_str_t model;
    double temperature; // -1: unset
    int max_tokens;     // 0: unset
    bool json_mode;
    bool retry_unsafe;
    uint64_t stream_id;
    brg_ref_t stream_to; // none: the sender
    int timeout_ms;      // 0: unset
    int max_attempts;    // 0: unset
};

static void
s_calls_free(s_call_t *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(calls[i].id.s);
        free(calls[i].name.s);
        free(calls[i].arguments.s);
    }
    free(calls);
}

static void
s_message_free(s_message_t *m)
{
    free(m->content.s);
    free(m->tool_call_id.s);
    s_calls_free(m->calls, m->n_calls);
}

brg_model_chat_t *
brg_model_chat_new(void)
{
    brg_model_chat_t *chat = calloc(1, sizeof(*chat));
    if (chat)
        chat->temperature = -1;
    return chat;
}

void
brg_model_chat_destroy(brg_model_chat_t **chat_p)
{
    assert(chat_p);
    brg_model_chat_t *chat = *chat_p;
    if (!chat)
        return;
    for (size_t i = 0; i < chat->n_messages; i++)
        s_message_free(&chat->messages[i]);
    free(chat->messages);
    for (size_t i = 0; i < chat->n_tools; i++) {
        free(chat->tools[i].name.s);
        free(chat->tools[i].description.s);
        free(chat->tools[i].parameters.s);
    }
    free(chat->tools);
    free(chat->model.s);
    free(chat);
    *chat_p = NULL;
}

//  Append m (taken on BRG_OK; freed on error).
static int
s_push_message(brg_model_chat_t *chat, s_message_t *m)
{
    if (chat->n_messages >= BRG_MODEL_MESSAGES_MAX) {
        s_message_free(m);
        return BRG_EINVAL;
    }
    if (chat->n_messages == chat->cap_messages) {
        size_t cap = chat->cap_messages ? 2 * chat->cap_messages : 8;
        s_message_t *more = realloc(chat->messages, cap * sizeof(*more));
        if (!more) {
            s_message_free(m);
            return BRG_ENOMEM;
        }
        chat->messages = more;
        chat->cap_messages = cap;
    }
    chat->messages[chat->n_messages++] = *m;
    return BRG_OK;
}

int
brg_model_chat_add_message(brg_model_chat_t *chat, brg_model_role_t role, const char *content,
                           size_t len)
{
    assert(chat);
    if ((unsigned)role > BRG_MODEL_ASSISTANT || !content)
        return BRG_EINVAL;
    s_message_t m = {.role = role};
    int rc = s_copy(&m.content, content, len);
    if (rc == BRG_OK && !m.content.s)
        rc = BRG_ENOMEM;
    if (rc != BRG_OK) {
        s_message_free(&m);
        return rc;
    }
    return s_push_message(chat, &m);
}

//  Copy n calls into *out. BRG_OK, BRG_EINVAL or BRG_ENOMEM.
static int
s_copy_calls(s_call_t **out, const brg_model_tool_call_t *calls, size_t n)
{
    *out = NULL;
    if (n == 0)
        return BRG_OK;
    s_call_t *c = calloc(n, sizeof(*c));
    if (!c)
        return BRG_ENOMEM;
    int rc = BRG_OK;
    for (size_t i = 0; i < n && rc == BRG_OK; i++) {
        if (!calls[i].id || !calls[i].name) {
            rc = BRG_EINVAL;
            break;
        }
        rc = s_copy(&c[i].id, calls[i].id, calls[i].id_len);
        if (rc == BRG_OK)
            rc = s_copy(&c[i].name, calls[i].name, calls[i].name_len);
        if (rc == BRG_OK)
            rc = s_copy(&c[i].arguments, calls[i].arguments ? calls[i].arguments : "{}",
                        calls[i].arguments ? calls[i].arguments_len : 0);
        if (rc == BRG_OK && (c[i].id.len == 0 || !s_tool_name_ok(c[i].name.s, c[i].name.len)))
            rc = BRG_EINVAL;
    }
    if (rc != BRG_OK) {
        s_calls_free(c, n);
        return rc;
    }
    *out = c;
    return BRG_OK;
}

int
brg_model_chat_add_assistant(brg_model_chat_t *chat, const char *content,
                             const brg_model_tool_call_t *calls, size_t n_calls)
{
    assert(chat);
    if ((!content && n_calls == 0) || n_calls > BRG_MODEL_TOOL_CALLS_MAX || (n_calls && !calls))
        return BRG_EINVAL;
    s_message_t m = {.role = BRG_MODEL_ASSISTANT};
    int rc = s_copy(&m.content, content, 0);
    if (rc == BRG_OK && content && !m.content.s)
        rc = BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = s_copy_calls(&m.calls, calls, n_calls);
    if (rc == BRG_OK)
        m.n_calls = n_calls;
    if (rc != BRG_OK) {
        s_message_free(&m);
        return rc;
    }
    return s_push_message(chat, &m);
}

int
brg_model_chat_add_tool_result(brg_model_chat_t *chat, const char *tool_call_id,
                               const char *content, size_t len)
{
    assert(chat);
    if (!tool_call_id || !*tool_call_id || !content)
        return BRG_EINVAL;
    s_message_t m = {.role = BRG_MODEL_TOOL};
    int rc = s_copy(&m.content, content, len);
    if (rc == BRG_OK)
        rc = s_copy(&m.tool_call_id, tool_call_id, 0);
    if (rc == BRG_OK && (!m.content.s || !m.tool_call_id.s))
        rc = BRG_ENOMEM;
    if (rc != BRG_OK) {
        s_message_free(&m);
        return rc;
    }
    return s_push_message(chat, &m);
}

int
brg_model_chat_add_tool(brg_model_chat_t *chat, const brg_model_tool_t *tool)
{
    assert(chat);
    assert(tool);
    if (!tool->name || chat->n_tools >= BRG_MODEL_TOOLS_MAX)
        return BRG_EINVAL;
    s_tool_t t = {0};
    int rc = s_copy(&t.name, tool->name, tool->name_len);
    if (rc == BRG_OK)
        rc = s_copy(&t.description, tool->description ? tool->description : "",
                    tool->description ? tool->description_len : 0);
    if (rc == BRG_OK)
        rc = s_copy(&t.parameters, tool->parameters ? tool->parameters : "{\"type\":\"object\"}",
                    tool->parameters ? tool->parameters_len : 0);
    if (rc == BRG_OK && (!t.name.s || !t.description.s || !t.parameters.s))
        rc = BRG_ENOMEM;
    if (rc == BRG_OK && !s_tool_name_ok(t.name.s, t.name.len))
        rc = BRG_EINVAL;
    if (rc == BRG_OK && chat->n_tools == chat->cap_tools) {
        size_t cap = chat->cap_tools ? 2 * chat->cap_tools : 4;
        s_tool_t *more = realloc(chat->tools, cap * sizeof(*more));
        if (more) {
            chat->tools = more;
            chat->cap_tools = cap;
        } else {
            rc = BRG_ENOMEM;
        }
    }
    if (rc != BRG_OK) {
        free(t.name.s);
        free(t.description.s);
        free(t.parameters.s);
        return rc;
    }
    chat->tools[chat->n_tools++] = t;
    return BRG_OK;
}

int
brg_model_chat_set_model(brg_model_chat_t *chat, const char *model)
{
    assert(chat);
    s_str_t copy = {NULL, 0};
    if (model && (!*model || strlen(model) > S_MODEL_NAME_MAX))
        return BRG_EINVAL;
    int rc = s_copy(&copy, model, 0);
    if (rc != BRG_OK)
        return rc;
    if (model && !copy.s)
        return BRG_ENOMEM;
    free(chat->model.s);
    chat->model = copy;
    return BRG_OK;
}

int
brg_model_chat_set_temperature(brg_model_chat_t *chat, double temperature)
{
    assert(chat);
    if (!(temperature >= 0 && temperature <= 2))
        return BRG_EINVAL;
    chat->temperature = temperature;
    return BRG_OK;
}

int
brg_model_chat_set_max_tokens(brg_model_chat_t *chat, int max_tokens)
{
    assert(chat);
    if (max_tokens < 1 || max_tokens > 1000000)
        return BRG_EINVAL;
    chat->max_tokens = max_tokens;
    return BRG_OK;
}

void
brg_model_chat_set_json_mode(brg_model_chat_t *chat, bool on)
{
    assert(chat);
    chat->json_mode = on;
}

void
brg_model_chat_set_stream(brg_model_chat_t *chat, uint64_t stream_id)
{
    assert(chat);
    chat->stream_id = stream_id;
}

void
brg_model_chat_set_stream_to(brg_model_chat_t *chat, brg_ref_t to)
{
    assert(chat);
    chat->stream_to = to;
}

int
brg_model_chat_set_timeout(brg_model_chat_t *chat, int timeout_ms)
{
    assert(chat);
    if (timeout_ms < 1 || timeout_ms > 3600000)
        return BRG_EINVAL;
    chat->timeout_ms = timeout_ms;
    return BRG_OK;
}

int
brg_model_chat_set_max_attempts(brg_model_chat_t *chat, int max_attempts)
{
    assert(chat);
    if (max_attempts < 1 || max_attempts > 10)
        return BRG_EINVAL;
    chat->max_attempts = max_attempts;
    return BRG_OK;
}

void
brg_model_chat_set_retry_unsafe(brg_model_chat_t *chat, bool on)
{
    assert(chat);
    chat->retry_unsafe = on;
}

static int
s_add_call(brg_msg_t *msg, const s_str_t *id, const s_str_t *name, const s_str_t *arguments)
{
    int rc = brg_msg_add_array(msg, 3);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, id->s, id->len);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, name->s, name->len);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, arguments->s, arguments->len);
    return rc;
}

brg_msg_t *
brg_model_chat_msg(const brg_model_chat_t *chat)
{
    assert(chat);
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_CHAT);
    int rc = msg ? brg_msg_add_uint(msg, chat->stream_id) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = s_add_str(msg, &chat->model);
    if (rc == BRG_OK)
        rc = brg_msg_add_double(msg, chat->temperature);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, chat->max_tokens);
    if (rc == BRG_OK)
        rc = brg_msg_add_bool(msg, chat->json_mode);
    if (rc == BRG_OK)
        rc = brg_msg_add_bool(msg, chat->retry_unsafe);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, chat->timeout_ms);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, chat->max_attempts);
    if (rc == BRG_OK)
        rc = brg_msg_add_array(msg, (uint32_t)chat->n_messages);
    for (size_t i = 0; rc == BRG_OK && i < chat->n_messages; i++) {
        const s_message_t *m = &chat->messages[i];
        rc = brg_msg_add_array(msg, 4);
        if (rc == BRG_OK)
            rc = brg_msg_add_int(msg, m->role);
        if (rc == BRG_OK)
            rc = s_add_str(msg, &m->content);
        if (rc == BRG_OK)
            rc = s_add_str(msg, &m->tool_call_id);
        if (rc == BRG_OK)
            rc = brg_msg_add_array(msg, (uint32_t)m->n_calls);
        for (size_t k = 0; rc == BRG_OK && k < m->n_calls; k++)
            rc = s_add_call(msg, &m->calls[k].id, &m->calls[k].name, &m->calls[k].arguments);
    }
    if (rc == BRG_OK)
        rc = brg_msg_add_array(msg, (uint32_t)chat->n_tools);
    for (size_t i = 0; rc == BRG_OK && i < chat->n_tools; i++)
        rc = s_add_call(msg, &chat->tools[i].name, &chat->tools[i].description,
                        &chat->tools[i].parameters);
    if (rc == BRG_OK && !brg_ref_is_none(chat->stream_to))
        rc = brg_msg_add_ref(msg, chat->stream_to);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

//  ---------------------------------------------------------------------------
//  Reading a request

//  Read a [a, b, c] string triple (a call or a tool).
static int
s_read_triple(const brg_msg_t *msg, size_t *pos, const char **a, size_t *a_len, const char **b,
              size_t *b_len, const char **c, size_t *c_len)
{
    uint32_t n;
    if (brg_msg_read_array(msg, pos, &n) != BRG_OK || n != 3 ||
        brg_msg_read_str(msg, pos, a, a_len) != BRG_OK ||
        brg_msg_read_str(msg, pos, b, b_len) != BRG_OK ||
        brg_msg_read_str(msg, pos, c, c_len) != BRG_OK)
        return BRG_EBADMSG;
    return BRG_OK;
}

//  Read one message at *pos (moves past it, calls included).
static int
s_read_message(const brg_msg_t *msg, size_t *pos, brg_model_message_t *out)
{
    uint32_t n;
    int64_t role;
    brg_model_message_t m = {0};
    if (brg_msg_read_array(msg, pos, &n) != BRG_OK || n != 4 ||
        s_read_int_range(msg, pos, 0, BRG_MODEL_TOOL, &role) != BRG_OK ||
        s_read_str_or_nil(msg, pos, &m.content, &m.content_len) != BRG_OK ||
        s_read_str_or_nil(msg, pos, &m.tool_call_id, &m.tool_call_id_len) != BRG_OK ||
        brg_msg_read_array(msg, pos, &m.n_tool_calls) != BRG_OK ||
        m.n_tool_calls > BRG_MODEL_TOOL_CALLS_MAX)
        return BRG_EBADMSG;
    m.role = (brg_model_role_t)role;
    // A tool message answers a call; only an assistant asks for calls; every
    // message has content or calls.
    if ((m.role == BRG_MODEL_TOOL) != (m.tool_call_id != NULL) ||
        (m.role != BRG_MODEL_ASSISTANT && m.n_tool_calls) || (!m.content && !m.n_tool_calls))
        return BRG_EBADMSG;
    m.msg_ = msg;
    m.calls_pos_ = *pos;
    for (uint32_t k = 0; k < m.n_tool_calls; k++) {
        const char *s;
        size_t len;
        if (s_read_triple(msg, pos, &s, &len, &s, &len, &s, &len) != BRG_OK)
            return BRG_EBADMSG;
    }
    *out = m;
    return BRG_OK;
}

int
brg_model_read_chat(const brg_msg_t *msg, brg_model_chat_view_t *out)
{
    assert(msg);
    assert(out);
    if (!brg_msg_is(msg, BRG_MODEL_TAG_CHAT))
        return BRG_ETYPE;
    brg_model_chat_view_t v = {0};
    size_t pos = 0;
    int64_t max_tokens, timeout, attempts;
    if (brg_msg_read_uint(msg, &pos, &v.stream_id) != BRG_OK ||
        s_read_str_or_nil(msg, &pos, &v.model, &v.model_len) != BRG_OK ||
        brg_msg_read_double(msg, &pos, &v.temperature) != BRG_OK ||
        s_read_int_range(msg, &pos, 0, 1000000, &max_tokens) != BRG_OK ||
        brg_msg_read_bool(msg, &pos, &v.json_mode) != BRG_OK ||
        brg_msg_read_bool(msg, &pos, &v.retry_unsafe) != BRG_OK ||
        s_read_int_range(msg, &pos, 0, 3600000, &timeout) != BRG_OK ||
        s_read_int_range(msg, &pos, 0, 10, &attempts) != BRG_OK ||
        brg_msg_read_array(msg, &pos, &v.n_messages) != BRG_OK ||
        v.n_messages > BRG_MODEL_MESSAGES_MAX)
        return BRG_EBADMSG;
    if (!(v.temperature <= 2) || (v.temperature < 0 && v.temperature != -1) ||
        (v.model && (v.model_len == 0 || v.model_len > S_MODEL_NAME_MAX)))
        return BRG_EBADMSG;
    v.max_tokens = (int)max_tokens;
    v.timeout_ms = (int)timeout;
    v.max_attempts = (int)attempts;
    v.msg_ = msg;
    v.messages_pos_ = pos;
    for (uint32_t i = 0; i < v.n_messages; i++) {
        brg_model_message_t m;
        if (s_read_message(msg, &pos, &m) != BRG_OK)
            return BRG_EBADMSG;
    }
    if (brg_msg_read_array(msg, &pos, &v.n_tools) != BRG_OK || v.n_tools > BRG_MODEL_TOOLS_MAX)
        return BRG_EBADMSG;
    v.tools_pos_ = pos;
    for (uint32_t i = 0; i < v.n_tools; i++) {
        const char *s;
        size_t len;
        if (s_read_triple(msg, &pos, &s, &len, &s, &len, &s, &len) != BRG_OK)
            return BRG_EBADMSG;
    }
    // Optional, last: where the stream's fragments go.
    if (brg_msg_peek(msg, pos) != BRG_TYPE_NONE &&
        (brg_msg_read_ref(msg, &pos, &v.stream_to) != BRG_OK || brg_ref_is_none(v.stream_to)))
        return BRG_EBADMSG;
    *out = v;
    return BRG_OK;
}

int
brg_model_chat_message(const brg_model_chat_view_t *chat, uint32_t i, brg_model_message_t *out)
{
    assert(chat);
    assert(out);
    if (i >= chat->n_messages)
        return BRG_ERANGE;
    size_t pos = chat->messages_pos_;
    brg_model_message_t m;
    for (uint32_t k = 0; k <= i; k++)
        if (s_read_message(chat->msg_, &pos, &m) != BRG_OK)
            return BRG_EBADMSG;
    *out = m;
    return BRG_OK;
}

//  Call i of the calls array starting at pos.
static int
s_call_at(const brg_msg_t *msg, size_t pos, uint32_t n, uint32_t i, brg_model_tool_call_t *out)
{
    if (i >= n)
        return BRG_ERANGE;
    brg_model_tool_call_t c;
    for (uint32_t k = 0; k <= i; k++)
        if (s_read_triple(msg, &pos, &c.id, &c.id_len, &c.name, &c.name_len, &c.arguments,
                          &c.arguments_len) != BRG_OK)
            return BRG_EBADMSG;
    *out = c;
    return BRG_OK;
}

int
brg_model_message_tool_call(const brg_model_message_t *m, uint32_t i, brg_model_tool_call_t *out)
{
    assert(m);
    assert(out);
    return s_call_at(m->msg_, m->calls_pos_, m->n_tool_calls, i, out);
}

int
brg_model_chat_tool(const brg_model_chat_view_t *chat, uint32_t i, brg_model_tool_t *out)
{
    assert(chat);
    assert(out);
    brg_model_tool_call_t c;
    int rc = s_call_at(chat->msg_, chat->tools_pos_, chat->n_tools, i, &c);
    if (rc == BRG_OK)
        *out = (brg_model_tool_t){c.id, c.id_len, c.name, c.name_len, c.arguments, c.arguments_len};
    return rc;
}

//  ---------------------------------------------------------------------------
//  Replies, errors, stream messages

brg_msg_t *
brg_model_msg_chat_reply(const brg_model_chat_reply_t *in, const brg_model_tool_call_t *calls,
                         size_t n_calls)
{
    assert(in);
    if (n_calls > BRG_MODEL_TOOL_CALLS_MAX || (n_calls && !calls))
        return NULL;
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_CHAT_REPLY);
    int rc =
        msg ? brg_msg_add_strn(msg, in->text ? in->text : "", in->text ? in->len : 0) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = s_add_text(msg, in->finish_reason, in->finish_reason_len);
    if (rc == BRG_OK)
        rc = brg_msg_add_array(msg, (uint32_t)n_calls);
    for (size_t k = 0; rc == BRG_OK && k < n_calls; k++) {
        rc = brg_msg_add_array(msg, 3);
        if (rc == BRG_OK)
            rc = s_add_text(msg, calls[k].id, calls[k].id_len);
        if (rc == BRG_OK)
            rc = s_add_text(msg, calls[k].name, calls[k].name_len);
        if (rc == BRG_OK)
            rc = s_add_text(msg, calls[k].arguments, calls[k].arguments_len);
    }
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, in->prompt_tokens);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, in->completion_tokens);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, in->total_tokens);
    if (rc == BRG_OK)
        rc = s_add_text(msg, in->model, in->model_len);
    if (rc == BRG_OK)
        rc = s_add_text(msg, in->backend, in->backend_len);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, in->attempts);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

//  Usage, model, backend and attempts: the common tail of a reply and an end.
static int
s_read_usage(const brg_msg_t *msg, size_t *pos, brg_model_chat_reply_t *r)
{
    int64_t attempts;
    if (brg_msg_read_int(msg, pos, &r->prompt_tokens) != BRG_OK ||
        brg_msg_read_int(msg, pos, &r->completion_tokens) != BRG_OK ||
        brg_msg_read_int(msg, pos, &r->total_tokens) != BRG_OK ||
        brg_msg_read_str(msg, pos, &r->model, &r->model_len) != BRG_OK ||
        brg_msg_read_str(msg, pos, &r->backend, &r->backend_len) != BRG_OK ||
        s_read_int_range(msg, pos, 0, 1000, &attempts) != BRG_OK)
        return BRG_EBADMSG;
    r->attempts = (int)attempts;
    return BRG_OK;
}

int
brg_model_read_chat_reply(const brg_msg_t *reply, brg_model_chat_reply_t *out)
{
    assert(reply);
    assert(out);
    if (!brg_msg_is(reply, BRG_MODEL_TAG_CHAT_REPLY))
        return BRG_ETYPE;
    brg_model_chat_reply_t r = {0};
    size_t pos = 0;
    if (brg_msg_read_str(reply, &pos, &r.text, &r.len) != BRG_OK ||
        brg_msg_read_str(reply, &pos, &r.finish_reason, &r.finish_reason_len) != BRG_OK ||
        brg_msg_read_array(reply, &pos, &r.n_tool_calls) != BRG_OK ||
        r.n_tool_calls > BRG_MODEL_TOOL_CALLS_MAX)
        return BRG_EBADMSG;
    r.msg_ = reply;
    r.calls_pos_ = pos;
    for (uint32_t k = 0; k < r.n_tool_calls; k++) {
        const char *s;
        size_t len;
        if (s_read_triple(reply, &pos, &s, &len, &s, &len, &s, &len) != BRG_OK)
            return BRG_EBADMSG;
    }
    if (s_read_usage(reply, &pos, &r) != BRG_OK)
        return BRG_EBADMSG;
    *out = r;
    return BRG_OK;
}

int
brg_model_chat_reply_tool_call(const brg_model_chat_reply_t *r, uint32_t i,
                               brg_model_tool_call_t *out)
{
    assert(r);
    assert(out);
    return s_call_at(r->msg_, r->calls_pos_, r->n_tool_calls, i, out);
}

//  http_status, type, message, retry_after_ms: the error detail an error
//  message and an error end share.
static int
s_add_detail(brg_msg_t *msg, const brg_model_error_t *e)
{
    int rc = brg_msg_add_int(msg, e ? e->http_status : 0);
    if (rc == BRG_OK)
        rc = s_add_text(msg, e ? e->type : NULL, e ? e->type_len : 0);
    if (rc == BRG_OK)
        rc = s_add_text(msg, e ? e->message : NULL, e ? e->message_len : 0);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, e ? e->retry_after_ms : -1);
    return rc;
}

static int
s_read_detail(const brg_msg_t *msg, size_t *pos, brg_model_error_t *e)
{
    int64_t http;
    if (s_read_int_range(msg, pos, 0, 999, &http) != BRG_OK ||
        brg_msg_read_str(msg, pos, &e->type, &e->type_len) != BRG_OK ||
        brg_msg_read_str(msg, pos, &e->message, &e->message_len) != BRG_OK ||
        s_read_int_range(msg, pos, -1, INT64_MAX, &e->retry_after_ms) != BRG_OK)
        return BRG_EBADMSG;
    e->http_status = (int)http;
    return BRG_OK;
}

brg_msg_t *
brg_model_msg_error(const brg_model_error_t *err)
{
    assert(err);
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_ERROR);
    int rc = msg ? brg_msg_add_int(msg, err->code) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = s_add_detail(msg, err);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, err->attempts);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(msg, err->stream_id);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_model_read_error(const brg_msg_t *msg, brg_model_error_t *out)
{
    assert(msg);
    assert(out);
    if (!brg_msg_is(msg, BRG_MODEL_TAG_ERROR))
        return BRG_ETYPE;
    brg_model_error_t e = {0};
    size_t pos = 0;
    int64_t code, attempts;
    if (s_read_int_range(msg, &pos, -1000, -1, &code) != BRG_OK ||
        s_read_detail(msg, &pos, &e) != BRG_OK ||
        s_read_int_range(msg, &pos, 0, 1000, &attempts) != BRG_OK ||
        brg_msg_read_uint(msg, &pos, &e.stream_id) != BRG_OK)
        return BRG_EBADMSG;
    e.code = (int)code;
    e.attempts = (int)attempts;
    *out = e;
    return BRG_OK;
}

int
brg_model_chat_status(int status, const brg_msg_t *reply)
{
    if (status != BRG_OK)
        return status;
    if (!reply)
        return BRG_EBADMSG;
    brg_model_error_t e;
    brg_model_chat_reply_t r;
    brg_model_end_t end;
    if (brg_model_read_error(reply, &e) == BRG_OK)
        return e.code;
    if (brg_model_read_chat_reply(reply, &r) == BRG_OK)
        return BRG_OK;
    if (brg_model_read_end(reply, &end) == BRG_OK)
        return end.status;
    return BRG_EBADMSG;
}

brg_msg_t *
brg_model_msg_delta(const brg_model_delta_t *d)
{
    assert(d);
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_DELTA);
    int rc = msg ? brg_msg_add_uint(msg, d->stream_id) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, d->text ? d->text : "", d->text ? d->len : 0);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, d->tool_index < 0 ? -1 : d->tool_index);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, d->id ? d->id : "", d->id ? d->id_len : 0);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, d->name ? d->name : "", d->name ? d->name_len : 0);
    if (rc == BRG_OK)
        rc = brg_msg_add_strn(msg, d->arguments ? d->arguments : "",
                              d->arguments ? d->arguments_len : 0);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_model_read_delta(const brg_msg_t *msg, brg_model_delta_t *out)
{
    assert(msg);
    assert(out);
    if (!brg_msg_is(msg, BRG_MODEL_TAG_DELTA))
        return BRG_ETYPE;
    brg_model_delta_t d = {0};
    size_t pos = 0;
    int64_t index;
    if (brg_msg_read_uint(msg, &pos, &d.stream_id) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &d.text, &d.len) != BRG_OK ||
        s_read_int_range(msg, &pos, -1, BRG_MODEL_TOOL_CALLS_MAX - 1, &index) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &d.id, &d.id_len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &d.name, &d.name_len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &d.arguments, &d.arguments_len) != BRG_OK)
        return BRG_EBADMSG;
    d.tool_index = (int)index;
    *out = d;
    return BRG_OK;
}

brg_msg_t *
brg_model_msg_end(uint64_t stream_id, int status, const brg_model_chat_reply_t *reply,
                  const brg_model_error_t *err)
{
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_END);
    const brg_model_chat_reply_t *r = status == BRG_OK ? reply : NULL;
    int rc = msg ? brg_msg_add_uint(msg, stream_id) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, status);
    if (rc == BRG_OK)
        rc = s_add_text(msg, r ? r->finish_reason : NULL, r ? r->finish_reason_len : 0);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, r ? r->prompt_tokens : -1);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, r ? r->completion_tokens : -1);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, r ? r->total_tokens : -1);
    if (rc == BRG_OK)
        rc = s_add_text(msg, reply ? reply->model : NULL, reply ? reply->model_len : 0);
    if (rc == BRG_OK)
        rc = s_add_text(msg, reply ? reply->backend : NULL, reply ? reply->backend_len : 0);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, status == BRG_OK ? (reply ? reply->attempts : 0)
                                                   : (err ? err->attempts : 0));
    if (rc == BRG_OK)
        rc = s_add_detail(msg, status == BRG_OK ? NULL : err);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_model_read_end(const brg_msg_t *msg, brg_model_end_t *out)
{
    assert(msg);
    assert(out);
    if (!brg_msg_is(msg, BRG_MODEL_TAG_END))
        return BRG_ETYPE;
    brg_model_end_t e;
    memset(&e, 0, sizeof e);
    size_t pos = 0;
    int64_t status;
    if (brg_msg_read_uint(msg, &pos, &e.stream_id) != BRG_OK ||
        s_read_int_range(msg, &pos, -1000, 0, &status) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &e.reply.finish_reason, &e.reply.finish_reason_len) != BRG_OK ||
        s_read_usage(msg, &pos, &e.reply) != BRG_OK || s_read_detail(msg, &pos, &e.error) != BRG_OK)
        return BRG_EBADMSG;
    e.status = (int)status;
    e.reply.text = "";
    e.reply.msg_ = msg;
    e.error.code = e.status;
    e.error.attempts = e.reply.attempts;
    e.error.stream_id = e.stream_id;
    *out = e;
    return BRG_OK;
}

brg_msg_t *
brg_model_msg_cancel(uint64_t stream_id)
{
    brg_msg_t *msg = brg_msg_new(BRG_MODEL_TAG_CANCEL);
    if (msg && brg_msg_add_uint(msg, stream_id) != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

brg_msg_t *
brg_model_msg_stats(void)
{
    return brg_msg_new(BRG_MODEL_TAG_STATS);
}

#define S_STATS_FIELDS 9

int
brg_model_read_stats(const brg_msg_t *reply, brg_model_stats_t *out)
{
    assert(reply);
    assert(out);
    uint64_t f[S_STATS_FIELDS];
    int rc = brg__actors_read_uints(reply, BRG_MODEL_TAG_STATS, f, S_STATS_FIELDS);
    if (rc != BRG_OK)
        return rc;
    *out = (brg_model_stats_t){f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]};
    return BRG_OK;
}

//  The stats reply, for the backends.
brg_msg_t *
brg__model_msg_stats_reply(const brg_model_stats_t *s)
{
    uint64_t f[S_STATS_FIELDS] = {s->requests,          s->errors,        s->retries,
                                  s->retries_throttled, s->prompt_tokens, s->completion_tokens,
                                  s->streams,           s->cancelled,     s->in_flight};
    brg_msg_t *reply = brg_msg_new(BRG_MODEL_TAG_STATS);
    for (size_t k = 0; reply && k < S_STATS_FIELDS; k++)
        if (brg_msg_add_uint(reply, f[k]) != BRG_OK)
            brg_msg_destroy(&reply);
    return reply;
}

static int
s_read_stats(const brg_msg_t *reply, void *out)
{
    return brg_model_read_stats(reply, out);
}

int
brg_model_stats(brg_system_t *sys, brg_ref_t model, int timeout_ms, brg_model_stats_t *out)
{
    assert(sys);
    assert(out);
    return brg__actors_ask_read(sys, model, brg_model_msg_stats(), timeout_ms, s_read_stats, out);
}
