//  log - one line per event: levels, a user hook, stderr by default
//
//  Design notes.
//
//  An event is made on the thread where it happens, into fixed buffers on
//  that thread's stack: the printf text (S_RAW_MAX bytes), escaped into at
//  most BRG_LOG_TEXT_MAX bytes (control characters become \n, \t, \r or
//  \xHH; a cut text ends in "..." and never in half a UTF-8 sequence or half
//  an escape), then handed to cfg.log_fn or brg_log_stderr. Nothing is
//  allocated and no lock is taken but the registry's, for a moment, to find
//  the actor's name (and the timer's, below, at most once a second). The stderr sink writes a whole
//  line with one write(2): lines are far below PIPE_BUF, so lines from different threads never
//  interleave, and no stdio lock is held while a slow terminal drains.
//  Filtered events cost one comparison with cfg.log_level.
//
//  Dead-letter summary. A flood of dead letters must not become a flood of
//  lines, nor go unseen. Each system keeps a count per reason (dl_count),
//  the system-clock time of the last summary (dl_last_ns) and a flag saying
//  the timer thread has been asked to flush (dl_armed). A dead letter:
//    1. adds one to its reason's count;
//    2. if a second has passed since the last summary, claims the summary by
//       a CAS of dl_last_ns to now and, if it wins, exchanges every count
//       with zero and writes them as one line;
//    3. otherwise, if dl_armed was clear, sets it and wakes the timer thread,
//       which calls brg__log_flush when the second is up.
//  The flush clears dl_armed, then claims the summary by the same CAS and
//  exchanges the counts. Every count is written by exactly one summary:
//  exchanges hand each increment to one writer, and an increment that comes
//  after a flush's exchange is after the flush cleared dl_armed (in the single
//  total order of seq_cst operations, which is why these few atomics are
//  seq_cst), so its step 3 sees the flag clear and arms a new flush; if the
//  flush loses its CAS to a step 2 whose exchange may have come before that
//  increment, it sets dl_armed again. Summaries are at least a second apart
//  (both writers CAS dl_last_ns only from a time a second older).
//  brg_system_destroy writes what is left once no thread runs. The clock is
//  the system's: in deterministic mode, where there is no timer thread,
//  brg_system_advance moves it and then calls the flush.
#include "runtime_internal.h"

//  Room for the printf text before escaping: a text that long is cut anyway.
#define S_RAW_MAX 1024
//  Room for an escaped category.
#define S_CATEGORY_MAX 32
//  Room for an escaped name: every byte may become \xHH.
#define S_NAME_BUF (4 * BRG_NAME_MAX + 1)
//  Room for a stderr line: prefix, level, category, actor, name, text.
#define S_LINE_MAX (64 + S_CATEGORY_MAX + BRG_REF_STRLEN + S_NAME_BUF + BRG_LOG_TEXT_MAX)

const char *
brg_log_level_name(brg_log_level_t level)
{
    switch (level) {
    case BRG_LOG_ERROR:
        return "error";
    case BRG_LOG_WARNING:
        return "warning";
    case BRG_LOG_NOTICE:
        return "notice";
    case BRG_LOG_INFO:
        return "info";
    case BRG_LOG_DEBUG:
        return "debug";
    }
    return "unknown";
}

bool
brg__log_on(const brg_system_t *sys, brg_log_level_t level)
{
    return (int)level <= sys->cfg.log_level;
}

bool
brg_log_enabled(brg_system_t *sys, brg_log_level_t level)
{
    assert(sys);
    return brg__log_on(sys, level);
}

//  The length of the longest prefix of out[0..len) that does not end inside
//  a UTF-8 sequence.
static size_t
s_utf8_whole(const char *out, size_t len)
{
    size_t lead = len;
    // Back over at most three continuation bytes to the sequence's lead.
    while (lead > 0 && len - lead < 4 && ((unsigned char)out[lead - 1] & 0xc0) == 0x80)
        lead--;
    if (lead == 0 || len - lead == 4)
        return len; // no lead byte found: not UTF-8, leave it
    unsigned char c = (unsigned char)out[lead - 1];
    size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return len - (lead - 1) >= need ? len : lead - 1;
}

//  Copy in[0..n) into out (cap bytes and a NUL), each control character
//  escaped. If it does not all fit, or cut is true (in is itself a cut
//  text), end with "..." within cap. Returns the length written.
static size_t
s_escape(char *out, size_t cap, const char *in, size_t n, bool cut)
{
    static const char hex[] = "0123456789abcdef";
    assert(cap >= 3);
    size_t len = 0;
    size_t room3 = 0; // length at the last whole character that leaves room for "..."
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        char esc[4] = {'\\', 0, 0, 0};
        size_t k = 2;
        if (c >= 0x20 && c != 0x7f) {
            esc[0] = (char)c;
            k = 1;
        } else if (c == '\n') {
            esc[1] = 'n';
        } else if (c == '\t') {
            esc[1] = 't';
        } else if (c == '\r') {
            esc[1] = 'r';
        } else {
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 0x0f];
            k = 4;
        }
        if (len + k > cap)
            break;
        memcpy(out + len, esc, k);
        len += k;
        if (len <= cap - 3)
            room3 = len;
    }
    if (i < n || cut) {
        len = s_utf8_whole(out, room3);
        memcpy(out + len, "...", 3);
        len += 3;
    }
    out[len] = '\0';
    return len;
}

