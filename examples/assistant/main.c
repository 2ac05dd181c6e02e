//  assistant - a document assistant: one job per document, three specialists
//  asked in parallel, one report per job.
//
//  The desk opens a job for every document. Each job is a coordinator actor
//  that asks the analyser, the summariser and the style checker at the same
//  time (brg_ask with a deadline) and keeps the answers in a record in its
//  state; when the last answer or deadline is in, it sends its report to the
//  desk and stops. A part that did not come back in time is marked missing,
//  and the job still completes. The specialists live under a supervisor
//  (one_for_one): one that fails is started again under its registered name,
//  and jobs whose requests died with it simply ask the new one.
//
//  The specialists' work is the offline text backend (brigade/text.h): real
//  text work that answers in microseconds. A model would take a while, so
//  --latency=MS makes every call wait that long first (a sleep standing in
//  for the model; not used when a real model is configured). Waiting blocks a thread, so
//  specialists that wait run on the blocking pool (BRG_SPAWN_BLOCKING); with --latency=0 their work
//  is pure CPU and they run on the workers.
//
//  With a model configured in the environment (BRG_MODEL_URL, and
//  BRG_MODEL_KEY / BRG_MODEL_NAME; see brigade/model.h) the summariser and
//  the checker ask the model instead: through a limiter (at most 4 calls in
//  flight) to the OpenAI-compatible backend, which calls the endpoint through
//  the HTTP actor. Both sit under the same supervisor. The specialists then
//  never block: they ask and answer from the reply callback, and the report
//  shows the model's text. The analyser stays offline.
//
//  The desk keeps at most MAX_OPEN jobs open at once and opens the next
//  document when a report comes in. Without that window, a few hundred
//  documents would all queue at the specialists at once, and the last ones
//  would wait longer than their deadline behind the others.
//
//  Usage: assistant [--json] [--deadline=MS] [--latency=MS] [--fail=NAME]
//                   [--stall=NAME] [--documents=N] [FILE...]
//         assistant --check-json=FILE
//  NAME is analyser, summariser or checker. With no FILE it reads the sample
//  documents. Exits 0 when every document got its report.
#include "report.h"

#include <brigade.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const specialist_name[KINDS] = {"analyser", "summariser", "checker"};
static const char *const failed[KINDS] = {"analyser failed", "summariser failed", "checker failed"};

static struct {
    int deadline_ms; // each ask's deadline
    int latency_ms;  // how long a call waits for the "model"
    int fail;        // this specialist fails on document 1 (-1: none)
    int stall;       // this specialist never answers in time (-1: none)
    bool json;       // print the reports as JSON instead of Markdown
    int documents;   // how many jobs the desk expects (--documents, or one per file)
    bool model;      // a model is configured: the summariser and checker ask it
    brg_model_openai_opts_t model_opts;
} opt = {.deadline_ms = 2000, .latency_ms = 25, .fail = -1, .stall = -1};

#define MODEL_IN_FLIGHT 4 // calls to the model at once (the limiter's K)
#define MAX_OPEN 16       // jobs open at once: each ask waits behind at most 15 others
#define MAX_DOCUMENTS 100000

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

//  ---------------------------------------------------------------------------
//  A specialist: "work" [document, text] -> [json, busy_us, work_us]

//  Answer request (the current message if NULL) with a part of the report.
static int
reply_result(brg_ctx_t *ctx, const brg_msg_t *request, json_t *result, int64_t busy_us,
             int64_t work_us)
{
    char *json = result ? json_dumps(result, JSON_COMPACT | JSON_REAL_PRECISION(4)) : NULL;
    json_decref(result);
    brg_msg_t *reply = json ? brg_msg_new("result") : NULL;
    if (reply &&
        (brg_msg_add_str(reply, json) != BRG_OK || brg_msg_add_int(reply, busy_us) != BRG_OK ||
         brg_msg_add_int(reply, work_us) != BRG_OK))
        brg_msg_destroy(&reply);
    free(json);
    if (!reply)
        return request ? brg_reply_error_to(ctx, request, BRG_ENOMEM)
                       : brg_reply_error(ctx, BRG_ENOMEM);
    return request ? brg_reply_to(ctx, request, &reply) : brg_reply(ctx, &reply);
}

