//  timer - delayed and periodic messages
//
//  Design notes.
//  One timer thread per system keeps a binary min-heap of deadlines and sleeps
//  on a CLOCK_MONOTONIC condition variable until the earliest one (or until a
//  new earliest one is armed), so an idle system with no timers costs no CPU
//  and timers fire without a tick. Entries live in a table indexed by slot
//  with a generation, so a brg_timer_id_t (generation << 32 | slot) stays a
//  safe value after the timer fired or was cancelled: a stale id finds a
//  newer generation and gets BRG_ENOTFOUND. Each entry knows its heap
//  position, so cancel is O(log n).
//  The timer thread delivers outside the lock (brg__system_deliver may take
//  the scheduler's locks and call the dead-letter hook). A periodic timer
//  sends a copy each period; its message stays in the table.
//  Everything here is guarded by `lock`; `active` is only a counter for stats.
//  The same thread runs the watchdog: with cfg.watchdog_ms set it wakes at
//  least every quarter of the limit and scans the workers' watch slots.
//  It also writes the dead-letter summary that a dead letter could not write
//  at once (log.c): brg__timers_kick wakes it, and it sleeps until the
//  summary's second is up.
//  In deterministic mode there is no thread: brg_system_advance moves the
//  virtual clock and calls brg__timers_fire_due.
//
//  Cancel and ticks in flight. A periodic timer's tick is taken under the
//  lock but delivered outside it, and then waits in the target's mailbox;
//  cancel cannot reach it there. So each tick to a local actor is marked
//  BRG__MSG_TIMER with the timer's id (generation + slot), and the target
//  asks brg__timers_tick_is_live just before its behaviour would see it: a
//  cancelled timer's entry has a newer generation (or is free), and the tick
//  is dropped. The check and the cancel both take `lock`, so a cancel that
//  returned BRG_OK before the check is seen by it. One-shot timers need no
//  check: their entry is freed when they fire, so cancel then finds nothing.
#include "runtime_internal.h"

typedef struct {
    uint64_t deadline; // CLOCK_MONOTONIC ns
    uint64_t period;   // ns; 0 = one-shot
    brg_ref_t to;
    brg_msg_t *msg;     // owned by the entry while armed
    uint32_t gen;       // bumped when the entry is freed
    uint32_t heap_pos;  // index in heap while armed
    uint32_t next_free; // free-list link (slot + 1), 0 = end
    bool armed;
} s_entry_t;

struct brg__timers {
    brg_system_t *sys;    // immutable
    pthread_mutex_t lock; // guards everything below
    pthread_cond_t cond;  // CLOCK_MONOTONIC; signalled on a new earliest deadline or stop
    s_entry_t *table;
    uint32_t capacity;
    uint32_t free_head; // slot + 1, 0 = none
    uint32_t *heap;     // slots ordered by deadline
    uint32_t heap_len;
    bool stop;
    pthread_t thread;
    bool threaded;           // a timer thread runs (immutable)
    _Atomic uint64_t active; // armed timers, for stats (relaxed: a counter)
};

//  The timers whose thread the calling thread is, or NULL: a blocking call of
//  the system from here (a dead-letter hook) would stall every timer.
static _Thread_local brg__timers_t *s_own;

static void
s_heap_swap(brg__timers_t *self, uint32_t a, uint32_t b)
{
    uint32_t t = self->heap[a];
    self->heap[a] = self->heap[b];
    self->heap[b] = t;
    self->table[self->heap[a]].heap_pos = a;
    self->table[self->heap[b]].heap_pos = b;
}

static bool
s_less(brg__timers_t *self, uint32_t a, uint32_t b)
{
    return self->table[self->heap[a]].deadline < self->table[self->heap[b]].deadline;
}

