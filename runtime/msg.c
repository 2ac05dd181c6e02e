//  msg - messages: a short tag plus a msgpack payload, their free lists and
//  their builders.
//
//  Design notes.
//
//  Layout. A message is one fixed-size struct (runtime/msg.h) with a 64-byte
//  inline payload, so the common small message ("get", one or two integers)
//  needs no second allocation. A payload that outgrows it moves to a heap
//  buffer that doubles as it grows, never past BRG_MSG_MAX; the size check
//  comes before any allocation, so no payload can make us allocate without
//  bound. Builders write through msgpack-c's packer (inline functions that
//  the compiler folds into our write callback); on any failure the builder
//  rolls the size back, so a failed call leaves the payload as it was.
//
//  Free lists. Actors make and free messages at a high rate, and usually on
//  different threads: a producer builds a message, the consumer's worker
//  frees it after the behaviour returns. So an alloc + free pair must cost a
//  few pointer moves, and memory freed on one thread must flow back to the
//  threads that allocate. Each thread keeps a cache of two "magazines"
//  (Bonwick's slab magazines): `hot`, up to BRG__MSG_BATCH messages that
//  alloc pops and free pushes, and `spare`, NULL or one full batch. A free
//  that fills hot makes it the spare; if there was a spare already, that
//  full batch goes to the process-wide shared pool in one locked operation.
//  An alloc that finds hot empty takes the spare, else one whole batch from
//  the shared pool, else mallocs. So a thread takes the pool lock at most
//  once per BRG__MSG_BATCH messages, never walks a list to split it, and a
//  pure consumer's frees reach a pure producer's allocs batch by batch.
//  Two magazines, not one, so a thread that allocates and frees around a
//  batch boundary does not bounce the same batch to the pool and back.
//
//  The shared pool keeps at most BRG__MSG_POOL_BATCHES batches; more are
//  freed, so a burst does not pin its peak memory for the life of the
//  process. A cached message keeps a heap buffer of up to
//  BRG__MSG_KEEP_BUF bytes for its next use; a larger one is freed.
//
//  Ownership. A message in a thread's cache belongs to that thread; a batch
//  in the shared pool belongs to the pool. When a thread first caches a
//  message it registers a pthread key whose destructor hands its cache to
//  the pool when the thread exits, and marks the cache bypassed: a message
//  freed later in that thread's exit goes straight to free(). At process
//  exit a destructor function trims the pool and the exiting thread's cache,
//  so leak checkers see nothing left.
//
//  Reading: runtime/msg_read.c (the decoder and the readers).
//
//  This file includes its own header and the system headers it needs rather
//  than the folder umbrella: the message module is a leaf that depends on no
//  other runtime module, and so builds and tests on its own.
#include "msg.h"

#include "brigade/error.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

//  Messages moved between a thread's cache and the shared pool at once.
#define BRG__MSG_BATCH 128
//  Batches the shared pool keeps at most: 16K messages, about 2.7 MB plus
//  the payload buffers (up to BRG__MSG_KEEP_BUF each) they keep.
#define BRG__MSG_POOL_BATCHES 128
//  A freed message keeps a heap payload buffer up to this size.
#define BRG__MSG_KEEP_BUF 4096

//  FNV-1a, 32 bits.
#define BRG__FNV_OFFSET 2166136261u
#define BRG__FNV_PRIME 16777619u

//  ---------------------------------------------------------------------------
//  Free lists.

//  Synchronization of the shared pool (X = caller must ensure mutual exclusion):
//                        s_pool_put  s_pool_take  brg__msg_pool_trim
//    s_pool_put (any)        -           -              -
//    s_pool_take (any)       -           -              -
//    pool_trim (any)         -           -              -
//  Every operation takes s_pool.lock for its whole access and calls no other
//  function that locks, so this file has one lock and no lock order. free()
//  of surplus messages happens after the lock is released.
//
//  A thread's cache (s_cache) is touched only by its own thread: by alloc,
//  free and trim, and by the key destructor, which glibc runs on the exiting
//  thread itself. Its lists link messages through msg->next with relaxed
//  atomics: next is _Atomic only because the mailbox publishes through it;
//  while a message is in a free list one thread owns it, and a batch changes
//  threads only under the pool mutex, which orders everything before.

typedef struct {
    brg_msg_t *head; // messages linked through next
    uint32_t count;  // messages in the list
} s_batch_t;