//  A call to the model on a document's behalf: the request to answer later.
typedef struct {
    brg_msg_t *request; // a copy of the job's "work" ask
    int64_t start_us;
} model_call_t;

static int
on_model_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    model_call_t *call = arg;
    brg_model_reply_t r;
    if (status == BRG_OK && brg_model_read_reply(reply, &r) == BRG_OK) {
        json_t *part = report_model(&r);
        if (part)
            reply_result(ctx, call->request, part, now_us() - call->start_us, 0);
        else
            brg_reply_error_to(ctx, call->request, BRG_EPROTO); // not UTF-8
    } else if (status == BRG_ECLOSED) {
        // This specialist is stopping (it failed on another document): the
        // job asks again, and the supervisor's fresh specialist answers.
        brg_reply_error_to(ctx, call->request, BRG_ENOACTOR);
    } else {
        brg_reply_error_to(ctx, call->request, status == BRG_OK ? BRG_EPROTO : status);
    }
    brg_msg_destroy(&call->request);
    free(call);
    return BRG_OK;
}

//  Ask the model (through its limiter) and answer the job from the callback.
static void
ask_model(brg_ctx_t *ctx, const brg_msg_t *msg, int kind, const char *text, size_t len)
{
    brg_ref_t limiter;
    brg_model_request_t req = {kind == SUMMARISER ? BRG_MODEL_SUMMARISE : BRG_MODEL_CHECK, NULL, 0,
                               text, len};
    model_call_t *call = malloc(sizeof(*call));
    brg_msg_t *ask = call ? brg_model_msg_request(&req) : NULL;
    if (!ask || !(call->request = brg_msg_dup(msg))) {
        brg_msg_destroy(&ask);
        free(call);
        brg_reply_error(ctx, BRG_ENOMEM);
        return;
    }
    call->start_us = now_us();
    int rc = brg_whereis(brg_ctx_system(ctx), "model.limiter", &limiter);
    if (rc == BRG_OK)
        rc = brg_ask(ctx, limiter, &ask, opt.deadline_ms, on_model_answer, call);
    if (rc != BRG_OK) {
        brg_msg_destroy(&ask);
        brg_msg_destroy(&call->request);
        free(call);
        brg_reply_error(ctx, rc);
    }
}

static int
specialist(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int kind = *(const int *)brg_state(ctx);
    size_t pos = 0, len;
    int64_t document;
    const char *text;
    if (!brg_msg_is(msg, "work") || brg_msg_read_int(msg, &pos, &document) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &text, &len) != BRG_OK)
        return BRG_UNHANDLED;
    int64_t start = now_us();
    bool ask = opt.model && kind != ANALYSER;
    if (opt.latency_ms > 0 && !opt.model)
        sleep_ms(opt.latency_ms); // the model thinking (a real one answers in ask_model)
    if (kind == opt.stall)
        sleep_ms(opt.deadline_ms + 200); // ... for longer than anyone waits
    if (kind == opt.fail && document == 1) {
        // The backend failed on this document. Tell the asker now, not at its
        // deadline; then fail, and the supervisor starts a fresh specialist.
        brg_reply_error(ctx, BRG_EFAILED);
        return BRG_EFAILED;
    }
    if (ask) {
        ask_model(ctx, msg, kind, text, len);
        return BRG_OK;
    }
    int64_t work_start = now_us();
    json_t *result = report_work(kind, text, len);
    int64_t end = now_us();
    return reply_result(ctx, NULL, result, end - start, end - work_start);
}

