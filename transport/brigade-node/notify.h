//  notify - readiness for service managers: the sd_notify datagram
//  protocol (without libsystemd) and a ready file.
#ifndef BRG_BRIGADE_NODE_NOTIFY_H
#define BRG_BRIGADE_NODE_NOTIFY_H

#include <stddef.h>

//  Send `state` ("READY=1", "STOPPING=1", "STATUS=...", several separated
//  by newlines) to the socket named by $NOTIFY_SOCKET, as systemd's
//  sd_notify does: an AF_UNIX datagram to a path ("/run/...") or, for a
//  name that starts with '@', to that abstract address. Returns 1 when
//  sent, 0 when $NOTIFY_SOCKET is not set, or a negative BRG_E... code
//  (BRG_EINVAL: an address of another form or too long; BRG_ESYS: the send
//  failed, errno kept). Thread: any.
int brg__notify_send(const char *state);

//  Write text to path atomically: into "path.tmp.PID", then rename(2), so
//  a reader sees no file or the whole file. BRG_OK or BRG_ESYS (errno kept;
//  the temporary file is removed).
int brg__notify_ready_file(const char *path, const char *text);

#endif
