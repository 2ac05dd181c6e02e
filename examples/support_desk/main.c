//  support_desk - thousands of customer conversations at once, each its own
//  actor under a dynamic supervisor.
//
//  The desk is a supervisor with two kinds of children: a few agents, who
//  answer what customers say, and "conversations", a dynamic supervisor
//  (OTP's simple_one_for_one) that gets one conversation actor per customer
//  at run time. A conversation plays a short script: the customer says
//  something and asks an agent (brg_ask with a deadline), reads the answer,
//  thinks for a while and says the next thing. Thinking is a timer
//  (brg_send_after), not a sleep: a customer who is thinking costs no thread,
//  so thousands of them fit on two cores. A conversation whose agent does not
//  answer in time fails, and its supervisor (restart: transient) starts it
//  again from the top; one that ends normally is not restarted.
//
//  Each conversation reports its per-turn latencies (question to answer) to
//  the stats actor when it ends. When every conversation has ended, the stats
//  actor prints throughput and latency percentiles and shuts the desk down.
//
//  Usage: support_desk [--conversations=N] [--seed=S]. Exits 0 when every
//  conversation completed.
#include <brigade.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AGENTS 4
#define MAX_TURNS 5
#define ANSWER_DEADLINE_MS 2000
#define MAX_CONVERSATIONS 1000000 // the conversations' restart intensity is one each

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint32_t
xorshift32(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

//  ---------------------------------------------------------------------------
//  Agents: answer by what the customer talks about.

static const struct {
    const char *cue;
    const char *answer;
} intents[] = {
    {"password", "I have sent you a link to reset your password."},
    {"email", "It can take a few minutes; please check your spam folder too."},
    {"order", "Your order left the warehouse yesterday; here is the tracking number."},
    {"delivered", "I have opened a case with the carrier for you."},
    {"refund", "The refund goes back to your card within ten working days."},
    {"box", "Unused items in their original box can be returned within thirty days."},
    {"ship", "We ship to every country in the European Union and to Norway."},
    {"thank", "You are welcome! Is there anything else I can do?"},
};

//  "say" [text] -> "answer" [text]
static int
agent(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0, len;
    const char *text;
    if (!brg_msg_is(msg, "say") || brg_msg_read_str(msg, &pos, &text, &len) != BRG_OK)
        return BRG_UNHANDLED;
    const char *answer = "Let me check that for you.";
    for (size_t i = 0; i < sizeof(intents) / sizeof(intents[0]); i++)
        if (memmem(text, len, intents[i].cue, strlen(intents[i].cue))) {
            answer = intents[i].answer;
            break;
        }
    brg_msg_t *reply = brg_msg_new_str("answer", answer);
    return brg_reply(ctx, &reply);
}

static int
start_agent(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    (void)args;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_LINK;
    return brg_spawn(sup_ctx, agent, &opts, child);
}

//  ---------------------------------------------------------------------------
//  Conversations: one scripted customer each.

static const char *const scripts[][MAX_TURNS] = {
    {"Hi, I forgot my password.", "The email never arrived.", "Found it, thank you!",
     "One more thing: can I change my email address?", "Great, bye."},
    {"Where is my order?", "The tracking page says delivered, but nothing is here.",
     "I asked the neighbours, still nothing.", "OK, I will wait for the carrier.",
     "Thanks for your help."},
    {"I would like a refund.", "The shoes are too small.", "I still have the box.",
     "How long does the refund take?", "Thank you."},
    {"Do you ship to Norway?", "How long does shipping take?", "Can I track the order?",
     "Is there a fee for a refund?", "Thanks, bye."},
};
#define SCRIPTS (sizeof(scripts) / sizeof(scripts[0]))

typedef struct {
    int64_t id;                     // 1-based conversation number
    uint32_t rng;                   // decides the script, its length and think times
    int script, turns, turn;        // which script, how many turns, turns done
    int64_t asked_us;               // when the current question left
    uint32_t latency_us[MAX_TURNS]; // question to answer, per turn
} conversation_t;

static uint32_t seed = 42;

static void
think_then_say(brg_ctx_t *ctx)
{
    conversation_t *self = brg_state(ctx);
    brg_msg_t *next = brg_msg_new("next");
    brg_send_after(ctx, brg_self(ctx), &next, 10 + (int)(xorshift32(&self->rng) % 90), NULL);
}

static int
on_answer(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    (void)arg;
    conversation_t *self = brg_state(ctx);
    if (status == BRG_ECLOSED)
        return BRG_OK; // this conversation is being stopped: nothing to say
    if (status != BRG_OK) {
        // No answer in time (or the agent was being restarted): fail. The
        // supervisor starts this conversation again from the top.
        brg_fail(ctx, status, "the agent did not answer");
        return BRG_OK;
    }
    self->latency_us[self->turn++] = (uint32_t)(now_us() - self->asked_us);
    if (self->turn < self->turns) {
        think_then_say(ctx);
        return BRG_OK;
    }
    brg_msg_t *done = brg_msg_new("done");
    brg_msg_add_int(done, self->id);
    brg_msg_add_array(done, (uint32_t)self->turns);
    for (int i = 0; i < self->turns; i++)
        brg_msg_add_uint(done, self->latency_us[i]);
    brg_send_named(ctx, "stats", &done);
    brg_stop(ctx); // a normal exit: a transient child is not restarted
    return BRG_OK;
}

//  "next": the customer says the next line of the script to an agent.
static int
conversation(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    conversation_t *self = brg_state(ctx);
    if (!brg_msg_is(msg, "next"))
        return BRG_UNHANDLED;
    char name[16];
    brg_ref_t agent_ref;
    snprintf(name, sizeof(name), "agent.%d", (int)(self->id % AGENTS));
    if (brg_whereis(brg_ctx_system(ctx), name, &agent_ref) != BRG_OK)
        return on_answer(ctx, BRG_ENOACTOR, NULL, NULL);
    brg_msg_t *say = brg_msg_new_str("say", scripts[self->script][self->turn]);
    self->asked_us = now_us();
    if (brg_ask(ctx, agent_ref, &say, ANSWER_DEADLINE_MS, on_answer, NULL) != BRG_OK)
        return on_answer(ctx, BRG_ENOACTOR, NULL, NULL);
    return BRG_OK;
}

static int
conversation_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    think_then_say(ctx); // customers do not all arrive in the same millisecond
    return BRG_OK;
}