//  The supervisor calls this at the start and after every failure.
static int
start_specialist(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)args;
    static int starts[KINDS]; // touched only by the supervisor's thread, one call at a time
    int kind = *(int *)arg;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = arg; // which specialist: a static int, nothing to free
    opts.flags = BRG_SPAWN_LINK;
    // With a real model nobody sleeps: the analyser's work is microseconds
    // and the others ask and answer from a callback.
    if ((opt.latency_ms > 0 && !opt.model) || kind == opt.stall)
        opts.flags |= BRG_SPAWN_BLOCKING; // it sleeps: keep it off the workers
    int rc = brg_spawn(sup_ctx, specialist, &opts, child);
    if (rc == BRG_OK && starts[kind]++ > 0)
        fprintf(stderr, "  supervisor: %s failed; a fresh one takes over\n", specialist_name[kind]);
    return rc;
}

//  The model's backend and its limiter, children of the same supervisor.
static int
start_model(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    (void)args;
    return brg_model_openai_spawn(sup_ctx, &opt.model_opts, child);
}

static int
start_model_limiter(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    (void)args;
    brg_limiter_opts_t lo;
    brg_limiter_opts_init(&lo);
    lo.target_name = "model";
    lo.max_in_flight = MODEL_IN_FLIGHT;
    lo.max_queue = 1024;
    lo.request_timeout_ms = opt.deadline_ms;
    lo.max_queue_wait_ms = opt.deadline_ms; // its asker has given up by then: do not call
    return brg_limiter_spawn(sup_ctx, &lo, child);
}

//  ---------------------------------------------------------------------------
//  A job: one coordinator per document, with the record of its answers.

typedef struct {
    brg_ref_t desk;             // where the report goes
    int64_t index;              // 1-based document number
    char *title;                // the document's file name
    char *text;                 // and its text
    size_t len;                 //
    json_t *part[KINDS];        // each specialist's answer, NULL while missing
    const char *missing[KINDS]; // why a part is missing
    int pending;                // answers still to come
    int retries;                // asks repeated because a specialist went away
    int64_t started_us;         // when the job started
    int64_t busy_us, work_us;   // the specialists' own times for this job
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

static void ask_specialist(brg_ctx_t *ctx, int kind);

//  Every part is in: send the report (JSON text) to the desk and stop.
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
    brg_msg_add_int(msg, self->index);
    brg_msg_add_str(msg, json ? json : "null");
    brg_msg_add_int(msg, self->busy_us);
    brg_msg_add_int(msg, self->work_us);
    free(json);
    brg_send(ctx, self->desk, &msg);
    brg_stop(ctx);
}

static int
on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    job_t *self = brg_state(ctx);
    int kind = (int)(intptr_t)arg;
    if (status == BRG_ECLOSED)
        return BRG_OK; // this job is being stopped (the system closes): no report
    if (status == BRG_ENOACTOR && ++self->retries <= 20) {
        // The specialist went away before it took our request (another
        // document made it fail) or is being restarted: ask again shortly.
        brg_msg_t *retry = brg_msg_new_int("retry", kind);
        brg_send_after(ctx, brg_self(ctx), &retry, 10, NULL);
        return BRG_OK;
    }
    const char *json;
    size_t pos = 0, len;
    int64_t busy, took;
    if (status == BRG_OK && brg_msg_read_str(reply, &pos, &json, &len) == BRG_OK &&
        brg_msg_read_int(reply, &pos, &busy) == BRG_OK &&
        brg_msg_read_int(reply, &pos, &took) == BRG_OK &&
        (self->part[kind] = json_loadb(json, len, 0, NULL)) != NULL) {
        self->busy_us += busy;
        self->work_us += took;
    } else if (status == BRG_ETIMEDOUT) {
        self->missing[kind] = "timed out";
    } else if (status == BRG_ENOACTOR) {
        self->missing[kind] = "no specialist";
    } else if (status == BRG_EFAILED || status == BRG_OK) {
        self->missing[kind] = failed[kind];
    } else {
        self->missing[kind] = brg_strerror(status); // the model's call failed: say why
    }
    if (--self->pending == 0)
        job_finish(ctx);
    return BRG_OK;
}

