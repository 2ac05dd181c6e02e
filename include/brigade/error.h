//  error - the one error convention of Brigade.
//
//  Every fallible public function returns an int: BRG_OK (0) on success or a
//  negative BRG_E... code on failure. Functions that return a count return it
//  when >= 0. Constructors (brg_x_new) return NULL instead. Nothing reports
//  failure through errno or a caller buffer. A call that fails changes nothing
//  unless its comment says what is left changed.
#ifndef BRG_ERROR_H
#define BRG_ERROR_H

#include "export.h"

//  One table gives the enum, the names and the messages (X-macro).
#define BRG_ERRNO_MAP(XX)                                                                          \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(ENOACTOR, -3, "no such actor (dead, unknown or stale address)")                             \
    XX(ETIMEDOUT, -4, "deadline expired")                                                          \
    XX(ETYPE, -5, "payload value has another type")                                                \
    XX(EBADMSG, -6, "malformed msgpack payload")                                                   \
    XX(ERANGE, -7, "value out of range for the requested type")                                    \
    XX(EEXIST, -8, "already exists")                                                               \
    XX(ENOTFOUND, -9, "not found")                                                                 \
    XX(ECLOSED, -10, "system is shutting down")                                                    \
    XX(EMSGSIZE, -11, "message too large")                                                         \
    XX(ENODATA, -12, "no more values in the payload")                                              \
    XX(EFAILED, -13, "actor failed")                                                               \
    XX(EBUSY, -14, "resource busy")                                                                \
    XX(EPROTO, -15, "protocol error")                                                              \
    XX(ESYS, -16, "operating system call failed")                                                  \
    XX(ENETWORK, -17, "network failure (resolve, connect, TLS or transfer)")                       \
    XX(EHTTP, -18, "HTTP error status (not 2xx)")                                                  \
    XX(EDEADLK, -19, "blocking call refused on a thread of its own system (would deadlock)")       \
    XX(EPERM, -20, "not permitted (the peer's key or role may not do this)")                       \
    XX(ECANCELED, -21, "cancelled by the requester")

typedef enum {
    BRG_OK = 0,
#define BRG__ERR_ENUM(name, code, text) BRG_##name = code,
    BRG_ERRNO_MAP(BRG__ERR_ENUM)
#undef BRG__ERR_ENUM
} brg_err_t;

//  Human-readable text for an error code ("out of memory"). Unknown codes give
//  "unknown error". The string is static; never free it.
BRG_EXPORT const char *brg_strerror(int code);

//  The code's symbolic name ("BRG_ENOMEM"); "BRG_OK" for 0, "BRG_EUNKNOWN" for
//  codes not in the table. Static string.
BRG_EXPORT const char *brg_err_name(int code);

#endif