static void
s_emit(brg_system_t *sys, brg_log_level_t level, const char *category, brg_ref_t actor,
       const char *text, size_t len)
{
    char raw_name[BRG_NAME_MAX + 1];
    char name[S_NAME_BUF];
    brg_log_event_t ev = {level, category ? category : "user", sys, actor, NULL, text, len};
    // The actor's name, if it has one: a registry lookup (its lock, briefly).
    if (actor.id != 0 && brg_system_is_local(sys, actor) &&
        brg__registry_name_of(sys, actor.id, raw_name)) {
        s_escape(name, sizeof(name) - 1, raw_name, strnlen(raw_name, BRG_NAME_MAX), false);
        ev.actor_name = name;
    }
    if (sys->cfg.log_fn)
        sys->cfg.log_fn(sys->cfg.log_arg, &ev);
    else
        brg_log_stderr(NULL, &ev);
}

void
brg__logv(brg_system_t *sys, brg_log_level_t level, const char *category, brg_ref_t actor,
          const char *fmt, va_list args)
{
    if (!brg__log_on(sys, level))
        return;
    char raw[S_RAW_MAX];
    int n = vsnprintf(raw, sizeof(raw), fmt, args);
    if (n < 0) {
        n = 0;
        raw[0] = '\0';
    }
    bool cut = (size_t)n >= sizeof(raw);
    char text[BRG_LOG_TEXT_MAX + 1];
    size_t len = s_escape(text, BRG_LOG_TEXT_MAX, raw, cut ? sizeof(raw) - 1 : (size_t)n, cut);
    s_emit(sys, level, category, actor, text, len);
}

void
brg__log(brg_system_t *sys, brg_log_level_t level, const char *category, brg_ref_t actor,
         const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    brg__logv(sys, level, category, actor, fmt, args);
    va_end(args);
}

void
brg_log(brg_ctx_t *ctx, brg_log_level_t level, const char *fmt, ...)
{
    assert(ctx);
    assert(fmt);
    va_list args;
    va_start(args, fmt);
    brg__logv(ctx->actor->sys, level, "user", brg__actor_ref(ctx->actor), fmt, args);
    va_end(args);
}

void
brg_system_log(brg_system_t *sys, brg_log_level_t level, const char *category, brg_ref_t actor,
               const char *fmt, ...)
{
    assert(sys);
    assert(fmt);
    va_list args;
    va_start(args, fmt);
    brg__logv(sys, level, category, actor, fmt, args);
    va_end(args);
}

void
brg_log_stderr(void *arg, const brg_log_event_t *event)
{
    (void)arg;
    assert(event);
    int saved_errno = errno; // logging must not change what the caller sees in errno
    char category[S_CATEGORY_MAX + 1];
    const char *cat = event->category ? event->category : "user";
    s_escape(category, S_CATEGORY_MAX, cat, strnlen(cat, S_RAW_MAX), false);
    char line[S_LINE_MAX];
    int n = snprintf(line, sizeof(line), "brigade: %s %s: ", brg_log_level_name(event->level),
                     category);
    if (!brg_ref_is_none(event->actor) && n >= 0 && (size_t)n < sizeof(line)) {
        char ref[BRG_REF_STRLEN];
        brg_ref_format(event->actor, ref, sizeof(ref));
        if (event->actor_name)
            n += snprintf(line + n, sizeof(line) - (size_t)n, "actor %s \"%s\": ", ref,
                          event->actor_name);
        else
            n += snprintf(line + n, sizeof(line) - (size_t)n, "actor %s: ", ref);
    }
    if (n >= 0 && (size_t)n < sizeof(line))
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%s\n", event->text ? event->text : "");
    if (n < 0)
        return;
    size_t len = (size_t)n;
    if (len >= sizeof(line)) { // cannot happen with the bounds above; keep the line whole anyway
        len = sizeof(line) - 1;
        line[len - 1] = '\n';
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; // nowhere to write: the line is lost, the caller goes on
        off += (size_t)w;
    }
    errno = saved_errno;
}

//  ---------------------------------------------------------------------------
//  Dead letters

static const char *
s_reason_name(brg_dead_reason_t reason)
{
    switch (reason) {
    case BRG_DEAD_NO_ACTOR:
        return "no-actor";
    case BRG_DEAD_STOPPED:
        return "stopped";
    case BRG_DEAD_LATE_REPLY:
        return "late-reply";
    case BRG_DEAD_UNHANDLED:
        return "unhandled";
    case BRG_DEAD_REMOTE:
        return "remote-unreachable";
    case BRG_DEAD_SHUTDOWN:
        return "shutdown";
    case BRG_DEAD_REMOTE_BUSY:
        return "remote-busy";
    case BRG_DEAD_REMOTE_DOWN:
        return "remote-down";
    }
    return "unknown";
}

