//  launch_config - brigade-node's JSON config file, read and checked.
//
//  Design notes. The file is parsed with jansson (duplicate keys refused)
//  and walked once, top down, with the JSON path of each value at hand
//  ("$.supervision.children[2].args.start"), so every problem is reported
//  as FILE: PATH: what is wrong, and the first one ends the load: unknown
//  keys, wrong types, values out of range, unknown kinds, duplicate child
//  ids or registered names. Nothing in the file can crash the launcher: its
//  size is bounded (BRG__LAUNCH_FILE_MAX), so are its lists and the depth
//  and size of the supervision tree. What only the start can tell (an
//  endpoint that cannot be bound, a key directory that cannot be read) is
//  left to the node, which logs it and makes brigade-node exit 1.
//
//  The result is ready-made API values: a brg_config_t, a
//  brg_node_config_t whose strings point into the parsed document (kept
//  until brg__launch_fini), and the supervision tree as
//  brg_supervisor_opts_t with its child specs; a nested supervisor is a
//  child whose start is brg_supervisor_start and whose arg is its own opts,
//  a worker is a child whose start is brg__kind_start. Those blocks are
//  recorded in self->blocks and freed together.
#include "launcher_internal.h"

void
brg__launch_init(brg__launch_t *self)
{
    memset(self, 0, sizeof *self);
    brg_config_init(&self->cfg);
    self->cfg.log_level = BRG_LOG_INFO;
    brg_node_config_init(&self->ncfg);
}

//  JSON paths are built in buffers of this size (a longer one is cut).
#define S_PATH 512

static void s_join(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

//  Format into a path buffer of S_PATH bytes (vsnprintf: a cut is fine).
static void
s_join(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, S_PATH, fmt, ap);
    va_end(ap);
}

static int s_fail(brg__launch_t *self, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
s_fail(brg__launch_t *self, const char *path, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fprintf(stderr, "brigade-node: %s: %s: %s\n", self->path, path, what);
    return BRG_EINVAL;
}

//  Memory the tree keeps until fini. NULL if out of memory.
static void *
s_alloc(brg__launch_t *self, size_t size)
{
    if (self->n_blocks == self->cap_blocks) {
        size_t cap = self->cap_blocks ? self->cap_blocks * 2 : 16;
        void **b = realloc(self->blocks, cap * sizeof *b);
        if (b == NULL)
            return NULL;
        self->blocks = b;
        self->cap_blocks = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p != NULL)
        self->blocks[self->n_blocks++] = p;
    return p;
}

static const char *
s_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

//  Every key of obj must be one of allowed (NULL-terminated).
static int
s_keys(brg__launch_t *self, const json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char list[512] = "";
            size_t n = 0;
            for (size_t i = 0; allowed[i] != NULL && n < sizeof list; i++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", allowed[i]);
            return s_fail(self, path, "unknown key \"%s\" (known: %s)", key, list);
        }
    }
    return BRG_OK;
}

//  A string of 1..max bytes without NUL, or error.
static int
s_string(brg__launch_t *self, const json_t *v, const char *path, size_t max, const char **out)
{
    if (!json_is_string(v))
        return s_fail(self, path, "must be a string, not %s", s_type_name(v));
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len == 0)
        return s_fail(self, path, "must not be empty");
    if (len > max)
        return s_fail(self, path, "too long (%zu bytes, at most %zu)", len, max);
    if (strlen(s) != len)
        return s_fail(self, path, "must not hold a NUL character");
    *out = s;
    return BRG_OK;
}

//  obj[key], if present, as s_string; absent leaves *out alone.
static int
s_opt_string(brg__launch_t *self, const json_t *obj, const char *key, const char *path, size_t max,
             const char **out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return BRG_OK;
    char sub[S_PATH];
    s_join(sub, "%s.%s", path, key);
    return s_string(self, v, sub, max, out);
}

static int
s_int(brg__launch_t *self, const json_t *v, const char *path, int64_t min, int64_t max,
      int64_t *out)
{
    if (!json_is_integer(v))
        return s_fail(self, path, "must be an integer, not %s", s_type_name(v));
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return s_fail(self, path, "%lld is out of range (%lld .. %lld)", (long long)n,
                      (long long)min, (long long)max);
    *out = n;
    return BRG_OK;
}

