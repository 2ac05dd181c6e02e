//  export - symbol visibility for the public API.
#ifndef BRG_EXPORT_H
#define BRG_EXPORT_H

//  The library is built with hidden visibility (CMAKE_C_VISIBILITY_PRESET hidden);
//  only declarations marked BRG_EXPORT leave the shared object.
#if defined(__GNUC__) || defined(__clang__)
#define BRG_EXPORT __attribute__((visibility("default")))
#else
#define BRG_EXPORT
#endif

#endif
