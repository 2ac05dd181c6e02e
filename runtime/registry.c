//  registry - local names for actors
//
//  Design notes.
//  Two chained hash tables over the same entries: by name (register, whereis)
//  and by actor id (release when the actor dies, and the "one name per actor"
//  rule). One mutex guards both; registry calls are rare next to sends, and
//  a lookup from a behaviour holds it for a few hundred nanoseconds.
//  Binding a name to an actor that is dying must not leak the name: a dying
//  actor closes its mailbox (head = DEAD) and removes its name in one step
//  under the lock (brg__registry_close); brg_register checks the mailbox
//  under the lock. Either the register sees the closed mailbox and fails, or
//  it ran before the close and the close removes the binding.
//  The same step gives the guarantee supervisors rely on: once anyone can
//  tell that an actor is dead, its name is free. EXIT and DOWN are sent after
//  the close; and a thread that sees the closed mailbox some other way (a
//  send, link or monitor fails with BRG_ENOACTOR, brg_system_is_alive says
//  false) and then takes the lock cannot get it before the close released
//  it: its read of DEAD comes before its lock, and the write of DEAD was made
//  inside the close's critical section.
#include "runtime_internal.h"

typedef struct s_entry {
    struct s_entry *next_by_name;
    struct s_entry *next_by_id;
    brg_ref_t ref; // BRG_REF_NONE while reserved by a spawn
    uint32_t name_hash;
    char name[BRG_NAME_MAX + 1];
} s_entry_t;

struct brg__registry {
    pthread_mutex_t lock;
    s_entry_t **by_name; // buckets
    s_entry_t **by_id;   // buckets
    uint32_t buckets;    // a power of two
    uint32_t count;
};

static uint32_t
s_id_hash(uint64_t id)
{
    id ^= id >> 31;
    id *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(id >> 32);
}

