//  coordinator - the document assistant spread over processes: this node
//  sends every document to the three specialist nodes (started by
//  brigade-node with the specialists plugin) and prints one report line
//  per document, then a summary line.
//
//  It dials the analyser, summariser and checker nodes (tcp, CURVE: the key
//  directory is $BRG_KEY_DIR) and opens one job per document, at most
//  MAX_OPEN at once. A job is an actor that asks the three named
//  specialists on their nodes at the same time (brg_ask_named_at with a
//  deadline) and gathers the answers. A part whose ask fails (the deadline
//  passed, the node is down, the specialist is being restarted) is asked
//  once more, 100 ms later; if that fails too, the part is marked missing
//  with the reason, and the job still reports. So when a specialist node is
//  killed in the middle of a run, every document is still reported: its
//  part retried, or missing.
//
//  Output, on stdout, flushed line by line (run.sh watches it):
//    [i/N] TITLE: analysis ok, summary ok, style missing: REASON (12.3 ms)
//    N documents reported: C complete, M with missing parts (P parts missing, R retried)
//  Exit status 0 when every document got its report, 1 if not, 2 for a bad
//  command line.
//
//  Usage: coordinator --analyser EP --summariser EP --checker EP
//                     [--documents=N] [--deadline=MS]
#include "../assistant/report.h"

#include <brigade.h>
#include <brigade/node.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_OPEN 16 // jobs open at once
#define MAX_DOCUMENTS 100000
#define RETRY_MS 100

static const char *const specialist_name[KINDS] = {"analyser", "summariser", "checker"};

static struct {
    const char *endpoint[KINDS]; // where each specialist node listens
    brg_ref_t node[KINDS];       // and its node ref, once connected
    int deadline_ms;             // each ask's deadline
    int documents;               // jobs to run
} opt = {.deadline_ms = 2000};

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  ---------------------------------------------------------------------------
//  A job: one document, three asks, one report.

typedef struct {
    brg_ref_t desk;          // where the report goes
    int64_t index;           // 1-based document number
    char *title, *text;      // owned
    size_t len;              //
    json_t *part[KINDS];     // each specialist's answer, NULL while missing
    char missing[KINDS][96]; // why a part is missing
    bool tried[KINDS];       // asked once already
    int pending;             // parts still to come
    int retries;             // asks repeated
    int64_t started_us;
} job_t;

static void
job_destroy(void *state)
{
    job_t *self = state;
    for (int k = 0; k < KINDS; k++)
        json_decref(self->part[k]);
    free(self->title);
    free(self->text);
    free(self);
}

//  Every part is in or missing: "report" [index, json, retries] to the desk; stop.
static void
job_finish(brg_ctx_t *ctx)
{
    job_t *self = brg_state(ctx);
    json_t *report = json_object();
    json_object_set_new(report, "document", json_string(self->title));
    for (int k = 0; k < KINDS; k++) {
        json_t *part = json_object();
        json_object_set_new(part, "status", json_string(self->part[k] ? "ok" : "missing"));
        if (self->part[k])
            json_object_update(part, self->part[k]);
        else
            json_object_set_new(part, "reason", json_string(self->missing[k]));
        json_object_set_new(report, part_name[k], part);
    }
    json_object_set_new(report, "elapsed_ms", json_real((now_us() - self->started_us) / 1e3));
    char *json = json_dumps(report, JSON_COMPACT | JSON_REAL_PRECISION(4));
    json_decref(report);
    brg_msg_t *msg = brg_msg_new("report");
    if (msg != NULL && (brg_msg_add_int(msg, self->index) != BRG_OK ||
                        brg_msg_add_str(msg, json ? json : "null") != BRG_OK ||
                        brg_msg_add_int(msg, self->retries) != BRG_OK))
        brg_msg_destroy(&msg);
    free(json);
    if (msg == NULL)
        brg_log(ctx, BRG_LOG_ERROR, "document %lld: no memory for its report",
                (long long)self->index);
    else
        brg_send(ctx, self->desk, &msg);
    brg_stop(ctx);
}

static void ask_specialist(brg_ctx_t *ctx, int kind);

//  A part failed with status: ask once more, later; then it is missing.
static void
part_failed(brg_ctx_t *ctx, int kind, int status)
{
    job_t *self = brg_state(ctx);
    if (!self->tried[kind]) {
        self->tried[kind] = true;
        self->retries++;
        brg_msg_t *retry = brg_msg_new_int("retry", kind);
        if (retry != NULL && brg_send_after(ctx, brg_self(ctx), &retry, RETRY_MS, NULL) == BRG_OK)
            return;
        brg_msg_destroy(&retry);
    }
    snprintf(self->missing[kind], sizeof self->missing[kind], "%s: %s", specialist_name[kind],
             status == BRG_ETIMEDOUT  ? "timed out"
             : status == BRG_ENETWORK ? "its node is unreachable"
             : status == BRG_ENOACTOR ? "not running"
                                      : brg_strerror(status));
    if (--self->pending == 0)
        job_finish(ctx);
}