//  An optional integer key of obj in min..max: *out set (and *found true)
//  only when the key is there and valid.
static int
s_opt_i64(brg__launch_t *self, const json_t *obj, const char *key, const char *path, int64_t min,
          int64_t max, int64_t *out, bool *found)
{
    const json_t *v = json_object_get(obj, key);
    *found = false;
    if (v == NULL)
        return BRG_OK;
    char sub[S_PATH];
    s_join(sub, "%s.%s", path, key);
    int rc = s_int(self, v, sub, min, max, out);
    *found = rc == BRG_OK;
    return rc;
}

static int
s_opt_u32(brg__launch_t *self, const json_t *obj, const char *key, const char *path, int64_t min,
          int64_t max, uint32_t *out)
{
    int64_t n = 0; // set when found (gcc -O3 cannot tell)
    bool found;
    int rc = s_opt_i64(self, obj, key, path, min, max, &n, &found);
    if (found)
        *out = (uint32_t)n;
    return rc;
}

static int
s_opt_size(brg__launch_t *self, const json_t *obj, const char *key, const char *path, int64_t min,
           int64_t max, size_t *out)
{
    int64_t n = 0;
    bool found;
    int rc = s_opt_i64(self, obj, key, path, min, max, &n, &found);
    if (found)
        *out = (size_t)n;
    return rc;
}

static int
s_opt_bool(brg__launch_t *self, const json_t *obj, const char *key, const char *path, bool *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return BRG_OK;
    if (!json_is_boolean(v))
        return s_fail(self, path, "%s must be true or false, not %s", key, s_type_name(v));
    *out = json_is_true(v);
    return BRG_OK;
}

//  obj[key], if present: an array of at most max strings of 1..len bytes.
static int
s_opt_strings(brg__launch_t *self, const json_t *obj, const char *key, const char *path, int max,
              size_t len, const char **out, int *n)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return BRG_OK;
    char sub[S_PATH];
    s_join(sub, "%s.%s", path, key);
    if (!json_is_array(v))
        return s_fail(self, sub, "must be an array of strings, not %s", s_type_name(v));
    if (json_array_size(v) > (size_t)max)
        return s_fail(self, sub, "too many entries (%zu, at most %d)", json_array_size(v), max);
    *n = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        char item[S_PATH];
        s_join(item, "%s[%zu]", sub, i);
        int rc = s_string(self, json_array_get(v, i), item, len, &out[(*n)++]);
        if (rc != BRG_OK)
            return rc;
    }
    return BRG_OK;
}

bool
brg__launch_log_level(const char *text, int *level)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"error", BRG_LOG_ERROR},   {"warning", BRG_LOG_WARNING},
                  {"notice", BRG_LOG_NOTICE}, {"info", BRG_LOG_INFO},
                  {"debug", BRG_LOG_DEBUG},   {"off", -1}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(text, levels[i].name) == 0) {
            *level = levels[i].level;
            return true;
        }
    }
    return false;
}

static int
s_endpoints(brg__launch_t *self, const json_t *doc)
{
    const char *listen[BRG_NODE_MAX_ENDPOINTS];
    int n = 0;
    int rc = s_opt_strings(self, doc, "listen", "$", BRG_NODE_MAX_ENDPOINTS, 255, listen, &n);
    for (int i = 0; rc == BRG_OK && i < n; i++) {
        if (strncmp(listen[i], "tcp://", 6) != 0 && strncmp(listen[i], "ipc://", 6) != 0 &&
            strncmp(listen[i], "inproc://", 9) != 0) {
            char sub[S_PATH];
            s_join(sub, "$.listen[%d]", i);
            return s_fail(self, sub, "\"%s\" is not tcp://HOST:PORT, ipc:///PATH or inproc://NAME",
                          listen[i]);
        }
        self->ncfg.listen[i] = listen[i];
    }
    if (rc == BRG_OK && json_object_get(doc, "listen") != NULL && n == 0)
        return s_fail(self, "$.listen", "needs at least one endpoint");
    if (rc == BRG_OK)
        rc = s_opt_string(self, doc, "advertise", "$", 255, &self->ncfg.advertise);
    if (rc == BRG_OK)
        rc = s_opt_strings(self, doc, "seeds", "$", BRG__LAUNCH_SEEDS_MAX, 255 + 64, self->seeds,
                           &self->n_seeds);
    for (int i = 0; rc == BRG_OK && i < self->n_seeds; i++) {
        if (strstr(self->seeds[i], "://") == NULL) {
            char sub[S_PATH];
            s_join(sub, "$.seeds[%d]", i);
            return s_fail(self, sub,
                          "\"%s\" is not an endpoint ([KEY@|NAME@]tcp://HOST:PORT, "
                          "ipc:///PATH)",
                          self->seeds[i]);
        }
    }
    return rc;
}

