//  ask_model - one text, three questions to "the model" at once.
//
//  The smallest program on top of brigade/model.h: it starts the backend the
//  environment asks for (the offline one, or an OpenAI-compatible endpoint
//  when BRG_MODEL_URL is set), asks it to summarise, check and list the
//  keywords of a text, all three at once, and prints the answers in order.
//  The three asks come from one coordinator actor with brg_ask; main only
//  starts things and waits. Exits 0 when all three were answered.
//
//  Usage: ask_model [FILE]    (default: a short built-in text)
#include <brigade.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char default_text[] =
    "Brigade runs actors on a few threads. Each actor keeps it's state private and talks only "
    "by messages. A supervisor restarts an actor that fails, and and the rest keep working. "
    "Messages are msgpack, so a actor in another process can read them.";

static const brg_model_task_t tasks[] = {BRG_MODEL_SUMMARISE, BRG_MODEL_CHECK, BRG_MODEL_KEYWORDS};
enum { N_TASKS = 3 };

static atomic_int answered; // tasks that got an answer; main checks them

//  The coordinator's state: the text, the model, and the answers so far.
typedef struct {
    char *text;
    brg_ref_t model;
    char *answer[N_TASKS];
    int status[N_TASKS];
    int pending;
} coordinator_t;

static void
coordinator_destroy(void *state)
{
    coordinator_t *self = state;
    for (int i = 0; i < N_TASKS; i++)
        free(self->answer[i]);
    free(self->text);
    free(self);
}

//  One answer is in (or its deadline passed). Print all when the last is in.
static int
on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    coordinator_t *self = brg_state(ctx);
    int i = (int)(intptr_t)arg;
    brg_model_reply_t r;
    self->status[i] = status;
    if (status == BRG_OK && brg_model_read_reply(reply, &r) == BRG_OK &&
        (self->answer[i] = strndup(r.text, r.len)) != NULL)
        atomic_fetch_add(&answered, 1);
    if (--self->pending > 0)
        return BRG_OK;
    for (int k = 0; k < N_TASKS; k++) {
        printf("## %s\n\n", brg_model_task_name(tasks[k]));
        if (self->answer[k]) {
            size_t len = strlen(self->answer[k]);
            while (len > 0 && self->answer[k][len - 1] == '\n')
                len--; // the check's list ends with a newline
            printf("%.*s\n\n", (int)len, self->answer[k]);
        } else
            printf("(no answer: %s)\n\n", brg_strerror(self->status[k]));
    }
    // Done: stop the model too, so main's brg_system_await_actors returns.
    brg_actor_stop(brg_ctx_system(ctx), self->model);
    brg_stop(ctx);
    return BRG_OK;
}

//  Fan out: the three asks leave at once; the answers come back in any order.
static int
coordinator_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    coordinator_t *self = brg_state(ctx);
    self->pending = N_TASKS;
    for (int i = 0; i < N_TASKS; i++) {
        brg_model_request_t req = {tasks[i], NULL, 0, self->text, 0};
        brg_msg_t *ask = brg_model_msg_request(&req);
        int rc = ask ? brg_ask(ctx, self->model, &ask, 60000, on_answer, (void *)(intptr_t)i)
                     : BRG_ENOMEM;
        if (rc != BRG_OK)
            on_answer(ctx, rc, NULL, (void *)(intptr_t)i);
    }
    return BRG_OK;
}

static int
coordinator(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_UNHANDLED;
}

static char *
read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = f ? calloc(1, BRG_TEXT_MAX + 1) : NULL;
    if (text && fread(text, 1, BRG_TEXT_MAX, f) == 0 && ferror(f)) {
        free(text);
        text = NULL;
    }
    if (f)
        fclose(f);
    return text;
}

int
main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        if (!help)
            fprintf(stderr, "ask_model: bad argument '%s'\n", argv[argc > 2 ? 2 : 1]);
        fprintf(help ? stdout : stderr,
                "usage: %s [FILE]\n"
                "  FILE  the text to ask about (default: a short built-in text)\n"
                "  BRG_MODEL_URL, BRG_MODEL_KEY, BRG_MODEL_NAME: an OpenAI-compatible endpoint\n"
                "  (default: the offline backend)\n",
                argv[0]);
        return help ? 0 : 2;
    }
    char *text = argc > 1 ? read_text(argv[1]) : strdup(default_text);
    if (!text) {
        fprintf(stderr, "ask_model: cannot read %s\n", argc > 1 ? argv[1] : "the text");
        return 1;
    }
    brg_system_t *sys = brg_system_new(NULL);
    coordinator_t *c = calloc(1, sizeof(*c));
    const char *backend = "?";
    if (!sys || !c || brg_model_spawn_from_env_root(sys, "model", &c->model, &backend) != BRG_OK) {
        fprintf(stderr, "ask_model: cannot start\n");
        free(c);
        free(text);
        brg_system_destroy(&sys);
        return 1;
    }
    fprintf(stderr, "ask_model: asking the %s backend\n", backend);
    c->text = text;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = c;
    opts.state_destroy = coordinator_destroy;
    opts.init = coordinator_init;
    brg_ref_t ref;
    if (brg_system_spawn(sys, coordinator, &opts, &ref) == BRG_OK)
        brg_system_await_actors(sys, 120000);
    brg_system_destroy(&sys);
    return atomic_load(&answered) == N_TASKS ? 0 : 1;
}