static void
ask_specialist(brg_ctx_t *ctx, int kind)
{
    job_t *self = brg_state(ctx);
    brg_ref_t to;
    if (brg_whereis(brg_ctx_system(ctx), specialist_name[kind], &to) != BRG_OK) {
        on_answer(ctx, BRG_ENOACTOR, NULL, (void *)(intptr_t)kind); // being restarted
        return;
    }
    brg_msg_t *req = brg_msg_new("work");
    brg_msg_add_int(req, self->index);
    brg_msg_add_strn(req, self->text, self->len);
    if (brg_ask(ctx, to, &req, opt.deadline_ms, on_answer, (void *)(intptr_t)kind) != BRG_OK)
        on_answer(ctx, BRG_ENOACTOR, NULL, (void *)(intptr_t)kind); // gone meanwhile
}

static int
job(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t kind;
    if (brg_msg_is(msg, "retry") && brg_msg_read_int(msg, &pos, &kind) == BRG_OK) {
        ask_specialist(ctx, (int)kind);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

//  Fan out: all three asks leave at once.
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
//  The desk: opens a job per document, prints progress, then the reports.

typedef struct {
    brg_ref_t specialists; // their supervisor, shut down at the end
    int opened, done;      // jobs
    brg_msg_t **waiting;   // documents not yet opened, in arrival order (owned)
    int n_waiting, first;  // entries in waiting; the next to open
    json_t *reports;       // by document index - 1
    int64_t started_us;    // when the desk opened
    int64_t busy_us;       // the specialists' own time, every job
    int64_t work_us;       // of which text work
} desk_t;

static void
desk_destroy(void *state)
{
    desk_t *self = state;
    for (int i = self->first; i < self->n_waiting; i++)
        brg_msg_destroy(&self->waiting[i]);
    free(self->waiting);
    json_decref(self->reports);
    free(self);
}

//  The last report is in: print everything, then close the desk. The
//  supervisor stops its specialists; main's brg_system_await_actors returns.
static void
desk_close(brg_ctx_t *ctx)
{
    desk_t *self = brg_state(ctx);
    double wall_ms = (now_us() - self->started_us) / 1e3;
    double busy_ms = self->busy_us / 1e3, work_ms = self->work_us / 1e3;
    if (opt.json) {
        json_t *root = json_object(), *timing = json_object();
        json_object_set_new(timing, "wall_ms", json_real(wall_ms));
        json_object_set_new(timing, "specialists_ms", json_real(busy_ms));
        json_object_set_new(timing, "text_work_ms", json_real(work_ms));
        json_object_set(root, "documents", self->reports);
        json_object_set_new(root, "timing", timing);
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(4));
        printf("\n");
        json_decref(root);
    } else {
        for (size_t i = 0; i < json_array_size(self->reports); i++)
            report_print_markdown(json_array_get(self->reports, i));
    }
    fflush(stdout);
    double ratio = wall_ms > 0 ? busy_ms / wall_ms : 0;
    fprintf(stderr,
            "%d documents: wall time %.1f ms; the specialists' own times add up to %.1f ms "
            "(text work %.1f ms, %s %.1f ms): %.1fx the wall time%s\n",
            self->done, wall_ms, busy_ms, work_ms,
            opt.model ? "waiting for the model" : "simulated model latency", busy_ms - work_ms,
            ratio, ratio > 1 ? ", thanks to asking in parallel" : "");
    brg_exit(brg_ctx_system(ctx), self->specialists, BRG_EXIT_SHUTDOWN);
    brg_stop(ctx);
}

//  "document" [title, text]: open a job for it.
static int
desk_open(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    desk_t *self = brg_state(ctx);
    size_t pos = 0, title_len, len;
    const char *title, *text;
    if (brg_msg_read_str(msg, &pos, &title, &title_len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &text, &len) != BRG_OK)
        return BRG_UNHANDLED;
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

//  "report" [index, json, busy_us, work_us]: a job is done.
static int
desk_report(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    desk_t *self = brg_state(ctx);
    size_t pos = 0, len;
    int64_t index, busy, took;
    const char *json;
    if (brg_msg_read_int(msg, &pos, &index) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &json, &len) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &busy) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &took) != BRG_OK || index < 1 || index > opt.documents)
        return BRG_UNHANDLED;
    json_t *report = json_loadb(json, len, 0, NULL);
    json_array_set_new(self->reports, (size_t)index - 1, report ? report : json_null());
    self->busy_us += busy;
    self->work_us += took;
    const char *title = json_string_value(json_object_get(report, "document"));
    fprintf(stderr, "[%d/%d] %s:", ++self->done, opt.documents, title ? title : "?");
    for (int k = 0; k < KINDS; k++) {
        const char *reason =
            json_string_value(json_object_get(json_object_get(report, part_name[k]), "reason"));
        fprintf(stderr, "%s %s %s%s%s", k ? "," : "", part_name[k], reason ? "missing" : "ok",
                reason ? ": " : "", reason ? reason : "");
    }
    fprintf(stderr, " (%.1f ms)\n", json_real_value(json_object_get(report, "elapsed_ms")));
    if (self->done == opt.documents)
        desk_close(ctx);
    return BRG_OK;
}