//  The process-wide pool of batches.
static struct {
    pthread_mutex_t lock;                     // guards the fields below
    uint32_t nbatches;                        // batches[0 .. nbatches) are in use
    s_batch_t batches[BRG__MSG_POOL_BATCHES]; // LIFO stack of batches
} s_pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

//  A thread's cache is NEW until its first use registers the exit destructor,
//  LIVE while it caches, and BYPASS when the thread is exiting or the key
//  could not be registered: then messages go straight to malloc and free.
enum { S_CACHE_NEW = 0, S_CACHE_LIVE, S_CACHE_BYPASS };

typedef struct {
    brg_msg_t *hot;     // messages alloc pops and free pushes, linked through next
    brg_msg_t *spare;   // NULL or a full batch of BRG__MSG_BATCH messages
    uint32_t hot_count; // messages in hot
    uint32_t state;     // S_CACHE_NEW, S_CACHE_LIVE or S_CACHE_BYPASS
} s_cache_t;

//  initial-exec: one instruction to reach the cache instead of a call to
//  __tls_get_addr on every alloc and free when built as a shared library.
//  Its cost is static TLS space, which glibc reserves some of even for a
//  library loaded by dlopen; this cache takes 24 bytes of it.
static _Thread_local s_cache_t s_cache __attribute__((tls_model("initial-exec")));

static pthread_key_t s_cache_key; // its destructor flushes a thread's cache
static pthread_once_t s_cache_key_once = PTHREAD_ONCE_INIT;
static bool s_cache_key_ok; // written once, under s_cache_key_once

static brg_msg_t *
s_list_next(brg_msg_t *msg)
{
    // Relaxed: the list belongs to one thread (see the table above).
    return atomic_load_explicit(&msg->next, memory_order_relaxed);
}

static void
s_list_push(brg_msg_t **head, brg_msg_t *msg)
{
    // Relaxed: the list belongs to one thread (see the table above).
    atomic_store_explicit(&msg->next, *head, memory_order_relaxed);
    *head = msg;
}

//  Free the message and its heap buffer for good.
static void
s_msg_release(brg_msg_t *msg)
{
    if (msg->data != msg->inline_data)
        free(msg->data);
    free(msg);
}

static void
s_list_release(brg_msg_t *head)
{
    while (head) {
        brg_msg_t *next = s_list_next(head);
        s_msg_release(head);
        head = next;
    }
}

//  Give a list of messages to the shared pool, or free it if the pool is full.
static void
s_pool_put(brg_msg_t *head, uint32_t count)
{
    pthread_mutex_lock(&s_pool.lock);
    if (s_pool.nbatches < BRG__MSG_POOL_BATCHES) {
        s_pool.batches[s_pool.nbatches++] = (s_batch_t){head, count};
        head = NULL;
    }
    pthread_mutex_unlock(&s_pool.lock);
    s_list_release(head);
}

//  Take the most recently added batch from the shared pool; false if empty.
static bool
s_pool_take(s_batch_t *batch)
{
    bool found = false;
    pthread_mutex_lock(&s_pool.lock);
    if (s_pool.nbatches > 0) {
        *batch = s_pool.batches[--s_pool.nbatches];
        found = true;
    }
    pthread_mutex_unlock(&s_pool.lock);
    return found;
}

//  The pthread key destructor: runs on an exiting thread that cached messages.
static void
s_cache_exit(void *arg)
{
    s_cache_t *cache = arg;
    // From here on this thread frees straight to free(): other key destructors
    // may still free messages, and nothing would flush a cache refilled now.
    cache->state = S_CACHE_BYPASS;
    if (cache->spare)
        s_pool_put(cache->spare, BRG__MSG_BATCH);
    if (cache->hot)
        s_pool_put(cache->hot, cache->hot_count);
    cache->spare = NULL;
    cache->hot = NULL;
    cache->hot_count = 0;
}

static void
s_cache_key_create(void)
{
    s_cache_key_ok = pthread_key_create(&s_cache_key, s_cache_exit) == 0;
}

//  Make the cache LIVE (register its exit destructor) on first use. Returns
//  true if the cache may hold messages.
static bool
s_cache_enable(s_cache_t *cache)
{
    if (cache->state == S_CACHE_NEW) {
        pthread_once(&s_cache_key_once, s_cache_key_create);
        // The key's value must be non-NULL for the destructor to run.
        if (s_cache_key_ok && pthread_setspecific(s_cache_key, cache) == 0)
            cache->state = S_CACHE_LIVE;
        else
            cache->state = S_CACHE_BYPASS;
    }
    return cache->state == S_CACHE_LIVE;
}

