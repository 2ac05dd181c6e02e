//  test_log - the log facility: crash reports, levels, escaping, the
//  dead-letter summary, the watchdog, the stderr sink, many threads.
#include "test_util.h"

#include <fcntl.h>
#include <unistd.h>

//  ---------------------------------------------------------------------------
//  A hook that records events (copies: the event is borrowed).

#define REC_MAX 64

typedef struct {
    brg_log_level_t level;
    char category[32];
    brg_ref_t actor;
    char name[BRG_NAME_MAX * 4 + 1]; // "" when the event had none
    bool has_name;
    char text[BRG_LOG_TEXT_MAX + 1];
    size_t len;
} rec_t;

static pthread_mutex_t s_rec_lock = PTHREAD_MUTEX_INITIALIZER;
static rec_t s_rec[REC_MAX];
static int s_nrec;
static atomic_int s_events;

static void
s_hook(void *arg, const brg_log_event_t *ev)
{
    ck_assert_ptr_eq(arg, &s_events);
    ck_assert_ptr_nonnull(ev->system);
    ck_assert_uint_eq(strlen(ev->text), ev->len);
    atomic_fetch_add(&s_events, 1);
    pthread_mutex_lock(&s_rec_lock);
    if (s_nrec < REC_MAX) {
        rec_t *r = &s_rec[s_nrec++];
        r->level = ev->level;
        snprintf(r->category, sizeof(r->category), "%s", ev->category);
        r->actor = ev->actor;
        r->has_name = ev->actor_name != NULL;
        snprintf(r->name, sizeof(r->name), "%s", ev->actor_name ? ev->actor_name : "");
        memcpy(r->text, ev->text, ev->len + 1);
        r->len = ev->len;
    }
    pthread_mutex_unlock(&s_rec_lock);
}

//  Recorded events of a category, in order, into out[] (at most max).
static int
s_find(const char *category, rec_t *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&s_rec_lock);
    for (int i = 0; i < s_nrec && n < max; i++)
        if (strcmp(s_rec[i].category, category) == 0)
            out[n++] = s_rec[i];
    pthread_mutex_unlock(&s_rec_lock);
    return n;
}

static void
s_config(brg_config_t *cfg, bool deterministic)
{
    tu_config(cfg, 2);
    cfg->deterministic = deterministic;
    cfg->log_fn = s_hook;
    cfg->log_arg = &s_events;
}

static brg_system_t *
s_det_system(void)
{
    brg_config_t cfg;
    s_config(&cfg, true);
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    return sys;
}

//  ---------------------------------------------------------------------------
//  Crash reports

static int
s_fail_on_work(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "work"))
        brg_fail(ctx, BRG_EFAILED, "boom: disk full");
    if (brg_msg_is(msg, "bad"))
        return BRG_EINVAL;
    if (brg_msg_is(msg, "mine"))
        return -7777; // a code of the user's own
    if (brg_msg_is(msg, "evil"))
        brg_fail(ctx, BRG_EFAILED, "line1\nbrigade: error crash: forged\x1b[31m");
    if (brg_msg_is(msg, "stop"))
        brg_stop(ctx);
    return BRG_OK;
}

START_TEST(test_log_crash_report_names_the_actor_the_reason_text_and_the_last_tag)
{
    brg_system_t *sys = s_det_system();
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "disk-writer";
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(sys, s_fail_on_work, &opts, &ref), BRG_OK);
    tu_send_tag(sys, ref, "hello");
    tu_send_tag(sys, ref, "work");
    brg_system_run_until_idle(sys);
    rec_t r[4];
    ck_assert_int_eq(s_find("crash", r, 4), 1);
    ck_assert_int_eq(r[0].level, BRG_LOG_ERROR);
    ck_assert(brg_ref_eq(r[0].actor, ref));
    ck_assert(r[0].has_name);
    ck_assert_str_eq(r[0].name, "disk-writer");
    ck_assert_str_eq(r[0].text, "failed: BRG_EFAILED \"boom: disk full\"; last message 'work'");
    brg_system_destroy(&sys);
}
END_TEST