//  Open waiting documents while fewer than MAX_OPEN jobs are open.
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

static int
desk(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    desk_t *self = brg_state(ctx);
    if (brg_msg_is(msg, "document")) {
        // Every document waits its turn, so they open in arrival order.
        if (self->n_waiting == opt.documents)
            return BRG_UNHANDLED; // not one main sent
        brg_msg_t *doc = brg_msg_dup(msg);
        if (!doc)
            return BRG_ENOMEM;
        self->waiting[self->n_waiting++] = doc;
        return desk_open_waiting(ctx);
    }
    if (brg_msg_is(msg, "report")) {
        int rc = desk_report(ctx, msg);
        return rc == BRG_OK && self->done < opt.documents ? desk_open_waiting(ctx) : rc;
    }
    return BRG_UNHANDLED;
}

//  ---------------------------------------------------------------------------
//  Files, flags and main

//  Read a whole file, at most BRG_TEXT_MAX bytes. NULL on error.
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

//  The sample documents: the *.txt files of BRG_ASSISTANT_DOCS, sorted.
//  Returns how many were added to *paths (grown as needed), or -1.
static int
sample_documents(char ***paths, int *n)
{
    DIR *dir = opendir(BRG_ASSISTANT_DOCS);
    struct dirent *e;
    int found = 0;
    while (dir && (e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".txt") != 0)
            continue;
        char **grown = realloc(*paths, sizeof(char *) * (size_t)(*n + 1));
        char *path = malloc(sizeof(BRG_ASSISTANT_DOCS) + len + 1);
        if (grown)
            *paths = grown;
        if (!grown || !path) {
            free(path);
            closedir(dir);
            return -1;
        }
        sprintf(path, "%s/%s", BRG_ASSISTANT_DOCS, e->d_name);
        (*paths)[(*n)++] = path;
        found++;
    }
    if (dir)
        closedir(dir);
    qsort(*paths, (size_t)*n, sizeof(char *), by_name);
    return found;
}

static int
specialist_of(const char *name)
{
    for (int k = 0; k < KINDS; k++)
        if (strcmp(name, specialist_name[k]) == 0)
            return k;
    return -1;
}