static int
on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    job_t *self = brg_state(ctx);
    int kind = (int)(intptr_t)arg;
    if (status == BRG_ECLOSED)
        return BRG_OK; // the system is closing: no report
    size_t pos = 0, len;
    const char *json;
    json_t *part = NULL;
    if (status == BRG_OK) {
        if (!brg_msg_is(reply, "result") || brg_msg_read_str(reply, &pos, &json, &len) != BRG_OK ||
            (part = json_loadb(json, len, 0, NULL)) == NULL || !json_is_object(part)) {
            json_decref(part);
            brg_log(ctx, BRG_LOG_WARNING, "document %lld: a malformed answer from the %s",
                    (long long)self->index, specialist_name[kind]);
            part_failed(ctx, kind, BRG_EPROTO);
            return BRG_OK;
        }
        self->part[kind] = part;
        if (--self->pending == 0)
            job_finish(ctx);
        return BRG_OK;
    }
    part_failed(ctx, kind, status);
    return BRG_OK;
}

static void
ask_specialist(brg_ctx_t *ctx, int kind)
{
    job_t *self = brg_state(ctx);
    brg_msg_t *req = brg_msg_new("work");
    if (req != NULL && (brg_msg_add_int(req, self->index) != BRG_OK ||
                        brg_msg_add_strn(req, self->text, self->len) != BRG_OK))
        brg_msg_destroy(&req);
    int rc = req ? brg_ask_named_at(ctx, opt.node[kind], specialist_name[kind], &req,
                                    opt.deadline_ms, on_answer, (void *)(intptr_t)kind)
                 : BRG_ENOMEM;
    brg_msg_destroy(&req);
    if (rc != BRG_OK)
        part_failed(ctx, kind, rc);
}

static int
job(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t kind;
    if (brg_msg_is(msg, "retry") && brg_msg_read_int(msg, &pos, &kind) == BRG_OK && kind >= 0 &&
        kind < KINDS) {
        ask_specialist(ctx, (int)kind);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

//  Fan out: the three asks leave at once.
static int
job_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    job_t *self = brg_state(ctx);
    self->started_us = now_us();
    self->pending = KINDS;
    for (int k = 0; k < KINDS; k++)
        ask_specialist(ctx, k);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  The desk: opens the jobs, prints a line per report, then the summary.

typedef struct {
    brg_msg_t **waiting;  // "document" [title, text] not yet opened (owned)
    int n_waiting, first; //
    int opened, done;     // jobs
    int complete;         // reports with every part
    int parts_missing;    //
    int retries;          //
} desk_t;

static void
desk_destroy(void *state)
{
    desk_t *self = state;
    for (int i = self->first; i < self->n_waiting; i++)
        brg_msg_destroy(&self->waiting[i]);
    free(self->waiting);
    free(self);
}

static int
desk_open(brg_ctx_t *ctx, const brg_msg_t *doc)
{
    desk_t *self = brg_state(ctx);
    size_t pos = 0, title_len, len;
    const char *title, *text;
    if (brg_msg_read_str(doc, &pos, &title, &title_len) != BRG_OK ||
        brg_msg_read_str(doc, &pos, &text, &len) != BRG_OK)
        return BRG_EBADMSG;
    job_t *j = calloc(1, sizeof(*j));
    if (!j || !(j->title = strndup(title, title_len)) || !(j->text = malloc(len + 1))) {
        if (j)
            job_destroy(j);
        return BRG_ENOMEM;
    }
    memcpy(j->text, text, len);
    j->len = len;
    j->desk = brg_self(ctx);
    j->index = ++self->opened;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = j;
    opts.state_destroy = job_destroy;
    opts.init = job_init;
    int rc = brg_spawn(ctx, job, &opts, NULL);
    if (rc != BRG_OK)
        job_destroy(j);
    return rc;
}

static int
desk_open_waiting(brg_ctx_t *ctx)
{
    desk_t *self = brg_state(ctx);
    while (self->first < self->n_waiting && self->opened - self->done < MAX_OPEN) {
        brg_msg_t *doc = self->waiting[self->first++];
        int rc = desk_open(ctx, doc);
        brg_msg_destroy(&doc);
        if (rc != BRG_OK)
            return rc;
    }
    return BRG_OK;
}

//  "report" [index, json, retries]: print its line.
static int
desk_report(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    desk_t *self = brg_state(ctx);
    size_t pos = 0, len;
    int64_t index, retries;
    const char *json;
    if (brg_msg_read_int(msg, &pos, &index) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &json, &len) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &retries) != BRG_OK || index < 1 || index > opt.documents)
        return BRG_UNHANDLED;
    json_t *report = json_loadb(json, len, 0, NULL);
    const char *title = json_string_value(json_object_get(report, "document"));
    int missing = 0;
    printf("[%d/%d] %s:", ++self->done, opt.documents, title ? title : "?");
    for (int k = 0; k < KINDS; k++) {
        const json_t *part = json_object_get(report, part_name[k]);
        const char *reason = json_string_value(json_object_get(part, "reason"));
        bool ok = part != NULL && reason == NULL;
        missing += !ok;
        printf("%s %s %s%s%s", k ? "," : "", part_name[k], ok ? "ok" : "missing", ok ? "" : ": ",
               ok ? "" : (reason ? reason : "no report"));
    }
    printf(" (%.1f ms)\n", json_real_value(json_object_get(report, "elapsed_ms")));
    fflush(stdout);
    json_decref(report);
    self->complete += missing == 0;
    self->parts_missing += missing;
    self->retries += (int)retries;
    if (self->done == opt.documents) {
        printf("%d documents reported: %d complete, %d with missing parts (%d parts missing, %d "
               "retried)\n",
               self->done, self->complete, self->done - self->complete, self->parts_missing,
               self->retries);
        fflush(stdout);
        brg_stop(ctx);
        return BRG_OK;
    }
    return desk_open_waiting(ctx);
}

