//  http_test_server - a tiny HTTP/1.1 server on 127.0.0.1 for tests: the test starts
//  it, says how to answer each request, and reads back what was asked.
//
//  One thread accepts; every connection gets a thread of its own, so slow
//  answers (delay_ms) do not hold up the others. Each connection carries one
//  request and is closed after the answer. Header-only (static functions),
//  shared by the Check suites and tests/tools/model_server.c.
//
//  Thread contract: the handler runs on the connection threads, at once for
//  several requests; what it touches must be safe for that. The counters and
//  the last request are read under the server's lock (tu_http_server_last).
#ifndef TU_HTTP_TEST_SERVER_H
#define TU_HTTP_TEST_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define TU_HTTP_MAX_REQUEST (1024 * 1024)
#define TU_HTTP_MAX_CONNS 1024 // connections open at once; more are closed at once

typedef struct {
    char method[16];
    char path[1024];
    char headers[8192]; // the header lines as received, "\r\n"-separated
    char *body;         // NUL-terminated
    size_t body_len;
} tu_http_req_t;

typedef struct {
    int status;               // 0: close the connection without answering
    const char *content_type; // default "application/json"
    char *body;               // malloc'd by the handler (freed by the server), or NULL
    size_t body_len;          // with body: its length (0: strlen)
    int delay_ms;             // wait before answering
    bool no_length;           // send no Content-Length: the body ends when the connection closes
    bool raw;                 // send body as it is, no status line or headers (not HTTP)
    char headers[256];        // extra header lines, each ending "\r\n" (e.g. Retry-After)
    // Streaming: with n_chunks > 0 the body is sent chunked (Transfer-Encoding),
    // chunk by chunk, waiting chunk_delay_ms before each but the first, and
    // hang_ms after chunk number hang_after (1-based; 0: never). The chunks
    // are malloc'd by the handler and freed by the server; body is unused.
    char *chunks[64];
    int n_chunks;
    int chunk_delay_ms;
    int hang_after, hang_ms;
} tu_http_resp_t;

typedef void (*tu_http_handler_fn)(const tu_http_req_t *req, tu_http_resp_t *resp, void *arg);

typedef struct tu_http_server {
    int fd;
    int port;
    pthread_t acceptor;
    tu_http_handler_fn handler;
    void *arg;
    atomic_bool stopping;
    pthread_mutex_t lock; // guards the fields below
    pthread_cond_t idle;  // signalled when a connection thread ends
    int n_conns;          // connection threads running (detached)
    int requests;         // requests read
    tu_http_req_t last;
    char last_body[16384];
} tu_http_server_t;

typedef struct {
    tu_http_server_t *server;
    int fd;
} tu__http_conn_t;

static void
tu__http_sleep_ms(tu_http_server_t *server, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&server->stopping); t += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static bool
tu__http_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