static int
s_allowed_keys(brg__launch_t *self, const json_t *doc)
{
    const json_t *v = json_object_get(doc, "allowed_keys");
    if (v == NULL)
        return BRG_OK;
    if (!json_is_array(v))
        return s_fail(self, "$.allowed_keys", "must be an array of objects, not %s",
                      s_type_name(v));
    if (json_array_size(v) > BRG__LAUNCH_KEYS_MAX)
        return s_fail(self, "$.allowed_keys", "too many entries (%zu, at most %d)",
                      json_array_size(v), BRG__LAUNCH_KEYS_MAX);
    static const char *const allowed[] = {"name", "key", "role", NULL};
    static const char z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              ".-:+=^!/*?&<>()[]{}@%$#";
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        char path[S_PATH], sub[S_PATH];
        s_join(path, "$.allowed_keys[%zu]", i);
        if (!json_is_object(e))
            return s_fail(self, path, "must be an object {name, key, role}, not %s",
                          s_type_name(e));
        brg__launch_key_t *k = &self->keys[self->n_keys++];
        k->role = BRG_KEY_NODE;
        const char *role = "node";
        int rc = s_keys(self, e, path, allowed);
        if (rc == BRG_OK && (json_object_get(e, "name") == NULL || !json_object_get(e, "key")))
            rc = s_fail(self, path, "needs \"name\" and \"key\"");
        if (rc == BRG_OK)
            rc = s_opt_string(self, e, "name", path, BRG_NODE_NAME_MAX, &k->name);
        if (rc == BRG_OK && strchr(k->name, '@') != NULL) {
            s_join(sub, "%s.name", path);
            rc = s_fail(self, sub, "must not hold '@' (it separates NAME@ENDPOINT)");
        }
        if (rc == BRG_OK)
            rc = s_opt_string(self, e, "key", path, BRG_KEY_TEXT - 1, &k->key);
        if (rc == BRG_OK &&
            (strlen(k->key) != BRG_KEY_TEXT - 1 || strspn(k->key, z85) != strlen(k->key))) {
            s_join(sub, "%s.key", path);
            rc = s_fail(self, sub, "is not a public key (40 characters of Z85)");
        }
        if (rc == BRG_OK)
            rc = s_opt_string(self, e, "role", path, 16, &role);
        if (rc == BRG_OK && strcmp(role, "node") != 0 && strcmp(role, "client") != 0 &&
            strcmp(role, "admin") != 0) {
            s_join(sub, "%s.role", path);
            rc = s_fail(self, sub, "must be \"node\", \"client\" or \"admin\", not \"%s\"", role);
        }
        if (rc != BRG_OK)
            return rc;
        k->role = strcmp(role, "client") == 0  ? BRG_KEY_CLIENT
                  : strcmp(role, "admin") == 0 ? BRG_KEY_ADMIN
                                               : BRG_KEY_NODE;
    }
    return BRG_OK;
}

static int
s_log(brg__launch_t *self, const json_t *doc)
{
    const json_t *v = json_object_get(doc, "log");
    if (v == NULL)
        return BRG_OK;
    if (!json_is_object(v))
        return s_fail(self, "$.log", "must be an object, not %s", s_type_name(v));
    static const char *const allowed[] = {"level", "dead_letters", NULL};
    int rc = s_keys(self, v, "$.log", allowed);
    const char *level = NULL;
    if (rc == BRG_OK)
        rc = s_opt_string(self, v, "level", "$.log", 16, &level);
    if (rc == BRG_OK && level != NULL && !brg__launch_log_level(level, &self->cfg.log_level))
        rc = s_fail(self, "$.log.level", "\"%s\" is not error, warning, notice, info, debug or off",
                    level);
    if (rc == BRG_OK)
        rc = s_opt_bool(self, v, "dead_letters", "$.log", &self->cfg.log_dead_letters);
    return rc;
}

//  ---------------------------------------------------------------------------
//  The supervision tree.