static int
s_init_fails(brg_ctx_t *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return BRG_ENOMEM;
}

START_TEST(test_log_crash_report_for_a_negative_result_a_user_code_and_a_failed_init)
{
    brg_system_t *sys = s_det_system();
    brg_ref_t a = tu_spawn(sys, s_fail_on_work);
    brg_ref_t b = tu_spawn(sys, s_fail_on_work);
    tu_send_tag(sys, a, "bad");
    brg_system_run_until_idle(sys);
    tu_send_tag(sys, b, "mine");
    brg_system_run_until_idle(sys);
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.init = s_init_fails;
    brg_ref_t c;
    ck_assert_int_eq(brg_system_spawn(sys, s_fail_on_work, &opts, &c), BRG_OK);
    brg_system_run_until_idle(sys);
    rec_t r[4];
    ck_assert_int_eq(s_find("crash", r, 4), 3);
    ck_assert(brg_ref_eq(r[0].actor, a));
    ck_assert(!r[0].has_name);
    ck_assert_str_eq(r[0].text, "failed: BRG_EINVAL; last message 'bad'");
    ck_assert(brg_ref_eq(r[1].actor, b));
    ck_assert_str_eq(r[1].text, "failed: code -7777; last message 'mine'");
    ck_assert(brg_ref_eq(r[2].actor, c));
    ck_assert_str_eq(r[2].text, "failed: BRG_ENOMEM; in init");
    brg_system_destroy(&sys);
}
END_TEST

static int
s_linker(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (brg_msg_is(msg, "link")) {
        size_t pos = 0;
        brg_ref_t other;
        ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &other), BRG_OK);
        ck_assert_int_eq(brg_link(ctx, other), BRG_OK);
    }
    return BRG_OK;
}

