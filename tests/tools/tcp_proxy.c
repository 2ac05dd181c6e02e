//  tcp_proxy - a TCP proxy on 127.0.0.1 that a test controls, to cut or
//  stall a link between two nodes.
//
//  usage: tcp_proxy TARGET_PORT
//  Listens on 127.0.0.1 (a free port), prints "port N" on stdout, and
//  forwards every connection to 127.0.0.1:TARGET_PORT. Commands, one per
//  line on stdin:
//    pass       forward bytes both ways (the start mode)
//    blackhole  keep every connection open but forward nothing (a frozen
//               link: the heartbeat path must notice)
//    reset      close every connection with RST on both sides, then pass
//  EOF on stdin ends the proxy. One thread, poll(2); test tool only.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 64

typedef struct {
    int a, b; // accepted side, target side; -1 when unused
} pair_t;

static pair_t pairs[MAX_PAIRS];
static bool blackhole;

static void
close_rst(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void
drop_pair(pair_t *p, bool rst)
{
    if (p->a < 0)
        return;
    if (rst) {
        close_rst(p->a);
        close_rst(p->b);
    } else {
        close(p->a);
        close(p->b);
    }
    p->a = p->b = -1;
}

static int
connect_target(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

//  Copy what is readable on from to to; false when from closed.
static bool
pump(int from, int to)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return false;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        off += w;
    }
    return true;
}

int
main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) <= 0) {
        fprintf(stderr, "usage: tcp_proxy TARGET_PORT\n");
        return 2;
    }
    int target = atoi(argv[1]);
    for (int i = 0; i < MAX_PAIRS; i++)
        pairs[i].a = pairs[i].b = -1;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 16) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) {
        perror("tcp_proxy");
        return 1;
    }
    printf("port %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    char line[64];
    size_t used = 0;
    for (;;) {
        struct pollfd pfd[2 + 2 * MAX_PAIRS];
        int idx[2 + 2 * MAX_PAIRS];
        int n = 0;
        pfd[n] = (struct pollfd){0, POLLIN, 0};
        idx[n++] = -1;
        pfd[n] = (struct pollfd){lfd, POLLIN, 0};
        idx[n++] = -2;
        for (int i = 0; i < MAX_PAIRS && !blackhole; i++) {
            if (pairs[i].a < 0)
                continue;
            pfd[n] = (struct pollfd){pairs[i].a, POLLIN, 0};
            idx[n++] = 2 * i;
            pfd[n] = (struct pollfd){pairs[i].b, POLLIN, 0};
            idx[n++] = 2 * i + 1;
        }
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        for (int k = 0; k < n; k++) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (idx[k] == -1) {
                ssize_t r = read(0, line + used, sizeof line - 1 - used);
                if (r <= 0)
                    return 0;
                used += (size_t)r;
                line[used] = '\0';
                char *nl;
                while ((nl = strchr(line, '\n')) != NULL) {
                    *nl = '\0';
                    if (strcmp(line, "pass") == 0) {
                        blackhole = false;
                    } else if (strcmp(line, "blackhole") == 0) {
                        blackhole = true;
                    } else if (strcmp(line, "reset") == 0) {
                        for (int i = 0; i < MAX_PAIRS; i++)
                            drop_pair(&pairs[i], true);
                        blackhole = false;
                    }
                    printf("ok %s\n", line);
                    fflush(stdout);
                    size_t rest = used - (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, rest + 1);
                    used = rest;
                }
                if (used == sizeof line - 1)
                    used = 0;
            } else if (idx[k] == -2) {
                int a = accept(lfd, NULL, NULL);
                if (a < 0)
                    continue;
                int b = connect_target(target);
                int i = 0;
                while (i < MAX_PAIRS && pairs[i].a >= 0)
                    i++;
                if (b < 0 || i == MAX_PAIRS) {
                    close_rst(a);
                    if (b >= 0)
                        close(b);
                    continue;
                }
                setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                pairs[i].a = a;
                pairs[i].b = b;
            } else {
                pair_t *p = &pairs[idx[k] / 2];
                if (p->a < 0)
                    continue;
                bool ok = idx[k] % 2 == 0 ? pump(p->a, p->b) : pump(p->b, p->a);
                if (!ok)
                    drop_pair(p, false);
            }
        }
    }
}