//  Registered names seen so far in the tree (each must be unique).
typedef struct {
    const char *names[BRG__LAUNCH_CHILDREN_MAX + 1];
    int n;
} s_names_t;

static int
s_name(brg__launch_t *self, s_names_t *names, const json_t *obj, const char *path, const char **out)
{
    int rc = s_opt_string(self, obj, "name", path, BRG_NAME_MAX, out);
    if (rc != BRG_OK || *out == NULL)
        return rc;
    char sub[S_PATH];
    s_join(sub, "%s.name", path);
    if (strncmp(*out, "brg.", 4) == 0)
        return s_fail(self, sub, "\"%s\": names that start with \"brg.\" are Brigade's own", *out);
    for (int i = 0; i < names->n; i++)
        if (strcmp(names->names[i], *out) == 0)
            return s_fail(self, sub, "\"%s\" is registered by another child already", *out);
    names->names[names->n++] = *out;
    return BRG_OK;
}

//  One argument of a plugin's kind: key and value added to m. brigade-node
//  does not know what the kind takes (its init checks that), so any string,
//  integer, number, boolean or null goes through as the msgpack type of the
//  same name; arrays and objects are refused.
static int
s_plugin_arg(brg__launch_t *self, brg_msg_t *m, const char *key, const json_t *v, const char *path)
{
    int rc = brg_msg_add_str(m, key);
    if (rc != BRG_OK)
        return s_fail(self, path, "%s", brg_strerror(rc));
    if (json_is_string(v)) {
        const char *s;
        rc = s_string(self, v, path, 4096, &s);
        if (rc == BRG_OK)
            rc = brg_msg_add_str(m, s);
    } else if (json_is_integer(v)) {
        rc = brg_msg_add_int(m, json_integer_value(v));
    } else if (json_is_real(v)) {
        rc = brg_msg_add_double(m, json_real_value(v));
    } else if (json_is_boolean(v)) {
        rc = brg_msg_add_bool(m, json_is_true(v));
    } else if (json_is_null(v)) {
        rc = brg_msg_add_nil(m);
    } else {
        return s_fail(self, path,
                      "must be a string, a number, a boolean or null (a plugin's kind takes no "
                      "%s)",
                      json_is_array(v) ? "arrays" : "objects");
    }
    if (rc != BRG_OK)
        return rc == BRG_EINVAL ? rc : s_fail(self, path, "%s", brg_strerror(rc));
    return BRG_OK;
}

//  The kind's args object as a msgpack map, checked against the kind (a
//  plugin's kind, NULL here, is checked by its own init at start).
static int
s_args(brg__launch_t *self, const brg__kind_t *kind, const json_t *args, const char *path,
       brg_msg_t **out)
{
    if (args != NULL && !json_is_object(args))
        return s_fail(self, path, "must be an object, not %s", s_type_name(args));
    brg_msg_t *m = brg_msg_new("args");
    if (m == NULL || brg_msg_add_map(m, args ? (uint32_t)json_object_size(args) : 0) != BRG_OK) {
        brg_msg_destroy(&m);
        return s_fail(self, path, "out of memory");
    }
    // Owned from here on, so an error below frees it with the rest.
    if (self->n_msgs == self->cap_msgs) {
        size_t cap = self->cap_msgs ? self->cap_msgs * 2 : 16;
        brg_msg_t **msgs = realloc(self->msgs, cap * sizeof *msgs);
        if (msgs == NULL) {
            brg_msg_destroy(&m);
            return s_fail(self, path, "out of memory");
        }
        self->msgs = msgs;
        self->cap_msgs = cap;
    }
    self->msgs[self->n_msgs++] = m;
    *out = m;
    const char *key;
    json_t *v;
    if (kind == NULL) {
        json_object_foreach((json_t *)args, key, v)
        {
            char sub[S_PATH];
            s_join(sub, "%s.%s", path, key);
            int rc = s_plugin_arg(self, m, key, v, sub);
            if (rc != BRG_OK)
                return rc;
        }
        return BRG_OK;
    }
    json_object_foreach((json_t *)args, key, v)
    {
        char sub[S_PATH];
        s_join(sub, "%s.%s", path, key);
        const brg__kind_arg_t *a = kind->args;
        while (a->key != NULL && strcmp(a->key, key) != 0)
            a++;
        if (a->key == NULL) {
            char list[256] = "";
            size_t n = 0;
            for (const brg__kind_arg_t *b = kind->args; b->key != NULL && n < sizeof list; b++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s",
                                      b == kind->args ? "" : ", ", b->key);
            return s_fail(self, sub, "kind \"%s\" takes no argument \"%s\" (it takes: %s)",
                          kind->name, key, n ? list : "none");
        }
        int rc = brg_msg_add_str(m, key);
        if (rc == BRG_OK && a->type == BRG__ARG_INT) {
            int64_t n;
            rc = s_int(self, v, sub, a->min, a->max, &n);
            if (rc == BRG_OK)
                rc = brg_msg_add_int(m, n);
        } else if (rc == BRG_OK && a->type == BRG__ARG_BOOL) {
            if (!json_is_boolean(v))
                return s_fail(self, sub, "must be true or false, not %s", s_type_name(v));
            rc = brg_msg_add_bool(m, json_is_true(v));
        } else if (rc == BRG_OK) {
            const char *s;
            rc = s_string(self, v, sub, 4096, &s);
            if (rc == BRG_OK)
                rc = brg_msg_add_str(m, s);
        }
        if (rc != BRG_OK)
            return rc == BRG_EINVAL ? rc : s_fail(self, sub, "%s", brg_strerror(rc));
    }
    return BRG_OK;
}