START_TEST(test_log_normal_shutdown_and_propagated_exits_write_no_crash_report)
{
    brg_system_t *sys = s_det_system();
    brg_ref_t stops = tu_spawn(sys, s_fail_on_work);
    brg_ref_t shut = tu_spawn(sys, s_fail_on_work);
    tu_send_tag(sys, stops, "stop");
    ck_assert_int_eq(brg_exit(sys, shut, BRG_EXIT_SHUTDOWN), BRG_OK);
    // A linked pair: only the one that fails by itself is reported.
    brg_ref_t failing = tu_spawn(sys, s_fail_on_work);
    brg_ref_t linked = tu_spawn(sys, s_linker);
    brg_msg_t *msg = brg_msg_new("link");
    ck_assert_int_eq(brg_msg_add_ref(msg, failing), BRG_OK);
    ck_assert_int_eq(brg_system_send(sys, linked, &msg), BRG_OK);
    brg_system_run_until_idle(sys);
    tu_send_tag(sys, failing, "work");
    brg_system_run_until_idle(sys);
    ck_assert(!brg_system_is_alive(sys, stops));
    ck_assert(!brg_system_is_alive(sys, shut));
    ck_assert(!brg_system_is_alive(sys, linked));
    rec_t r[4];
    ck_assert_int_eq(s_find("crash", r, 4), 1);
    ck_assert(brg_ref_eq(r[0].actor, failing));
    brg_system_destroy(&sys);
    ck_assert_int_eq(s_find("crash", r, 4), 1);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Levels, user lines, escaping

static int
s_logger(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_log(ctx, BRG_LOG_ERROR, "e%d", 1);
    brg_log(ctx, BRG_LOG_WARNING, "w%d", 2);
    brg_log(ctx, BRG_LOG_NOTICE, "n%d", 3);
    brg_log(ctx, BRG_LOG_INFO, "i%d", 4);
    brg_log(ctx, BRG_LOG_DEBUG, "d%d", 5);
    return BRG_OK;
}

static int
s_run_logger(int level)
{
    brg_config_t cfg;
    s_config(&cfg, true);
    cfg.log_level = level;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    atomic_store(&s_events, 0);
    s_nrec = 0;
    tu_send_tag(sys, tu_spawn(sys, s_logger), "go");
    brg_system_run_until_idle(sys);
    int n = atomic_load(&s_events);
    brg_system_destroy(&sys);
    return n;
}

START_TEST(test_log_level_lets_through_only_events_at_least_as_severe)
{
    ck_assert_int_eq(s_run_logger(BRG_LOG_DEBUG), 5);
    ck_assert_int_eq(s_run_logger(BRG_LOG_INFO), 4);
    ck_assert_int_eq(s_run_logger(BRG_LOG_NOTICE), 3);
    rec_t r[4];
    ck_assert_int_eq(s_find("user", r, 4), 3);
    ck_assert_int_eq(r[0].level, BRG_LOG_ERROR);
    ck_assert_str_eq(r[0].text, "e1");
    ck_assert_int_eq(r[2].level, BRG_LOG_NOTICE);
    ck_assert_str_eq(r[2].text, "n3");
    ck_assert_int_eq(s_run_logger(BRG_LOG_WARNING), 2);
    ck_assert_int_eq(s_run_logger(BRG_LOG_ERROR), 1);
    ck_assert_int_eq(s_run_logger(-1), 0);
    brg_config_t cfg;
    brg_config_init(&cfg);
    ck_assert_int_eq(cfg.log_level, BRG_LOG_NOTICE);
    ck_assert_ptr_null(cfg.log_fn);
    ck_assert_str_eq(brg_log_level_name(BRG_LOG_WARNING), "warning");
    ck_assert_str_eq(brg_log_level_name((brg_log_level_t)42), "unknown");
}
END_TEST

START_TEST(test_log_system_log_carries_the_callers_category_and_actor)
{
    brg_system_t *sys = s_det_system();
    brg_ref_t ref = tu_spawn(sys, s_fail_on_work);
    ck_assert_int_eq(brg_register(sys, "svc", ref), BRG_OK);
    brg_system_log(sys, BRG_LOG_WARNING, "app", ref, "disk %d%% full", 93);
    brg_system_log(sys, BRG_LOG_ERROR, NULL, BRG_REF_NONE, "plain");
    ck_assert(brg_log_enabled(sys, BRG_LOG_NOTICE));
    ck_assert(!brg_log_enabled(sys, BRG_LOG_INFO));
    rec_t r[2];
    ck_assert_int_eq(s_find("app", r, 2), 1);
    ck_assert_int_eq(r[0].level, BRG_LOG_WARNING);
    ck_assert(brg_ref_eq(r[0].actor, ref));
    ck_assert_str_eq(r[0].name, "svc");
    ck_assert_str_eq(r[0].text, "disk 93% full");
    ck_assert_int_eq(s_find("user", r, 2), 1);
    ck_assert(brg_ref_is_none(r[0].actor));
    ck_assert(!r[0].has_name);
    ck_assert_str_eq(r[0].text, "plain");
    brg_system_destroy(&sys);
}
END_TEST

START_TEST(test_log_control_characters_are_escaped_and_long_texts_cut_with_an_ellipsis)
{
    brg_system_t *sys = s_det_system();
    brg_system_log(sys, BRG_LOG_ERROR, "app", BRG_REF_NONE,
                   "a\nb\tc\rd\x01"
                   "e\x7f"
                   "f\\g");
    // A reason text is the user's: it cannot forge a second line.
    brg_ref_t ref = tu_spawn(sys, s_fail_on_work);
    tu_send_tag(sys, ref, "evil");
    brg_system_run_until_idle(sys);
    // Too long: cut at BRG_LOG_TEXT_MAX, ending in "...".
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    brg_system_log(sys, BRG_LOG_ERROR, "long", BRG_REF_NONE, "%s", big);
    // Cut among two-byte UTF-8 characters and escapes: never half of either.
    char utf[1200] = "";
    for (int i = 0; i < 150; i++)
        strcat(utf, "\xc3\xa9\x02");
    brg_system_log(sys, BRG_LOG_ERROR, "utf", BRG_REF_NONE, "%s", utf);
    rec_t r[2];
    ck_assert_int_eq(s_find("app", r, 2), 1);
    ck_assert_str_eq(r[0].text, "a\\nb\\tc\\rd\\x01e\\x7ff\\g");
    ck_assert_int_eq(s_find("crash", r, 2), 1);
    ck_assert_str_eq(r[0].text, "failed: BRG_EFAILED \"line1\\nbrigade: error crash: "
                                "forged\\x1b[31m\"; last message 'evil'");
    ck_assert_int_eq(s_find("long", r, 2), 1);
    ck_assert_uint_eq(r[0].len, BRG_LOG_TEXT_MAX);
    ck_assert_str_eq(r[0].text + BRG_LOG_TEXT_MAX - 4, "x...");
    ck_assert_int_eq(s_find("utf", r, 2), 1);
    ck_assert_uint_le(r[0].len, BRG_LOG_TEXT_MAX);
    ck_assert_str_eq(r[0].text + r[0].len - 3, "...");
    // Whole units only: the text before "..." is a run of "é\x02".
    size_t body = r[0].len - 3;
    const char unit[] = "\xc3\xa9\\x02";
    size_t unit_len = sizeof(unit) - 1;
    size_t i = 0;
    for (; i + unit_len <= body; i += unit_len)
        ck_assert(memcmp(r[0].text + i, unit, unit_len) == 0);
    size_t rest = body - i; // a unit cut after the whole "é"
    ck_assert(rest == 0 || rest == 2);
    ck_assert(rest == 0 || memcmp(r[0].text + i, "\xc3\xa9", 2) == 0);
    for (size_t k = 0; k < r[0].len; k++)
        ck_assert((unsigned char)r[0].text[k] >= 0x20 && r[0].text[k] != 0x7f);
    brg_system_destroy(&sys);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Dead letters

static brg_ref_t
s_dead_ref(brg_system_t *sys)
{
    brg_ref_t ref = tu_spawn(sys, s_fail_on_work);
    ck_assert_int_eq(brg_actor_stop(sys, ref), BRG_OK);
    if (brg_system_is_deterministic(sys))
        brg_system_run_until_idle(sys);
    else
        TU_WAIT_DEAD(sys, ref);
    return ref;
}

//  Sum the counts of every dead-letter summary line; check each one's form.
static uint64_t
s_summary_total(rec_t *r, int n)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(r[i].level, BRG_LOG_NOTICE);
        ck_assert(brg_ref_is_none(r[i].actor));
        unsigned long long count = 0;
        ck_assert_int_eq(sscanf(r[i].text, "%llu dead letter", &count), 1);
        sum += count;
    }
    return sum;
}

