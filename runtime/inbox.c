//  inbox - an address owned by an outside thread (brigade/inbox.h)
//
//  Design notes.
//  An inbox is a long-lived brg_system_ask reply box: an actor spawned with
//  BRG__MODE_WAITER, never scheduled, whose first push out of idle signals
//  the waiter's condition variable instead (mailbox.c). So the send path is
//  the one every actor uses; the inbox adds nothing to it. The system counts
//  the inbox among its asks_waiting from spawn to retirement, so
//  brg_system_destroy wakes it (waiter->closed: BRG_ECLOSED) and waits until
//  its owner destroys it, exactly as for a blocked brg_system_ask.
//
//  Thread ownership. The owner thread (the creator) is the inbox actor's
//  only consumer and owns every field of the actor that the runtime gives
//  to "the thread running the actor": the mailbox's consumer side (take,
//  take_idle, close), ext->links and the link bookkeeping (it calls
//  brg__link_handle itself, as brg__actor_run does), and the private queue
//  below. Producers only push (head CAS) and wake (the waiter's mutex).
//
//  Receiving. pull() exchanges the mailbox stack out (acquire, pairing with
//  the producers' release CAS), restores arrival order and files each
//  message: link signals go through brg__link_handle (EXIT and DOWN become
//  messages, the inbox trapping exits), a reply goes to the pending
//  brg_inbox_ask if its corr matches, else it is a late reply; the rest is
//  appended to the inbox's FIFO, which receive scans (selective receive
//  leaves non-matching messages in place). Before sleeping, the owner puts
//  the mailbox back to idle (take_idle: RUNNING -> NULL, acq_rel) so the
//  next push wakes it; if that fails, messages came meanwhile and it pulls
//  again. A wake-up whose messages were already pulled only costs a look.
//
//  Destroy on the owner's thread: a process-wide list of open inboxes with
//  their owner threads (s_open, under s_open_lock; touched only by
//  brg_inbox_new, brg_inbox_destroy and brg_system_destroy, never on a send)
//  lets brg_system_destroy refuse (BRG_EBUSY) instead of waiting for
//  itself. A list with a lock rather than a thread-local one, so that an
//  inbox destroyed on another thread than its creator's leaves nothing
//  dangling.
#include "runtime_internal.h"

#include "brigade/inbox.h"

struct brg_inbox {
    brg_system_t *sys;
    brg__actor_t *actor; // the WAITER actor; freed by the scheduler after retirement
    brg_ref_t ref;
    brg_msg_t *head; // received and not yet taken, oldest first (owner)
    brg_msg_t *tail;
    uint32_t queued;
    uint64_t ask_corr;   // the brg_inbox_ask under way, or 0
    brg_msg_t *answer;   // its reply, once pulled
    pthread_t owner;     // the creating thread
    brg_inbox_t *next_o; // the open inboxes (s_open_lock)
};

static pthread_mutex_t s_open_lock = PTHREAD_MUTEX_INITIALIZER;
static brg_inbox_t *s_open; // every open inbox of the process (s_open_lock)

bool
brg__inbox_open_here(brg_system_t *sys)
{
    bool found = false;
    pthread_t me = pthread_self();
    pthread_mutex_lock(&s_open_lock);
    for (brg_inbox_t *i = s_open; i && !found; i = i->next_o)
        found = i->sys == sys && pthread_equal(i->owner, me);
    pthread_mutex_unlock(&s_open_lock);
    return found;
}

static void
s_append(brg_inbox_t *self, brg_msg_t *msg)
{
    atomic_store_explicit(&msg->next, NULL, memory_order_relaxed);
    if (self->tail)
        atomic_store_explicit(&self->tail->next, msg, memory_order_relaxed);
    else
        self->head = msg;
    self->tail = msg;
    self->queued++;
}

//  A kill (brg_exit) the inbox cannot obey: shown as the EXIT a trapping
//  actor gets for the other exit signals, from the signal's sender.
static bool
s_kill_as_exit(brg_msg_t *msg, const brg_exit_reason_t *reason)
{
    msg->size = 0;
    if (brg_msg_add_int(msg, reason->kind) != BRG_OK ||
        brg_msg_add_int(msg, reason->code) != BRG_OK ||
        brg_msg_add_str(msg, reason->text) != BRG_OK)
        return false;
    brg__msg_set_tag(msg, BRG_TAG_EXIT, sizeof(BRG_TAG_EXIT) - 1);
    return true;
}

