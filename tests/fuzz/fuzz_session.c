//  fuzz_session - libFuzzer target for the session state machine
//  (transport/session.c, with the codec under it).
//
//  Every input is a script (tests/fuzz/session_driver.h): frames from a
//  hostile peer, raw or built from a few bytes, interleaved with time
//  passing, pushes, flushes and ends by the owner, against a session that
//  dials or accepts. The driver checks the session's invariants after
//  every step and aborts on a broken one; ASan, UBSan and LeakSanitizer
//  see the rest. Built with BRG_FUZZ=ON and clang; see tests/fuzz/README.md.
#include <stddef.h>
#include <stdint.h>

#include "session_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    fz_session_run(data, len);
    return 0;
}