//  A whole decimal number in [min, max] after prefix, or -1.
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
usage(const char *argv0, FILE *out)
{
    fprintf(out,
            "usage: %s [--json] [--deadline=MS] [--latency=MS] [--fail=NAME] [--stall=NAME]\n"
            "       %*s [--documents=N] [FILE...]\n"
            "       %s --check-json=FILE\n"
            "  FILE...          the documents (default: the samples)\n"
            "  --json           print the reports as one JSON document\n"
            "  --deadline=MS    each ask's deadline (default 2000; 60000 with a model)\n"
            "  --latency=MS     simulated model latency per call (default 25)\n"
            "  --fail=NAME      that specialist fails on the first document\n"
            "  --stall=NAME     that specialist answers after the deadline\n"
            "  --documents=N    open N jobs, going round the documents as often as needed\n"
            "  --check-json=F   check that F holds a report as --json writes it\n"
            "  NAME: analyser, summariser or checker\n",
            argv0, (int)strlen(argv0), "", argv0);
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    char **paths = NULL;
    int n = 0, documents = 0;
    bool deadline_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(argv[0], stdout);
        if (strcmp(a, "--json") == 0)
            opt.json = true;
        else if ((v = number_after(a, "--deadline=", 1, 3600000)) >= 0)
            opt.deadline_ms = v, deadline_set = true;
        else if ((v = number_after(a, "--latency=", 0, 60000)) >= 0)
            opt.latency_ms = v;
        else if ((v = number_after(a, "--documents=", 1, MAX_DOCUMENTS)) >= 0)
            documents = v;
        else if (strncmp(a, "--fail=", 7) == 0 && specialist_of(a + 7) >= 0)
            opt.fail = specialist_of(a + 7);
        else if (strncmp(a, "--stall=", 8) == 0 && specialist_of(a + 8) >= 0)
            opt.stall = specialist_of(a + 8);
        else if (strncmp(a, "--check-json=", 13) == 0)
            return report_check_file(a + 13);
        else if (a[0] != '-' && n < MAX_DOCUMENTS) {
            char **grown = realloc(paths, sizeof(char *) * (size_t)(n + 1));
            if (!grown || !(grown[n] = strdup(a)))
                return 1;
            paths = grown;
            n++;
        } else {
            fprintf(stderr, "assistant: bad argument '%s'\n", a);
            return usage(argv[0], stderr);
        }
    }
    brg_model_openai_opts_init(&opt.model_opts);
    if (brg_model_openai_opts_from_env(&opt.model_opts) == BRG_OK) {
        opt.model = true;
        if (!deadline_set)
            opt.deadline_ms = 60000; // a model takes seconds, not microseconds
        // The backend's own deadline answers first, so the report says why.
        opt.model_opts.timeout_ms = opt.deadline_ms > 400 ? opt.deadline_ms - 200 : 200;
        fprintf(stderr,
                "assistant: the summariser and checker ask the model %s at %s "
                "(at most %d calls at once)\n",
                opt.model_opts.model, opt.model_opts.url, MODEL_IN_FLIGHT);
    }
    if (n == 0 && sample_documents(&paths, &n) < 0) {
        fprintf(stderr, "assistant: out of memory\n");
        return 1;
    }
    if (n == 0) {
        fprintf(stderr, "assistant: no documents\n");
        return 1;
    }
    char **texts = calloc((size_t)n, sizeof(char *));
    size_t *lens = calloc((size_t)n, sizeof(size_t));
    if (!texts || !lens)
        return 1;
    for (int i = 0; i < n; i++)
        if (!(texts[i] = read_file(paths[i], &lens[i]))) {
            fprintf(stderr, "assistant: cannot read %s\n", paths[i]);
            return 1;
        }
    opt.documents = documents ? documents : n;
    json_object_seed(0); // seed jansson's hashing once, before any thread uses it

    brg_system_t *sys = brg_system_new(NULL);
    if (!sys)
        return 1;

    // The specialists, each registered under its name and restarted on failure.
    // With a model, its backend and limiter come first (started first,
    // stopped last).
    static int kinds[KINDS] = {ANALYSER, SUMMARISER, CHECKER};
    brg_child_spec_t specs[KINDS + 2];
    int n_specs = 0;
    if (opt.model) {
        brg_child_spec_init(&specs[n_specs]);
        specs[n_specs].id = specs[n_specs].name = "model";
        specs[n_specs++].start = start_model;
        brg_child_spec_init(&specs[n_specs]);
        specs[n_specs].id = specs[n_specs].name = "model.limiter";
        specs[n_specs++].start = start_model_limiter;
    }
    for (int k = 0; k < KINDS; k++, n_specs++) {
        brg_child_spec_init(&specs[n_specs]);
        specs[n_specs].id = specs[n_specs].name = specialist_name[k];
        specs[n_specs].start = start_specialist;
        specs[n_specs].arg = &kinds[k];
    }
    brg_supervisor_opts_t sup_opts;
    brg_supervisor_opts_init(&sup_opts);
    sup_opts.intensity = 5;
    sup_opts.children = specs;
    sup_opts.n_children = (size_t)n_specs;
    brg_ref_t specialists, the_desk;
    brg_supervisor_counts_t counts;
    desk_t *d = calloc(1, sizeof(*d));
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = d;
    opts.state_destroy = desk_destroy;
    // The count request is answered once the children are up and named.
    if (!d || brg_supervisor_spawn_root(sys, &sup_opts, &specialists) != BRG_OK ||
        brg_supervisor_count(sys, specialists, 5000, &counts) != BRG_OK) {
        free(d);
        brg_system_destroy(&sys);
        return 1;
    }
    d->specialists = specialists;
    d->reports = json_array();
    d->waiting = calloc((size_t)opt.documents, sizeof(brg_msg_t *));
    if (!d->waiting) {
        desk_destroy(d);
        brg_system_destroy(&sys);
        return 1;
    }
    for (int i = 0; i < opt.documents; i++)
        json_array_append_new(d->reports, json_null());
    d->started_us = now_us();
    if (brg_system_spawn(sys, desk, &opts, &the_desk) != BRG_OK) {
        desk_destroy(d);
        brg_system_destroy(&sys);
        return 1;
    }
    // Document i is file i % n; a second round through the files is titled
    // "name (2)", and so on.
    for (int i = 0; i < opt.documents; i++) {
        const char *slash = strrchr(paths[i % n], '/');
        char title[512];
        snprintf(title, sizeof(title), i < n ? "%s" : "%s (%d)", slash ? slash + 1 : paths[i % n],
                 i / n + 1);
        brg_msg_t *doc = brg_msg_new("document");
        brg_msg_add_str(doc, title);
        brg_msg_add_strn(doc, texts[i % n], lens[i % n]);
        // One trace per document when tracing is on (BRG_TRACE_FILE): the
        // desk's asks, the specialists' and the model's are its spans. The
        // root span covers the hand-over; what follows are its children.
        brg_span_t *trace = brg_system_trace_start(sys, "document", BRG_SPAN_PRODUCER);
        brg_span_set_str(trace, "assistant.document.title", title);
        brg_system_send(sys, the_desk, &doc);
        brg_span_end(NULL, &trace);
    }
    for (int i = 0; i < n; i++) {
        free(texts[i]);
        free(paths[i]);
    }
    free(texts);
    free(lens);
    free(paths);

    // The desk shuts everything down after the last report: wait for that.
    // Each window of MAX_OPEN jobs takes at most about one deadline.
    long long wait_ms =
        ((long long)(opt.documents + MAX_OPEN - 1) / MAX_OPEN + 10) * opt.deadline_ms + 10000;
    int rc = brg_system_await_actors(sys, wait_ms > INT_MAX ? INT_MAX : (int)wait_ms);
    if (rc != BRG_OK)
        fprintf(stderr, "assistant: not every document got its report (%s)\n", brg_strerror(rc));
    brg_system_destroy(&sys);
    return rc == BRG_OK ? 0 : 1;
}