static int
desk(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    desk_t *self = brg_state(ctx);
    if (brg_msg_is(msg, "document")) {
        if (self->n_waiting == opt.documents)
            return BRG_UNHANDLED;
        brg_msg_t *doc = brg_msg_dup(msg);
        if (!doc)
            return BRG_ENOMEM;
        self->waiting[self->n_waiting++] = doc;
        return desk_open_waiting(ctx);
    }
    if (brg_msg_is(msg, "report"))
        return desk_report(ctx, msg);
    return BRG_UNHANDLED;
}

//  ---------------------------------------------------------------------------
//  Files, flags and main

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text = f ? malloc(BRG_TEXT_MAX + 1) : NULL;
    if (text) {
        *len = fread(text, 1, BRG_TEXT_MAX + 1, f);
        if (ferror(f) || *len > BRG_TEXT_MAX) {
            free(text);
            text = NULL;
        }
    }
    if (f)
        fclose(f);
    return text;
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

//  The sample documents of examples/assistant/docs (*.txt), sorted: how
//  many, or -1.
static int
sample_documents(char ***paths)
{
    DIR *dir = opendir(BRG_ASSISTANT_DOCS);
    struct dirent *e;
    int n = 0;
    while (dir && (e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".txt") != 0)
            continue;
        char **grown = realloc(*paths, sizeof(char *) * (size_t)(n + 1));
        char *path = malloc(sizeof(BRG_ASSISTANT_DOCS) + len + 1);
        if (grown)
            *paths = grown;
        if (!grown || !path) {
            free(path);
            closedir(dir);
            return -1;
        }
        sprintf(path, "%s/%s", BRG_ASSISTANT_DOCS, e->d_name);
        (*paths)[n++] = path;
    }
    if (dir)
        closedir(dir);
    qsort(*paths, (size_t)n, sizeof(char *), by_name);
    return n;
}

static int
number_after(const char *arg, const char *prefix, int min, int max)
{
    size_t n = strlen(prefix);
    char *end;
    if (strncmp(arg, prefix, n) != 0 || arg[n] < '0' || arg[n] > '9')
        return -1;
    long v = strtol(arg + n, &end, 10);
    return *end || v < min || v > max ? -1 : (int)v;
}

