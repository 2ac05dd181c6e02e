//  test_util - helpers shared by the runtime test suites: clocks, a
//  wait-until-with-timeout macro, a dead-letter recorder and a system fixture.
//
//  Every test runs in its own forked process (Check's default), so the
//  file-static state below starts fresh in each test. Include this header in
//  one test file per executable.
#ifndef BRG_TESTS_TEST_UTIL_H
#define BRG_TESTS_TEST_UTIL_H

#include <brigade.h>

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TU_UNUSED __attribute__((unused))

//  ---------------------------------------------------------------------------
//  Clocks and sleeping.

static inline uint64_t
tu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t
tu_now_ms(void)
{
    return tu_now_ns() / 1000000u;
}

//  CPU time used by the whole process (every thread), in nanoseconds.
static inline uint64_t
tu_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void
tu_sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static inline void
tu_sleep_ms(uint64_t ms)
{
    tu_sleep_us(ms * 1000u);
}

//  Burn CPU for about us microseconds (a behaviour doing real work).
static inline void
tu_spin_us(uint64_t us)
{
    uint64_t end = tu_now_ns() + us * 1000u;
    while (tu_now_ns() < end) {
    }
}

//  The factor sanitizer jobs set for Check's timeouts; the waits below scale
//  by it too, so a slow build waits longer instead of failing.
static inline double
tu_multiplier(void)
{
    const char *text = getenv("CK_TIMEOUT_MULTIPLIER");
    double m = text ? strtod(text, NULL) : 1.0;
    return m >= 1.0 ? m : 1.0;
}

//  Default patience of TU_WAIT_UNTIL for things that should happen "soon".
#define TU_WAIT_MS 10000

//  Poll cond every 100 us until it is true; fail the test if it is still
//  false after timeout_ms (scaled by CK_TIMEOUT_MULTIPLIER).
#define TU_WAIT_UNTIL(cond, timeout_ms)                                                            \
    do {                                                                                           \
        uint64_t tu_deadline_ = tu_now_ms() + (uint64_t)((timeout_ms)*tu_multiplier());            \
        while (!(cond)) {                                                                          \
            ck_assert_msg(tu_now_ms() < tu_deadline_, "timed out after %d ms waiting for: %s",     \
                          (int)(timeout_ms), #cond);                                               \
            tu_sleep_us(100);                                                                      \
        }                                                                                          \
    } while (0)

//  Spin (yielding) until an atomic flag is set: a behaviour that holds its
//  worker until the test lets it go.
static inline void
tu_gate_wait(atomic_int *gate)
{
    while (!atomic_load(gate))
        tu_sleep_us(100);
}

//  ---------------------------------------------------------------------------
//  Dead letters: the fixture's hook counts them by reason. An optional extra
//  hook (tu_dead_extra) lets a test look at each one as well.

typedef struct {
    atomic_ullong total;
    atomic_ullong by_reason[16]; // indexed by brg_dead_reason_t
} tu_dead_t;

static tu_dead_t tu_dead TU_UNUSED;
static brg_dead_letter_fn tu_dead_extra TU_UNUSED;

static inline void
tu_dead_hook(void *arg, brg_ref_t to, const brg_msg_t *msg, brg_dead_reason_t reason)
{
    (void)arg;
    if ((unsigned)reason < 16)
        atomic_fetch_add(&tu_dead.by_reason[reason], 1);
    atomic_fetch_add(&tu_dead.total, 1);
    if (tu_dead_extra)
        tu_dead_extra(arg, to, msg, reason);
}

static inline uint64_t
tu_dead_count(brg_dead_reason_t reason)
{
    return atomic_load(&tu_dead.by_reason[reason]);
}

//  ---------------------------------------------------------------------------
//  Systems.

//  Defaults, plus the counting dead-letter hook and `workers` workers.
static inline void
tu_config(brg_config_t *cfg, int workers)
{
    brg_config_init(cfg);
    cfg->workers = workers;
    cfg->dead_letter_fn = tu_dead_hook;
}

static inline brg_system_t *
tu_system_new(int workers)
{
    brg_config_t cfg;
    tu_config(&cfg, workers);
    return brg_system_new(&cfg);
}

static inline brg_stats_t
tu_stats(brg_system_t *sys)
{
    brg_stats_t stats;
    brg_system_stats(sys, &stats);
    return stats;
}

//  The fixture's system: 2 workers, the counting hook. Use with
//  tcase_add_checked_fixture, so its threads start inside the test's fork.
static brg_system_t *tu_sys TU_UNUSED;

static inline void
tu_setup(void)
{
    tu_sys = tu_system_new(2);
    ck_assert_ptr_nonnull(tu_sys);
}

static inline void
tu_teardown(void)
{
    brg_system_destroy(&tu_sys);
    ck_assert_ptr_null(tu_sys);
}

//  Wait until ref's actor is gone.
#define TU_WAIT_DEAD(sys, ref) TU_WAIT_UNTIL(!brg_system_is_alive((sys), (ref)), TU_WAIT_MS)

//  Send from outside: a tag and one integer. Returns the send's result.
static inline int
tu_send_int(brg_system_t *sys, brg_ref_t to, const char *tag, int64_t value)
{
    brg_msg_t *msg = brg_msg_new_int(tag, value);
    ck_assert_ptr_nonnull(msg);
    return brg_system_send(sys, to, &msg);
}

static inline int
tu_send_tag(brg_system_t *sys, brg_ref_t to, const char *tag)
{
    brg_msg_t *msg = brg_msg_new(tag);
    ck_assert_ptr_nonnull(msg);
    return brg_system_send(sys, to, &msg);
}

//  The first integer of a message's payload (the test fails if there is none).
static inline int64_t
tu_msg_int(const brg_msg_t *msg)
{
    size_t pos = 0;
    int64_t value = 0;
    int rc = brg_msg_read_int(msg, &pos, &value);
    ck_assert_int_eq(rc, BRG_OK);
    return value;
}

//  Spawn from outside with a behaviour and nothing else; fails the test on error.
static inline brg_ref_t
tu_spawn(brg_system_t *sys, brg_behaviour_fn fn)
{
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(sys, fn, NULL, &ref), BRG_OK);
    return ref;
}