//  Take every count and write them as one line (nothing if all are zero).
//  last: the previous summary's time (0 = none), now: this one's.
static void
s_summary(brg_system_t *sys, uint64_t last, uint64_t now)
{
    char parts[256];
    size_t len = 0;
    uint64_t total = 0;
    parts[0] = '\0';
    for (int r = 0; r < BRG__LOG_DL_REASONS; r++) {
        // Seq_cst: see the design notes (the flag and the counts are ordered
        // against each other by the single total order).
        uint64_t n = atomic_exchange_explicit(&sys->log.dl_count[r], 0, memory_order_seq_cst);
        if (n == 0)
            continue;
        total += n;
        int w = snprintf(parts + len, sizeof(parts) - len, "%s%s %llu", len ? ", " : "",
                         s_reason_name((brg_dead_reason_t)r), (unsigned long long)n);
        if (w > 0 && (size_t)w < sizeof(parts) - len)
            len += (size_t)w;
    }
    if (total == 0)
        return;
    const char *s = total == 1 ? "" : "s";
    if (last == 0)
        brg__log(sys, BRG_LOG_NOTICE, "dead_letter", BRG_REF_NONE, "%llu dead letter%s (%s)",
                 (unsigned long long)total, s, parts);
    else
        brg__log(sys, BRG_LOG_NOTICE, "dead_letter", BRG_REF_NONE,
                 "%llu dead letter%s in the last %llu ms (%s)", (unsigned long long)total, s,
                 (unsigned long long)((now - last) / 1000000u), parts);
}

//  True if the window since last is over at now (clocks read on different
//  threads may be a little out of order: an earlier now is inside it).
static bool
s_window_over(uint64_t last, uint64_t now)
{
    return last == 0 || (now >= last && now - last >= BRG__LOG_DL_WINDOW_NS);
}

void
brg__log_dead_letter(brg_system_t *sys, brg_ref_t to, const brg_msg_t *msg,
                     brg_dead_reason_t reason)
{
    if (!brg__log_on(sys, BRG_LOG_NOTICE))
        return;
    if (sys->cfg.log_dead_letters) {
        brg__log(sys, BRG_LOG_NOTICE, "dead_letter", to, "dead letter '%s' (%s)", msg->tag,
                 s_reason_name(reason));
        return;
    }
    brg__log_t *lg = &sys->log;
    unsigned r = (unsigned)reason < BRG__LOG_DL_REASONS ? (unsigned)reason : 0;
    // Seq_cst, like every access to these three fields: see the design notes.
    atomic_fetch_add_explicit(&lg->dl_count[r], 1, memory_order_seq_cst);
    uint64_t now = brg__system_now_ns(sys);
    uint64_t last = atomic_load_explicit(&lg->dl_last_ns, memory_order_seq_cst);
    if (s_window_over(last, now) &&
        atomic_compare_exchange_strong_explicit(&lg->dl_last_ns, &last, now, memory_order_seq_cst,
                                                memory_order_seq_cst)) {
        s_summary(sys, last, now);
        return;
    }
    if (atomic_load_explicit(&lg->dl_armed, memory_order_seq_cst) ||
        atomic_exchange_explicit(&lg->dl_armed, true, memory_order_seq_cst))
        return; // a flush is due already
    // While the system is being destroyed the timers may be going away; the
    // destroy writes the last summary itself.
    if (!atomic_load_explicit(&sys->closing, memory_order_relaxed))
        brg__timers_kick(sys->timers);
}

uint64_t
brg__log_flush_deadline(brg_system_t *sys)
{
    if (!atomic_load_explicit(&sys->log.dl_armed, memory_order_seq_cst))
        return UINT64_MAX;
    return atomic_load_explicit(&sys->log.dl_last_ns, memory_order_seq_cst) + BRG__LOG_DL_WINDOW_NS;
}

void
brg__log_flush(brg_system_t *sys, uint64_t now_ns, bool force)
{
    brg__log_t *lg = &sys->log;
    if (!force && !atomic_load_explicit(&lg->dl_armed, memory_order_seq_cst))
        return;
    uint64_t last = atomic_load_explicit(&lg->dl_last_ns, memory_order_seq_cst);
    if (!force && !s_window_over(last, now_ns))
        return; // a dead letter wrote a summary since the deadline was read
    atomic_store_explicit(&lg->dl_armed, false, memory_order_seq_cst);
    if (atomic_compare_exchange_strong_explicit(&lg->dl_last_ns, &last, now_ns,
                                                memory_order_seq_cst, memory_order_seq_cst))
        s_summary(sys, last, now_ns);
    else
        // A dead letter wrote a summary in between; counts that came after its
        // exchange wait for the next second.
        atomic_store_explicit(&lg->dl_armed, true, memory_order_seq_cst);
}
