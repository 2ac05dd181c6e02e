//  error - names and texts of the error codes, and the library version.
//
//  Design notes.
//  The codes, their names and their texts come from one X-macro table in
//  include/brigade/error.h (libuv's UV_ERRNO_MAP), so adding a code there
//  is the whole change: these switches cannot fall out of step with the
//  enum. Every string returned is static.
#include "runtime_internal.h"

//  "0.1.0" from the version macros, so the library reports the version it was
//  built with even when an application's header says otherwise.
#define BRG__STR(x) #x
#define BRG__XSTR(x) BRG__STR(x)
#define BRG__VERSION_TEXT                                                                          \
    BRG__XSTR(BRG_VERSION_MAJOR) "." BRG__XSTR(BRG_VERSION_MINOR) "." BRG__XSTR(BRG_VERSION_PATCH)

const char *
brg_strerror(int code)
{
    switch (code) {
    case BRG_OK:
        return "success";
#define BRG__ERR_TEXT(name, value, text)                                                           \
    case BRG_##name:                                                                               \
        return text;
        BRG_ERRNO_MAP(BRG__ERR_TEXT)
#undef BRG__ERR_TEXT
    default:
        return "unknown error";
    }
}

const char *
brg_err_name(int code)
{
    switch (code) {
    case BRG_OK:
        return "BRG_OK";
#define BRG__ERR_NAME(name, value, text)                                                           \
    case BRG_##name:                                                                               \
        return "BRG_" #name;
        BRG_ERRNO_MAP(BRG__ERR_NAME)
#undef BRG__ERR_NAME
    default:
        return "BRG_EUNKNOWN";
    }
}

const char *
brg_version(void)
{
    return BRG__VERSION_TEXT;
}
