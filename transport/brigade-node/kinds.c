//  kinds - the behaviours brigade-node starts from its config file.
//
//  Design notes. The config names a kind ("kind": "counter") and gives it
//  arguments ("args": {"start": 5}); the launcher checks the arguments
//  against the kind's table entry when it reads the file, so a typo is a
//  config error with its JSON path, never a crash at start. The arguments
//  reach the actor as a msgpack map (the init's arg), the same shape a
//  dynamic supervisor's start arguments and a spawn by kind have. A kind
//  not in this table may come from a plugin (brg_kind_register, at start):
//  brg__kind_start then spawns it through the registry (brg_spawn_kind),
//  its args unchecked here (its init checks them).
//
//  The built-in kinds are small and operational: echo answers (a liveness
//  probe from any node or client), counter keeps a number, crasher fails on
//  demand (to watch a supervisor restart it, in tests and drills).
#include "launcher_internal.h"

//  echo: any message is answered with a copy (same tag, same payload).
static int
s_echo(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    brg_msg_t *r = brg_msg_dup(msg);
    if (r == NULL)
        return BRG_ENOMEM;
    brg_reply(ctx, &r); // a plain send without a sender has no one to answer: fine
    return BRG_OK;
}

//  counter: "add" [n] adds n (a send or an ask; an ask is answered with the
//  new value), "get" answers "value" [n]. args: start (int, default 0).
static int
s_counter_init(brg_ctx_t *ctx, void *arg)
{
    int64_t *value = brg_state(ctx);
    return brg__kind_arg_int(arg, "start", value);
}

static int
s_counter(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t *value = brg_state(ctx);
    bool add = brg_msg_is(msg, "add");
    if (!add && !brg_msg_is(msg, "get"))
        return BRG_UNHANDLED;
    if (add) {
        size_t pos = 0;
        int64_t n;
        if (brg_msg_read_int(msg, &pos, &n) != BRG_OK) {
            brg_reply_error(ctx, BRG_ETYPE); // a plain send: nothing is sent
            brg_log(ctx, BRG_LOG_WARNING, "counter: \"add\" without an integer: ignored");
            return BRG_OK;
        }
        *value += n;
    }
    brg_msg_t *r = brg_msg_new_int("value", *value);
    if (r == NULL)
        return BRG_ENOMEM;
    brg_reply(ctx, &r);
    return BRG_OK;
}

//  crasher: "crash" answers "crashing" and then fails (reason failed, code
//  BRG_EFAILED, text "crash requested"), so its supervisor restarts it;
//  "ping" answers "pong". args: trap_exits (bool, default false): trap exit
//  signals and ignore the supervisor's shutdown, so the supervisor has to
//  wait out the child's shutdown_ms and kill it (for shutdown drills).
static int
s_crasher_init(brg_ctx_t *ctx, void *arg)
{
    bool trap = false;
    int rc = brg__kind_arg_bool(arg, "trap_exits", &trap);
    if (rc == BRG_OK && trap)
        brg_trap_exits(ctx, true);
    return rc;
}

static int
s_crasher(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "crash")) {
        brg_msg_t *r = brg_msg_new("crashing");
        if (r != NULL)
            brg_reply(ctx, &r);
        brg_fail(ctx, BRG_EFAILED, "crash requested");
        return BRG_OK;
    }
    if (brg_msg_is(msg, "ping")) {
        brg_msg_t *r = brg_msg_new("pong");
        if (r == NULL)
            return BRG_ENOMEM;
        brg_reply(ctx, &r);
        return BRG_OK;
    }
    if (brg_msg_is(msg, BRG_TAG_EXIT)) {
        brg_log(ctx, BRG_LOG_NOTICE, "crasher: exit signal ignored (trap_exits)");
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

static const brg__kind_arg_t s_no_args[] = {{NULL, 0, 0, 0}};
static const brg__kind_arg_t s_counter_args[] = {{"start", BRG__ARG_INT, INT64_MIN, INT64_MAX},
                                                 {NULL, 0, 0, 0}};
static const brg__kind_arg_t s_crasher_args[] = {{"trap_exits", BRG__ARG_BOOL, 0, 0},
                                                 {NULL, 0, 0, 0}};

//  The table. To add a kind: a behaviour, its arguments, one line here.
static const brg__kind_t s_kinds[] = {
    {"echo", "answers every message with a copy of it", s_echo, 0, 0, NULL, s_no_args},
    {"counter", "\"add\" [n], \"get\" -> \"value\" [n]; args: start", s_counter, sizeof(int64_t), 0,
     s_counter_init, s_counter_args},
    {"crasher", "\"crash\" makes it fail, \"ping\" -> \"pong\"; args: trap_exits", s_crasher, 0, 0,
     s_crasher_init, s_crasher_args},
};

const brg__kind_t *
brg__kind_find(const char *name)
{
    for (size_t i = 0; i < sizeof s_kinds / sizeof s_kinds[0]; i++)
        if (strcmp(s_kinds[i].name, name) == 0)
            return &s_kinds[i];
    return NULL;
}

const brg__kind_t *
brg__kind_at(size_t i)
{
    return i < sizeof s_kinds / sizeof s_kinds[0] ? &s_kinds[i] : NULL;
}

int
brg__kind_start(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)args; // static children only: the arguments are the config's
    const brg__kind_child_t *c = arg;
    if (c->kind == NULL) {
        // A plugin's kind (brg_kind_register): the registry spawns it, with
        // the config's args as its init message.
        brg_kind_spawn_opts_t kopts;
        brg_kind_spawn_opts_init(&kopts);
        kopts.flags = BRG_SPAWN_LINK;
        return brg_spawn_kind(sup_ctx, c->plugin_kind, c->args, &kopts, child);
    }
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = c->kind->state_size;
    opts.flags = c->kind->flags | BRG_SPAWN_LINK;
    opts.init = c->kind->init;
    opts.init_arg = c->args;
    return brg_spawn(sup_ctx, c->kind->behaviour, &opts, child);
}

//  Find key in the args map: BRG_OK with *pos at its value, BRG_ENOTFOUND,
//  or an error for a malformed message.
static int
s_arg_find(const brg_msg_t *args, const char *key, size_t *pos)
{
    uint32_t n;
    *pos = 0;
    if (args == NULL || brg_msg_size(args) == 0)
        return BRG_ENOTFOUND;
    int rc = brg_msg_read_map(args, pos, &n);
    for (uint32_t i = 0; rc == BRG_OK && i < n; i++) {
        const char *k;
        size_t len;
        rc = brg_msg_read_str(args, pos, &k, &len);
        if (rc == BRG_OK && len == strlen(key) && memcmp(k, key, len) == 0)
            return BRG_OK;
        if (rc == BRG_OK)
            rc = brg_msg_skip(args, pos);
    }
    return rc == BRG_OK ? BRG_ENOTFOUND : rc;
}

int
brg__kind_arg_int(const brg_msg_t *args, const char *key, int64_t *out)
{
    size_t pos;
    int rc = s_arg_find(args, key, &pos);
    if (rc == BRG_ENOTFOUND)
        return BRG_OK;
    return rc == BRG_OK ? brg_msg_read_int(args, &pos, out) : rc;
}

int
brg__kind_arg_bool(const brg_msg_t *args, const char *key, bool *out)
{
    size_t pos;
    int rc = s_arg_find(args, key, &pos);
    if (rc == BRG_ENOTFOUND)
        return BRG_OK;
    return rc == BRG_OK ? brg_msg_read_bool(args, &pos, out) : rc;
}