static int
usage(FILE *out)
{
    fprintf(out,
            "usage: coordinator --analyser EP --summariser EP --checker EP\n"
            "                   [--documents=N] [--deadline=MS]\n"
            "  --analyser EP ...  where each specialist node listens (tcp://HOST:PORT, CURVE\n"
            "                     with the keys of $BRG_KEY_DIR)\n"
            "  --documents=N      run N documents, going round the samples (default: each once)\n"
            "  --deadline=MS      each ask's deadline (default 2000)\n");
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    int documents = 0, v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = -1;
        for (int j = 0; j < KINDS; j++) {
            char flag[32];
            snprintf(flag, sizeof flag, "--%s", specialist_name[j]);
            if (strcmp(a, flag) == 0)
                k = j;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(stdout);
        if (k >= 0 && i + 1 < argc)
            opt.endpoint[k] = argv[++i];
        else if ((v = number_after(a, "--documents=", 1, MAX_DOCUMENTS)) >= 0)
            documents = v;
        else if ((v = number_after(a, "--deadline=", 1, 3600000)) >= 0)
            opt.deadline_ms = v;
        else {
            fprintf(stderr, "coordinator: bad argument '%s'\n", a);
            return usage(stderr);
        }
    }
    for (int k = 0; k < KINDS; k++)
        if (opt.endpoint[k] == NULL) {
            fprintf(stderr, "coordinator: --%s EP is required\n", specialist_name[k]);
            return usage(stderr);
        }
    char **paths = NULL;
    int n = sample_documents(&paths);
    if (n <= 0) {
        fprintf(stderr, "coordinator: no sample documents in %s\n", BRG_ASSISTANT_DOCS);
        return 1;
    }
    char **texts = calloc((size_t)n, sizeof(char *));
    size_t *lens = calloc((size_t)n, sizeof(size_t));
    if (!texts || !lens)
        return 1;
    for (int i = 0; i < n; i++)
        if (!(texts[i] = read_file(paths[i], &lens[i]))) {
            fprintf(stderr, "coordinator: cannot read %s\n", paths[i]);
            return 1;
        }
    opt.documents = documents ? documents : n;
    json_object_seed(0); // seed jansson's hashing once, before any thread uses it

    int status = 1;
    brg_system_t *sys = brg_system_new(NULL);
    brg_node_config_t cfg;
    brg_node_config_init(&cfg);
    cfg.name = "coordinator";
    cfg.listen[0] = "tcp://127.0.0.1:0"; // where the answers come back
    cfg.tick_ms = 200;
    cfg.timeout_ms = 2000; // a killed node is down within 2 s
    brg_node_t *node = sys ? brg_node_new(sys, &cfg) : NULL;
    if (node == NULL) {
        fprintf(stderr, "coordinator: cannot start the node (see above)\n");
        goto out;
    }
    for (int k = 0; k < KINDS; k++) {
        int rc = brg_node_connect(node, opt.endpoint[k], 10000, &opt.node[k]);
        if (rc != BRG_OK) {
            fprintf(stderr, "coordinator: cannot reach the %s at %s: %s\n", specialist_name[k],
                    opt.endpoint[k], brg_strerror(rc));
            goto out;
        }
    }
    desk_t *d = calloc(1, sizeof(*d));
    if (d == NULL || !(d->waiting = calloc((size_t)opt.documents, sizeof(brg_msg_t *)))) {
        free(d);
        goto out;
    }
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = d;
    opts.state_destroy = desk_destroy;
    brg_ref_t the_desk;
    if (brg_system_spawn(sys, desk, &opts, &the_desk) != BRG_OK) {
        desk_destroy(d);
        goto out;
    }
    // Document i is file i % n; a later round is titled "name (2)", and so on.
    for (int i = 0; i < opt.documents; i++) {
        const char *slash = strrchr(paths[i % n], '/');
        char title[512];
        snprintf(title, sizeof(title), i < n ? "%s" : "%s (%d)", slash ? slash + 1 : paths[i % n],
                 i / n + 1);
        brg_msg_t *doc = brg_msg_new("document");
        if (doc == NULL || brg_msg_add_str(doc, title) != BRG_OK ||
            brg_msg_add_strn(doc, texts[i % n], lens[i % n]) != BRG_OK ||
            brg_system_send(sys, the_desk, &doc) != BRG_OK) {
            brg_msg_destroy(&doc);
            fprintf(stderr, "coordinator: cannot hand document %d to the desk\n", i + 1);
            goto out;
        }
    }
    // Each window of MAX_OPEN jobs takes at most two deadlines and a retry.
    long long wait_ms = ((long long)(opt.documents + MAX_OPEN - 1) / MAX_OPEN + 5) *
                            (2LL * opt.deadline_ms + RETRY_MS) +
                        10000;
    int rc = brg_system_await_actors(sys, wait_ms > INT_MAX ? INT_MAX : (int)wait_ms);
    if (rc != BRG_OK)
        fprintf(stderr, "coordinator: not every document got its report (%s)\n", brg_strerror(rc));
    else
        status = 0;
out:
    brg_system_destroy(&sys);
    for (int i = 0; i < n; i++) {
        free(texts[i]);
        free(paths[i]);
    }
    free(texts);
    free(lens);
    free(paths);
    return status;
}