START_TEST(test_log_a_flood_of_dead_letters_gives_one_summary_line_per_second)
{
    brg_system_t *sys = s_det_system();
    brg_ref_t dead = s_dead_ref(sys);
    for (int i = 0; i < 100000; i++)
        ck_assert_int_eq(tu_send_tag(sys, dead, "lost"), BRG_ENOACTOR);
    rec_t r[8];
    // The first one is written at once; the rest wait for their second.
    ck_assert_int_eq(s_find("dead_letter", r, 8), 1);
    ck_assert_str_eq(r[0].text, "1 dead letter (no-actor 1)");
    brg_system_advance(sys, 999);
    ck_assert_int_eq(s_find("dead_letter", r, 8), 1);
    brg_system_advance(sys, 1);
    ck_assert_int_eq(s_find("dead_letter", r, 8), 2);
    ck_assert_str_eq(r[1].text, "99999 dead letters in the last 1000 ms (no-actor 99999)");
    // A straggler is written when its second is up; the rest at destroy.
    tu_send_tag(sys, dead, "lost");
    brg_system_advance(sys, 10);
    ck_assert_int_eq(s_find("dead_letter", r, 8), 2);
    brg_system_advance(sys, 2000);
    ck_assert_int_eq(s_find("dead_letter", r, 8), 3);
    ck_assert_str_eq(r[2].text, "1 dead letter in the last 2010 ms (no-actor 1)");
    tu_send_tag(sys, dead, "a");
    tu_send_tag(sys, dead, "b");
    brg_system_destroy(&sys);
    ck_assert_int_eq(s_find("dead_letter", r, 8), 4);
    ck_assert_str_eq(r[3].text, "2 dead letters in the last 0 ms (no-actor 2)");
    ck_assert_uint_eq(s_summary_total(r, 4), 100003);
}
END_TEST

