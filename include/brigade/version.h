//  version - the library's version, in the header and in the built library.
#ifndef BRG_VERSION_H
#define BRG_VERSION_H

#include "export.h"

#define BRG_VERSION_MAJOR 0
#define BRG_VERSION_MINOR 1
#define BRG_VERSION_PATCH 0
#define BRG_MAKE_VERSION(major, minor, patch) ((major)*10000 + (minor)*100 + (patch))
#define BRG_VERSION BRG_MAKE_VERSION(BRG_VERSION_MAJOR, BRG_VERSION_MINOR, BRG_VERSION_PATCH)

//  The library's version as "major.minor.patch" (the built library, which may
//  differ from the header's BRG_VERSION). Static string.
BRG_EXPORT const char *brg_version(void);

#endif
