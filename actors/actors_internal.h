//  actors_internal - the private umbrella of actors/: the public API and the
//  system headers the folder's sources use. actors/ is built on the public
//  API only; it never includes runtime/ headers.
#ifndef BRG_ACTORS_ACTORS_INTERNAL_H
#define BRG_ACTORS_ACTORS_INTERNAL_H

#include <brigade.h>

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

//  Spawn a ready-made actor (router, limiter) that owns `state`: linked to the
//  calling actor when ctx is not NULL, so it ends with its parent, else as a
//  root of sys. On error the state was never handed over: it is destroyed
//  here. Returns as brg_spawn.
static inline int
brg__actors_spawn(brg_system_t *sys, brg_ctx_t *ctx, brg_behaviour_fn fn, void *state,
                  brg_state_destroy_fn destroy, brg_init_fn init, const char *name, brg_ref_t *ref)
{
    brg_spawn_opts_t so;
    brg_spawn_opts_init(&so);
    so.state = state;
    so.state_destroy = destroy;
    so.init = init;
    so.name = name;
    int rc;
    if (ctx) {
        so.flags = BRG_SPAWN_LINK;
        rc = brg_spawn(ctx, fn, &so, ref);
    } else {
        rc = brg_system_spawn(sys, fn, &so, ref);
    }
    if (rc != BRG_OK)
        destroy(state);
    return rc;
}

//  Read n unsigned integers from a reply tagged `tag` (the counters replies
//  of the ready-made actors). BRG_OK, BRG_ETYPE (another tag) or BRG_EBADMSG.
static inline int
brg__actors_read_uints(const brg_msg_t *reply, const char *tag, uint64_t *fields, size_t n)
{
    if (!brg_msg_is(reply, tag))
        return BRG_ETYPE;
    size_t pos = 0;
    for (size_t k = 0; k < n; k++) {
        int rc = brg_msg_read_uint(reply, &pos, &fields[k]);
        if (rc != BRG_OK)
            return rc == BRG_ENODATA ? BRG_EBADMSG : rc;
    }
    return BRG_OK;
}

//  Ask `to` with `request` (taken) from a thread that is not a worker and
//  hand the reply to read(reply, out). Returns brg_system_ask's error,
//  BRG_ENOMEM for a NULL request, or the reader's.
static inline int
brg__actors_ask_read(brg_system_t *sys, brg_ref_t to, brg_msg_t *request, int timeout_ms,
                     int (*read)(const brg_msg_t *, void *), void *out)
{
    if (!request)
        return BRG_ENOMEM;
    brg_msg_t *reply = NULL;
    int rc = brg_system_ask(sys, to, &request, timeout_ms, &reply);
    if (rc == BRG_OK)
        rc = read(reply, out);
    brg_msg_destroy(&reply);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Ending with the parent. A ready-made actor spawned from a behaviour (the
//  HTTP actor, the model backends) is linked to its parent, but a link passes
//  on only abnormal exits; these actors should also end when the parent stops
//  normally, or they would outlive it holding threads and sockets. So they
//  trap exits (init calls brg_trap_exits when parent is set) and handle
//  BRG_TAG_EXIT here: the parent's exit, whatever its reason, ends them with
//  the same kind (normal stays normal); another linked actor's abnormal exit
//  ends them as if they did not trap (its normal exit is ignored, as without
//  trapping). Returns true if msg was an exit signal (handled).
static inline bool
brg__actors_on_exit(brg_ctx_t *ctx, const brg_msg_t *msg, brg_ref_t parent)
{
    brg_ref_t from;
    brg_exit_reason_t reason;
    if (!brg_msg_is(msg, BRG_TAG_EXIT) || brg_msg_read_exit(msg, &from, &reason) != BRG_OK)
        return false;
    bool abnormal = brg_exit_is_abnormal(&reason);
    if (abnormal && reason.kind == BRG_EXIT_FAILED) {
        // Exit as a non-trapping actor would: with the signal's reason.
        brg_fail(ctx, reason.code < 0 ? reason.code : BRG_EFAILED, reason.text);
    } else if (abnormal) {
        brg_trap_exits(ctx, false);
        brg_exit(brg_ctx_system(ctx), brg_self(ctx),
                 reason.kind == BRG_EXIT_KILLED ? BRG_EXIT_KILLED : BRG_EXIT_SHUTDOWN);
    } else if (brg_ref_eq(from, parent)) {
        brg_stop(ctx);
    }
    return true;
}

//  ---------------------------------------------------------------------------
//  HTTP details shared by http.c and model.c.

//  An http:// or https:// URL with a host, at most BRG_HTTP_URL_MAX bytes, and
//  no spaces, controls or NULs.
static inline bool
brg__http_url_ok(const char *url, size_t len)
{
    size_t scheme = len > 7 && strncasecmp(url, "http://", 7) == 0    ? 7
                    : len > 8 && strncasecmp(url, "https://", 8) == 0 ? 8
                                                                      : 0;
    if (scheme == 0 || len > BRG_HTTP_URL_MAX || url[scheme] == '/')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return false;
    return true;
}

//  "Name: value": the name is an RFC 9110 token (so a line cannot start with
//  whitespace and fold into the previous header), the value has no control
//  characters but tab (no CR or LF: no header injection).
static inline bool
brg__http_header_ok(const char *line, size_t len)
{
    static const char token[] = "!#$%&'*+-.^_`|~";
    size_t i = 0;
    for (; i < len && line[i] != ':'; i++) {
        unsigned char c = (unsigned char)line[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            !memchr(token, c, sizeof token - 1))
            return false;
    }
    if (i == 0 || i == len || len > BRG_HTTP_HEADER_MAX)
        return false;
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < ' ' && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

//  The URL as logs may show it: without user:password@ and without the query
//  and fragment (where API keys travel).
static inline void
brg__http_url_for_log(const char *url, char *buf, size_t size)
{
    const char *rest = strstr(url, "://");
    rest = rest ? rest + 3 : url;
    size_t host_end = strcspn(rest, "/?#");
    const char *at = memchr(rest, '@', host_end);
    size_t path = strcspn(rest, "?#");
    snprintf(buf, size, "%.*s%.*s%s", (int)(rest - url), url,
             (int)(path - (at ? (size_t)(at + 1 - rest) : 0)), at ? at + 1 : rest,
             rest[path] ? "?..." : "");
}

//  ---------------------------------------------------------------------------
//  Model details shared by model.c and model_chat.c.

//  Valid UTF-8 (what JSON strings must be).
bool brg__model_utf8_ok(const char *s, size_t len);

//  The reply to a stats request (BRG_MODEL_TAG_STATS); NULL if out of memory.
brg_msg_t *brg__model_msg_stats_reply(const brg_model_stats_t *s);

#endif
