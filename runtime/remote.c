//  remote - the seam between the runtime and a transport
//
//  Design notes.
//  runtime/ never includes ZeroMQ: a transport (transport/) plugs a table
//  of operations into a system (brg__system_set_remote_ops) and from then on
//  owns everything between nodes. This file is the runtime's half.
//
//  Outbound. Every message and signal of the runtime leaves through
//  brg__system_deliver (system.c); a ref whose node is not ours comes here,
//  to brg__remote_send, which calls ops->send on the sending thread (a
//  worker, the blocking pool, the timer thread, an outside caller). The
//  transport takes the message whatever it answers. BRG_OK: queued for the
//  node. BRG_EBUSY (outbound budget spent) or BRG_ENETWORK (node unknown or
//  down): the transport has counted a dead letter (BRG_DEAD_REMOTE_BUSY,
//  BRG_DEAD_REMOTE_DOWN) and answered what the sender is owed, through
//  brg__remote_dead_letter: an ask gets an error reply with that status, a
//  LINK an EXIT and a MONITOR a DOWN, reason noconnection. With no transport
//  plugged in, or once ops->shutdown has begun, this file plays the
//  unreachable node itself: the same answers with BRG_ENETWORK, counted as
//  BRG_DEAD_REMOTE or BRG_DEAD_SHUTDOWN. So every caller sees one rule:
//  BRG_ENETWORK / BRG_EBUSY mean "counted, and whoever waits for an answer
//  gets one" (brg_send returns it; brg_ask returns BRG_OK and its callback
//  gets the status; brg_link makes the link that noconnection then breaks;
//  brg_monitor's DOWN is the noconnection one). Exactly one answer each.
//
//  Inbound. The transport's I/O thread hands decoded messages to
//  brg__remote_deliver in arrival order. Each is pushed into its target's
//  mailbox like a local send (the target looked up by id, with a counted
//  slot reference, or by name in the registry), but the actors it makes
//  runnable are not scheduled one by one: brg__actor_push_deferred reports
//  them, they are linked through their next field (an idle actor is in no
//  queue, and only the thread whose push took it out of idle may schedule
//  it, so the field is ours) and handed to the scheduler at the end as one
//  list: one round on the inject queue and at most one wake-up per call
//  (brg__sched_schedule_list). An actor made runnable cannot run, so cannot
//  die, before that, so holding it without a reference is safe. A waiter
//  (brg_system_ask's reply box) is woken at once, under its reference.
//  What cannot be delivered is answered as locally: a request gets an error
//  reply BRG_ENOACTOR through the send path (so back to the asker's node), a
//  LINK or MONITOR to a dead target gets EXIT/DOWN noproc, a reply is a late
//  reply, other signals are dropped without a count (nothing a user sent was
//  lost). Kinds that never cross nodes (timers, idle checks, ask timeouts)
//  and exit signals with a kind a peer may not send are counted dead letters.
//
//  Ordering. Messages from one sender to one receiver keep their order end
//  to end: the sending actor's thread calls ops->send in send order; the
//  transport keeps one queue per peer; the I/O thread delivers in order and
//  each push is one CAS on the receiver's mailbox, whose stack reversal
//  restores push order (mailbox.c). EXIT and DOWN take that same path, so
//  they arrive after everything the dying actor sent first.
//
//  Threads and ownership. remote_ops and remote_arg are written once, by
//  brg__system_set_remote_ops (release), and read by every sender (acquire),
//  which makes the table and what arg points to visible. remote_closed is
//  set by the destroying thread before ops->shutdown; a sender that sees it
//  dead-letters instead of calling ops->send (relaxed: it publishes nothing;
//  a send racing with the store may still reach ops->send, which the
//  transport accepts until its shutdown returns).
#include "runtime_internal.h"

int
brg__system_spawn_hidden(brg_system_t *sys, brg_behaviour_fn fn, const brg_spawn_opts_t *opts,
                         brg_ref_t *ref)
{
    assert(sys && fn);
    return brg__actor_spawn(sys, NULL, fn, opts, BRG__MODE_HIDDEN, ref, NULL);
}

int
brg__system_set_park_hook(brg_system_t *sys, const brg__park_hook_t *hook)
{
    assert(sys && hook && hook->turn && hook->wait);
    return brg__sched_set_park_hook(sys->sched, hook);
}

void
brg__system_clear_park_hook(brg_system_t *sys)
{
    assert(sys);
    brg__sched_clear_park_hook(sys->sched);
}

bool
brg__system_park_hook_try(brg_system_t *sys, void (*fn)(void *arg), void *arg)
{
    assert(sys && fn);
    return brg__sched_park_hook_try(sys->sched, fn, arg);
}