brg_msg_t *
brg__msg_alloc(void)
{
    s_cache_t *cache = &s_cache;
    brg_msg_t *msg = cache->hot;
    if (!msg) {
        if (cache->spare) {
            cache->hot = cache->spare;
            cache->hot_count = BRG__MSG_BATCH;
            cache->spare = NULL;
        } else {
            s_batch_t batch;
            // Only a LIVE cache may take a batch: its exit destructor returns it.
            if (s_cache_enable(cache) && s_pool_take(&batch)) {
                cache->hot = batch.head;
                cache->hot_count = batch.count;
            }
        }
        msg = cache->hot;
    }
    if (msg) {
        cache->hot = s_list_next(msg);
        cache->hot_count--;
        // The next alloc reads and writes the new head. A message freed on
        // the consumer's thread is cold here (fan-in: perf put 80% of this
        // function on that load), so fetch it while the caller fills and
        // sends this one.
        if (cache->hot)
            __builtin_prefetch(cache->hot, 1);
    } else {
        msg = malloc(sizeof *msg);
        if (!msg)
            return NULL;
        msg->data = msg->inline_data;
        msg->cap = BRG__MSG_INLINE;
    }
    // Relaxed: the message is not shared yet; the send that publishes it
    // orders this store (the mailbox's release store of the link).
    atomic_store_explicit(&msg->next, NULL, memory_order_relaxed);
    msg->sender = BRG_REF_NONE;
    msg->corr = 0;
    msg->kind = BRG__MSG_USER;
    msg->tag_len = 0;
    msg->trace_flags = 0;
    msg->reserved = 0;
    msg->status = 0;
    msg->tag_hash = BRG__FNV_OFFSET; // the hash of the empty tag
    msg->size = 0;
    msg->tag[0] = '\0';
    return msg;
}

void *
brg__msg_block_alloc(void)
{
    brg_msg_t *msg = brg__msg_alloc();
    // The block's user overwrites data and cap: a kept heap buffer goes now.
    if (msg && msg->data != msg->inline_data)
        free(msg->data);
    return msg;
}

void
brg__msg_block_free(void *block)
{
    brg_msg_t *msg = block;
    msg->data = msg->inline_data;
    msg->cap = BRG__MSG_INLINE;
    brg__msg_free(msg);
}

void
brg__msg_free(brg_msg_t *self)
{
    assert(self);
    if (self->cap > BRG__MSG_KEEP_BUF) {
        free(self->data);
        self->data = self->inline_data;
        self->cap = BRG__MSG_INLINE;
    }
    s_cache_t *cache = &s_cache;
    if (cache->state != S_CACHE_LIVE && !s_cache_enable(cache)) {
        s_msg_release(self);
        return;
    }
    s_list_push(&cache->hot, self);
    if (++cache->hot_count == BRG__MSG_BATCH) {
        if (cache->spare)
            s_pool_put(cache->spare, BRG__MSG_BATCH);
        cache->spare = cache->hot;
        cache->hot = NULL;
        cache->hot_count = 0;
    }
}

static uint32_t
s_hash(const char *bytes, size_t len)
{
    uint32_t hash = BRG__FNV_OFFSET;
    for (size_t i = 0; i < len; i++) {
        hash ^= (uint8_t)bytes[i];
        hash *= BRG__FNV_PRIME;
    }
    return hash;
}

void
brg__msg_make_plain(brg_msg_t *self, brg_ref_t sender)
{
    self->sender = sender;
    self->corr = 0;
    self->kind = BRG__MSG_USER;
    self->status = 0;
}

int
brg__msg_set_tag(brg_msg_t *self, const char *tag, size_t len)
{
    assert(self);
    assert(tag);
    if (len == 0 || len > BRG_TAG_MAX)
        return BRG_EINVAL;
    memcpy(self->tag, tag, len);
    self->tag[len] = '\0';
    self->tag_len = (uint8_t)len;
    self->tag_hash = s_hash(tag, len);
    return BRG_OK;
}

