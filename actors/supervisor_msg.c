//  supervisor_msg - the supervisor's message protocol as C calls: request
//  builders, reply readers, and blocking helpers for outside threads
//
//  Design notes.
//  Queries are ordinary messages answered with brg_reply, so an actor asks
//  with brg_ask and a thread outside the system with brg_system_ask; the
//  payloads are documented in docs/SUPERVISION.md so that any msgpack reader
//  can decode them. The readers here never trust the reply's shape: every
//  read is checked and a reply of the wrong shape is BRG_EBADMSG, not a crash.
#include "actors_internal.h"

//  ---------------------------------------------------------------------------
//  Requests

brg_msg_t *
brg_supervisor_msg_which(void)
{
    return brg_msg_new(BRG_SUP_TAG_WHICH);
}

brg_msg_t *
brg_supervisor_msg_count(void)
{
    return brg_msg_new(BRG_SUP_TAG_COUNT);
}

brg_msg_t *
brg_supervisor_msg_start(void)
{
    return brg_msg_new(BRG_SUP_TAG_START);
}

brg_msg_t *
brg_supervisor_msg_terminate(brg_ref_t child)
{
    brg_msg_t *msg = brg_msg_new(BRG_SUP_TAG_TERMINATE);
    if (msg && brg_msg_add_ref(msg, child) != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

//  A request tagged `tag` whose payload is one child id.
static brg_msg_t *
s_msg_id(const char *tag, const char *id)
{
    if (strlen(id) > BRG_CHILD_ID_MAX)
        return NULL;
    brg_msg_t *msg = brg_msg_new(tag);
    if (msg && brg_msg_add_str(msg, id) != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

brg_msg_t *
brg_supervisor_msg_terminate_id(const char *id)
{
    assert(id);
    return s_msg_id(BRG_SUP_TAG_TERMINATE, id);
}

brg_msg_t *
brg_supervisor_msg_restart(const char *id)
{
    assert(id);
    return s_msg_id(BRG_SUP_TAG_RESTART, id);
}

brg_msg_t *
brg_supervisor_msg_delete(const char *id)
{
    assert(id);
    return s_msg_id(BRG_SUP_TAG_DELETE, id);
}

brg_msg_t *
brg_supervisor_msg_get_childspec(const char *id)
{
    assert(id);
    return s_msg_id(BRG_SUP_TAG_SPEC, id);
}

//  ---------------------------------------------------------------------------
//  Replies

//  A ref, or nil for BRG_REF_NONE.
static int
s_read_ref_or_nil(const brg_msg_t *reply, size_t *pos, brg_ref_t *ref)
{
    *ref = BRG_REF_NONE;
    if (brg_msg_peek(reply, *pos) == BRG_TYPE_NIL)
        return brg_msg_read_nil(reply, pos);
    return brg_msg_read_ref(reply, pos, ref);
}

//  An unsigned integer that must be at most max.
static int
s_read_small(const brg_msg_t *reply, size_t *pos, uint64_t max, uint64_t *out)
{
    int rc = brg_msg_read_uint(reply, pos, out);
    return rc == BRG_OK && *out > max ? BRG_EBADMSG : rc;
}

//  One [id, ref | nil, restarts, state, type] entry.
static int
s_read_child(const brg_msg_t *reply, size_t *pos, brg_child_info_t *info)
{
    uint32_t fields;
    uint64_t state = 0, type = 0;
    int rc = brg_msg_read_array(reply, pos, &fields);
    if (rc == BRG_OK && fields != 5)
        rc = BRG_EBADMSG;
    if (rc == BRG_OK)
        rc = brg_msg_read_str_copy(reply, pos, info->id, sizeof(info->id));
    if (rc == BRG_OK)
        rc = s_read_ref_or_nil(reply, pos, &info->ref);
    if (rc == BRG_OK)
        rc = brg_msg_read_uint(reply, pos, &info->restarts);
    if (rc == BRG_OK)
        rc = s_read_small(reply, pos, BRG_CHILD_RESTARTING, &state);
    if (rc == BRG_OK)
        rc = s_read_small(reply, pos, BRG_CHILD_SUPERVISOR, &type);
    info->state = (brg_child_state_t)state;
    info->type = (brg_child_type_t)type;
    return rc;
}

int
brg_supervisor_read_which(const brg_msg_t *reply, brg_child_info_t *out, size_t max)
{
    assert(reply);
    assert(out || max == 0);
    if (!brg_msg_is(reply, BRG_SUP_TAG_WHICH))
        return BRG_ETYPE;
    size_t pos = 0;
    uint32_t count;
    if (brg_msg_read_array(reply, &pos, &count) != BRG_OK || count > INT32_MAX)
        return BRG_EBADMSG;
    for (uint32_t i = 0; i < count; i++) {
        brg_child_info_t info;
        if (s_read_child(reply, &pos, &info) != BRG_OK)
            return BRG_EBADMSG;
        if (i < max)
            out[i] = info;
    }
    return (int)count;
}

int
brg_supervisor_read_count(const brg_msg_t *reply, brg_supervisor_counts_t *out)
{
    assert(reply);
    assert(out);
    if (!brg_msg_is(reply, BRG_SUP_TAG_COUNT))
        return BRG_ETYPE;
    size_t pos = 0;
    brg_supervisor_counts_t counts;
    if (brg_msg_read_uint(reply, &pos, &counts.children) != BRG_OK ||
        brg_msg_read_uint(reply, &pos, &counts.running) != BRG_OK ||
        brg_msg_read_uint(reply, &pos, &counts.restarts) != BRG_OK ||
        brg_msg_read_uint(reply, &pos, &counts.exits) != BRG_OK ||
        brg_msg_read_uint(reply, &pos, &counts.supervisors) != BRG_OK ||
        brg_msg_read_uint(reply, &pos, &counts.workers) != BRG_OK)
        return BRG_EBADMSG;
    *out = counts;
    return BRG_OK;
}

int
brg_supervisor_read_started(const brg_msg_t *reply, brg_ref_t *child)
{
    assert(reply);
    assert(child);
    if (!brg_msg_is(reply, BRG_SUP_TAG_STARTED))
        return BRG_ETYPE;
    size_t pos = 0;
    brg_ref_t ref;
    if (s_read_ref_or_nil(reply, &pos, &ref) != BRG_OK)
        return BRG_EBADMSG;
    *child = ref;
    return BRG_OK;
}

int
brg_supervisor_read_childspec(const brg_msg_t *reply, brg_child_about_t *out)
{
    assert(reply);
    assert(out);
    if (!brg_msg_is(reply, BRG_SUP_TAG_SPEC))
        return BRG_ETYPE;
    size_t pos = 0;
    brg_child_about_t about;
    memset(&about, 0, sizeof(about));
    uint64_t restart, type;
    int64_t shutdown;
    int rc = brg_msg_read_str_copy(reply, &pos, about.id, sizeof(about.id));
    if (rc == BRG_OK && brg_msg_peek(reply, pos) == BRG_TYPE_NIL)
        rc = brg_msg_read_nil(reply, &pos);
    else if (rc == BRG_OK)
        rc = brg_msg_read_str_copy(reply, &pos, about.name, sizeof(about.name));
    if (rc == BRG_OK)
        rc = s_read_small(reply, &pos, BRG_RESTART_TEMPORARY, &restart);
    if (rc == BRG_OK)
        rc = brg_msg_read_int(reply, &pos, &shutdown);
    if (rc == BRG_OK && (shutdown < BRG_SHUTDOWN_INFINITY || shutdown > INT32_MAX))
        rc = BRG_EBADMSG;
    if (rc == BRG_OK)
        rc = s_read_small(reply, &pos, BRG_CHILD_SUPERVISOR, &type);
    if (rc != BRG_OK)
        return BRG_EBADMSG;
    about.restart = (brg_restart_t)restart;
    about.shutdown_ms = (int)shutdown;
    about.type = (brg_child_type_t)type;
    *out = about;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Blocking helpers

//  Ask sup with *req_p (NULL: out of memory) and wait for the reply.
static int
s_ask(brg_system_t *sys, brg_ref_t sup, brg_msg_t **req_p, int timeout_ms, brg_msg_t **reply_p)
{
    *reply_p = NULL;
    if (!*req_p)
        return BRG_ENOMEM;
    return brg_system_ask(sys, sup, req_p, timeout_ms, reply_p);
}

int
brg_supervisor_which(brg_system_t *sys, brg_ref_t sup, int timeout_ms, brg_child_info_t *out,
                     size_t max)
{
    assert(sys);
    assert(out || max == 0);
    brg_msg_t *req = brg_supervisor_msg_which(), *reply;
    int rc = s_ask(sys, sup, &req, timeout_ms, &reply);
    if (rc == BRG_OK)
        rc = brg_supervisor_read_which(reply, out, max);
    brg_msg_destroy(&reply);
    return rc;
}

int
brg_supervisor_count(brg_system_t *sys, brg_ref_t sup, int timeout_ms, brg_supervisor_counts_t *out)
{
    assert(sys);
    assert(out);
    brg_msg_t *req = brg_supervisor_msg_count(), *reply;
    int rc = s_ask(sys, sup, &req, timeout_ms, &reply);
    if (rc == BRG_OK)
        rc = brg_supervisor_read_count(reply, out);
    brg_msg_destroy(&reply);
    return rc;
}

int
brg_supervisor_start_child(brg_system_t *sys, brg_ref_t sup, brg_msg_t **args_p, int timeout_ms,
                           brg_ref_t *child)
{
    assert(sys);
    brg_msg_t *req = NULL;
    if (args_p && *args_p && brg_msg_is(*args_p, BRG_SUP_TAG_START)) {
        req = *args_p;
        *args_p = NULL;
    } else {
        req = brg_supervisor_msg_start();
        // Any other message: its payload becomes the start request's.
        if (req && args_p && *args_p && brg_msg_size(*args_p) > 0 &&
            brg_msg_add_raw(req, brg_msg_data(*args_p), brg_msg_size(*args_p)) != BRG_OK)
            brg_msg_destroy(&req);
        if (args_p)
            brg_msg_destroy(args_p);
    }
    brg_msg_t *reply;
    int rc = s_ask(sys, sup, &req, timeout_ms, &reply);
    brg_ref_t ref;
    if (rc == BRG_OK && (rc = brg_supervisor_read_started(reply, &ref)) == BRG_OK && child)
        *child = ref;
    brg_msg_destroy(&reply);
    return rc;
}

//  Ask with *req_p, whose answer is BRG_SUP_TAG_OK.
static int
s_ask_ok(brg_system_t *sys, brg_ref_t sup, brg_msg_t **req_p, int timeout_ms)
{
    brg_msg_t *reply;
    int rc = s_ask(sys, sup, req_p, timeout_ms, &reply);
    if (rc == BRG_OK && !brg_msg_is(reply, BRG_SUP_TAG_OK))
        rc = BRG_EBADMSG;
    brg_msg_destroy(&reply);
    return rc;
}

int
brg_supervisor_terminate_child(brg_system_t *sys, brg_ref_t sup, brg_ref_t child, int timeout_ms)
{
    assert(sys);
    brg_msg_t *req = brg_supervisor_msg_terminate(child);
    return s_ask_ok(sys, sup, &req, timeout_ms);
}

int
brg_supervisor_terminate_child_id(brg_system_t *sys, brg_ref_t sup, const char *id, int timeout_ms)
{
    assert(sys);
    assert(id);
    if (strlen(id) > BRG_CHILD_ID_MAX)
        return BRG_ENOTFOUND;
    brg_msg_t *req = brg_supervisor_msg_terminate_id(id);
    return s_ask_ok(sys, sup, &req, timeout_ms);
}

int
brg_supervisor_restart_child(brg_system_t *sys, brg_ref_t sup, const char *id, int timeout_ms,
                             brg_ref_t *child)
{
    assert(sys);
    assert(id);
    if (strlen(id) > BRG_CHILD_ID_MAX)
        return BRG_ENOTFOUND;
    brg_msg_t *req = brg_supervisor_msg_restart(id), *reply;
    int rc = s_ask(sys, sup, &req, timeout_ms, &reply);
    brg_ref_t ref;
    if (rc == BRG_OK && (rc = brg_supervisor_read_started(reply, &ref)) == BRG_OK && child)
        *child = ref;
    brg_msg_destroy(&reply);
    return rc;
}

int
brg_supervisor_delete_child(brg_system_t *sys, brg_ref_t sup, const char *id, int timeout_ms)
{
    assert(sys);
    assert(id);
    if (strlen(id) > BRG_CHILD_ID_MAX)
        return BRG_ENOTFOUND;
    brg_msg_t *req = brg_supervisor_msg_delete(id);
    return s_ask_ok(sys, sup, &req, timeout_ms);
}

int
brg_supervisor_get_childspec(brg_system_t *sys, brg_ref_t sup, const char *id, int timeout_ms,
                             brg_child_about_t *out)
{
    assert(sys);
    assert(id);
    assert(out);
    if (strlen(id) > BRG_CHILD_ID_MAX)
        return BRG_ENOTFOUND;
    brg_msg_t *req = brg_supervisor_msg_get_childspec(id), *reply;
    int rc = s_ask(sys, sup, &req, timeout_ms, &reply);
    if (rc == BRG_OK)
        rc = brg_supervisor_read_childspec(reply, out);
    brg_msg_destroy(&reply);
    return rc;
}