START_TEST(test_log_dead_letters_are_summarised_by_reason_and_left_ones_written_at_destroy)
{
    brg_system_t *sys = s_det_system();
    brg_ref_t dead = s_dead_ref(sys);
    brg_ref_t live = tu_spawn(sys, s_fail_on_work);
    tu_send_tag(sys, dead, "first");
    // Within the second: counted by reason, written when the system ends.
    tu_send_tag(sys, dead, "x");
    tu_send_tag(sys, dead, "y");
    brg_ref_t remote = live;
    remote.node_lo ^= 1; // another node's actor, and no transport
    tu_send_tag(sys, remote, "far");
    brg_system_destroy(&sys);
    rec_t r[4];
    ck_assert_int_eq(s_find("dead_letter", r, 4), 2);
    ck_assert_str_eq(r[0].text, "1 dead letter (no-actor 1)");
    ck_assert_str_eq(r[1].text,
                     "3 dead letters in the last 0 ms (no-actor 2, remote-unreachable 1)");
}
END_TEST

START_TEST(test_log_dead_letters_one_line_each_with_log_dead_letters)
{
    brg_config_t cfg;
    s_config(&cfg, true);
    cfg.log_dead_letters = true;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    brg_ref_t dead = s_dead_ref(sys);
    for (int i = 0; i < 5; i++)
        tu_send_tag(sys, dead, "gone");
    rec_t r[8];
    ck_assert_int_eq(s_find("dead_letter", r, 8), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert(brg_ref_eq(r[i].actor, dead));
        ck_assert_str_eq(r[i].text, "dead letter 'gone' (no-actor)");
    }
    brg_system_destroy(&sys);
    ck_assert_int_eq(s_find("dead_letter", r, 8), 5);
}
END_TEST

START_TEST(test_log_the_timer_thread_writes_a_waiting_summary_when_its_second_is_up)
{
    brg_config_t cfg;
    s_config(&cfg, false);
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    brg_ref_t dead = s_dead_ref(sys);
    tu_send_tag(sys, dead, "a");
    tu_send_tag(sys, dead, "b");
    tu_send_tag(sys, dead, "c");
    rec_t r[4];
    ck_assert_int_eq(s_find("dead_letter", r, 4), 1);
    // No further dead letter, no destroy: the timer thread writes the rest.
    TU_WAIT_UNTIL(s_find("dead_letter", r, 4) == 2, 5000);
    ck_assert_uint_eq(s_summary_total(r, 2), 3);
    ck_assert(strstr(r[1].text, "2 dead letters in the last ") == r[1].text);
    ck_assert(strstr(r[1].text, " ms (no-actor 2)") != NULL);
    brg_system_destroy(&sys);
    ck_assert_int_eq(s_find("dead_letter", r, 4), 2);
}
END_TEST

//  ---------------------------------------------------------------------------
//  The watchdog

static atomic_int s_gate;

static int
s_hog(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)ctx;
    (void)msg;
    tu_gate_wait(&s_gate);
    return BRG_OK;
}

START_TEST(test_log_watchdog_reports_through_the_log)
{
    brg_config_t cfg;
    s_config(&cfg, false);
    cfg.watchdog_ms = 20;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    brg_ref_t hog = tu_spawn(sys, s_hog);
    ck_assert_int_eq(brg_register(sys, "hog", hog), BRG_OK);
    tu_send_tag(sys, hog, "go");
    rec_t r[4];
    TU_WAIT_UNTIL(s_find("watchdog", r, 4) >= 1, TU_WAIT_MS);
    atomic_store(&s_gate, 1);
    ck_assert_int_eq(r[0].level, BRG_LOG_WARNING);
    ck_assert(brg_ref_eq(r[0].actor, hog));
    ck_assert_str_eq(r[0].name, "hog");
    ck_assert(strstr(r[0].text, "has held its thread for ") == r[0].text);
    brg_system_destroy(&sys);
}
END_TEST

//  ---------------------------------------------------------------------------
//  The stderr sink