void
brg__msg_pool_trim(void)
{
    s_batch_t batches[BRG__MSG_POOL_BATCHES];
    pthread_mutex_lock(&s_pool.lock);
    uint32_t nbatches = s_pool.nbatches;
    memcpy(batches, s_pool.batches, nbatches * sizeof batches[0]);
    s_pool.nbatches = 0;
    pthread_mutex_unlock(&s_pool.lock);
    for (uint32_t i = 0; i < nbatches; i++)
        s_list_release(batches[i].head);

    s_cache_t *cache = &s_cache;
    s_list_release(cache->hot);
    s_list_release(cache->spare);
    cache->hot = NULL;
    cache->spare = NULL;
    cache->hot_count = 0;
}

//  At exit, free what the pool and the exiting thread hold, so the process
//  ends with no reachable blocks (valgrind, LSan).
__attribute__((destructor)) static void
s_msg_at_exit(void)
{
    brg__msg_pool_trim();
}

//  ---------------------------------------------------------------------------
//  Payload buffer and the packer's write callback.

//  Make room for extra more payload bytes. BRG_EMSGSIZE past BRG_MSG_MAX,
//  BRG_ENOMEM if out of memory; the payload is unchanged either way.
static int
s_grow(brg_msg_t *self, size_t extra)
{
    if (extra > BRG_MSG_MAX - self->size)
        return BRG_EMSGSIZE;
    size_t need = self->size + extra;
    if (need <= self->cap)
        return BRG_OK;
    size_t cap = self->cap;
    while (cap < need)
        cap *= 2;
    if (cap > BRG_MSG_MAX)
        cap = BRG_MSG_MAX;
    uint8_t *data;
    if (self->data == self->inline_data) {
        data = malloc(cap);
        if (!data)
            return BRG_ENOMEM;
        memcpy(data, self->inline_data, self->size);
    } else {
        data = realloc(self->data, cap);
        if (!data)
            return BRG_ENOMEM;
    }
    self->data = data;
    self->cap = (uint32_t)cap;
    return BRG_OK;
}

//  One builder call: the message, the error code of a failed write and the
//  size to roll back to.
typedef struct {
    brg_msg_t *msg;
    int rc;
    uint32_t size0;
} s_writer_t;

static int
s_write(void *data, const char *buf, size_t len)
{
    s_writer_t *writer = data;
    brg_msg_t *msg = writer->msg;
    if (len > msg->cap - msg->size) {
        int rc = s_grow(msg, len);
        if (rc < 0) {
            writer->rc = rc;
            return -1;
        }
    }
    // Most writes are a header or a number of 1 to 9 bytes: a plain loop
    // beats a call to memcpy there. The packer passes a NULL buf with the
    // empty body of a string or bin, so len 0 must not reach memcpy.
    uint8_t *out = msg->data + msg->size;
    if (len <= 16) {
        for (size_t i = 0; i < len; i++)
            out[i] = (uint8_t)buf[i];
    } else {
        memcpy(out, buf, len);
    }
    msg->size += (uint32_t)len;
    return 0;
}

static void
s_packer_init(msgpack_packer *packer, s_writer_t *writer, brg_msg_t *self)
{
    writer->msg = self;
    writer->rc = BRG_OK;
    writer->size0 = self->size;
    msgpack_packer_init(packer, writer, s_write);
}

//  Finish a builder call: pack_rc is the packer's result. On failure roll the
//  payload back to its size before the call.
static int
s_packer_end(s_writer_t *writer, int pack_rc)
{
    if (pack_rc == 0)
        return BRG_OK;
    writer->msg->size = writer->size0;
    return writer->rc < 0 ? writer->rc : BRG_ENOMEM;
}

static void
s_store64(uint8_t *p, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(value >> (56 - 8 * i));
}

//  ---------------------------------------------------------------------------
//  Constructors.

brg_msg_t *
brg_msg_new(const char *tag)
{
    if (!tag)
        return NULL;
    brg_msg_t *msg = brg__msg_alloc();
    if (!msg)
        return NULL;
    // Measure, copy and hash the tag in one pass (this is the hot path of
    // every send); a bad tag is a caller's mistake, so undoing the
    // allocation then costs nothing that matters.
    uint32_t hash = BRG__FNV_OFFSET;
    size_t len = 0;
    for (; tag[len] != '\0'; len++) {
        if (len == BRG_TAG_MAX) {
            brg__msg_free(msg);
            return NULL;
        }
        msg->tag[len] = tag[len];
        hash ^= (uint8_t)tag[len];
        hash *= BRG__FNV_PRIME;
    }
    if (len == 0) {
        brg__msg_free(msg);
        return NULL;
    }
    msg->tag[len] = '\0';
    msg->tag_len = (uint8_t)len;
    msg->tag_hash = hash;
    return msg;
}

