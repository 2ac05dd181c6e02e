//  kitchen - a kitchen brigade: a head chef supervises the station chefs.
//
//  The head chef is a supervisor (one_for_one). Its children: three stations
//  (grill, fry, garnish), registered under their names; the pass, which
//  counts the orders served; and "tickets", a dynamic supervisor with one
//  ticket actor per order. A ticket asks the three stations for its parts at
//  the same time, with a deadline, and asks again for any part that failed.
//  A station burns a dish now and then (a fixed-seed PRNG picks when) and
//  walks out: the head chef starts a fresh one under the same name, and the
//  tickets that were waiting on it simply ask again. Nothing is lost.
//
//  The head chef's restart intensity is sized from the fault rate this
//  program injects (see kitchen_intensity), so that the planned walk-outs are
//  always within it and a station that burns far more often than planned
//  (--broken) makes the head chef give up and close the kitchen.
//
//  Usage: kitchen [--broken=STATION] [ORDERS [SEED]]. Exits 0 when every
//  order was served.
#include <brigade.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PARTS 3
#define PART_TIMEOUT_MS 100 // a station that walked out never answers
#define RETRY_MS 5          // a station being replaced has no name yet
#define MAX_ORDERS 100000   // keeps the intensity below BRG_SUPERVISOR_INTENSITY_MAX

//  ---------------------------------------------------------------------------
//  Stations

typedef struct {
    const char *name; // registered name
    const char *part; // what it cooks
    uint32_t seed;    // the PRNG seed of its first incarnation
    int incarnation;  // starts so far (touched only by the head chef)
    bool broken;      // --broken: every cook burns the first dish
} station_spec_t;

static station_spec_t stations[PARTS] = {{"grill", "steak", 1, 0, false},
                                         {"fry", "fries", 2, 0, false},
                                         {"garnish", "salad", 3, 0, false}};

//  The fault this program injects: a cook burns dish number FIRST_BURN ..
//  FIRST_BURN + BURN_SPREAD - 1 of its shift (one in 4 to 11), then walks out.
#define FIRST_BURN 4
#define BURN_SPREAD 8

//  The head chef's restart intensity: how many walk-outs in any 5 s (the
//  default period) it accepts before it decides the kitchen cannot work and
//  gives up. A restart limit guards against faults that come faster than
//  planned, so it is sized from the planned fault rate, not picked at random:
//  every cook serves at least FIRST_BURN - 1 = 3 dishes before the one it
//  burns, and an order is PARTS = 3 dishes, so serving n orders takes at most
//  n walk-outs (on average 3n / 7.5 = 0.4 n; the runs print about 0.45 n).
//  A quarter more covers dishes cooked twice (a dish that was ready after its
//  ticket's deadline is asked for again). The whole run may fit in one
//  period, so the limit covers the whole run. A station that burns every dish
//  (--broken) walks out once per dish asked of it: three times per order, so
//  it runs through this limit and the head chef gives up, as it should.
static int
kitchen_intensity(int orders)
{
    return orders + orders / 4 + PARTS;
}

static atomic_int walkouts; // every station's, for the final count

typedef struct {
    const station_spec_t *spec;
    int cooked;  // dishes this incarnation cooked
    int burn_at; // the dish it will burn
} station_t;