//  Read one request: headers up to the blank line, then Content-Length bytes.
static bool
tu__http_read_request(int fd, tu_http_req_t *req)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    size_t head = 0; // offset of the blank line ending the headers; 0 until seen
    size_t want = 0;
    while (buf) {
        if (len == cap) {
            if (cap >= TU_HTTP_MAX_REQUEST)
                break;
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *blank;
        if (!head && (blank = strstr(buf, "\r\n\r\n")) != NULL) {
            head = (size_t)(blank - buf);
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            size_t body = cl && cl < blank ? strtoul(cl + 17, NULL, 10) : 0;
            want = head + 4 + body;
        }
        if (head && len >= want) {
            // buf may have moved (realloc): work from offsets.
            char *end = buf + head;
            char *sp1 = strchr(buf, ' ');
            char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
            if (!sp1 || !sp2 || sp2 > end)
                break;
            snprintf(req->method, sizeof req->method, "%.*s", (int)(sp1 - buf), buf);
            snprintf(req->path, sizeof req->path, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
            snprintf(req->headers, sizeof req->headers, "%.*s", (int)head, buf);
            req->body_len = want - head - 4;
            req->body = malloc(req->body_len + 1);
            if (!req->body)
                break;
            memcpy(req->body, end + 4, req->body_len);
            req->body[req->body_len] = '\0';
            free(buf);
            return true;
        }
    }
    free(buf);
    return false;
}

static void *
tu__http_conn_main(void *arg)
{
    tu__http_conn_t *conn = arg;
    tu_http_server_t *server = conn->server;
    tu_http_req_t req;
    memset(&req, 0, sizeof req);
    if (tu__http_read_request(conn->fd, &req)) {
        pthread_mutex_lock(&server->lock);
        server->requests++;
        server->last = req;
        snprintf(server->last_body, sizeof server->last_body, "%s", req.body);
        server->last.body = server->last_body;
        pthread_mutex_unlock(&server->lock);
        tu_http_resp_t resp;
        memset(&resp, 0, sizeof resp);
        resp.status = 200;
        server->handler(&req, &resp, server->arg);
        tu__http_sleep_ms(server, resp.delay_ms);
        if (resp.n_chunks > 0 && !atomic_load(&server->stopping)) {
            char head[1024];
            int n =
                snprintf(head, sizeof head,
                         "HTTP/1.1 %d Test\r\nContent-Type: %s\r\n%sTransfer-Encoding: "
                         "chunked\r\nConnection: close\r\n\r\n",
                         resp.status, resp.content_type ? resp.content_type : "text/event-stream",
                         resp.headers);
            bool ok = tu__http_write_all(conn->fd, head, (size_t)n);
            for (int i = 0; ok && i < resp.n_chunks && !atomic_load(&server->stopping); i++) {
                if (i > 0)
                    tu__http_sleep_ms(server, resp.chunk_delay_ms);
                if (resp.hang_after > 0 && i == resp.hang_after)
                    tu__http_sleep_ms(server, resp.hang_ms);
                char size[32];
                size_t len = strlen(resp.chunks[i]);
                int m = snprintf(size, sizeof size, "%zx\r\n", len);
                ok = tu__http_write_all(conn->fd, size, (size_t)m) &&
                     tu__http_write_all(conn->fd, resp.chunks[i], len) &&
                     tu__http_write_all(conn->fd, "\r\n", 2);
            }
            if (ok && !atomic_load(&server->stopping))
                tu__http_write_all(conn->fd, "0\r\n\r\n", 5);
        } else if (resp.raw && resp.body && !atomic_load(&server->stopping)) {
            tu__http_write_all(conn->fd, resp.body,
                               resp.body_len ? resp.body_len : strlen(resp.body));
        } else if (resp.status > 0 && !atomic_load(&server->stopping)) {
            size_t blen = resp.body ? (resp.body_len ? resp.body_len : strlen(resp.body)) : 0;
            char head[1024];
            int n =
                snprintf(head, sizeof head,
                         "HTTP/1.1 %d Test\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                         "%sConnection: close\r\n\r\n",
                         resp.status, resp.content_type ? resp.content_type : "application/json",
                         blen, resp.headers);
            if (tu__http_write_all(conn->fd, head, (size_t)n) && blen)
                tu__http_write_all(conn->fd, resp.body, blen);
        }
        free(resp.body);
        for (int i = 0; i < resp.n_chunks; i++)
            free(resp.chunks[i]);
        free(req.body);
    }
    close(conn->fd);
    free(conn);
    pthread_mutex_lock(&server->lock);
    if (--server->n_conns == 0)
        pthread_cond_broadcast(&server->idle);
    pthread_mutex_unlock(&server->lock);
    return NULL;
}

static void *
tu__http_accept_main(void *arg)
{
    tu_http_server_t *server = arg;
    while (!atomic_load(&server->stopping)) {
        int fd = accept(server->fd, NULL, NULL);
        if (fd < 0) {
            // Woken by shutdown(), or an error such as EMFILE: do not spin.
            struct timespec pause = {0, 10 * 1000000L};
            nanosleep(&pause, NULL);
            continue;
        }
        // A client that connects and never finishes its request must not
        // hold tu_http_server_stop forever.
        struct timeval limit = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        if (atomic_load(&server->stopping)) {
            close(fd);
            break;
        }
        tu__http_conn_t *conn = malloc(sizeof *conn);
        pthread_mutex_lock(&server->lock);
        bool room = conn && server->n_conns < TU_HTTP_MAX_CONNS;
        if (room) {
            conn->server = server;
            conn->fd = fd;
            pthread_t thread;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&thread, &attr, tu__http_conn_main, conn) == 0)
                server->n_conns++;
            else
                room = false;
            pthread_attr_destroy(&attr);
        }
        pthread_mutex_unlock(&server->lock);
        if (!room) {
            close(fd);
            free(conn);
        }
    }
    return NULL;
}

//  Start a server on 127.0.0.1 at a free port (server->port). NULL on error.
static tu_http_server_t *
tu_http_server_start(tu_http_handler_fn handler, void *arg)
{
    tu_http_server_t *server = calloc(1, sizeof *server);
    if (!server)
        return NULL;
    server->handler = handler;
    server->arg = arg;
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->idle, NULL);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    int one = 1;
    server->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (server->fd < 0 || setsockopt(server->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(server->fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(server->fd, 128) != 0 ||
        getsockname(server->fd, (struct sockaddr *)&addr, &alen) != 0 ||
        pthread_create(&server->acceptor, NULL, tu__http_accept_main, server) != 0) {
        if (server->fd >= 0)
            close(server->fd);
        pthread_cond_destroy(&server->idle);
        pthread_mutex_destroy(&server->lock);
        free(server);
        return NULL;
    }
    server->port = ntohs(addr.sin_port);
    return server;
}

//  The base URL, "http://127.0.0.1:<port>", into buf.
static void
tu_http_server_url(const tu_http_server_t *server, char *buf, size_t size, const char *path)
{
    snprintf(buf, size, "http://127.0.0.1:%d%s", server->port, path ? path : "");
}

//  Requests read so far, and a copy of the last one (body truncated to 16 KiB).
static int
tu_http_server_last(tu_http_server_t *server, tu_http_req_t *last, char *body, size_t body_size)
{
    pthread_mutex_lock(&server->lock);
    int n = server->requests;
    if (last)
        *last = server->last;
    if (body && body_size > 0) {
        size_t copy = strnlen(server->last_body, body_size - 1);
        memcpy(body, server->last_body, copy);
        body[copy] = 0;
    }
    pthread_mutex_unlock(&server->lock);
    if (last)
        last->body = NULL;
    return n;
}

//  Stop accepting, cut short every delay, wait for every thread, free the server.
static void
tu_http_server_stop(tu_http_server_t **server_p)
{
    tu_http_server_t *server = *server_p;
    if (!server)
        return;
    atomic_store(&server->stopping, true);
    shutdown(server->fd, SHUT_RDWR); // wakes accept()
    pthread_join(server->acceptor, NULL);
    close(server->fd);
    pthread_mutex_lock(&server->lock);
    while (server->n_conns > 0)
        pthread_cond_wait(&server->idle, &server->lock);
    pthread_mutex_unlock(&server->lock);
    pthread_cond_destroy(&server->idle);
    pthread_mutex_destroy(&server->lock);
    free(server);
    *server_p = NULL;
}

#endif