static int s_supervisor(brg__launch_t *self, s_names_t *names, const json_t *obj, const char *path,
                        int depth, brg_supervisor_opts_t *opts);

static int
s_child(brg__launch_t *self, s_names_t *names, const json_t *obj, const char *path, int depth,
        brg_child_spec_t *spec)
{
    static const char *const allowed[] = {"id",      "kind",        "supervisor", "name",
                                          "restart", "shutdown_ms", "args",       NULL};
    char sub[S_PATH];
    if (!json_is_object(obj))
        return s_fail(self, path, "a child must be an object, not %s", s_type_name(obj));
    int rc = s_keys(self, obj, path, allowed);
    if (rc != BRG_OK)
        return rc;
    if (json_object_get(obj, "id") == NULL)
        return s_fail(self, path, "needs an \"id\"");
    rc = s_opt_string(self, obj, "id", path, BRG_CHILD_ID_MAX, &spec->id);
    if (rc == BRG_OK)
        rc = s_name(self, names, obj, path, &spec->name);
    if (rc != BRG_OK)
        return rc;
    const json_t *kind = json_object_get(obj, "kind");
    const json_t *sup = json_object_get(obj, "supervisor");
    if ((kind == NULL) == (sup == NULL))
        return s_fail(self, path, "needs exactly one of \"kind\" (a worker) and \"supervisor\"");
    const char *restart = NULL;
    rc = s_opt_string(self, obj, "restart", path, 32, &restart);
    if (rc != BRG_OK)
        return rc;
    if (restart != NULL) {
        s_join(sub, "%s.restart", path);
        if (strcmp(restart, "permanent") == 0)
            spec->restart = BRG_RESTART_PERMANENT;
        else if (strcmp(restart, "transient") == 0)
            spec->restart = BRG_RESTART_TRANSIENT;
        else if (strcmp(restart, "temporary") == 0)
            spec->restart = BRG_RESTART_TEMPORARY;
        else
            return s_fail(self, sub, "\"%s\" is not permanent, transient or temporary", restart);
    }
    const json_t *shutdown = json_object_get(obj, "shutdown_ms");
    if (shutdown != NULL) {
        s_join(sub, "%s.shutdown_ms", path);
        if (json_is_string(shutdown) && strcmp(json_string_value(shutdown), "brutal") == 0) {
            spec->shutdown_ms = BRG_SHUTDOWN_BRUTAL;
        } else if (json_is_string(shutdown) &&
                   strcmp(json_string_value(shutdown), "infinity") == 0) {
            spec->shutdown_ms = BRG_SHUTDOWN_INFINITY;
        } else if (json_is_integer(shutdown)) {
            int64_t ms;
            rc = s_int(self, shutdown, sub, 0, INT_MAX, &ms);
            if (rc != BRG_OK)
                return rc;
            spec->shutdown_ms = (int)ms;
        } else {
            return s_fail(self, sub, "must be milliseconds, \"brutal\" or \"infinity\"");
        }
    }
    if (sup != NULL) {
        s_join(sub, "%s.supervisor", path);
        if (json_object_get(obj, "args") != NULL)
            return s_fail(self, path, "\"args\" goes with \"kind\", not with \"supervisor\"");
        if (depth + 1 >= BRG__LAUNCH_DEPTH_MAX)
            return s_fail(self, sub, "supervisors nested too deep (at most %d levels)",
                          BRG__LAUNCH_DEPTH_MAX);
        brg_supervisor_opts_t *opts = s_alloc(self, sizeof *opts);
        if (opts == NULL)
            return s_fail(self, sub, "out of memory");
        rc = s_supervisor(self, names, sup, sub, depth + 1, opts);
        spec->start = brg_supervisor_start;
        spec->arg = opts;
        spec->type = BRG_CHILD_SUPERVISOR;
        return rc;
    }
    s_join(sub, "%s.kind", path);
    const char *kind_name;
    rc = s_string(self, kind, sub, 64, &kind_name);
    if (rc != BRG_OK)
        return rc;
    brg__kind_child_t *c = s_alloc(self, sizeof *c);
    if (c == NULL)
        return s_fail(self, sub, "out of memory");
    c->kind = brg__kind_find(kind_name);
    if (c->kind == NULL && self->n_plugins > 0) {
        // Perhaps a plugin's: the plugins register their kinds at start,
        // which checks then that this name is one of them.
        size_t len = strlen(kind_name);
        char *name = s_alloc(self, len + 1);
        char *at = s_alloc(self, strlen(sub) + 1);
        if (name == NULL || at == NULL || self->n_plugin_kinds == BRG__LAUNCH_CHILDREN_MAX)
            return s_fail(self, sub, "out of memory");
        memcpy(name, kind_name, len + 1);
        strcpy(at, sub);
        c->plugin_kind = name;
        self->plugin_kinds[self->n_plugin_kinds].name = name;
        self->plugin_kinds[self->n_plugin_kinds++].path = at;
    } else if (c->kind == NULL) {
        char list[256] = "";
        size_t n = 0;
        for (size_t i = 0; brg__kind_at(i) != NULL && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "",
                                  brg__kind_at(i)->name);
        return s_fail(self, sub, "unknown kind \"%s\" (known: %s)", kind_name, list);
    }
    s_join(sub, "%s.args", path);
    rc = s_args(self, c->kind, json_object_get(obj, "args"), sub, &c->args);
    spec->start = brg__kind_start;
    spec->arg = c;
    return rc;
}

