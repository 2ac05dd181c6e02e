//  debug - invariant checks, race-window yields and the monotonic clock.
//
//  Design notes.
//  brg__panic is the third kind of failure of house rule R6: an internal
//  invariant broke, so the process state cannot be trusted; print where and
//  abort. brg__debug_yield is liburcu's DEBUG_YIELD: compiled in only with
//  -DBRG_DEBUG_YIELD, it perturbs timing at the places marked as race windows
//  so the stress tier explores more interleavings.
#include "runtime_internal.h"

_Noreturn void
brg__panic_at(const char *file, int line, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "brigade panic at %s:%d: ", file, line);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
    abort();
}

#ifdef BRG_DEBUG_YIELD
void
brg__debug_yield(void)
{
    // Per-thread xorshift state: no shared state, so no synchronization.
    static _Thread_local uint64_t seed;
    if (seed == 0)
        seed = (uint64_t)(uintptr_t)&seed ^ brg__now_ns();
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    unsigned r = (unsigned)(seed % 8);
    if (r == 0)
        usleep((useconds_t)(seed >> 8) % 20);
    else if (r == 1)
        sched_yield();
}
#endif

uint64_t
brg__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