//  Point fd 2 at a pipe; returns the read end (the test runs in its own fork).
static int
s_capture_stderr(void)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_ge(dup2(fds[1], STDERR_FILENO), 0);
    close(fds[1]);
    ck_assert_int_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    return fds[0];
}

static int
s_greeter(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    (void)msg;
    brg_log(ctx, BRG_LOG_NOTICE, "hi from %s", "me");
    return BRG_OK;
}

START_TEST(test_log_without_a_hook_each_event_is_one_line_on_stderr)
{
    int rd = s_capture_stderr();
    brg_config_t cfg;
    brg_config_init(&cfg);
    cfg.deterministic = true;
    brg_system_t *sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(sys);
    brg_system_log(sys, BRG_LOG_ERROR, "app", BRG_REF_NONE, "hello\nworld");
    brg_system_log(sys, BRG_LOG_INFO, "app", BRG_REF_NONE, "filtered");
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.name = "greeter";
    brg_ref_t ref;
    ck_assert_int_eq(brg_system_spawn(sys, s_greeter, &opts, &ref), BRG_OK);
    tu_send_tag(sys, ref, "go");
    brg_system_run_until_idle(sys);
    char text[BRG_REF_STRLEN];
    brg_ref_format(ref, text, sizeof(text));
    char want[512];
    snprintf(want, sizeof(want),
             "brigade: error app: hello\\nworld\n"
             "brigade: notice user: actor %s \"greeter\": hi from me\n",
             text);
    char got[1024];
    ssize_t n = read(rd, got, sizeof(got) - 1);
    ck_assert_int_gt(n, 0);
    got[n] = '\0';
    ck_assert_str_eq(got, want);
    brg_system_destroy(&sys);
    close(rd);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: many threads at once

#define T_THREADS 8
#define T_LINES 5000

static atomic_int s_seen[T_THREADS];

static void
s_count_hook(void *arg, const brg_log_event_t *ev)
{
    (void)arg;
    int t = -1, i = -1;
    ck_assert_int_eq(sscanf(ev->text, "thread %d line %d", &t, &i), 2);
    ck_assert(t >= 0 && t < T_THREADS && i >= 0 && i < T_LINES);
    atomic_fetch_add(&s_seen[t], 1);
}

static brg_system_t *s_stress_sys;

static void *
s_log_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < T_LINES; i++)
        brg_system_log(s_stress_sys, BRG_LOG_NOTICE, "stress", BRG_REF_NONE, "thread %d line %d", t,
                       i);
    return NULL;
}

START_TEST(test_log_stress_the_hook_sees_every_line_of_many_threads)
{
    brg_config_t cfg;
    tu_config(&cfg, 2);
    cfg.log_fn = s_count_hook;
    s_stress_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(s_stress_sys);
    pthread_t threads[T_THREADS];
    for (int t = 0; t < T_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, s_log_thread, (void *)(intptr_t)t), 0);
    for (int t = 0; t < T_THREADS; t++)
        pthread_join(threads[t], NULL);
    for (int t = 0; t < T_THREADS; t++)
        ck_assert_int_eq(atomic_load(&s_seen[t]), T_LINES);
    brg_system_destroy(&s_stress_sys);
}
END_TEST

static void *
s_stderr_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < T_LINES / 10; i++)
        brg_system_log(s_stress_sys, BRG_LOG_NOTICE, "stress", BRG_REF_NONE,
                       "thread %d line %d %0300d", t, i, 0);
    return NULL;
}

