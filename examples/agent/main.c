//  agent - a chat agent that calls tools: a calculator and a document search,
//  each an actor, driven by a conversation actor (brigade/agent.h).
//
//  main() starts the model backend, the two tools (registered as
//  "tool.calculator" and "tool.search") and a conversation that offers both
//  to the model. Then it says each user turn with brg_conv_say and prints
//  the answer as it streams in, with every tool call and its result as they
//  happen; at the end it prints the whole conversation (the history the
//  conversation keeps, tool calls included) and its counters.
//
//  Offline (the default) the model is the offline backend with a chat
//  script (below) that calls the calculator and the search in the turns
//  that need them: the tool calls, their arguments and the tool results are
//  real; only the model's wording is scripted. With BRG_MODEL_URL (and
//  BRG_MODEL_KEY, BRG_MODEL_NAME) set, any OpenAI-compatible endpoint is
//  the model, and it decides which tools to call.
//
//  Usage: agent [--no-stream] [--max-steps=N] [--tool-timeout=MS] [--docs=DIR]
//               [--] [MESSAGE...]
//  With no MESSAGE it says the built-in turns (they build on each other).
//  Exits 0 when every turn was answered.
#include "tools.h"

#include <brigade.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const default_turns[] = {
    "A laptop costs 1299.99 and is 15% off this week. What do I pay for it?",
    "And if I buy two of them at that price?",
    "Is there anything in our documents about the importer bug that delayed the release?",
};

#define SYSTEM_PROMPT                                                                              \
    "You are a helpful assistant. Use the calculator tool for any arithmetic and the "             \
    "search_documents tool to find facts in the company documents; quote the document you "        \
    "used. Answer briefly."

//  The offline model's script: the first rule that matches answers. A rule
//  with after_tool answers the model call that follows the tool results, so
//  those come first (a rule without it matches either way).
static const brg_model_tool_call_t calc_one[] = {
    {"call_1", 0, "calculator", 0, "{\"expression\":\"1299.99 * (1 - 0.15)\"}", 0}};
static const brg_model_tool_call_t calc_two[] = {
    {"call_2", 0, "calculator", 0, "{\"expression\":\"2 * 1299.99 * (1 - 0.15)\"}", 0}};
static const brg_model_tool_call_t search_importer[] = {
    {"call_3", 0, "search_documents", 0, "{\"query\":\"importer bug release\",\"max_results\":2}",
     0}};
static const brg_model_rule_t script[] = {
    {.contains = "15% off",
     .after_tool = true,
     .text = "The calculator says {tool}, so that is "
             "what you pay with the discount."},
    {.contains = "15% off",
     .text = "Let me work that out.",
     .tool_calls = calc_one,
     .n_tool_calls = 1},
    {.contains = "two of them", .after_tool = true, .text = "Two at the discounted price: {tool}."},
    {.contains = "two of them", .tool_calls = calc_two, .n_tool_calls = 1},
    {.contains = "importer", .after_tool = true, .text = "Yes. From the documents:\n{tool}"},
    {.contains = "importer",
     .text = "I will search the documents.",
     .tool_calls = search_importer,
     .n_tool_calls = 1},
};

static struct {
    bool stream;
    int max_steps;
    int tool_timeout_ms;
    const char *docs;
} opt = {true, 6, 5000, BRG_AGENT_DOCS};

static int
usage(const char *argv0, const char *bad)
{
    if (bad)
        fprintf(stderr, "agent: bad argument '%s'\n", bad);
    fprintf(bad ? stderr : stdout,
            "usage: %s [--no-stream] [--max-steps=N] [--tool-timeout=MS] [--docs=DIR] "
            "[--] [MESSAGE...]\n"
            "  MESSAGE           a user turn (default: three built-in turns that build on each "
            "other)\n"
            "  --no-stream       print each answer when it is complete, not as it streams\n"
            "  --max-steps=N     model calls per turn (1-100, default 6)\n"
            "  --tool-timeout=MS the deadline of each step's tool calls (default 5000)\n"
            "  --docs=DIR        the documents to search (default: examples/assistant/docs)\n"
            "  BRG_MODEL_URL, BRG_MODEL_KEY, BRG_MODEL_NAME: an OpenAI-compatible endpoint\n"
            "  (default: the offline backend with a chat script)\n",
            argv0);
    return bad ? 2 : 0;
}