//  args: the start request; its payload is the conversation number. A
//  restart gets the same number, so the same script.
static int
start_conversation(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    conversation_t *c = calloc(1, sizeof(*c));
    size_t pos = 0;
    if (!c || !args || brg_msg_read_int(args, &pos, &c->id) != BRG_OK) {
        free(c);
        return BRG_EINVAL;
    }
    c->rng = (seed ^ (uint32_t)c->id * 2654435761u) | 1;
    c->script = (int)(xorshift32(&c->rng) % SCRIPTS);
    c->turns = 3 + (int)(xorshift32(&c->rng) % (MAX_TURNS - 2));
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = c;
    opts.state_destroy = free;
    opts.init = conversation_init;
    opts.flags = BRG_SPAWN_LINK;
    int rc = brg_spawn(sup_ctx, conversation, &opts, child);
    if (rc != BRG_OK)
        free(c);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Stats: gathers every turn's latency; prints and closes at the end.

typedef struct {
    brg_ref_t desk;       // the desk's supervisor, shut down at the end
    int expected, done;   // conversations
    uint32_t *latency_us; // every turn's latency, expected * MAX_TURNS room
    size_t turns;         // used
    int64_t started_us;   // when the desk opened
} stats_t;

static void
stats_destroy(void *state)
{
    stats_t *self = state;
    free(self->latency_us);
    free(self);
}

static int
by_value(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

//  The nearest-rank percentile of sorted values.
static unsigned
percentile(const uint32_t *sorted, size_t n, int p)
{
    size_t rank = (n * (size_t)p + 99) / 100;
    return n ? sorted[rank ? rank - 1 : 0] : 0;
}

//  "done" [id, [latency_us...]]
static int
stats(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    stats_t *self = brg_state(ctx);
    size_t pos = 0;
    int64_t id;
    uint32_t n;
    if (!brg_msg_is(msg, "done") || brg_msg_read_int(msg, &pos, &id) != BRG_OK ||
        brg_msg_read_array(msg, &pos, &n) != BRG_OK || n > MAX_TURNS)
        return BRG_UNHANDLED;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t us;
        if (brg_msg_read_uint(msg, &pos, &us) == BRG_OK)
            self->latency_us[self->turns++] = (uint32_t)us;
    }
    if (++self->done < self->expected)
        return BRG_OK;

    double wall_s = (now_us() - self->started_us) / 1e6;
    qsort(self->latency_us, self->turns, sizeof(uint32_t), by_value);
    printf("%d of %d conversations completed: %zu turns in %.2f s, %.0f turns/s\n", self->done,
           self->expected, self->turns, wall_s, self->turns / wall_s);
    printf("latency per turn (question to answer): p50 %u us, p90 %u us, p99 %u us, max %u us\n",
           percentile(self->latency_us, self->turns, 50),
           percentile(self->latency_us, self->turns, 90),
           percentile(self->latency_us, self->turns, 99),
           percentile(self->latency_us, self->turns, 100));
    brg_exit(brg_ctx_system(ctx), self->desk, BRG_EXIT_SHUTDOWN);
    brg_stop(ctx);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------

static int
usage(const char *argv0, FILE *out)
{
    fprintf(out,
            "usage: %s [--conversations=N] [--seed=S]\n"
            "  --conversations=N  customers, 1..%d (default 2000)\n"
            "  --seed=S           decides each customer's script and think times (default 42)\n",
            argv0, MAX_CONVERSATIONS);
    return out == stdout ? 0 : 2;
}

//  A whole decimal number in [min, max] after prefix, into *out; or false.
static bool
number_after(const char *arg, const char *prefix, long long min, long long max, long long *out)
{
    size_t n = strlen(prefix);
    char *end;
    if (strncmp(arg, prefix, n) != 0 || arg[n] < '0' || arg[n] > '9')
        return false;
    errno = 0;
    long long v = strtoll(arg + n, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int
main(int argc, char **argv)
{
    int count = 2000;
    for (int i = 1; i < argc; i++) {
        long long v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(argv[0], stdout);
        if (number_after(argv[i], "--conversations=", 1, MAX_CONVERSATIONS, &v))
            count = (int)v;
        else if (number_after(argv[i], "--seed=", 0, UINT32_MAX, &v))
            seed = (uint32_t)v;
        else {
            fprintf(stderr, "support_desk: bad argument '%s'\n", argv[i]);
            return usage(argv[0], stderr);
        }
    }
    brg_system_t *sys = brg_system_new(NULL);
    if (!sys)
        return 1;

    // The conversations: a dynamic supervisor, one transient child each.
    brg_child_spec_t conversation_spec;
    brg_child_spec_init(&conversation_spec);
    conversation_spec.id = "conversation";
    conversation_spec.start = start_conversation;
    conversation_spec.restart = BRG_RESTART_TRANSIENT;
    brg_supervisor_opts_t conversations_opts;
    brg_supervisor_opts_init(&conversations_opts);
    conversations_opts.strategy = BRG_STRATEGY_DYNAMIC;
    conversations_opts.intensity = count; // every conversation may fail once in 5 s
    conversations_opts.children = &conversation_spec;
    conversations_opts.n_children = 1;

    // The desk: the agents first, then the conversations.
    static char agent_names[AGENTS][16];
    brg_child_spec_t specs[AGENTS + 1];
    for (int i = 0; i < AGENTS; i++) {
        snprintf(agent_names[i], sizeof(agent_names[i]), "agent.%d", i);
        brg_child_spec_init(&specs[i]);
        specs[i].id = specs[i].name = agent_names[i];
        specs[i].start = start_agent;
    }
    brg_child_spec_init(&specs[AGENTS]);
    specs[AGENTS].id = specs[AGENTS].name = "conversations";
    specs[AGENTS].start = brg_supervisor_start;
    specs[AGENTS].arg = &conversations_opts;
    specs[AGENTS].type = BRG_CHILD_SUPERVISOR; // shutdown: infinity, as in OTP
    brg_supervisor_opts_t desk_opts;
    brg_supervisor_opts_init(&desk_opts);
    desk_opts.intensity = 5;
    desk_opts.children = specs;
    desk_opts.n_children = AGENTS + 1;

    brg_ref_t desk, conversations;
    brg_supervisor_counts_t counts;
    stats_t *st = calloc(1, sizeof(*st));
    uint32_t *latencies = calloc((size_t)count * MAX_TURNS, sizeof(uint32_t));
    // The count request is answered once the desk's children are up and named.
    if (!st || !latencies || brg_supervisor_spawn_root(sys, &desk_opts, &desk) != BRG_OK ||
        brg_supervisor_count(sys, desk, 5000, &counts) != BRG_OK ||
        brg_whereis(sys, "conversations", &conversations) != BRG_OK) {
        free(st);
        free(latencies);
        brg_system_destroy(&sys);
        return 1;
    }
    st->desk = desk;
    st->expected = count;
    st->latency_us = latencies;
    st->started_us = now_us();
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = st;
    opts.state_destroy = stats_destroy;
    opts.name = "stats";
    if (brg_system_spawn(sys, stats, &opts, NULL) != BRG_OK) {
        stats_destroy(st);
        brg_system_destroy(&sys);
        return 1;
    }

    printf("support desk: %d conversations, %d agents, seed %u\n", count, AGENTS, (unsigned)seed);
    int started = 0;
    for (int i = 1; i <= count; i++) {
        brg_msg_t *args = brg_supervisor_msg_start();
        brg_msg_add_int(args, i);
        if (brg_supervisor_start_child(sys, conversations, &args, 5000, NULL) == BRG_OK)
            started++;
    }
    // The stats actor shuts the desk down after the last conversation.
    int rc = started == count ? brg_system_await_actors(sys, 60000) : BRG_EFAILED;
    if (rc != BRG_OK)
        fprintf(stderr, "support_desk: not every conversation completed (%s)\n", brg_strerror(rc));
    brg_system_destroy(&sys);
    return rc == BRG_OK ? 0 : 1;
}