START_TEST(test_log_stress_stderr_lines_of_many_threads_never_interleave)
{
    char path[] = "/tmp/brigade-test-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    brg_config_t cfg;
    tu_config(&cfg, 2);
    s_stress_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(s_stress_sys);
    pthread_t threads[T_THREADS];
    for (int t = 0; t < T_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, s_stderr_thread, (void *)(intptr_t)t),
                         0);
    for (int t = 0; t < T_THREADS; t++)
        pthread_join(threads[t], NULL);
    brg_system_destroy(&s_stress_sys);
    FILE *in = fdopen(fd, "r");
    ck_assert_ptr_nonnull(in);
    rewind(in);
    int per_thread[T_THREADS] = {0};
    int lines = 0;
    char line[1024];
    while (fgets(line, sizeof(line), in)) {
        int t = -1, i = -1;
        ck_assert_msg(sscanf(line, "brigade: notice stress: thread %d line %d ", &t, &i) == 2,
                      "mangled line: %s", line);
        ck_assert(t >= 0 && t < T_THREADS);
        ck_assert_uint_eq(strlen(line), strlen("brigade: notice stress: thread 0 line ") +
                                            (size_t)snprintf(NULL, 0, "%d", i) + 1 + 300 + 1);
        per_thread[t]++;
        lines++;
    }
    fclose(in);
    ck_assert_int_eq(lines, T_THREADS * (T_LINES / 10));
    for (int t = 0; t < T_THREADS; t++)
        ck_assert_int_eq(per_thread[t], T_LINES / 10);
}
END_TEST

static void *
s_dead_thread(void *arg)
{
    brg_ref_t dead = *(const brg_ref_t *)arg;
    for (int i = 0; i < 25000; i++)
        ck_assert_int_eq(tu_send_tag(s_stress_sys, dead, "lost"), BRG_ENOACTOR);
    return NULL;
}

START_TEST(test_log_stress_a_flood_from_many_threads_gives_bounded_summaries_with_exact_totals)
{
    brg_config_t cfg;
    s_config(&cfg, false);
    s_stress_sys = brg_system_new(&cfg);
    ck_assert_ptr_nonnull(s_stress_sys);
    brg_ref_t dead = s_dead_ref(s_stress_sys);
    uint64_t start = tu_now_ms();
    pthread_t threads[4];
    for (int t = 0; t < 4; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, s_dead_thread, &dead), 0);
    for (int t = 0; t < 4; t++)
        pthread_join(threads[t], NULL);
    brg_system_destroy(&s_stress_sys);
    uint64_t elapsed = tu_now_ms() - start;
    rec_t r[REC_MAX];
    int n = s_find("dead_letter", r, REC_MAX);
    // At most one line a second, plus the first at once and the last at destroy.
    ck_assert_int_le(n, (int)(elapsed / 1000) + 2);
    ck_assert_int_ge(n, 1);
    ck_assert_uint_eq(s_summary_total(r, n), 100000);
}
END_TEST

Suite *
log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 10);
    tcase_add_test(core, test_log_crash_report_names_the_actor_the_reason_text_and_the_last_tag);
    tcase_add_test(core, test_log_crash_report_for_a_negative_result_a_user_code_and_a_failed_init);
    tcase_add_test(core, test_log_normal_shutdown_and_propagated_exits_write_no_crash_report);
    tcase_add_test(core, test_log_level_lets_through_only_events_at_least_as_severe);
    tcase_add_test(core, test_log_system_log_carries_the_callers_category_and_actor);
    tcase_add_test(core,
                   test_log_control_characters_are_escaped_and_long_texts_cut_with_an_ellipsis);
    tcase_add_test(core, test_log_a_flood_of_dead_letters_gives_one_summary_line_per_second);
    tcase_add_test(core,
                   test_log_dead_letters_are_summarised_by_reason_and_left_ones_written_at_destroy);
    tcase_add_test(core, test_log_dead_letters_one_line_each_with_log_dead_letters);
    tcase_add_test(core, test_log_the_timer_thread_writes_a_waiting_summary_when_its_second_is_up);
    tcase_add_test(core, test_log_watchdog_reports_through_the_log);
    tcase_add_test(core, test_log_without_a_hook_each_event_is_one_line_on_stderr);
    suite_add_tcase(s, core);
    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress");
    tcase_set_timeout(stress, 60);
    tcase_add_test(stress, test_log_stress_the_hook_sees_every_line_of_many_threads);
    tcase_add_test(stress, test_log_stress_stderr_lines_of_many_threads_never_interleave);
    tcase_add_test(
        stress,
        test_log_stress_a_flood_from_many_threads_gives_bounded_summaries_with_exact_totals);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    return tu_run(log_suite());
}