//  A whole positive number in [lo, hi], or -1.
static int
parse_int(const char *text, int lo, int hi)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < lo || v > hi)
        return -1;
    return (int)v;
}

//  Printing the events of a turn as they come (on the main thread).
typedef struct {
    bool in_text; // the last thing printed was answer text
    int calculator, search;
} printer_t;

static void
on_event(void *arg, const brg_conv_event_t *ev)
{
    printer_t *p = arg;
    switch (ev->kind) {
    case BRG_CONV_EV_TEXT:
        if (!p->in_text)
            fputs("assistant: ", stdout);
        fwrite(ev->text, 1, ev->len, stdout);
        p->in_text = true;
        break;
    case BRG_CONV_EV_TOOL_CALL:
        printf("%s  -> %.*s(%.*s)\n", p->in_text ? "\n" : "", (int)ev->name_len, ev->name,
               (int)ev->len, ev->text);
        p->in_text = false;
        break;
    case BRG_CONV_EV_TOOL_RESULT:
        fputs(ev->is_error ? "  <- (error) " : "  <- ", stdout);
        for (size_t i = 0; i < ev->len; i++) {
            putchar(ev->text[i]);
            if (ev->text[i] == '\n')
                fputs("     ", stdout); // the result's next lines, indented
        }
        putchar('\n');
        p->in_text = false;
        break;
    }
    fflush(stdout);
}

//  Print the history the conversation keeps, tool calls included.
static void
print_history(brg_system_t *sys, brg_ref_t conv)
{
    brg_msg_t *ask = brg_msg_new(BRG_CONV_TAG_HISTORY), *reply = NULL;
    size_t pos, n;
    if (!ask || brg_system_ask(sys, conv, &ask, 5000, &reply) != BRG_OK ||
        brg_conv_history_count(reply, &pos, &n) != BRG_OK) {
        fprintf(stderr, "agent: cannot read the conversation\n");
        brg_msg_destroy(&ask);
        brg_msg_destroy(&reply);
        return;
    }
    printf("\n== The conversation (%zu messages) ==\n", n);
    for (size_t i = 0; i < n; i++) {
        brg_conv_entry_t e;
        if (brg_conv_history_next(reply, &pos, &e) != BRG_OK)
            break;
        if (e.role == BRG_CONV_SYSTEM)
            continue;
        if (e.role == BRG_CONV_TOOL)
            printf("[tool %.*s%s] %.*s\n", (int)e.name_len, e.name, e.is_error ? ", error" : "",
                   (int)e.len, e.content);
        else
            printf("[%s] %.*s\n", brg_conv_role_name(e.role), (int)e.len, e.content);
        for (size_t k = 0; k < e.n_calls; k++)
            printf("    calls %.*s(%.*s)\n", (int)e.calls[k].name_len, e.calls[k].name,
                   (int)e.calls[k].arguments_len, e.calls[k].arguments);
    }
    brg_msg_destroy(&reply);
}