static void
s_sift_up(brg__timers_t *self, uint32_t i)
{
    while (i > 0 && s_less(self, i, (i - 1) / 2)) {
        s_heap_swap(self, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void
s_sift_down(brg__timers_t *self, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < self->heap_len && s_less(self, l, m))
            m = l;
        if (r < self->heap_len && s_less(self, r, m))
            m = r;
        if (m == i)
            return;
        s_heap_swap(self, i, m);
        i = m;
    }
}

static void
s_heap_remove(brg__timers_t *self, uint32_t pos)
{
    uint32_t last = --self->heap_len;
    if (pos != last) {
        s_heap_swap(self, pos, last);
        s_sift_down(self, pos);
        s_sift_up(self, pos);
    }
}

static void
s_entry_free(brg__timers_t *self, uint32_t slot)
{
    s_entry_t *e = &self->table[slot];
    e->armed = false;
    e->msg = NULL;
    e->gen++;
    if (e->gen == 0)
        e->gen = 1;
    e->next_free = self->free_head;
    self->free_head = slot + 1;
    atomic_fetch_sub_explicit(&self->active, 1, memory_order_relaxed);
}

static int
s_grow(brg__timers_t *self)
{
    uint32_t capacity = self->capacity ? self->capacity * 2 : 64;
    s_entry_t *table = realloc(self->table, capacity * sizeof(*table));
    if (!table)
        return BRG_ENOMEM;
    self->table = table;
    uint32_t *heap = realloc(self->heap, capacity * sizeof(*heap));
    if (!heap)
        return BRG_ENOMEM;
    self->heap = heap;
    for (uint32_t i = capacity; i-- > self->capacity;) {
        memset(&table[i], 0, sizeof(table[i]));
        table[i].gen = 1;
        table[i].next_free = self->free_head;
        self->free_head = i + 1;
    }
    self->capacity = capacity;
    return BRG_OK;
}

static struct timespec
s_abs_timespec(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    return ts;
}

//  Take the earliest timer if it is due at now: its message to send (caller
//  owns), target and id. Lock held. Returns false if none is due.
static bool
s_take_due(brg__timers_t *self, uint64_t now, brg_ref_t *to, brg_msg_t **msg, uint64_t *id,
           bool *periodic)
{
    if (self->heap_len == 0)
        return false;
    uint32_t slot = self->heap[0];
    s_entry_t *e = &self->table[slot];
    if (e->deadline > now)
        return false;
    *to = e->to;
    *id = ((uint64_t)e->gen << 32) | slot;
    *periodic = e->period > 0;
    if (*periodic) {
        *msg = brg_msg_dup(e->msg);
        if (*msg && brg_system_is_local(self->sys, *to)) {
            (*msg)->kind = BRG__MSG_TIMER; // checked against cancel on arrival
            (*msg)->corr = *id;
        }
        e->deadline += e->period;
        if (e->deadline <= now)
            e->deadline = now + e->period; // fell behind: skip, do not burst
        s_sift_down(self, 0);
    } else {
        *msg = e->msg;
        s_heap_remove(self, 0);
        s_entry_free(self, slot);
    }
    return true;
}

static void
s_send(brg__timers_t *self, brg_ref_t to, brg_msg_t *msg, uint64_t id, bool periodic)
{
    int rc = msg ? brg__system_deliver(self->sys, to, &msg) : BRG_ENOMEM;
    if (periodic && rc == BRG_ENOACTOR)
        brg__timers_cancel(self, id); // the target is gone: stop sending
}

static void *
s_timer_main(void *arg)
{
    brg__timers_t *self = arg;
    brg_system_t *sys = self->sys;
    pthread_setname_np(pthread_self(), "brg-timer");
    s_own = self;
    uint64_t limit = (uint64_t)sys->cfg.watchdog_ms * 1000000u;
    uint64_t next_scan = limit ? brg__now_ns() + limit / 4 : UINT64_MAX;
    pthread_mutex_lock(&self->lock);
    while (!self->stop) {
        uint64_t now = brg__now_ns();
        // Read under the lock: a dead letter that arms a flush later takes
        // the lock to signal (brg__timers_kick), so the wake-up is not lost.
        uint64_t flush_at = brg__log_flush_deadline(sys);
        if (now >= flush_at) {
            pthread_mutex_unlock(&self->lock);
            brg__log_flush(sys, now, false);
            pthread_mutex_lock(&self->lock);
            continue;
        }
        if (now >= next_scan) {
            pthread_mutex_unlock(&self->lock);
            uint32_t n = brg__sched_watchdog_scan(sys->sched, now, limit, sys->cfg.watchdog_fail);
            atomic_fetch_add_explicit(&sys->watchdog_reports, n, memory_order_relaxed);
            pthread_mutex_lock(&self->lock);
            next_scan = now + limit / 4;
            continue;
        }
        uint64_t wake = next_scan < flush_at ? next_scan : flush_at;
        if (self->heap_len > 0 && self->table[self->heap[0]].deadline < wake)
            wake = self->table[self->heap[0]].deadline;
        if (wake > now) {
            if (wake == UINT64_MAX) {
                pthread_cond_wait(&self->cond, &self->lock);
            } else {
                struct timespec ts = s_abs_timespec(wake);
                pthread_cond_timedwait(&self->cond, &self->lock, &ts);
            }
            continue;
        }
        brg_ref_t to;
        brg_msg_t *msg;
        uint64_t id;
        bool periodic;
        if (!s_take_due(self, now, &to, &msg, &id, &periodic))
            continue;
        pthread_mutex_unlock(&self->lock);
        s_send(self, to, msg, id, periodic);
        pthread_mutex_lock(&self->lock);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

void
brg__timers_kick(brg__timers_t *self)
{
    if (!self->threaded)
        return; // deterministic mode: brg_system_advance flushes
    pthread_mutex_lock(&self->lock);
    pthread_cond_signal(&self->cond);
    pthread_mutex_unlock(&self->lock);
}

uint64_t
brg__timers_next_deadline(brg__timers_t *self)
{
    pthread_mutex_lock(&self->lock);
    uint64_t d = self->heap_len ? self->table[self->heap[0]].deadline : UINT64_MAX;
    pthread_mutex_unlock(&self->lock);
    return d;
}

uint32_t
brg__timers_fire_due(brg__timers_t *self, uint64_t now_ns)
{
    uint32_t fired = 0;
    for (;;) {
        brg_ref_t to;
        brg_msg_t *msg;
        uint64_t id;
        bool periodic;
        pthread_mutex_lock(&self->lock);
        bool due = s_take_due(self, now_ns, &to, &msg, &id, &periodic);
        pthread_mutex_unlock(&self->lock);
        if (!due)
            return fired;
        s_send(self, to, msg, id, periodic);
        fired++;
    }
}

brg__timers_t *
brg__timers_new(brg_system_t *sys, bool threaded)
{
    brg__timers_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->sys = sys;
    self->threaded = threaded;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (s_grow(self) != BRG_OK ||
        (threaded && pthread_create(&self->thread, NULL, s_timer_main, self) != 0)) {
        pthread_mutex_destroy(&self->lock);
        pthread_cond_destroy(&self->cond);
        free(self->table);
        free(self->heap);
        free(self);
        return NULL;
    }
    return self;
}

void
brg__timers_destroy(brg__timers_t **self_p)
{
    assert(self_p);
    brg__timers_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->cond);
    pthread_mutex_unlock(&self->lock);
    if (self->threaded)
        pthread_join(self->thread, NULL);
    for (uint32_t i = 0; i < self->capacity; i++)
        if (self->table[i].armed)
            brg__msg_free(self->table[i].msg);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->cond);
    free(self->table);
    free(self->heap);
    free(self);
    *self_p = NULL;
}

int
brg__timers_start(brg__timers_t *self, brg_ref_t to, brg_msg_t **msg_p, uint64_t delay_ns,
                  uint64_t period_ns, brg_timer_id_t *id)
{
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    // A short timer could fire before our pending sends (mailbox.c, "Send
    // coalescing"): they go first.
    brg__send_flush();
    pthread_mutex_lock(&self->lock);
    int rc = self->stop ? BRG_ECLOSED : BRG_OK;
    if (rc == BRG_OK && !self->free_head)
        rc = s_grow(self);
    if (rc != BRG_OK) {
        pthread_mutex_unlock(&self->lock);
        brg__msg_free(msg);
        return rc;
    }
    uint32_t slot = self->free_head - 1;
    s_entry_t *e = &self->table[slot];
    self->free_head = e->next_free;
    e->deadline = brg__system_now_ns(self->sys) + delay_ns;
    e->period = period_ns;
    e->to = to;
    e->msg = msg;
    e->armed = true;
    e->heap_pos = self->heap_len;
    self->heap[self->heap_len++] = slot;
    s_sift_up(self, e->heap_pos);
    atomic_fetch_add_explicit(&self->active, 1, memory_order_relaxed);
    if (e->heap_pos == 0)
        pthread_cond_signal(&self->cond); // new earliest deadline
    if (id)
        *id = ((uint64_t)e->gen << 32) | slot;
    pthread_mutex_unlock(&self->lock);
    return BRG_OK;
}

int
brg__timers_cancel(brg__timers_t *self, brg_timer_id_t id)
{
    uint32_t slot = (uint32_t)id;
    brg_msg_t *msg = NULL;
    pthread_mutex_lock(&self->lock);
    if (slot < self->capacity && self->table[slot].armed &&
        self->table[slot].gen == (uint32_t)(id >> 32)) {
        msg = self->table[slot].msg;
        s_heap_remove(self, self->table[slot].heap_pos);
        s_entry_free(self, slot);
    }
    pthread_mutex_unlock(&self->lock);
    if (!msg)
        return BRG_ENOTFOUND;
    brg__msg_free(msg);
    return BRG_OK;
}

bool
brg__timers_tick_is_live(brg__timers_t *self, const brg_msg_t *msg)
{
    if (msg->kind != BRG__MSG_TIMER)
        return true;
    uint32_t slot = (uint32_t)msg->corr;
    pthread_mutex_lock(&self->lock);
    bool live = slot < self->capacity && self->table[slot].armed &&
                self->table[slot].gen == (uint32_t)(msg->corr >> 32);
    pthread_mutex_unlock(&self->lock);
    return live;
}

bool
brg__timers_on_own_thread(const brg__timers_t *self)
{
    return self && s_own == self;
}

uint64_t
brg__timers_active(brg__timers_t *self)
{
    return atomic_load_explicit(&self->active, memory_order_relaxed);
}

//  ---------------------------------------------------------------------------
//  Public API

//  delay_ms and period_ms are checked by the callers: >= 0 each.
static int
s_start(brg_system_t *sys, brg_ref_t from, brg_ref_t to, brg_msg_t **msg_p, int delay_ms,
        int period_ms, brg_timer_id_t *id)
{
    brg__msg_make_plain(*msg_p, from);
    (*msg_p)->trace_flags = 0; // a timer's message belongs to no trace (trace.h)
    return brg__timers_start(sys->timers, to, msg_p, (uint64_t)delay_ms * 1000000u,
                             (uint64_t)period_ms * 1000000u, id);
}

//  A delay or period out of range: the same answer in every build (an
//  assert would vanish under NDEBUG and leave a timer for ~584 years).
static int
s_refuse(brg_msg_t **msg_p)
{
    brg_msg_destroy(msg_p);
    return BRG_EINVAL;
}

int
brg_send_after(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int delay_ms, brg_timer_id_t *id)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    if (delay_ms < 0)
        return s_refuse(msg_p);
    return s_start(brg_ctx_system(ctx), brg_self(ctx), to, msg_p, delay_ms, 0, id);
}

int
brg_send_every(brg_ctx_t *ctx, brg_ref_t to, brg_msg_t **msg_p, int period_ms, brg_timer_id_t *id)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    if (period_ms <= 0)
        return s_refuse(msg_p);
    return s_start(brg_ctx_system(ctx), brg_self(ctx), to, msg_p, period_ms, period_ms, id);
}

int
brg_system_send_after(brg_system_t *sys, brg_ref_t to, brg_msg_t **msg_p, int delay_ms,
                      int period_ms, brg_timer_id_t *id)
{
    assert(sys);
    assert(msg_p && *msg_p);
    if (delay_ms < 0 || period_ms < 0)
        return s_refuse(msg_p);
    return s_start(sys, BRG_REF_NONE, to, msg_p, delay_ms, period_ms, id);
}

int
brg_timer_cancel(brg_system_t *sys, brg_timer_id_t id)
{
    assert(sys);
    if (id == 0)
        return BRG_ENOTFOUND;
    return brg__timers_cancel(sys->timers, id);
}