int
brg__system_set_remote_ops(brg_system_t *sys, const brg__remote_ops_t *ops, void *arg)
{
    assert(sys);
    assert(ops && ops->send && ops->shutdown && ops->destroy);
    const brg__remote_ops_t *none = NULL;
    if (atomic_load_explicit(&sys->remote_ops, memory_order_relaxed))
        return BRG_EEXIST;
    sys->remote_arg = arg;
    // Release: publishes arg (and the table) to the senders' acquire load.
    if (!atomic_compare_exchange_strong_explicit(&sys->remote_ops, &none, ops, memory_order_release,
                                                 memory_order_relaxed))
        return BRG_EEXIST;
    return BRG_OK;
}

void
brg__remote_shutdown(brg_system_t *sys)
{
    const brg__remote_ops_t *ops = atomic_load_explicit(&sys->remote_ops, memory_order_acquire);
    if (!ops)
        return;
    atomic_store_explicit(&sys->remote_closed, true, memory_order_relaxed);
    ops->shutdown(sys->remote_arg);
}

void
brg__remote_destroy(brg_system_t *sys)
{
    const brg__remote_ops_t *ops = atomic_load_explicit(&sys->remote_ops, memory_order_acquire);
    if (ops)
        ops->destroy(sys->remote_arg);
}

int
brg__remote_send(brg_system_t *sys, brg_ref_t to, const char *name, brg_msg_t *msg)
{
    // Acquire: pairs with the release CAS in brg__system_set_remote_ops.
    const brg__remote_ops_t *ops = atomic_load_explicit(&sys->remote_ops, memory_order_acquire);
    if (ops && !atomic_load_explicit(&sys->remote_closed, memory_order_relaxed)) {
        brg__sched_note_remote_send(sys->sched); // worker 0 with a park hook flushes it next
        return ops->send(sys->remote_arg, to, name, &msg);
    }
    brg__remote_dead_letter(sys, to, msg, ops ? BRG_DEAD_SHUTDOWN : BRG_DEAD_REMOTE, BRG_ENETWORK);
    return BRG_ENETWORK;
}

void
brg__remote_note_busy(brg_system_t *sys, uint32_t gate)
{
    brg__mailbox_note_gate(sys, gate);
}

void
brg__remote_gate_open(brg_system_t *sys, uint32_t gate)
{
    brg__bp_wake_id(sys->sched, BRG__BP_GATE_KEY(gate));
}

bool
brg__remote_gate_suspend(brg_system_t *sys, brg__actor_t *actor, uint32_t gate)
{
    const brg__remote_ops_t *ops = atomic_load_explicit(&sys->remote_ops, memory_order_acquire);
    if (ops == NULL || ops->gate_wait == NULL ||
        atomic_load_explicit(&sys->remote_closed, memory_order_relaxed))
        return false;
    return brg__bp_suspend_gate(sys->sched, actor, gate, ops->gate_wait, sys->remote_arg);
}

static bool
s_name_ok(const char *name)
{
    return name && name[0] != '\0' && strlen(name) <= BRG_NAME_MAX;
}

int
brg__system_deliver_named(brg_system_t *sys, brg_ref_t node, const char *name, brg_msg_t **msg_p)
{
    brg_msg_t *msg = *msg_p;
    *msg_p = NULL;
    brg__send_flush(); // an effect another actor may react to (mailbox.c, "Send coalescing")
    node.id = 0;
    if (!s_name_ok(name)) {
        brg__msg_free(msg); // the caller's mistake: nothing was sent
        return BRG_EINVAL;
    }
    if (!brg_system_is_local(sys, node))
        return brg__remote_send(sys, node, name, msg);
    brg_ref_t to;
    if (brg_whereis(sys, name, &to) != BRG_OK) {
        brg__dead_letter(sys, node, msg, BRG_DEAD_NO_ACTOR, false);
        return BRG_ENOACTOR;
    }
    return brg__system_deliver(sys, to, &msg);
}

//  True for the kinds a peer may send: user messages, replies, and the
//  signals that travel between actors (stop and exit signals included).
static bool
s_inbound_kind_ok(const brg_msg_t *msg)
{
    switch ((brg__msg_kind_t)msg->kind) {
    case BRG__MSG_USER:
    case BRG__MSG_REPLY:
    case BRG__MSG_REPLY_ERROR:
    case BRG__MSG_SYS_STOP:
    case BRG__MSG_SYS_UNLINK:
    case BRG__MSG_SYS_DEMONITOR:
    case BRG__MSG_SYS_EXIT:
    case BRG__MSG_SYS_DOWN:
    case BRG__MSG_SYS_LINK:
    case BRG__MSG_SYS_MONITOR:
        return true;
    case BRG__MSG_SYS_KILL:
        // brg_exit's kinds only: link.c takes status as the exit kind.
        return msg->status == BRG_EXIT_SHUTDOWN || msg->status == BRG_EXIT_KILLED ||
               msg->status == BRG_EXIT_FAILED;
    case BRG__MSG_SYS_ASK_TIMEOUT:
    case BRG__MSG_SYS_IDLE:
    case BRG__MSG_TIMER:
    case BRG__MSG_SYS_READY: // brg_ask_ready is local only
        return false;        // local timers: they never leave their node
    }
    return false;
}