//  Run a Suite with the default runner and return the process exit status.
static inline int
tu_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

//  ---------------------------------------------------------------------------
//  Kept log lines, for tests that check what was logged: give a system
//  cfg.log_fn = tu_log_keep (cfg.log_arg non-NULL also copies each line to
//  stderr). Thread: any.

static pthread_mutex_t tu_log_lock TU_UNUSED = PTHREAD_MUTEX_INITIALIZER;
static char tu_log_buf[256 * 1024] TU_UNUSED;
static size_t tu_log_len TU_UNUSED;

static inline void
tu_log_keep(void *arg, const brg_log_event_t *ev)
{
    if (arg != NULL)
        brg_log_stderr(arg, ev);
    pthread_mutex_lock(&tu_log_lock);
    if (tu_log_len + ev->len + 2 < sizeof tu_log_buf) {
        memcpy(tu_log_buf + tu_log_len, ev->text, ev->len);
        tu_log_len += ev->len;
        tu_log_buf[tu_log_len++] = '\n';
        tu_log_buf[tu_log_len] = '\0';
    }
    pthread_mutex_unlock(&tu_log_lock);
}

static inline void
tu_log_clear(void)
{
    pthread_mutex_lock(&tu_log_lock);
    tu_log_len = 0;
    tu_log_buf[0] = '\0';
    pthread_mutex_unlock(&tu_log_lock);
}

//  Lines kept that contain a and, unless NULL, b.
static inline int
tu_log_count(const char *a, const char *b)
{
    int n = 0;
    pthread_mutex_lock(&tu_log_lock);
    for (const char *line = tu_log_buf; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[BRG_LOG_TEXT_MAX + 1];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (strstr(buf, a) != NULL && (b == NULL || strstr(buf, b) != NULL))
            n++;
        line += len + (eol ? 1 : 0);
    }
    pthread_mutex_unlock(&tu_log_lock);
    return n;
}

#endif