static int
s_supervisor(brg__launch_t *self, s_names_t *names, const json_t *obj, const char *path, int depth,
             brg_supervisor_opts_t *opts)
{
    static const char *const allowed_root[] = {"name",      "strategy", "intensity",
                                               "period_ms", "children", NULL};
    static const char *const allowed[] = {"strategy", "intensity", "period_ms", "children", NULL};
    char sub[S_PATH];
    brg_supervisor_opts_init(opts);
    if (!json_is_object(obj))
        return s_fail(self, path, "must be an object, not %s", s_type_name(obj));
    int rc = s_keys(self, obj, path, depth == 0 ? allowed_root : allowed);
    if (rc == BRG_OK && depth == 0)
        rc = s_name(self, names, obj, path, &opts->name);
    const char *strategy = NULL;
    if (rc == BRG_OK)
        rc = s_opt_string(self, obj, "strategy", path, 32, &strategy);
    if (rc != BRG_OK)
        return rc;
    if (strategy != NULL) {
        s_join(sub, "%s.strategy", path);
        if (strcmp(strategy, "one_for_one") == 0)
            opts->strategy = BRG_STRATEGY_ONE_FOR_ONE;
        else if (strcmp(strategy, "one_for_all") == 0)
            opts->strategy = BRG_STRATEGY_ONE_FOR_ALL;
        else if (strcmp(strategy, "rest_for_one") == 0)
            opts->strategy = BRG_STRATEGY_REST_FOR_ONE;
        else
            return s_fail(self, sub, "\"%s\" is not one_for_one, one_for_all or rest_for_one",
                          strategy);
    }
    uint32_t v = (uint32_t)opts->intensity;
    rc = s_opt_u32(self, obj, "intensity", path, 0, BRG_SUPERVISOR_INTENSITY_MAX, &v);
    opts->intensity = (int)v;
    v = (uint32_t)opts->period_ms;
    if (rc == BRG_OK)
        rc = s_opt_u32(self, obj, "period_ms", path, 1, INT_MAX, &v);
    opts->period_ms = (int)v;
    if (rc != BRG_OK)
        return rc;
    const json_t *children = json_object_get(obj, "children");
    s_join(sub, "%s.children", path);
    if (children == NULL || !json_is_array(children) || json_array_size(children) == 0)
        return s_fail(self, sub, "needs an array of at least one child");
    size_t n = json_array_size(children);
    if (n > BRG_SUPERVISOR_CHILDREN_MAX || self->n_children + (int)n > BRG__LAUNCH_CHILDREN_MAX)
        return s_fail(self, sub, "too many children (at most %d per supervisor, %d in all)",
                      BRG_SUPERVISOR_CHILDREN_MAX, BRG__LAUNCH_CHILDREN_MAX);
    self->n_children += (int)n;
    self->n_supervisors++;
    brg_child_spec_t *specs = s_alloc(self, n * sizeof *specs);
    if (specs == NULL)
        return s_fail(self, sub, "out of memory");
    opts->children = specs;
    opts->n_children = n;
    for (size_t i = 0; i < n; i++) {
        char item[S_PATH];
        s_join(item, "%s[%zu]", sub, i);
        brg_child_spec_init(&specs[i]);
        rc = s_child(self, names, json_array_get(children, i), item, depth, &specs[i]);
        if (rc != BRG_OK)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(specs[j].id, specs[i].id) == 0)
                return s_fail(self, item, "id \"%s\" is used by %s[%zu] already", specs[i].id, sub,
                              j);
    }
    return BRG_OK;
}

