//  agent_history - the message history of a conversation (agent_history.h).
//  Part of the agent library (BRG_AGENT_SOURCE, actors/CMakeLists.txt): only agent.c uses it.
#include "actors_internal.h"

#include "agent_history.h"

#define S_TOKENS_PER_MESSAGE 4

static size_t
s_quarters(size_t bytes)
{
    return (bytes + 3) / 4;
}

size_t
brg__history_estimate(const brg__hmsg_t *m)
{
    size_t t = S_TOKENS_PER_MESSAGE + s_quarters(m->len);
    for (size_t i = 0; i < m->n_calls; i++)
        t += s_quarters(strlen(m->calls[i].name)) + s_quarters(strlen(m->calls[i].arguments)) +
             s_quarters(strlen(m->calls[i].id));
    return t;
}

static char *
s_dupn(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        if (len)
            memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static void
s_msg_free(brg__hmsg_t *m)
{
    free(m->content);
    for (size_t i = 0; i < m->n_calls; i++) {
        free(m->calls[i].id);
        free(m->calls[i].name);
        free(m->calls[i].arguments);
    }
    free(m->calls);
    free(m->call_id);
    free(m->name);
    memset(m, 0, sizeof(*m));
}

int
brg__history_add(brg__history_t *h, brg_conv_role_t role, const char *content, size_t len,
                 const char *call_id, const char *name, bool is_error, brg__hmsg_t **out)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        brg__hmsg_t *v = realloc(h->v, cap * sizeof(*v));
        if (!v)
            return BRG_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    brg__hmsg_t m = {0};
    m.role = role;
    m.is_error = is_error;
    m.content = s_dupn(content ? content : "", content ? len : 0);
    m.len = content ? len : 0;
    m.call_id = call_id ? s_dupn(call_id, strlen(call_id)) : NULL;
    m.name = name ? s_dupn(name, strlen(name)) : NULL;
    if (!m.content || (call_id && !m.call_id) || (name && !m.name)) {
        s_msg_free(&m);
        return BRG_ENOMEM;
    }
    m.tokens = brg__history_estimate(&m);
    h->v[h->n] = m;
    h->tokens += m.tokens;
    if (out)
        *out = &h->v[h->n];
    h->n++;
    return BRG_OK;
}

int
brg__history_add_call(brg__history_t *h, brg__hmsg_t *m, const char *id, size_t id_len,
                      const char *name, size_t name_len, const char *arguments,
                      size_t arguments_len)
{
    brg__hcall_t *calls = realloc(m->calls, (m->n_calls + 1) * sizeof(*calls));
    if (!calls)
        return BRG_ENOMEM;
    m->calls = calls;
    brg__hcall_t c = {s_dupn(id ? id : "", id ? id_len : 0), s_dupn(name, name_len),
                      s_dupn(arguments, arguments_len)};
    if (!c.id || !c.name || !c.arguments) {
        free(c.id);
        free(c.name);
        free(c.arguments);
        return BRG_ENOMEM;
    }
    m->calls[m->n_calls++] = c;
    h->tokens -= m->tokens;
    m->tokens = brg__history_estimate(m);
    h->tokens += m->tokens;
    return BRG_OK;
}

void
brg__history_truncate(brg__history_t *h, size_t from)
{
    while (h->n > from) {
        h->n--;
        h->tokens -= h->v[h->n].tokens;
        s_msg_free(&h->v[h->n]);
    }
}

//  Index of the first user message at or after i, or h->n.
static size_t
s_next_user(const brg__history_t *h, size_t i)
{
    while (i < h->n && h->v[i].role != BRG_CONV_USER)
        i++;
    return i;
}

size_t
brg__history_trim(brg__history_t *h)
{
    size_t dropped = 0;
    size_t first = h->n > 0 && h->v[0].role == BRG_CONV_SYSTEM ? 1 : 0;
    for (;;) {
        bool over = (h->max_messages && h->n > h->max_messages) ||
                    (h->max_tokens && h->tokens > h->max_tokens);
        if (!over)
            break;
        // The oldest turn is [first, end): up to the next user message after it.
        size_t end = s_next_user(h, first + 1);
        if (end >= h->n)
            break; // only the turn being answered is left
        size_t k = end - first;
        for (size_t i = first; i < end; i++) {
            h->tokens -= h->v[i].tokens;
            s_msg_free(&h->v[i]);
        }
        memmove(&h->v[first], &h->v[end], (h->n - end) * sizeof(h->v[0]));
        h->n -= k;
        dropped += k;
    }
    h->dropped += dropped;
    return dropped;
}

void
brg__history_free(brg__history_t *h)
{
    brg__history_truncate(h, 0);
    free(h->v);
    h->v = NULL;
    h->cap = 0;
}