static uint32_t
xorshift32(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

//  "cook" [order] -> "done" [order], unless the dish burns: then the
//  station fails, and the asker hears nothing until its deadline.
static int
station(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    station_t *self = brg_state(ctx);
    size_t pos = 0;
    int64_t order;
    if (!brg_msg_is(msg, "cook") || brg_msg_read_int(msg, &pos, &order) != BRG_OK)
        return BRG_UNHANDLED;
    if (++self->cooked == self->burn_at || self->spec->broken) {
        printf("  %-7s burnt the %s of order %lld and walked out\n", self->spec->name,
               self->spec->part, (long long)order);
        atomic_fetch_add(&walkouts, 1);
        brg_fail(ctx, BRG_EFAILED, "burnt a dish");
        return BRG_OK;
    }
    brg_msg_t *done = brg_msg_new_int("done", order);
    return brg_reply(ctx, &done);
}

//  The head chef calls this at the start and after every walk-out: a fresh
//  station with fresh state (and, through the child spec, its name back).
static int
start_station(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)args;
    station_spec_t *spec = arg;
    station_t *self = calloc(1, sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    uint32_t seed = spec->seed * 2654435761u + (uint32_t)spec->incarnation++;
    seed = seed ? seed : 1;
    xorshift32(&seed);
    self->spec = spec;
    self->burn_at = FIRST_BURN + (int)(xorshift32(&seed) % BURN_SPREAD);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = self;
    opts.state_destroy = free;
    opts.flags = BRG_SPAWN_LINK;
    int rc = brg_spawn(sup_ctx, station, &opts, child);
    if (rc != BRG_OK) {
        free(self);
        return rc;
    }
    if (spec->incarnation > 1)
        printf("  head chef: a new %s cook takes the station\n", spec->name);
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  The pass: counts served orders; "tally" -> "tally" [served]

static int
pass(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    int64_t *served = brg_state(ctx);
    if (brg_msg_is(msg, "served")) {
        (*served)++;
        return BRG_OK;
    }
    if (brg_msg_is(msg, "tally")) {
        brg_msg_t *tally = brg_msg_new_int("tally", *served);
        return brg_reply(ctx, &tally);
    }
    return BRG_UNHANDLED;
}

static int
start_pass(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    (void)args;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state_size = sizeof(int64_t);
    opts.flags = BRG_SPAWN_LINK;
    return brg_spawn(sup_ctx, pass, &opts, child);
}

//  ---------------------------------------------------------------------------
//  Tickets: one per order, asking the stations in parallel

typedef struct {
    int64_t order;
    unsigned done; // one bit per part
    int reorders;  // parts asked for again
} ticket_t;

static void ask_part(brg_ctx_t *ctx, int part);

static int
on_part(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)reply;
    ticket_t *self = brg_state(ctx);
    int part = (int)(intptr_t)arg;
    if (status == BRG_ECLOSED)
        return BRG_OK; // this ticket is being stopped (the kitchen closes): nobody to cook for
    if (status != BRG_OK) {
        // The station walked out (BRG_ENOACTOR) or never answered
        // (BRG_ETIMEDOUT): ask its replacement.
        self->reorders++;
        ask_part(ctx, part);
        return BRG_OK;
    }
    self->done |= 1u << part;
    if (self->done != (1u << PARTS) - 1)
        return BRG_OK;
    printf("  order %lld served%s\n", (long long)self->order,
           self->reorders ? " (after asking again)" : "");
    brg_msg_t *served = brg_msg_new_int("served", self->order);
    brg_send_named(ctx, "pass", &served);
    brg_stop(ctx);
    return BRG_OK;
}

//  Ask the station for the part, or, if it has no cook right now (being
//  replaced, or gone between the lookup and the ask), try again in RETRY_MS.
//  Never by calling on_part from here: a retry that fails at once would
//  recurse.
static void
ask_part(brg_ctx_t *ctx, int part)
{
    ticket_t *self = brg_state(ctx);
    brg_ref_t cook;
    if (brg_whereis(brg_ctx_system(ctx), stations[part].name, &cook) == BRG_OK) {
        brg_msg_t *req = brg_msg_new_int("cook", self->order);
        if (brg_ask(ctx, cook, &req, PART_TIMEOUT_MS, on_part, (void *)(intptr_t)part) == BRG_OK)
            return;
    }
    brg_msg_t *retry = brg_msg_new_int("retry", part);
    brg_send_after(ctx, brg_self(ctx), &retry, RETRY_MS, NULL);
}

static int
ticket(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t part;
    if (brg_msg_is(msg, "retry") && brg_msg_read_int(msg, &pos, &part) == BRG_OK) {
        ask_part(ctx, (int)part);
        return BRG_OK;
    }
    return BRG_UNHANDLED;
}

static int
ticket_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    for (int part = 0; part < PARTS; part++)
        ask_part(ctx, part);
    return BRG_OK;
}

//  args: the start request; its payload is the order number.
static int
start_ticket(brg_ctx_t *sup_ctx, void *arg, const brg_msg_t *args, brg_ref_t *child)
{
    (void)arg;
    ticket_t *t = calloc(1, sizeof(*t));
    size_t pos = 0;
    if (!t || !args || brg_msg_read_int(args, &pos, &t->order) != BRG_OK) {
        free(t);
        return BRG_EINVAL;
    }
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = t;
    opts.state_destroy = free;
    opts.init = ticket_init;
    opts.flags = BRG_SPAWN_LINK;
    int rc = brg_spawn(sup_ctx, ticket, &opts, child);
    if (rc != BRG_OK)
        free(t);
    return rc;
}

//  ---------------------------------------------------------------------------
//  The brigade

