//  price_check - ask every shop for a price at once and take the best answer
//  that comes in time: scatter-gather over HTTP, offline.
//
//  The shops are web services. Here they are a tiny HTTP server that this
//  program starts on 127.0.0.1 (plain threads, not actors: it stands in for
//  the outside world). One shop answers late, one no longer exists (404).
//
//  The actors: the shopper, one actor per shop, a limiter and the HTTP
//  actor. The shopper asks every shop at once with brg_gather and one
//  deadline; a shop actor turns the question into an HTTP GET and asks the
//  limiter, which lets at most two calls be with the server at once (the
//  shops' API allows no more) and passes them to the HTTP actor, whose
//  transfers run on its own I/O thread, so no worker ever waits for the
//  network. The shop answers the gather from its reply callback
//  (brg_reply_to a saved copy of the question). When every part is settled
//  or the deadline passes, the shopper prints each shop's answer and the
//  best price, asks the limiter for its counters, and closes.
//
//  Usage: price_check [--deadline=MS]. Exits 0 when the best price came
//  back, the late shop missed the deadline and the closed one said 404.
#include <brigade.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOW_MS 1000 // the late shop's answer time, longer than the deadline
#define CALLS_AT_ONCE 2

//  ---------------------------------------------------------------------------
//  The outside world: GET /quote/<shop> answers the price in cents.

static const struct {
    const char *shop;
    int status; // HTTP status
    const char *body;
    int delay_ms;
} catalogue[] = {
    {"acme", 200, "1250", 0},
    {"bolt", 200, "1190", 0},
    {"slowpoke", 200, "990", SLOW_MS}, // the cheapest, but too late
    {"closed", 404, "no such shop", 0},
};
#define SHOPS (sizeof(catalogue) / sizeof(catalogue[0]))
#define MAX_CONNECTIONS 64

typedef struct {
    int listener;
    pthread_t acceptor;
    pthread_t conn[MAX_CONNECTIONS]; // one thread per connection, joined at stop
    atomic_int n_conn;
} server_t;

static void *
serve_connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[4096], path[256] = "", resp[512];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(req) - 1 && (n = recv(fd, req + len, sizeof(req) - 1 - len, 0)) > 0) {
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[len] = '\0';
    sscanf(req, "GET %255s ", path);
    int status = 404, delay_ms = 0;
    const char *body = "no such page";
    for (size_t i = 0; i < SHOPS; i++)
        if (strncmp(path, "/quote/", 7) == 0 && strcmp(path + 7, catalogue[i].shop) == 0) {
            status = catalogue[i].status;
            body = catalogue[i].body;
            delay_ms = catalogue[i].delay_ms;
        }
    if (delay_ms > 0) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    int m = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, status == 200 ? "OK" : "Not Found", strlen(body), body);
    send(fd, resp, (size_t)m, MSG_NOSIGNAL); // the client may have given up: no SIGPIPE
    close(fd);
    return NULL;
}