brg_msg_t *
brg_msg_new_int(const char *tag, int64_t value)
{
    brg_msg_t *msg = brg_msg_new(tag);
    if (msg && brg_msg_add_int(msg, value) < 0)
        brg_msg_destroy(&msg);
    return msg;
}

brg_msg_t *
brg_msg_new_str(const char *tag, const char *value)
{
    assert(value);
    brg_msg_t *msg = brg_msg_new(tag);
    if (msg && brg_msg_add_str(msg, value) < 0)
        brg_msg_destroy(&msg);
    return msg;
}

void
brg_msg_destroy(brg_msg_t **self_p)
{
    assert(self_p);
    if (*self_p) {
        brg__msg_free(*self_p);
        *self_p = NULL;
    }
}

brg_msg_t *
brg_msg_dup(const brg_msg_t *self)
{
    assert(self);
    brg_msg_t *copy = brg__msg_alloc();
    if (!copy)
        return NULL;
    if (s_grow(copy, self->size) < 0) {
        brg__msg_free(copy);
        return NULL;
    }
    memcpy(copy->data, self->data, self->size);
    copy->size = self->size;
    memcpy(copy->tag, self->tag, sizeof copy->tag);
    copy->tag_len = self->tag_len;
    copy->tag_hash = self->tag_hash;
    copy->sender = self->sender;
    copy->corr = self->corr;
    copy->kind = self->kind;
    copy->status = self->status;
    copy->trace_flags = self->trace_flags;
    if (self->trace_flags)
        memcpy(copy->trace_ids, self->trace_ids, sizeof copy->trace_ids);
    return copy;
}

//  ---------------------------------------------------------------------------
//  Builders.

int
brg_msg_add_nil(brg_msg_t *self)
{
    assert(self);
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    return s_packer_end(&writer, msgpack_pack_nil(&packer));
}

int
brg_msg_add_bool(brg_msg_t *self, bool value)
{
    assert(self);
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    int rc = value ? msgpack_pack_true(&packer) : msgpack_pack_false(&packer);
    return s_packer_end(&writer, rc);
}

int
brg_msg_add_int(brg_msg_t *self, int64_t value)
{
    assert(self);
    // Fast path: the common small integers, encoded in place (fixint, uint8,
    // uint16, uint32: the same bytes the packer writes) without its callback.
    if (self->cap - self->size >= 9) {
        uint8_t *p = self->data + self->size;
        uint32_t n;
        if (value >= -32 && value <= 127) {
            p[0] = (uint8_t)(int8_t)value;
            n = 1;
        } else if (value >= 0 && value <= 0xff) {
            p[0] = 0xcc;
            p[1] = (uint8_t)value;
            n = 2;
        } else if (value >= 0 && value <= 0xffff) {
            p[0] = 0xcd;
            p[1] = (uint8_t)(value >> 8);
            p[2] = (uint8_t)value;
            n = 3;
        } else if (value >= 0 && value <= 0xffffffffll) {
            p[0] = 0xce;
            for (int i = 0; i < 4; i++)
                p[1 + i] = (uint8_t)(value >> (24 - 8 * i));
            n = 5;
        } else {
            goto slow;
        }
        self->size += n;
        return BRG_OK;
    }
slow:;
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    return s_packer_end(&writer, msgpack_pack_int64(&packer, value));
}

int
brg_msg_add_uint(brg_msg_t *self, uint64_t value)
{
    assert(self);
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    return s_packer_end(&writer, msgpack_pack_uint64(&packer, value));
}

int
brg_msg_add_double(brg_msg_t *self, double value)
{
    assert(self);
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    return s_packer_end(&writer, msgpack_pack_double(&packer, value));
}

int
brg_msg_add_str(brg_msg_t *self, const char *str)
{
    assert(self);
    assert(str);
    return brg_msg_add_strn(self, str, strlen(str));
}

int
brg_msg_add_strn(brg_msg_t *self, const char *str, size_t len)
{
    assert(self);
    assert(str || len == 0);
    // Also keeps len within the packer's 32-bit length field.
    if (len > BRG_MSG_MAX)
        return BRG_EMSGSIZE;
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    int rc = msgpack_pack_str(&packer, len);
    if (rc == 0)
        rc = msgpack_pack_str_body(&packer, str, len);
    return s_packer_end(&writer, rc);
}