brg__registry_t *
brg__registry_new(void)
{
    brg__registry_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->buckets = 64;
    self->by_name = calloc(self->buckets, sizeof(*self->by_name));
    self->by_id = calloc(self->buckets, sizeof(*self->by_id));
    if (!self->by_name || !self->by_id) {
        free(self->by_name);
        free(self->by_id);
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

void
brg__registry_destroy(brg__registry_t **self_p)
{
    assert(self_p);
    brg__registry_t *self = *self_p;
    if (!self)
        return;
    for (uint32_t i = 0; i < self->buckets; i++) {
        s_entry_t *e = self->by_name[i];
        while (e) {
            s_entry_t *next = e->next_by_name;
            free(e);
            e = next;
        }
    }
    free(self->by_name);
    free(self->by_id);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

static s_entry_t **
s_find_name(brg__registry_t *self, const char *name, uint32_t hash)
{
    s_entry_t **pp = &self->by_name[hash & (self->buckets - 1)];
    while (*pp && ((*pp)->name_hash != hash || strcmp((*pp)->name, name) != 0))
        pp = &(*pp)->next_by_name;
    return pp;
}

static s_entry_t **
s_find_id(brg__registry_t *self, uint64_t id)
{
    s_entry_t **pp = &self->by_id[s_id_hash(id) & (self->buckets - 1)];
    while (*pp && (*pp)->ref.id != id)
        pp = &(*pp)->next_by_id;
    return pp;
}

static void
s_link_id(brg__registry_t *self, s_entry_t *e)
{
    s_entry_t **bucket = &self->by_id[s_id_hash(e->ref.id) & (self->buckets - 1)];
    e->next_by_id = *bucket;
    *bucket = e;
}

//  Double the bucket arrays when the load passes 1; on failure keep the old
//  ones (chains just get longer).
static void
s_maybe_grow(brg__registry_t *self)
{
    if (self->count < self->buckets)
        return;
    uint32_t buckets = self->buckets * 2;
    s_entry_t **by_name = calloc(buckets, sizeof(*by_name));
    s_entry_t **by_id = calloc(buckets, sizeof(*by_id));
    if (!by_name || !by_id) {
        free(by_name);
        free(by_id);
        return;
    }
    for (uint32_t i = 0; i < self->buckets; i++) {
        s_entry_t *e = self->by_name[i];
        while (e) {
            s_entry_t *next = e->next_by_name;
            e->next_by_name = by_name[e->name_hash & (buckets - 1)];
            by_name[e->name_hash & (buckets - 1)] = e;
            if (e->ref.id) {
                e->next_by_id = by_id[s_id_hash(e->ref.id) & (buckets - 1)];
                by_id[s_id_hash(e->ref.id) & (buckets - 1)] = e;
            }
            e = next;
        }
    }
    free(self->by_name);
    free(self->by_id);
    self->by_name = by_name;
    self->by_id = by_id;
    self->buckets = buckets;
}

static void
s_unlink(brg__registry_t *self, s_entry_t **by_name_pp)
{
    s_entry_t *e = *by_name_pp;
    *by_name_pp = e->next_by_name;
    if (e->ref.id) {
        s_entry_t **pp = s_find_id(self, e->ref.id);
        if (*pp == e)
            *pp = e->next_by_id;
    }
    self->count--;
    free(e);
}

static bool
s_name_ok(const char *name)
{
    return name && name[0] != '\0' && strlen(name) <= BRG_NAME_MAX;
}

//  Insert an entry for name (ref may be none: a reservation). Lock held.
static int
s_insert(brg__registry_t *self, const char *name, brg_ref_t ref)
{
    uint32_t hash = brg_tag_hash(name);
    if (*s_find_name(self, name, hash))
        return BRG_EEXIST;
    if (ref.id && *s_find_id(self, ref.id))
        return BRG_EEXIST; // one name per actor
    s_entry_t *e = calloc(1, sizeof(*e));
    if (!e)
        return BRG_ENOMEM;
    strcpy(e->name, name);
    e->name_hash = hash;
    e->ref = ref;
    s_entry_t **bucket = &self->by_name[hash & (self->buckets - 1)];
    e->next_by_name = *bucket;
    *bucket = e;
    if (ref.id)
        s_link_id(self, e);
    self->count++;
    s_maybe_grow(self);
    return BRG_OK;
}

int
brg_register(brg_system_t *sys, const char *name, brg_ref_t ref)
{
    assert(sys);
    brg__send_flush(); // another actor may see the name change and send (mailbox.c)
    if (!s_name_ok(name) || !brg_system_is_local(sys, ref) || ref.id == 0)
        return BRG_EINVAL;
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    int rc = BRG_ENOACTOR;
    brg__actor_t *actor = brg__actor_acquire(sys, ref.id);
    if (actor) {
        // Acquire: pairs with the dying actor's exchange to DEAD (see the
        // design notes); the lock orders us against its release call.
        if (!brg__mailbox_is_closed(actor) && !(actor->mode & BRG__MODE_WAITER))
            rc = s_insert(self, name, ref);
        brg__actor_release(sys, ref.id);
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
brg_unregister(brg_system_t *sys, const char *name)
{
    assert(sys);
    brg__send_flush(); // another actor may see the name change and send (mailbox.c)
    if (!s_name_ok(name))
        return BRG_ENOTFOUND;
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    s_entry_t **pp = s_find_name(self, name, brg_tag_hash(name));
    int rc = BRG_ENOTFOUND;
    if (*pp && (*pp)->ref.id) {
        s_unlink(self, pp);
        rc = BRG_OK;
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
brg_whereis(brg_system_t *sys, const char *name, brg_ref_t *ref)
{
    assert(sys);
    assert(ref);
    if (!s_name_ok(name))
        return BRG_ENOTFOUND;
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    s_entry_t *e = *s_find_name(self, name, brg_tag_hash(name));
    int rc = BRG_ENOTFOUND;
    if (e && e->ref.id) {
        *ref = e->ref;
        rc = BRG_OK;
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
brg_send_named(brg_ctx_t *ctx, const char *name, brg_msg_t **msg_p)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    brg_ref_t to;
    if (brg_whereis(brg_ctx_system(ctx), name, &to) != BRG_OK) {
        brg__dead_letter(brg_ctx_system(ctx), BRG_REF_NONE, *msg_p, BRG_DEAD_NO_ACTOR, true);
        *msg_p = NULL;
        return BRG_ENOTFOUND;
    }
    return brg_send(ctx, to, msg_p);
}

int
brg_send_named_at(brg_ctx_t *ctx, brg_ref_t node, const char *name, brg_msg_t **msg_p)
{
    assert(ctx);
    assert(msg_p && *msg_p);
    brg__msg_make_plain(*msg_p, brg_self(ctx));
    brg__trace_stamp(ctx, *msg_p);
    brg__sched_note_send();
    return brg__system_deliver_named(brg_ctx_system(ctx), node, name ? name : "", msg_p);
}

brg_msg_t *
brg__registry_close(brg_system_t *sys, brg__actor_t *actor)
{
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    // Acquire: the last producers' messages are visible to the caller's
    // drain. Made under the lock, so that a thread that reads DEAD and then
    // takes the lock finds the name removed below (see the design notes).
    brg_msg_t *top = brg__mailbox_close(actor);
    s_entry_t **pp = s_find_id(self, actor->id);
    if (*pp) {
        s_entry_t *e = *pp;
        *pp = e->next_by_id;
        e->ref.id = 0; // already unlinked by id
        s_unlink(self, s_find_name(self, e->name, e->name_hash));
    }
    pthread_mutex_unlock(&self->lock);
    return top;
}

bool
brg__registry_name_of(brg_system_t *sys, uint64_t id, char out[BRG_NAME_MAX + 1])
{
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    s_entry_t *e = *s_find_id(self, id);
    if (e)
        memcpy(out, e->name, sizeof(e->name));
    pthread_mutex_unlock(&self->lock);
    return e != NULL;
}

int
brg__registry_reserve(brg_system_t *sys, const char *name)
{
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    int rc = s_insert(self, name, BRG_REF_NONE);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

void
brg__registry_fill(brg_system_t *sys, const char *name, brg_ref_t ref)
{
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    s_entry_t *e = *s_find_name(self, name, brg_tag_hash(name));
    if (e && e->ref.id == 0) {
        e->ref = ref;
        s_link_id(self, e);
    }
    pthread_mutex_unlock(&self->lock);
}

void
brg__registry_cancel(brg_system_t *sys, const char *name)
{
    brg__registry_t *self = sys->registry;
    pthread_mutex_lock(&self->lock);
    s_entry_t **pp = s_find_name(self, name, brg_tag_hash(name));
    if (*pp && (*pp)->ref.id == 0)
        s_unlink(self, pp);
    pthread_mutex_unlock(&self->lock);
}