//  File one message just taken from the mailbox (arrival order).
static void
s_file(brg_inbox_t *self, brg_msg_t *msg)
{
    brg__actor_t *actor = self->actor;
    if (brg__link_is_signal(msg)) {
        brg_exit_reason_t die;
        switch (brg__link_handle(actor, msg, &die)) {
        case BRG__LINK_DIE:
            if (!s_kill_as_exit(msg, &die)) {
                brg__msg_free(msg);
                return;
            }
            break;
        case BRG__LINK_DELIVER:
            break;
        default:
            brg__msg_free(msg);
            return;
        }
        msg->kind = BRG__MSG_USER; // shown as BRG_TAG_EXIT / BRG_TAG_DOWN
        msg->corr = 0;
        s_append(self, msg);
        return;
    }
    switch ((brg__msg_kind_t)msg->kind) {
    case BRG__MSG_REPLY:
    case BRG__MSG_REPLY_ERROR:
        if (self->ask_corr && msg->corr == self->ask_corr && !self->answer) {
            self->answer = msg;
        } else {
            brg__dead_letter(self->sys, self->ref, msg, BRG_DEAD_LATE_REPLY, false);
        }
        return;
    case BRG__MSG_TIMER:
        if (!brg__timers_tick_is_live(self->sys->timers, msg)) {
            brg__msg_free(msg); // a tick of a cancelled periodic timer
            return;
        }
        msg->kind = BRG__MSG_USER;
        msg->corr = 0;
        s_append(self, msg);
        return;
    case BRG__MSG_USER:
        s_append(self, msg);
        return;
    case BRG__MSG_SYS_READY:
        brg__ask_answer_ready(self->actor, msg); // an inbox is ready from its creation
        brg__msg_free(msg);
        return;
    default:
        brg__msg_free(msg); // stop, ask timeout, idle check: nothing of an inbox's
        return;
    }
}

//  Take what was pushed since the last look, oldest first. The mailbox is
//  left RUNNING (pushes do not wake) until s_sleep puts it back to idle.
//  File a stack taken from the mailbox (newest first, ending at NULL or
//  RUNNING), in the order it was pushed.
static void
s_file_stack(brg_inbox_t *self, brg_msg_t *top)
{
    brg_msg_t *rev = NULL;
    while (top && top != BRG__MB_RUNNING) {
        brg_msg_t *next = atomic_load_explicit(&top->next, memory_order_relaxed);
        atomic_store_explicit(&top->next, rev, memory_order_relaxed);
        rev = top;
        top = next;
    }
    while (rev) {
        brg_msg_t *next = atomic_load_explicit(&rev->next, memory_order_relaxed);
        s_file(self, rev);
        rev = next;
    }
}

static void
s_pull(brg_inbox_t *self)
{
    s_file_stack(self, brg__mailbox_take(self->actor));
}

//  Wait for a push, the system's close, or the deadline (NULL: none).
//  Returns false on timeout or close (*closed says which).
static bool
s_sleep(brg_inbox_t *self, const struct timespec *deadline, bool *closed)
{
    brg__waiter_t *w = self->actor->ext->waiter;
    if (!brg__mailbox_take_idle(self->actor))
        return true; // more came meanwhile: look again
    pthread_mutex_lock(&w->lock);
    while (!w->ready && !w->closed) {
        if (!deadline)
            pthread_cond_wait(&w->cond, &w->lock);
        else if (pthread_cond_timedwait(&w->cond, &w->lock, deadline) == ETIMEDOUT)
            break;
    }
    bool ready = w->ready && !w->closed;
    w->ready = false;
    *closed = w->closed;
    pthread_mutex_unlock(&w->lock);
    if (!ready)
        s_pull(self); // one last look: what came before the deadline counts
    return ready;
}

static bool
s_is_closed(brg_inbox_t *self)
{
    brg__waiter_t *w = self->actor->ext->waiter;
    pthread_mutex_lock(&w->lock);
    bool closed = w->closed;
    pthread_mutex_unlock(&w->lock);
    return closed;
}