static int64_t
tally(brg_system_t *sys)
{
    brg_ref_t at_pass;
    brg_msg_t *req = brg_msg_new("tally"), *reply = NULL;
    int64_t served = -1;
    size_t pos = 0;
    if (brg_whereis(sys, "pass", &at_pass) == BRG_OK &&
        brg_system_ask(sys, at_pass, &req, 1000, &reply) == BRG_OK)
        brg_msg_read_int(reply, &pos, &served);
    brg_msg_destroy(&req);
    brg_msg_destroy(&reply);
    return served;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int
usage(const char *argv0, FILE *out)
{
    fprintf(out,
            "usage: %s [--broken=STATION] [ORDERS [SEED]]\n"
            "  ORDERS            orders to serve, 1..%d (default 24)\n"
            "  SEED              seed of the PRNG that decides which dishes burn (default 42)\n"
            "  --broken=STATION  grill, fry or garnish burns every dish: the head chef\n"
            "                    gives up and the kitchen closes (exits 1)\n",
            argv0, MAX_ORDERS);
    return out == stdout ? 0 : 2;
}

//  A whole decimal number in [min, max], or false.
static bool
parse_number(const char *text, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int
main(int argc, char **argv)
{
    long long orders = 24, seed = 42;
    int positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(argv[0], stdout);
        if (strncmp(a, "--broken=", 9) == 0) {
            ok = false;
            for (int k = 0; k < PARTS; k++)
                if (strcmp(a + 9, stations[k].name) == 0)
                    stations[k].broken = ok = true;
        } else if (positional == 0) {
            ok = parse_number(a, 1, MAX_ORDERS, &orders);
            positional++;
        } else if (positional == 1) {
            ok = parse_number(a, 0, UINT32_MAX, &seed);
            positional++;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "kitchen: bad argument '%s'\n", a);
            return usage(argv[0], stderr);
        }
    }
    for (int i = 0; i < PARTS; i++)
        stations[i].seed += (uint32_t)seed;

    brg_system_t *sys = brg_system_new(NULL);
    if (!sys)
        return 1;

    // The tickets: a dynamic supervisor, one transient ticket per order.
    brg_child_spec_t ticket_spec;
    brg_child_spec_init(&ticket_spec);
    ticket_spec.id = "ticket";
    ticket_spec.start = start_ticket;
    ticket_spec.restart = BRG_RESTART_TRANSIENT;
    brg_supervisor_opts_t tickets_opts;
    brg_supervisor_opts_init(&tickets_opts);
    tickets_opts.strategy = BRG_STRATEGY_DYNAMIC;
    tickets_opts.children = &ticket_spec;
    tickets_opts.n_children = 1;

    // The head chef: stations first, then the pass, then the tickets.
    brg_child_spec_t specs[PARTS + 2];
    for (int i = 0; i < PARTS; i++) {
        brg_child_spec_init(&specs[i]);
        specs[i].id = stations[i].name;
        specs[i].name = stations[i].name;
        specs[i].start = start_station;
        specs[i].arg = &stations[i];
    }
    brg_child_spec_init(&specs[PARTS]);
    specs[PARTS].id = specs[PARTS].name = "pass";
    specs[PARTS].start = start_pass;
    brg_child_spec_init(&specs[PARTS + 1]);
    specs[PARTS + 1].id = specs[PARTS + 1].name = "tickets";
    specs[PARTS + 1].start = brg_supervisor_start;
    specs[PARTS + 1].arg = &tickets_opts;
    specs[PARTS + 1].type = BRG_CHILD_SUPERVISOR; // shutdown: infinity, as in OTP
    int intensity = kitchen_intensity((int)orders);
    brg_supervisor_opts_t chef_opts;
    brg_supervisor_opts_init(&chef_opts);
    // Walk-outs allowed per 5 s before the head chef gives up; see kitchen_intensity.
    chef_opts.intensity = intensity;
    chef_opts.children = specs;
    chef_opts.n_children = PARTS + 2;
    brg_ref_t head_chef, tickets;
    if (brg_supervisor_spawn_root(sys, &chef_opts, &head_chef) != BRG_OK)
        return 1;
    brg_supervisor_counts_t counts = {0};
    while (brg_supervisor_count(sys, head_chef, 1000, &counts) == BRG_OK && counts.running < 5)
        sleep_ms(1);
    if (brg_whereis(sys, "tickets", &tickets) != BRG_OK)
        return 1;

    printf("kitchen: %lld orders, seed %lld, the head chef accepts %d walk-outs\n", orders, seed,
           intensity);
    for (int i = 1; i <= orders; i++) {
        brg_msg_t *args = brg_supervisor_msg_start();
        brg_msg_add_int(args, i);
        int rc = brg_supervisor_start_child(sys, tickets, &args, 1000, NULL);
        if (rc != BRG_OK) {
            fprintf(stderr, "kitchen: could not open a ticket for order %d: %s\n", i,
                    brg_strerror(rc));
            break; // the kitchen is closing
        }
    }
    // Every order is served in well under a second per hundred orders, even
    // under a sanitizer; the limit is only there to end a run that hangs.
    int64_t served = 0;
    for (int waited = 0;
         waited < 60000 && brg_system_is_alive(sys, head_chef) && (served = tally(sys)) < orders;
         waited += 10)
        sleep_ms(10);

    if (!brg_system_is_alive(sys, head_chef)) {
        printf("kitchen: %d walk-outs, more than the %d the head chef accepts: it gave up and "
               "closed the kitchen before every order was served\n",
               atomic_load(&walkouts), intensity);
        served = -1;
    } else {
        printf("kitchen: %lld of %lld orders served, %d walk-outs\n", (long long)served, orders,
               atomic_load(&walkouts));
        brg_child_info_t crew[PARTS + 2];
        int n = brg_supervisor_which(sys, head_chef, 1000, crew, PARTS + 2);
        for (int i = 0; i < n && i < PARTS; i++)
            printf("  %-7s restarted %llu times\n", crew[i].id,
                   (unsigned long long)crew[i].restarts);
        // Close: the head chef sends everyone home, last started first.
        brg_exit(sys, head_chef, BRG_EXIT_SHUTDOWN);
        for (int waited = 0; waited < 5000 && brg_system_is_alive(sys, head_chef); waited++)
            sleep_ms(1);
    }
    brg_system_destroy(&sys);
    return served == orders ? 0 : 1;
}
