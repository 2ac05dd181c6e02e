//  notify - readiness for service managers.
//
//  Design notes. systemd's Type=notify services tell the manager they are
//  ready by sending "READY=1" in one datagram to the AF_UNIX socket named
//  by $NOTIFY_SOCKET (sd_notify(3)); a name that starts with '@' is an
//  abstract socket, the '@' standing for the leading NUL byte. That is the
//  whole protocol, so it is spoken here directly rather than through
//  libsystemd (not a dependency of this project). The variable is left
//  set, as sd_notify(unset_environment=0) does: STOPPING=1 goes to the same
//  socket later. Containers and other supervisors get a ready file instead:
//  written whole to a temporary name and renamed, so a health check never
//  reads half of it.
#include "launcher_internal.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

int
brg__notify_send(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL || name[0] == '\0')
        return 0;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len >= sizeof addr.sun_path)
        return BRG_EINVAL; // vsock: and other forms are not spoken here
    memcpy(addr.sun_path, name, len);
    if (name[0] == '@')
        addr.sun_path[0] = '\0';
    // An abstract address is exactly as long as its name; a path ends at its NUL.
    socklen_t alen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (name[0] == '/' ? 1 : 0));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return BRG_ESYS;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, alen);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(state) ? 1 : BRG_ESYS;
}

int
brg__notify_ready_file(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return BRG_ESYS;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return BRG_ESYS;
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        done += (size_t)n;
    }
    int saved = errno;
    if (close(fd) != 0 && done == len) {
        saved = errno;
        done = 0;
    }
    if (done == len && rename(tmp, path) == 0)
        return BRG_OK;
    if (done == len)
        saved = errno;
    unlink(tmp);
    errno = saved;
    return BRG_ESYS;
}