int
main(int argc, char **argv)
{
    int first = 1;
    bool dashdash = false; // after "--" every argument is a message
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        const char *a = argv[first];
        if (strcmp(a, "--help") == 0)
            return usage(argv[0], NULL);
        if (strcmp(a, "--") == 0) {
            first++;
            dashdash = true;
            break;
        }
        if (strcmp(a, "--no-stream") == 0)
            opt.stream = false;
        else if (strncmp(a, "--max-steps=", 12) == 0 &&
                 (opt.max_steps = parse_int(a + 12, 1, 100)) > 0)
            ;
        else if (strncmp(a, "--tool-timeout=", 15) == 0 &&
                 (opt.tool_timeout_ms = parse_int(a + 15, 1, 600000)) > 0)
            ;
        else if (strncmp(a, "--docs=", 7) == 0 && a[7])
            opt.docs = a + 7;
        else
            return usage(argv[0], a);
    }
    if (!dashdash && first < argc && argv[first][0] == '-' && strcmp(argv[first], "-") != 0)
        return usage(argv[0], argv[first]);
    const char *const *turns = first < argc ? (const char *const *)argv + first : default_turns;
    int n_turns =
        first < argc ? argc - first : (int)(sizeof(default_turns) / sizeof(*default_turns));

    char err[512];
    docs_t *docs = docs_load(opt.docs, err, sizeof(err));
    if (!docs) {
        fprintf(stderr, "agent: %s\n", err);
        return 1;
    }
    brg_system_t *sys = brg_system_new(NULL);
    if (!sys) {
        fprintf(stderr, "agent: cannot start the system\n");
        docs_free(docs);
        return 1;
    }

    // The model: an OpenAI-compatible endpoint from the environment, or the
    // offline backend with the script.
    brg_conv_opts_t co;
    brg_conv_opts_init(&co);
    brg_model_openai_opts_t mo;
    brg_model_openai_opts_init(&mo);
    int rc;
    const char *backend;
    if (brg_model_openai_opts_from_env(&mo) == BRG_OK) {
        backend = "openai";
        mo.timeout_ms = 120000;
        rc = brg_model_openai_spawn_root(sys, &mo, &co.model);
    } else {
        backend = "offline";
        brg_model_offline_opts_t oo;
        brg_model_offline_opts_init(&oo);
        oo.rules = script;
        oo.n_rules = sizeof(script) / sizeof(*script);
        oo.stream_chunk = 8; // small fragments, so the streaming shows
        rc = brg_model_offline_spawn_opts_root(sys, &oo, &co.model);
    }
    // The tools: actors under registered names; the conversation finds them
    // by name at each call.
    if (rc == BRG_OK)
        rc = brg_tool_spawn_root(sys, "tool.calculator", calc_tool, NULL, 0, NULL);
    if (rc == BRG_OK)
        rc = brg_tool_spawn_root(sys, "tool.search", search_tool, docs, 0, NULL);
    brg_tool_t tools[] = {
        {"calculator", "Evaluate an arithmetic expression exactly.", calc_tool_schema, BRG_REF_NONE,
         BRG_REF_NONE, "tool.calculator"},
        {"search_documents", "Search the company documents; returns titles and snippets.",
         search_tool_schema, BRG_REF_NONE, BRG_REF_NONE, "tool.search"},
    };
    co.system = SYSTEM_PROMPT;
    co.tools = tools;
    co.n_tools = 2;
    co.max_steps = opt.max_steps;
    co.tool_timeout_ms = opt.tool_timeout_ms;
    co.model_timeout_ms = 120000;
    brg_ref_t conv;
    if (rc == BRG_OK)
        rc = brg_conv_spawn_root(sys, &co, &conv);
    if (rc != BRG_OK) {
        fprintf(stderr, "agent: cannot start: %s\n", brg_strerror(rc));
        brg_system_destroy(&sys);
        docs_free(docs);
        return 1;
    }
    fprintf(stderr, "agent: the %s model, tools: calculator, search_documents (%s)\n", backend,
            opt.docs);

    int answered = 0;
    for (int i = 0; i < n_turns; i++) {
        printf("\nuser: %s\n", turns[i]);
        fflush(stdout);
        printer_t p = {false, 0, 0};
        char *text = NULL;
        brg_conv_answer_t turn;
        rc = brg_conv_say(sys, conv, turns[i], 300000, opt.stream ? on_event : NULL, &p, &text,
                          &turn);
        if (rc == BRG_OK) {
            answered++;
            if (!opt.stream)
                printf("assistant: %s", text ? text : "");
            printf("\n  (model calls: %lld, tool calls: %lld)\n", (long long)turn.steps,
                   (long long)turn.tool_calls);
        } else {
            printf("%sthe turn failed: %s (%s)\n", p.in_text ? "\n" : "", brg_err_name(rc),
                   text ? text : "out of memory");
        }
        free(text);
    }

    print_history(sys, conv);
    brg_conv_stats_t st;
    if (brg_conv_stats(sys, conv, 5000, &st) == BRG_OK)
        printf("\n%d of %d turns answered: %llu model calls, %llu tool calls (%llu failed), "
               "%llu prompt + %llu completion tokens\n",
               answered, n_turns, (unsigned long long)st.steps, (unsigned long long)st.tool_calls,
               (unsigned long long)st.tool_errors, (unsigned long long)st.prompt_tokens,
               (unsigned long long)st.completion_tokens);
    brg_system_destroy(&sys); // the tools stop before their documents go
    docs_free(docs);
    return answered == n_turns ? 0 : 1;
}