static void
s_deadline(struct timespec *deadline, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

//  Find and unlink the first message from `from` on (prev: its predecessor,
//  or NULL for the head) that match accepts.
static brg_msg_t *
s_scan(brg_inbox_t *self, brg_msg_t *prev, brg_inbox_match_fn match, void *arg)
{
    brg_msg_t *cur = prev ? atomic_load_explicit(&prev->next, memory_order_relaxed) : self->head;
    while (cur) {
        brg_msg_t *next = atomic_load_explicit(&cur->next, memory_order_relaxed);
        if (!match || match(cur, arg)) {
            if (prev)
                atomic_store_explicit(&prev->next, next, memory_order_relaxed);
            else
                self->head = next;
            if (self->tail == cur)
                self->tail = prev;
            atomic_store_explicit(&cur->next, NULL, memory_order_relaxed);
            self->queued--;
            return cur;
        }
        prev = cur;
        cur = next;
    }
    return NULL;
}

//  Wait until done(self) (the answer to an ask came) or, with match, until
//  a queued message matches; deterministic systems run until idle instead
//  of sleeping.
static int
s_wait(brg_inbox_t *self, int timeout_ms, brg_inbox_match_fn match, void *arg, bool for_answer,
       brg_msg_t **out)
{
    struct timespec deadline;
    if (timeout_ms >= 0)
        s_deadline(&deadline, timeout_ms);
    bool det = self->sys->cfg.deterministic;
    brg_msg_t *scanned = NULL; // the last message already shown to match
    for (;;) {
        s_pull(self);
        if (for_answer) {
            if (self->answer)
                return BRG_OK;
        } else {
            brg_msg_t *m = s_scan(self, scanned, match, arg);
            if (m) {
                *out = m;
                return BRG_OK;
            }
            scanned = self->tail;
        }
        if (det) {
            if (brg_system_run_until_idle(self->sys) > 0)
                continue;
            s_pull(self);
            if (for_answer ? self->answer != NULL
                           : (*out = s_scan(self, scanned, match, arg)) != NULL)
                return BRG_OK;
            return s_is_closed(self) ? BRG_ECLOSED : BRG_ETIMEDOUT;
        }
        bool closed = false;
        if (!s_sleep(self, timeout_ms >= 0 ? &deadline : NULL, &closed)) {
            if (for_answer ? self->answer != NULL
                           : (*out = s_scan(self, scanned, match, arg)) != NULL)
                return BRG_OK;
            return closed ? BRG_ECLOSED : BRG_ETIMEDOUT;
        }
    }
}

//  ---------------------------------------------------------------------------
//  Public API

//  The inbox's context for a runtime call made on its owner's behalf: what
//  it sends carries the owner thread's trace context (brg_trace_set), as a
//  brg_system_send from that thread does.
static brg_ctx_t
s_ctx(brg_inbox_t *self)
{
    brg_ctx_t ctx = {.actor = self->actor, .msg = NULL};
    brg__ctx_trace_set(&ctx, &brg__trace_tls);
    return ctx;
}

int
brg_inbox_new(brg_system_t *sys, brg_inbox_t **inbox_p)
{
    assert(sys);
    assert(inbox_p);
    *inbox_p = NULL;
    if (brg__system_on_own_thread(sys))
        return BRG_EDEADLK;
    brg_inbox_t *self = calloc(1, sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    brg_spawn_opts_t opts;
    brg_spawn_opts_init(&opts);
    opts.label = "brg.inbox";
    int rc = brg__actor_spawn(sys, NULL, NULL, &opts, BRG__MODE_WAITER, &self->ref, &self->actor);
    if (rc != BRG_OK) {
        free(self);
        return rc;
    }
    self->sys = sys;
    // An inbox traps exits: a link's EXIT is a message, never its death.
    brg_ctx_t ctx = s_ctx(self);
    brg_trap_exits(&ctx, true);
    self->owner = pthread_self();
    pthread_mutex_lock(&s_open_lock);
    self->next_o = s_open;
    s_open = self;
    pthread_mutex_unlock(&s_open_lock);
    *inbox_p = self;
    return BRG_OK;
}

void
brg_inbox_destroy(brg_inbox_t **self_p)
{
    assert(self_p);
    brg_inbox_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    brg_system_t *sys = self->sys;
    brg__actor_t *actor = self->actor;
    pthread_mutex_lock(&s_open_lock);
    for (brg_inbox_t **p = &s_open; *p; p = &(*p)->next_o) {
        if (*p == self) {
            *p = self->next_o;
            break;
        }
    }
    pthread_mutex_unlock(&s_open_lock);
    // Close the mailbox first: whoever learns of the end, by a signal or a
    // failed send, finds the ref dead. What was pushed before is filed as
    // usual (a LINK or MONITOR request joins the tables, so it hears the
    // normal exit below), then everything queued is a dead letter.
    s_file_stack(self, brg__mailbox_close(actor));
    actor->flags |= BRG__ACTOR_DEAD;
    brg_msg_t *msg;
    while ((msg = s_scan(self, NULL, NULL, NULL)) != NULL)
        brg__dead_letter(sys, self->ref, msg, BRG_DEAD_STOPPED, true);
    if (self->answer)
        brg__msg_free(self->answer);
    brg_exit_reason_t normal;
    brg__exit_reason_set(&normal, BRG_EXIT_NORMAL, 0, NULL);
    brg__link_on_death(actor, &normal);
    // No sender is ever suspended on a reply box (brg__bp_suspend); closed
    // all the same, as any mailbox that dies.
    if (brg__mailbox_bp_close(actor))
        brg__bp_wake(sys->sched, actor);
    brg__slots_retire(sys, actor);
    brg__system_ask_ended(sys); // the last touch of sys
    free(self);
}

brg_ref_t
brg_inbox_ref(const brg_inbox_t *self)
{
    assert(self);
    return self->ref;
}

int
brg_inbox_send(brg_inbox_t *self, brg_ref_t to, brg_msg_t **msg_p)
{
    assert(self);
    assert(msg_p && *msg_p);
    brg__msg_make_plain(*msg_p, self->ref);
    return brg__system_deliver(self->sys, to, msg_p);
}

int
brg_inbox_ask(brg_inbox_t *self, brg_ref_t to, brg_msg_t **msg_p, int timeout_ms,
              brg_msg_t **reply_p)
{
    assert(self);
    assert(msg_p && *msg_p);
    assert(reply_p);
    *reply_p = NULL;
    if (brg__system_on_own_thread(self->sys)) {
        brg_msg_destroy(msg_p);
        return BRG_EDEADLK;
    }
    if (timeout_ms < 0) {
        brg_msg_destroy(msg_p);
        return BRG_EINVAL;
    }
    if (s_is_closed(self)) {
        brg__dead_letter(self->sys, to, *msg_p, BRG_DEAD_SHUTDOWN, false);
        *msg_p = NULL;
        return BRG_ECLOSED;
    }
    brg__actor_ext_t *ext = self->actor->ext;
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    self->ask_corr = ++ext->next_corr;
    self->answer = NULL;
    msg->corr = self->ask_corr;
    msg->kind = BRG__MSG_USER;
    msg->sender = self->ref;
    int rc = brg__system_deliver(self->sys, to, &msg);
    if (rc == BRG_ENETWORK || rc == BRG_EBUSY)
        rc = BRG_OK; // the transport answered with an error reply: wait for it
    if (rc == BRG_OK) {
        rc = s_wait(self, timeout_ms, NULL, NULL, true, NULL);
        if (rc == BRG_OK) {
            brg_msg_t *found = self->answer;
            self->answer = NULL;
            if (found->kind == BRG__MSG_REPLY_ERROR) {
                rc = found->status < 0 ? found->status : BRG_EFAILED;
                brg__msg_free(found);
            } else {
                brg__msg_make_plain(found, found->sender);
                *reply_p = found;
            }
        }
    }
    self->ask_corr = 0; // a reply from now on is a late reply
    return rc;
}

int
brg_inbox_receive_if(brg_inbox_t *self, brg_inbox_match_fn match, void *arg, int timeout_ms,
                     brg_msg_t **msg_p)
{
    assert(self);
    assert(msg_p);
    *msg_p = NULL;
    if (brg__system_on_own_thread(self->sys))
        return BRG_EDEADLK;
    return s_wait(self, timeout_ms, match, arg, false, msg_p);
}

static bool
s_tag_is(const brg_msg_t *msg, void *tag)
{
    return brg_msg_is(msg, tag);
}

int
brg_inbox_receive(brg_inbox_t *self, const char *tag, int timeout_ms, brg_msg_t **msg_p)
{
    return brg_inbox_receive_if(self, tag ? s_tag_is : NULL, (void *)tag, timeout_ms, msg_p);
}

uint32_t
brg_inbox_queued(brg_inbox_t *self)
{
    assert(self);
    s_pull(self);
    return self->queued;
}

int
brg_inbox_reply_to(brg_inbox_t *self, const brg_msg_t *request, brg_msg_t **msg_p)
{
    assert(self);
    brg_ctx_t ctx = s_ctx(self);
    return brg_reply_to(&ctx, request, msg_p);
}

int
brg_inbox_reply_error_to(brg_inbox_t *self, const brg_msg_t *request, int status)
{
    assert(self);
    brg_ctx_t ctx = s_ctx(self);
    return brg_reply_error_to(&ctx, request, status);
}

int
brg_inbox_monitor(brg_inbox_t *self, brg_ref_t target, uint64_t *monitor)
{
    assert(self);
    brg_ctx_t ctx = s_ctx(self);
    return brg_monitor(&ctx, target, monitor);
}

int
brg_inbox_demonitor(brg_inbox_t *self, uint64_t monitor)
{
    assert(self);
    // Not pulled first: a DOWN still in the mailbox is dropped by the
    // tables when it is filed, as an actor's in-flight DOWN is.
    brg_ctx_t ctx = s_ctx(self);
    return brg_demonitor(&ctx, monitor);
}

int
brg_inbox_link(brg_inbox_t *self, brg_ref_t other)
{
    assert(self);
    brg_ctx_t ctx = s_ctx(self);
    return brg_link(&ctx, other);
}

int
brg_inbox_unlink(brg_inbox_t *self, brg_ref_t other)
{
    assert(self);
    brg_ctx_t ctx = s_ctx(self);
    return brg_unlink(&ctx, other);
}