int
brg_msg_add_bin(brg_msg_t *self, const void *data, size_t len)
{
    assert(self);
    assert(data || len == 0);
    if (len > BRG_MSG_MAX)
        return BRG_EMSGSIZE;
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    int rc = msgpack_pack_bin(&packer, len);
    if (rc == 0)
        rc = msgpack_pack_bin_body(&packer, data, len);
    return s_packer_end(&writer, rc);
}

int
brg_msg_add_array(brg_msg_t *self, uint32_t count)
{
    assert(self);
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    return s_packer_end(&writer, msgpack_pack_array(&packer, count));
}

int
brg_msg_add_map(brg_msg_t *self, uint32_t count)
{
    assert(self);
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    return s_packer_end(&writer, msgpack_pack_map(&packer, count));
}

int
brg_msg_add_ref(brg_msg_t *self, brg_ref_t ref)
{
    assert(self);
    uint8_t body[BRG__MSG_REF_BYTES];
    s_store64(body, ref.node_hi);
    s_store64(body + 8, ref.node_lo);
    s_store64(body + 16, ref.id);
    msgpack_packer packer;
    s_writer_t writer;
    s_packer_init(&packer, &writer, self);
    int rc = msgpack_pack_ext(&packer, sizeof body, BRG__MSG_EXT_REF);
    if (rc == 0)
        rc = msgpack_pack_ext_body(&packer, body, sizeof body);
    return s_packer_end(&writer, rc);
}

int
brg_msg_add_raw(brg_msg_t *self, const void *data, size_t len)
{
    assert(self);
    assert(data || len == 0);
    // Size first: no point validating bytes that cannot fit anyway.
    if (len > BRG_MSG_MAX - self->size)
        return BRG_EMSGSIZE;
    int count = brg_msgpack_validate(data, len);
    if (count < 0)
        return count;
    return brg__msg_append(self, data, len);
}

int
brg__msg_append(brg_msg_t *self, const void *data, size_t len)
{
    assert(self);
    assert(data || len == 0);
    int rc = s_grow(self, len);
    if (rc < 0)
        return rc;
    if (len > 0)
        memcpy(self->data + self->size, data, len);
    self->size += (uint32_t)len;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Accessors.

const char *
brg_msg_tag(const brg_msg_t *self)
{
    assert(self);
    return self->tag;
}

bool
brg_msg_is(const brg_msg_t *self, const char *tag)
{
    assert(self);
    assert(tag);
    // Hash and measure in one pass; a tag longer than BRG_TAG_MAX matches none.
    uint32_t hash = BRG__FNV_OFFSET;
    size_t len = 0;
    for (; tag[len] != '\0'; len++) {
        if (len == BRG_TAG_MAX)
            return false;
        hash ^= (uint8_t)tag[len];
        hash *= BRG__FNV_PRIME;
    }
    return hash == self->tag_hash && len == self->tag_len && memcmp(tag, self->tag, len) == 0;
}

brg_tag_t
brg_tag(const char *tag)
{
    assert(tag);
    size_t len = strnlen(tag, BRG_TAG_MAX + 1);
    brg_tag_t t = {tag, s_hash(tag, len), (uint32_t)len};
    if (len == 0 || len > BRG_TAG_MAX)
        t.len = BRG_TAG_MAX + 1; // no message has such a tag: matches none
    return t;
}

bool
brg_msg_is_tag(const brg_msg_t *self, brg_tag_t tag)
{
    assert(self);
    return tag.hash == self->tag_hash && tag.len == self->tag_len &&
           memcmp(tag.str, self->tag, tag.len) == 0;
}

uint32_t
brg_msg_tag_hash(const brg_msg_t *self)
{
    assert(self);
    return self->tag_hash;
}

uint32_t
brg_tag_hash(const char *tag)
{
    assert(tag);
    return s_hash(tag, strlen(tag));
}

brg_ref_t
brg_msg_sender(const brg_msg_t *self)
{
    assert(self);
    return self->sender;
}

const uint8_t *
brg_msg_data(const brg_msg_t *self)
{
    assert(self);
    return self->data;
}

size_t
brg_msg_size(const brg_msg_t *self)
{
    assert(self);
    return self->size;
}