//  ---------------------------------------------------------------------------

static int
s_document(brg__launch_t *self, const json_t *doc)
{
    static const char *const allowed[] = {"name",
                                          "cluster",
                                          "listen",
                                          "advertise",
                                          "seeds",
                                          "key_dir",
                                          "allowed_keys",
                                          "insecure_loopback",
                                          "mesh",
                                          "exports",
                                          "log",
                                          "workers",
                                          "tick_ms",
                                          "timeout_ms",
                                          "handshake_ms",
                                          "reconnect_max_ms",
                                          "ready_file",
                                          "plugins",
                                          "supervision",
                                          "io_on_worker",
                                          "peer_queue_bytes",
                                          "peer_busy_bytes",
                                          NULL};
    if (!json_is_object(doc))
        return s_fail(self, "$", "the file must hold one JSON object, not %s", s_type_name(doc));
    int rc = s_keys(self, doc, "$", allowed);
    if (rc == BRG_OK)
        rc = s_opt_string(self, doc, "name", "$", BRG_NODE_NAME_MAX, &self->ncfg.name);
    if (rc == BRG_OK)
        rc = s_opt_string(self, doc, "cluster", "$", BRG_NODE_NAME_MAX, &self->ncfg.cluster);
    if (rc == BRG_OK)
        rc = s_endpoints(self, doc);
    if (rc == BRG_OK)
        rc = s_opt_string(self, doc, "key_dir", "$", PATH_MAX - 64, &self->ncfg.key_dir);
    if (rc == BRG_OK)
        rc = s_allowed_keys(self, doc);
    if (rc == BRG_OK)
        rc = s_opt_bool(self, doc, "insecure_loopback", "$", &self->ncfg.insecure_loopback);
    if (rc == BRG_OK)
        rc = s_opt_bool(self, doc, "mesh", "$", &self->ncfg.mesh);
    if (rc == BRG_OK)
        rc = s_opt_bool(self, doc, "io_on_worker", "$", &self->ncfg.io_on_worker);
    if (rc == BRG_OK)
        rc = s_opt_strings(self, doc, "exports", "$", BRG__LAUNCH_EXPORTS_MAX, BRG_NAME_MAX,
                           self->exports, &self->n_exports);
    for (int i = 0; rc == BRG_OK && i < self->n_exports; i++) {
        if (strncmp(self->exports[i], "brg.", 4) == 0) {
            char sub[S_PATH];
            s_join(sub, "$.exports[%d]", i);
            rc = s_fail(self, sub, "\"%s\": names that start with \"brg.\" cannot be exported",
                        self->exports[i]);
        }
    }
    if (rc == BRG_OK)
        rc = s_log(self, doc);
    uint32_t workers = 0;
    if (rc == BRG_OK)
        rc = s_opt_u32(self, doc, "workers", "$", 1, 1024, &workers);
    if (workers != 0)
        self->cfg.workers = (int)workers;
    if (rc == BRG_OK)
        rc = s_opt_u32(self, doc, "tick_ms", "$", 1, 3600000, &self->ncfg.tick_ms);
    if (rc == BRG_OK)
        rc = s_opt_u32(self, doc, "timeout_ms", "$", 2, 3600000, &self->ncfg.timeout_ms);
    if (rc == BRG_OK && self->ncfg.timeout_ms <= self->ncfg.tick_ms)
        rc = s_fail(self, "$.timeout_ms", "must be larger than tick_ms (%u)", self->ncfg.tick_ms);
    if (rc == BRG_OK)
        rc = s_opt_u32(self, doc, "handshake_ms", "$", 1, 3600000, &self->ncfg.handshake_ms);
    if (rc == BRG_OK)
        rc = s_opt_u32(self, doc, "reconnect_max_ms", "$", 100, 3600000,
                       &self->ncfg.reconnect_max_ms);
    // The budget and the busy mark per peer (brigade/node.h): 64 KiB .. 1 TiB, 0 .. 1 TiB.
    if (rc == BRG_OK)
        rc = s_opt_size(self, doc, "peer_queue_bytes", "$", 65536, (int64_t)1 << 40,
                        &self->ncfg.peer_queue_bytes);
    if (rc == BRG_OK)
        rc = s_opt_size(self, doc, "peer_busy_bytes", "$", 0, (int64_t)1 << 40,
                        &self->ncfg.peer_busy_bytes);
    if (rc == BRG_OK)
        rc = s_opt_string(self, doc, "ready_file", "$", PATH_MAX - 32, &self->ready_file);
    if (rc == BRG_OK)
        rc = s_opt_strings(self, doc, "plugins", "$", BRG__LAUNCH_PLUGINS_MAX, PATH_MAX - 1,
                           self->plugins, &self->n_plugins);
    const json_t *tree = json_object_get(doc, "supervision");
    if (rc == BRG_OK && tree != NULL && self->n_plugins > 0) {
        self->plugin_kinds = s_alloc(self, BRG__LAUNCH_CHILDREN_MAX * sizeof *self->plugin_kinds);
        if (self->plugin_kinds == NULL)
            rc = s_fail(self, "$.supervision", "out of memory");
    }
    if (rc == BRG_OK && tree != NULL) {
        s_names_t *names = calloc(1, sizeof *names);
        self->tree = s_alloc(self, sizeof *self->tree);
        if (names == NULL || self->tree == NULL)
            rc = s_fail(self, "$.supervision", "out of memory");
        else
            rc = s_supervisor(self, names, tree, "$.supervision", 0, self->tree);
        free(names);
    }
    return rc;
}

