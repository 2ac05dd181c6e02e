//  from_main - Brigade from main(), without helper actors: start a supervision
//  tree and wait until it is up, talk to it through an inbox, let an actor
//  answer later through a promise, gather by name, watch an actor go down.
//
//  The tree: "prices" (its init loads a price table, slowly) and "quotes",
//  which answers a "quote" ask by asking "prices" and keeping a promise for
//  the caller, delivered from the reply callback. Usage: from_main
#include <brigade.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct {
    int64_t prices[3]; // loaded by init
} prices_t;

static int
prices_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    prices_t *p = brg_state(ctx);
    // A slow load (a blocking actor: it may sleep), which spawn_sync waits for.
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    p->prices[0] = 120, p->prices[1] = 80, p->prices[2] = 310;
    return BRG_OK;
}

//  "price" (an ask with an item index) -> "price" with the price.
static int
prices(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    prices_t *p = brg_state(ctx);
    size_t pos = 0;
    int64_t item;
    if (brg_msg_read_int(msg, &pos, &item) != BRG_OK || item < 0 || item > 2)
        return brg_reply_error(ctx, BRG_ERANGE) == BRG_OK ? BRG_OK : BRG_UNHANDLED;
    brg_msg_t *reply = brg_msg_new_int("price", p->prices[item]);
    return brg_reply(ctx, &reply);
}

//  The price came: keep the caller's promise with a quote (price + 10%).
static int
on_price(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    brg_promise_t *promise = arg;
    if (status == BRG_ECLOSED) { // we are stopping: the caller hears BRG_ECLOSED
        brg_promise_drop(&promise);
        return BRG_OK;
    }
    if (status != BRG_OK) {
        brg_promise_fail(ctx, &promise, status); // the caller hears the store's error
        return BRG_OK;
    }
    size_t pos = 0;
    int64_t price = 0;
    brg_msg_read_int(reply, &pos, &price);
    brg_msg_t *quote = brg_msg_new_int("quote", price + price / 10);
    brg_promise_deliver(ctx, &promise, &quote);
    return BRG_OK;
}

static int
quotes(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (!brg_msg_is(msg, "quote"))
        return BRG_UNHANDLED;
    brg_promise_t *promise;
    int rc = brg_promise_take(ctx, &promise);
    if (rc != BRG_OK)
        return rc;
    brg_ref_t store;
    brg_msg_t *ask = brg_msg_dup(msg);
    if (!ask || brg_whereis(brg_ctx_system(ctx), "prices", &store) != BRG_OK) {
        brg_msg_destroy(&ask);
        brg_promise_fail(ctx, &promise, BRG_ENOACTOR);
        return BRG_OK;
    }
    if (brg_ask(ctx, store, &ask, 1000, on_price, promise) != BRG_OK)
        brg_promise_fail(ctx, &promise, BRG_ENOACTOR);
    return BRG_OK;
}

static int
start_prices(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg, (void)args;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(prices_t);
    opts.init = prices_init;
    opts.flags = BRG_SPAWN_LINK | BRG_SPAWN_BLOCKING;
    return brg_spawn(sup_ctx, prices, &opts, child);
}

static int
start_quotes(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg, (void)args;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.flags = BRG_SPAWN_LINK;
    return brg_spawn(sup_ctx, quotes, &opts, child);
}

int
main(int argc, char **argv)
{
    if (argc > 1) {
        bool help = strcmp(argv[1], "--help") == 0;
        fprintf(help ? stdout : stderr, "usage: from_main\n");
        return help ? 0 : 2;
    }
    brg_system_t *sys = brg_system_new(NULL);
    if (!sys)
        return 1;
    brg_child_spec_t specs[2];
    brg_child_spec_init(&specs[0]);
    specs[0].id = specs[0].name = "prices";
    specs[0].start = start_prices;
    brg_child_spec_init(&specs[1]);
    specs[1].id = specs[1].name = "quotes";
    specs[1].start = start_quotes;
    brg_supervisor_opts_t opts;
    brg_supervisor_opts_init(&opts);
    opts.children = specs;
    opts.n_children = 2;
    brg_ref_t sup;
    brg_supervisor_start_error_t err;
    int rc = brg_supervisor_spawn_sync(sys, &opts, 5000, &sup, &err);
    printf("tree up: %s\n", brg_strerror(rc)); // the price table is loaded by now
    brg_inbox_t *in = NULL;
    if (rc == BRG_OK)
        rc = brg_inbox_new(sys, &in);
    // Ask through the inbox; "quotes" answers later, through its promise.
    int64_t quote = 0;
    brg_ref_t q = BRG_REF_NONE;
    if (rc == BRG_OK)
        rc = brg_whereis(sys, "quotes", &q);
    brg_msg_t *ask = brg_msg_new_int("quote", 1);
    brg_msg_t *reply = NULL;
    if (rc == BRG_OK)
        rc = brg_inbox_ask(in, q, &ask, 2000, &reply);
    brg_msg_destroy(&ask);
    size_t pos = 0;
    if (rc == BRG_OK)
        brg_msg_read_int(reply, &pos, &quote);
    brg_msg_destroy(&reply);
    printf("quote for item 1: %lld (%s)\n", (long long)quote, brg_strerror(rc));
    // Gather by name: an unknown name (no "backup" store runs) is that
    // part's BRG_ENOTFOUND; the other part is answered as usual.
    const char *names[2] = {"prices", "backup"};
    int statuses[2];
    brg_msg_t *replies[2];
    brg_msg_t *req = brg_msg_new_int("price", 2);
    int ok = brg_system_gather_named(sys, names, 2, &req, 2000, statuses, replies);
    printf("gather: %d answered;", ok);
    for (int i = 0; i < 2; i++) {
        printf(" %s=%s", names[i], brg_err_name(statuses[i]));
        brg_msg_destroy(&replies[i]);
    }
    printf("\n");
    // Watch "quotes" from main(): its DOWN arrives as a message.
    uint64_t mon;
    brg_msg_t *down = NULL;
    if (in && brg_inbox_monitor(in, q, &mon) == BRG_OK &&
        brg_exit(sys, sup, BRG_EXIT_SHUTDOWN) == BRG_OK &&
        brg_inbox_receive(in, BRG_TAG_DOWN, 5000, &down) == BRG_OK) {
        brg_ref_t from;
        brg_exit_reason_t reason;
        brg_msg_read_down(down, &from, &mon, &reason);
        printf("quotes went down: %s\n", brg_exit_kind_name(reason.kind));
    }
    brg_msg_destroy(&down);
    brg_inbox_destroy(&in); // before the system: destroy refuses while it is open
    brg_system_destroy(&sys);
    return rc == BRG_OK && quote == 88 && ok == 1 ? 0 : 1;
}
