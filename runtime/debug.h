//  debug - invariant checks, race-window yields and the monotonic clock.
#ifndef BRG_RUNTIME_DEBUG_H
#define BRG_RUNTIME_DEBUG_H

#include <stdint.h>

//  Print "brigade panic at file:line: <text>" to stderr and abort. For broken
//  internal invariants only, never reachable from outside input.
#define brg__panic(...) brg__panic_at(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void brg__panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

//  In a BRG_DEBUG_YIELD build, sleep a random 0-20 microseconds or yield, to
//  widen the marked race windows under the stress tests; otherwise nothing.
#ifdef BRG_DEBUG_YIELD
void brg__debug_yield(void);
#else
static inline void
brg__debug_yield(void)
{
}
#endif

//  BRG__TSAN is defined in a ThreadSanitizer build (gcc's __SANITIZE_THREAD__,
//  clang's __has_feature), for the few places that must tell TSan what it
//  cannot see (park.c's fences, zmq_io.c's libzmq hand-offs).
#if defined(__SANITIZE_THREAD__)
#define BRG__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BRG__TSAN 1
#endif
#endif

//  CLOCK_MONOTONIC in nanoseconds.
uint64_t brg__now_ns(void);

//  A short CPU pause for spin loops.
static inline void
brg__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