//  An inbound message whose target is dead or unknown, answered as a local
//  send would be (design notes). Takes msg.
static void
s_undeliverable(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg)
{
    if (!s_inbound_kind_ok(msg)) {
        brg__dead_letter(sys, to, msg, BRG_DEAD_NO_ACTOR, false);
        return;
    }
    if (brg__link_answer(sys, to, msg, BRG_EXIT_NOPROC) || brg__link_is_signal(msg) ||
        msg->kind == BRG__MSG_SYS_STOP) {
        brg__msg_free(msg);
        return;
    }
    bool reply = msg->kind == BRG__MSG_REPLY || msg->kind == BRG__MSG_REPLY_ERROR;
    brg__dead_letter(sys, to, msg, reply ? BRG_DEAD_LATE_REPLY : BRG_DEAD_NO_ACTOR, !reply);
}

size_t
brg__remote_deliver(brg_system_t *sys, const brg__remote_target_t *to, brg_msg_t **msgs, size_t n)
{
    assert(sys);
    assert(n == 0 || (to && msgs));
    brg__actor_t *run_head = NULL, *run_tail = NULL; // made runnable here, in push order
    uint32_t run_n = 0;
    brg__actor_t *cur = NULL; // the current target, with a counted reference
    uint64_t cur_id = 0;
    size_t delivered = 0;
    for (size_t i = 0; i < n; i++) {
        brg_msg_t *msg = msgs[i];
        msgs[i] = NULL;
        uint64_t id = to[i].id;
        if (to[i].name) {
            brg_ref_t named;
            id = brg_whereis(sys, to[i].name, &named) == BRG_OK ? named.id : 0;
        }
        // A run of messages to one actor (the common case) takes one reference.
        if (id != cur_id || !cur) {
            if (cur)
                brg__actor_release(sys, cur_id);
            cur_id = id;
            cur = id ? brg__actor_acquire(sys, id) : NULL;
        }
        bool runnable = false;
        if (!cur || !s_inbound_kind_ok(msg) ||
            brg__actor_push_deferred(cur, msg, &runnable) != BRG_OK) {
            s_undeliverable(sys, brg__system_ref(sys, id), msg);
            continue;
        }
        delivered++;
        if (!runnable)
            continue;
        if (cur->mode & BRG__MODE_WAITER) {
            brg__waiter_wake(cur->ext->waiter);
            continue;
        }
        // Ours to schedule, and idle until we do: its next field is free.
        cur->next = NULL;
        if (run_tail)
            run_tail->next = cur;
        else
            run_head = cur;
        run_tail = cur;
        run_n++;
    }
    if (cur)
        brg__actor_release(sys, cur_id);
    if (run_head)
        brg__sched_schedule_list(sys->sched, run_head, run_n);
    return delivered;
}

brg_msg_t *
brg__remote_signal(int kind, brg_ref_t from, uint64_t corr, int status,
                   const brg_exit_reason_t *reason)
{
    assert(kind == BRG__MSG_SYS_EXIT || kind == BRG__MSG_SYS_DOWN ||
           kind == BRG__MSG_SYS_DEMONITOR || kind == BRG__MSG_SYS_UNLINK ||
           kind == BRG__MSG_REPLY_ERROR);
    assert((kind != BRG__MSG_SYS_EXIT && kind != BRG__MSG_SYS_DOWN) || reason);
    if (kind != BRG__MSG_REPLY_ERROR)
        return brg__link_signal(kind, from, corr, reason);
    brg_msg_t *msg = brg__msg_alloc();
    if (!msg)
        return NULL;
    brg__msg_set_tag(msg, "brg.error", 9);
    msg->kind = BRG__MSG_REPLY_ERROR;
    msg->sender = from;
    msg->corr = corr;
    msg->status = status;
    return msg;
}

void
brg__remote_dead_letter(brg_system_t *sys, brg_ref_t to, brg_msg_t *msg, brg_dead_reason_t reason,
                        int status)
{
    assert(sys);
    assert(msg);
    // A LINK or MONITOR that did not reach the peer is answered here, once.
    brg__link_answer(sys, to, msg, BRG_EXIT_NOCONNECTION);
    brg__dead_letter_status(sys, to, msg, reason, status < 0 ? status : BRG_ENETWORK);
}