static void *
accept_loop(void *arg)
{
    server_t *self = arg;
    for (;;) {
        int fd = accept(self->listener, NULL, NULL);
        if (fd < 0)
            return NULL; // the listener was shut down
        int i = atomic_load(&self->n_conn);
        if (i == MAX_CONNECTIONS ||
            pthread_create(&self->conn[i], NULL, serve_connection, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        atomic_store(&self->n_conn, i + 1);
    }
}

//  Listen on 127.0.0.1 at a port the kernel picks; returns the port, or -1.
static int
server_start(server_t *self)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(addr);
    self->listener = socket(AF_INET, SOCK_STREAM, 0);
    if (self->listener < 0 || bind(self->listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(self->listener, 16) != 0 ||
        getsockname(self->listener, (struct sockaddr *)&addr, &alen) != 0 ||
        pthread_create(&self->acceptor, NULL, accept_loop, self) != 0) {
        if (self->listener >= 0)
            close(self->listener);
        return -1;
    }
    return ntohs(addr.sin_port);
}

static void
server_stop(server_t *self)
{
    shutdown(self->listener, SHUT_RDWR); // wakes accept()
    pthread_join(self->acceptor, NULL);
    close(self->listener);
    for (int i = 0; i < atomic_load(&self->n_conn); i++)
        pthread_join(self->conn[i], NULL);
}

//  ---------------------------------------------------------------------------
//  A shop actor: "quote" -> "price" [cents], or an error status.

typedef struct {
    const char *name;
    char url[128];
} shop_t;

//  The HTTP answer is in; arg is the saved copy of the gather's question.
static int
on_http(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    brg_msg_t *request = arg;
    brg_http_response_t r;
    if (status == BRG_OK && brg_http_read_response(reply, &r) == BRG_OK) {
        char body[32];
        snprintf(body, sizeof(body), "%.*s", (int)(r.body_len < 31 ? r.body_len : 31),
                 (const char *)r.body);
        if (r.status == 200) {
            brg_msg_t *price = brg_msg_new_int("price", atoll(body));
            brg_reply_to(ctx, request, &price);
        } else {
            brg_reply_error_to(ctx, request, r.status == 404 ? BRG_ENOTFOUND : BRG_EHTTP);
        }
    } else if (status != BRG_ECLOSED) {
        brg_reply_error_to(ctx, request, status == BRG_OK ? BRG_EPROTO : status);
    }
    brg_msg_destroy(&request);
    return BRG_OK;
}

static int
shop(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    shop_t *self = brg_state(ctx);
    brg_ref_t limiter;
    if (!brg_msg_is(msg, "quote"))
        return BRG_UNHANDLED;
    brg_http_request_t req = {.method = "GET", .url = self->url, .timeout_ms = 2 * SLOW_MS};
    brg_msg_t *get = brg_http_msg_request(&req);
    brg_msg_t *request = brg_msg_dup(msg);
    int rc =
        get && request ? brg_whereis(brg_ctx_system(ctx), "shops.limiter", &limiter) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_ask(ctx, limiter, &get, 3 * SLOW_MS, on_http, request);
    if (rc != BRG_OK) {
        brg_msg_destroy(&get);
        brg_msg_destroy(&request);
        brg_reply_error(ctx, rc); // the gather hears why at once
    }
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  The shopper

typedef struct {
    int port, deadline_ms;
    brg_ref_t shops[SHOPS], limiter;
} shopper_t;

static atomic_int verdict; // 1 when the answers were the expected ones

static int
on_limiter_stats(brg_ctx_t *ctx, int status, const brg_msg_t *reply, void *arg)
{
    (void)arg;
    shopper_t *self = brg_state(ctx);
    brg_limiter_stats_t ls;
    if (status == BRG_ECLOSED)
        return BRG_OK; // the shopper is being stopped already
    if (status == BRG_OK && brg_limiter_read_stats(reply, &ls) == BRG_OK)
        printf("limiter: %llu calls started, at most %llu at once, %llu still with the server\n",
               (unsigned long long)ls.started, (unsigned long long)ls.max_in_flight,
               (unsigned long long)ls.in_flight);
    // Close: the shops and the limiter are linked to the shopper; a shutdown
    // exit ends them. The HTTP actor ends when the shopper does.
    for (size_t i = 0; i < SHOPS; i++)
        brg_exit(brg_ctx_system(ctx), self->shops[i], BRG_EXIT_SHUTDOWN);
    brg_exit(brg_ctx_system(ctx), self->limiter, BRG_EXIT_SHUTDOWN);
    brg_stop(ctx);
    return BRG_OK;
}

static int
on_prices(brg_ctx_t *ctx, const brg_gather_result_t *res, void *arg)
{
    (void)arg;
    shopper_t *self = brg_state(ctx);
    int best = -1;
    int64_t best_cents = 0;
    bool expected = true;
    for (size_t i = 0; i < brg_gather_result_count(res); i++) {
        int status = brg_gather_result_status(res, i);
        int64_t cents = 0;
        size_t pos = 0;
        if (status == BRG_OK &&
            brg_msg_read_int(brg_gather_result_reply(res, i), &pos, &cents) == BRG_OK) {
            printf("  %-9s %lld.%02lld\n", catalogue[i].shop, (long long)cents / 100,
                   (long long)cents % 100);
            if (best < 0 || cents < best_cents)
                best = (int)i, best_cents = cents;
        } else {
            printf("  %-9s no price: %s (%s)\n", catalogue[i].shop, brg_strerror(status),
                   brg_err_name(status));
        }
        int want = catalogue[i].delay_ms > self->deadline_ms ? BRG_ETIMEDOUT
                   : catalogue[i].status == 404              ? BRG_ENOTFOUND
                                                             : BRG_OK;
        expected = expected && status == want;
    }
    if (best >= 0)
        printf("best price: %s at %lld.%02lld\n", catalogue[best].shop, (long long)best_cents / 100,
               (long long)best_cents % 100);
    atomic_store(&verdict, expected && best >= 0);
    brg_msg_t *stats = brg_limiter_msg_stats();
    if (!stats || brg_ask(ctx, self->limiter, &stats, 1000, on_limiter_stats, NULL) != BRG_OK)
        on_limiter_stats(ctx, BRG_ENOMEM, NULL, NULL);
    return BRG_OK;
}

static int
shopper_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    shopper_t *self = brg_state(ctx);
    brg_http_opts_t ho;
    brg_http_opts_init(&ho);
    ho.log_errors = false; // a 404 is an answer, not a failure; the shopper reports it
    brg_ref_t http;
    int rc = brg_http_spawn(ctx, &ho, &http);
    if (rc != BRG_OK)
        return rc;
    brg_limiter_opts_t lo;
    brg_limiter_opts_init(&lo);
    lo.target = http;
    lo.max_in_flight = CALLS_AT_ONCE;
    lo.max_queue = 64;
    lo.request_timeout_ms = 3 * SLOW_MS;
    lo.name = "shops.limiter";
    if ((rc = brg_limiter_spawn(ctx, &lo, &self->limiter)) != BRG_OK)
        return rc;
    for (size_t i = 0; i < SHOPS; i++) {
        shop_t *s = calloc(1, sizeof(*s));
        if (!s)
            return BRG_ENOMEM;
        s->name = catalogue[i].shop;
        snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/quote/%s", self->port, s->name);
        brg_spawn_opts_t opts;
        brg_spawn_opts_init(&opts);
        opts.state = s;
        opts.state_destroy = free;
        opts.flags = BRG_SPAWN_LINK;
        if ((rc = brg_spawn(ctx, shop, &opts, &self->shops[i])) != BRG_OK) {
            free(s);
            return rc;
        }
    }
    // One question to every shop, one deadline for all the answers.
    brg_msg_t *quote = brg_msg_new("quote");
    return brg_gather(ctx, self->shops, SHOPS, &quote, self->deadline_ms, on_prices, NULL);
}

static int
shopper(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    return BRG_UNHANDLED;
}

//  ---------------------------------------------------------------------------

static int
usage(const char *argv0, FILE *out)
{
    fprintf(out,
            "usage: %s [--deadline=MS]\n"
            "  --deadline=MS  how long the shopper waits for the prices, 1..%d (default 500)\n",
            argv0, SLOW_MS - 1);
    return out == stdout ? 0 : 2;
}

int
main(int argc, char **argv)
{
    shopper_t *s = calloc(1, sizeof(*s));
    if (!s)
        return 1;
    s->deadline_ms = 500;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            free(s);
            return usage(argv[0], stdout);
        }
        errno = 0;
        long v = strncmp(argv[i], "--deadline=", 11) == 0 ? strtol(argv[i] + 11, &end, 10) : -1;
        if (v < 1 || v >= SLOW_MS || errno || *end || end == argv[i] + 11) {
            fprintf(stderr, "price_check: bad argument '%s'\n", argv[i]);
            free(s);
            return usage(argv[0], stderr);
        }
        s->deadline_ms = (int)v;
    }
    server_t server = {0};
    if ((s->port = server_start(&server)) < 0) {
        perror("price_check: cannot listen on 127.0.0.1");
        free(s);
        return 1;
    }
    printf("price_check: %zu shops at http://127.0.0.1:%d/quote/, at most %d calls at once, "
           "deadline %d ms\n",
           SHOPS, s->port, CALLS_AT_ONCE, s->deadline_ms);
    fflush(stdout);

    brg_system_t *sys = brg_system_new(NULL);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.state = s;
    opts.state_destroy = free;
    opts.init = shopper_init;
    if (!sys || brg_system_spawn(sys, shopper, &opts, NULL) != BRG_OK)
        free(s);
    else if (brg_system_await_actors(sys, 10000) != BRG_OK)
        fprintf(stderr, "price_check: the shopper did not finish\n");
    brg_system_destroy(&sys);
    server_stop(&server);
    return atomic_load(&verdict) ? 0 : 1;
}