int
brg__launch_load(brg__launch_t *self, const char *path)
{
    self->path = path;
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "brigade-node: %s: cannot read: %s\n", path, strerror(errno));
        return BRG_ESYS;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "brigade-node: %s: not a regular file\n", path);
        return BRG_ESYS;
    }
    if (st.st_size > BRG__LAUNCH_FILE_MAX) {
        fprintf(stderr, "brigade-node: %s: too large (%lld bytes, at most %d)\n", path,
                (long long)st.st_size, BRG__LAUNCH_FILE_MAX);
        return BRG_EINVAL;
    }
    json_error_t err;
    self->doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (self->doc == NULL) {
        fprintf(stderr, "brigade-node: %s:%d:%d: not valid JSON: %s\n", path, err.line, err.column,
                err.text);
        return BRG_EINVAL;
    }
    return s_document(self, self->doc);
}

void
brg__launch_fini(brg__launch_t *self)
{
    for (size_t i = 0; i < self->n_msgs; i++)
        brg_msg_destroy(&self->msgs[i]);
    free(self->msgs);
    self->msgs = NULL;
    self->n_msgs = self->cap_msgs = 0;
    for (size_t i = 0; i < self->n_blocks; i++)
        free(self->blocks[i]);
    free(self->blocks);
    self->blocks = NULL;
    self->n_blocks = self->cap_blocks = 0;
    json_decref(self->doc);
    self->doc = NULL;
    self->tree = NULL;
}
