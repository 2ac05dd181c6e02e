//  http - the HTTP client actor: requests in messages, transfers on one I/O
//  thread with libcurl's multi interface, every answer from the actor.
//
//  Design notes.
//  Ownership. A transfer (s_xfer_t) belongs to one party at a time and moves
//  along one path:
//
//    actor: on_request builds it (easy handle, saved request)
//      -> inbox (under lock) -> I/O thread: runs it in the multi handle
//      -> done list (under lock) -> actor: answers the request, frees it.
//
//  `lock` guards only the inbox, the done list and `wake_sent`; the mutex
//  hand-offs order every write one party made to a transfer before the next
//  party reads it. The request body libcurl sends is a view into the saved
//  request message (no copy): the message is not changed or freed while the
//  transfer is out, and the I/O thread only reads those bytes. The I/O
//  thread never reads a message otherwise and never answers: when the done
//  list goes from empty to not empty it sends the actor one
//  "brg.http.wake" message, and the actor drains the list on its own thread.
//  So all replies, counters and logs happen in the behaviour, and a forged
//  wake does no harm (it drains what is done, perhaps nothing).
//  curl_multi_wakeup interrupts curl_multi_poll when the inbox gains a
//  transfer or when the actor stops; curl_multi_poll also returns on
//  libcurl's own timers, which enforce each transfer's deadline.
//
//  `self` (the actor's address) is written by the init callback, before the
//  actor takes any message; the I/O thread reads it only after it took a
//  transfer from the inbox, which the actor pushed later under the lock.
//
//  Streaming. The write callback (I/O thread) of a streaming request whose
//  status is 2xx sends each piece at once to the requester with
//  brg_system_send instead of keeping it; the requester's ref and the
//  system were copied into the transfer before it was handed over. Those
//  sends happen before the transfer is pushed to the done list, and the
//  actor answers only after taking it from there, so the chunks are in the
//  requester's mailbox before the answer.
//  Cancel. The actor puts a cancel (stream id, requester) on `cancels` under
//  the lock and wakes the thread; the thread takes the matching transfer
//  out of the multi handle, marks it cancelled and hands it back as done.
//  A brg.cancel (any request, by its ask) is matched by the actor itself:
//  it keeps every transfer it handed over and not yet answered on its own
//  list (`out`, linked through out_next/out_prev, which only the actor
//  touches), and transfers are freed only by the actor, so it may read a
//  listed transfer's `request` and `seq` (written before the hand-over and
//  never changed; the I/O thread only reads the body bytes). It queues a
//  cancel naming the transfer's seq, a number never reused, so a cancel
//  that comes after its transfer ended (and the memory is reused) matches
//  nothing.
//
//  Stop. state_destroy runs after the actor's last message: it sets `quit`
//  (release; the thread's acquire load sees it), wakes the thread and joins
//  it. The thread removes the transfers it still runs from the multi handle
//  and leaves them on the done list; destroy frees both lists without
//  answering (the askers time out, as documented).
#include "actors_internal.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>

#define S_TAG_WAKE "brg.http.wake"
#define S_USER_AGENT_MAX 255

typedef struct s_xfer {
    struct s_xfer *next, *prev; // in the inbox, done list (next only) or the thread's active list
    CURL *easy;                 //
    struct curl_slist *headers; // the request's header lines
    const void *body_out;       // request body: a view into `request` (libcurl does not
    size_t body_out_len;        //   copy POSTFIELDS; request lives as long as the transfer)
    brg_msg_t *request;         // the caller's request, answered with brg_reply_to
    char method[BRG_HTTP_METHOD_MAX + 1];
    char *url;  // for the error log
    char *body; // response body so far
    size_t body_len, body_cap;
    size_t body_max;         // max_response_bytes
    bool too_big, no_memory; // set by the write callback
    CURLcode result;         // set by the I/O thread when the transfer ends
    char errbuf[CURL_ERROR_SIZE];
    // Streaming and error detail (set by the actor before the hand-over).
    uint64_t stream_id;  // > 0: streaming mode
    bool error_detail;   // answer failures with BRG_HTTP_TAG_ERROR
    brg_ref_t requester; // the request's sender, where chunks go
    brg_system_t *sys;   //
    size_t streamed;     // I/O thread: body bytes sent as chunks
    bool requester_gone; // I/O thread: a chunk could not be sent
    bool cancelled;      // I/O thread: taken out by a cancel
    uint64_t seq;        // set by the actor before the hand-over: the transfer's number
    struct s_xfer *out_next, *out_prev; // actor only: in self->out while not answered
} s_xfer_t;

//  A cancel waiting for the I/O thread.
typedef struct {
    uint64_t stream_id; // a stream cancel: the requester's stream id ...
    brg_ref_t from;     //   ... and the requester
    uint64_t seq;       // > 0: a brg.cancel: the transfer numbered seq
} s_cancel_t;

//  A FIFO of transfers linked through `next`.
typedef struct {
    s_xfer_t *head, *tail;
} s_list_t;

static void
s_list_push(s_list_t *list, s_xfer_t *x)
{
    x->next = NULL;
    if (list->tail)
        list->tail->next = x;
    else
        list->head = x;
    list->tail = x;
}

//  Move all of `from` to the end of `to`.
static void
s_list_move(s_list_t *to, s_list_t *from)
{
    if (!from->head)
        return;
    if (to->tail)
        to->tail->next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    from->head = from->tail = NULL;
}

typedef struct {
    // Set at spawn, read-only afterwards.
    brg_system_t *sys;
    CURLM *multi;
    int max_pending, timeout_ms, connect_timeout_ms;
    size_t max_response_bytes;
    char user_agent[S_USER_AGENT_MAX + 1];
    char *proxy; // NULL: no proxy at all (the environment's are ignored)
    bool log_errors;
    brg_ref_t parent; // the spawning actor, whose exit ends this one; NONE for a root
    // Written by init, read by the I/O thread (see the design notes).
    brg_ref_t self;
    // Shared, under lock.
    pthread_mutex_t lock;
    s_list_t inbox;
    s_list_t done;
    bool wake_sent; // a wake is on its way; the actor clears it when it drains
    s_cancel_t *cancels;
    size_t n_cancels, cap_cancels;
    // I/O thread.
    pthread_t thread;
    bool thread_started;
    atomic_bool quit;
    s_xfer_t *active; // transfers in the multi handle (owned by the I/O thread)
    // Actor.
    brg_http_stats_t counts;
    s_xfer_t *out;     // transfers handed over and not yet answered (out_next)
    uint64_t next_seq; // the last transfer number given
} s_http_t;

//  ---------------------------------------------------------------------------
//  Transfers

static void
s_xfer_free(s_xfer_t *x)
{
    if (!x)
        return;
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    brg_msg_destroy(&x->request);
    free(x->url);
    free(x->body);
    free(x);
}

static void
s_xfer_free_list(s_xfer_t *x)
{
    while (x) {
        s_xfer_t *next = x->next;
        s_xfer_free(x);
        x = next;
    }
}

//  libcurl's write callback, on the I/O thread: keep the body, up to body_max.
static size_t
s_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    s_xfer_t *x = arg;
    size_t n = size * nmemb;
    long code = 0;
    if (x->stream_id && curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
        code >= 200 && code <= 299) {
        if (n > x->body_max - x->streamed) {
            x->too_big = true;
            return 0;
        }
        brg_msg_t *chunk = brg_msg_new(BRG_HTTP_TAG_CHUNK);
        if (!chunk || brg_msg_add_uint(chunk, x->stream_id) != BRG_OK ||
            brg_msg_add_int(chunk, code) != BRG_OK || brg_msg_add_bin(chunk, data, n) != BRG_OK) {
            brg_msg_destroy(&chunk);
            x->no_memory = true;
            return 0;
        }
        if (brg_system_send(x->sys, x->requester, &chunk) != BRG_OK) {
            brg_msg_destroy(&chunk);
            x->requester_gone = true; // nobody to stream to: abort
            return 0;
        }
        x->streamed += n;
        return n;
    }
    if (n > x->body_max - x->body_len) {
        x->too_big = true;
        return 0; // anything but n ends the transfer with CURLE_WRITE_ERROR
    }
    if (x->body_len + n > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 4096;
        while (cap < x->body_len + n)
            cap *= 2;
        if (cap > x->body_max)
            cap = x->body_max;
        char *body = realloc(x->body, cap);
        if (!body) {
            x->no_memory = true;
            return 0;
        }
        x->body = body;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    return n;
}

//  The error status of a finished transfer, BRG_OK if it got a response.
static int
s_status(const s_xfer_t *x)
{
    if (x->cancelled)
        return BRG_ECANCELED;
    if (x->too_big || x->result == CURLE_FILESIZE_EXCEEDED)
        return BRG_EMSGSIZE;
    if (x->no_memory || x->result == CURLE_OUT_OF_MEMORY)
        return BRG_ENOMEM;
    // The request was checked before the transfer (s_decode: http or https
    // URL, method, headers), so libcurl's codes after it describe the far
    // end, with one exception. CURLE_UNSUPPORTED_PROTOCOL in particular
    // comes from the response here: a server that answers with bytes that
    // are not HTTP looks like HTTP/0.9, which libcurl refuses with it (the
    // scheme was checked, and redirects are not followed). So are
    // CURLE_WEIRD_SERVER_REPLY (a broken status line or header),
    // CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR, resolve,
    // connect and TLS failures: all BRG_ENETWORK.
    switch (x->result) {
    case CURLE_OK:
        return BRG_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return BRG_ETIMEDOUT;
    case CURLE_URL_MALFORMAT:
        // Our check let through a URL libcurl's parser refuses (a port out
        // of range, say): still the caller's URL, before any byte was sent.
        return BRG_EINVAL;
    default:
        return BRG_ENETWORK;
    }
}

//  ---------------------------------------------------------------------------
//  The I/O thread

//  Move finished transfers (may be none) to the done list, and wake the actor
//  unless a wake is on its way already. Returns false if the wake could not
//  be sent (out of memory, or the actor is gone): the caller tries again.
static bool
s_hand_back(s_http_t *self, s_list_t *finished)
{
    pthread_mutex_lock(&self->lock);
    s_list_move(&self->done, finished);
    bool wake = self->done.head && !self->wake_sent;
    self->wake_sent = self->wake_sent || wake;
    pthread_mutex_unlock(&self->lock);
    if (!wake)
        return true;
    brg_msg_t *msg = brg_msg_new(S_TAG_WAKE);
    if (msg && brg_system_send(self->sys, self->self, &msg) == BRG_OK)
        return true;
    brg_msg_destroy(&msg);
    // No wake is on its way: clear the flag so the next round sends one
    // (if the actor is gone, destroy frees the done list).
    pthread_mutex_lock(&self->lock);
    self->wake_sent = false;
    pthread_mutex_unlock(&self->lock);
    return false;
}

static void
s_active_remove(s_http_t *self, s_xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        self->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->next = x->prev = NULL;
}

//  Take the transfers the waiting cancels name out of the multi handle,
//  marked cancelled, onto finished.
static void
s_take_cancels(s_http_t *self, s_cancel_t *cancels, size_t n, s_list_t *finished)
{
    for (size_t i = 0; i < n; i++) {
        for (s_xfer_t *x = self->active; x; x = x->next) {
            bool match = cancels[i].seq ? x->seq == cancels[i].seq
                                        : x->stream_id == cancels[i].stream_id &&
                                              brg_ref_eq(x->requester, cancels[i].from);
            if (match) {
                curl_multi_remove_handle(self->multi, x->easy);
                s_active_remove(self, x);
                x->cancelled = true;
                s_list_push(finished, x);
                break;
            }
        }
    }
    free(cancels);
}

static void *
s_io_main(void *arg)
{
    s_http_t *self = arg;
    bool retry_wake = false;
    while (!atomic_load_explicit(&self->quit, memory_order_acquire)) {
        s_list_t inbox = {NULL, NULL}, finished = {NULL, NULL};
        // Cancels are taken with the inbox, under one lock: a cancel comes
        // after its request, so its transfer is then in the multi handle
        // (or done) by the time the cancel is looked at.
        pthread_mutex_lock(&self->lock);
        s_list_move(&inbox, &self->inbox);
        s_cancel_t *cancels = self->cancels;
        size_t n_cancels = self->n_cancels;
        self->cancels = NULL;
        self->n_cancels = self->cap_cancels = 0;
        pthread_mutex_unlock(&self->lock);
        for (s_xfer_t *x = inbox.head, *next; x; x = next) {
            next = x->next;
            x->next = x->prev = NULL;
            if (curl_multi_add_handle(self->multi, x->easy) == CURLM_OK) {
                x->next = self->active;
                if (self->active)
                    self->active->prev = x;
                self->active = x;
            } else {
                x->result = CURLE_OUT_OF_MEMORY;
                s_list_push(&finished, x);
            }
        }
        s_take_cancels(self, cancels, n_cancels, &finished);
        int running = 0, left = 0;
        curl_multi_perform(self->multi, &running);
        CURLMsg *m;
        while ((m = curl_multi_info_read(self->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *easy = m->easy_handle;
            CURLcode result = m->data.result;
            char *private = NULL;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, &private);
            s_xfer_t *done = (s_xfer_t *)(void *)private;
            curl_multi_remove_handle(self->multi, easy); // m is invalid from here
            s_active_remove(self, done);
            done->result = result;
            s_list_push(&finished, done);
        }
        if (finished.head || retry_wake)
            retry_wake = !s_hand_back(self, &finished);
        // Wait for sockets, libcurl's timers, a wakeup, or 1 s (100 ms while
        // a wake is to be retried). A failing poll must not spin the loop.
        if (curl_multi_poll(self->multi, NULL, 0, retry_wake ? 100 : 1000, NULL) != CURLM_OK) {
            struct timespec pause = {0, 10 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    // Stopping: take the running transfers out; destroy frees them.
    s_list_t cancelled = {NULL, NULL};
    while (self->active) {
        s_xfer_t *x = self->active;
        curl_multi_remove_handle(self->multi, x->easy);
        s_active_remove(self, x);
        s_list_push(&cancelled, x);
    }
    pthread_mutex_lock(&self->lock);
    s_list_move(&self->done, &cancelled);
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

//  ---------------------------------------------------------------------------
//  The actor

static void
s_http_destroy(void *state)
{
    s_http_t *self = state;
    if (self->thread_started) {
        atomic_store_explicit(&self->quit, true, memory_order_release);
        curl_multi_wakeup(self->multi);
        pthread_join(self->thread, NULL);
    }
    s_xfer_free_list(self->inbox.head);
    s_xfer_free_list(self->done.head);
    free(self->cancels);
    if (self->multi)
        curl_multi_cleanup(self->multi);
    pthread_mutex_destroy(&self->lock);
    free(self->proxy);
    free(self);
}

static bool
s_method_ok(const char *method, size_t len)
{
    if (len == 0 || len > BRG_HTTP_METHOD_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            return false;
    return true;
}

//  Decode and check x->request into x (headers, body, URL, method, timeout).
//  The body stays in the request message: x->body_out points into it.
//  BRG_OK, BRG_EINVAL or BRG_ENOMEM.
static int
s_decode(s_xfer_t *x, int *timeout_ms)
{
    const brg_msg_t *msg = x->request;
    size_t pos = 0, method_len, url_len, body_len = 0;
    const char *method, *url;
    const void *body = NULL;
    uint32_t n_headers;
    int64_t timeout;
    if (brg_msg_read_str(msg, &pos, &method, &method_len) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &url, &url_len) != BRG_OK ||
        brg_msg_read_array(msg, &pos, &n_headers) != BRG_OK || n_headers > BRG_HTTP_HEADERS_MAX)
        return BRG_EINVAL;
    if (!s_method_ok(method, method_len) || !brg__http_url_ok(url, url_len))
        return BRG_EINVAL;
    memcpy(x->method, method, method_len);
    x->method[method_len] = '\0';
    if (!(x->url = strndup(url, url_len)))
        return BRG_ENOMEM;
    for (uint32_t i = 0; i < n_headers; i++) {
        const char *line;
        size_t len;
        if (brg_msg_read_str(msg, &pos, &line, &len) != BRG_OK || !brg__http_header_ok(line, len))
            return BRG_EINVAL;
        char *copy = strndup(line, len);
        struct curl_slist *more = copy ? curl_slist_append(x->headers, copy) : NULL;
        free(copy);
        if (!more)
            return BRG_ENOMEM;
        x->headers = more;
    }
    // W3C trace context: a request asked in a trace carries the asker's
    // context (its ask span's when tracing records), sent on as a
    // traceparent header unless the caller set one.
    brg_trace_ctx_t tc;
    char traceparent[13 + 56] = "traceparent: ";
    if (brg_msg_trace(msg, &tc) && brg_trace_format(&tc, traceparent + 13) == BRG_OK) {
        bool own = false;
        for (struct curl_slist *h = x->headers; h && !own; h = h->next)
            own = strncasecmp(h->data, "traceparent:", 12) == 0;
        struct curl_slist *more = own ? x->headers : curl_slist_append(x->headers, traceparent);
        if (!more)
            return BRG_ENOMEM;
        x->headers = more;
    }
    if (brg_msg_peek(msg, pos) == BRG_TYPE_NIL)
        brg_msg_read_nil(msg, &pos);
    else if (brg_msg_read_bin(msg, &pos, &body, &body_len) != BRG_OK)
        return BRG_EINVAL;
    if (brg_msg_read_int(msg, &pos, &timeout) != BRG_OK || timeout < 0 || timeout > INT32_MAX)
        return BRG_EINVAL;
    *timeout_ms = (int)timeout;
    // Optional (older encoders stop here): stream id and flags.
    uint64_t flags = 0;
    int rc = brg_msg_read_uint(msg, &pos, &x->stream_id);
    if (rc == BRG_OK)
        rc = brg_msg_read_uint(msg, &pos, &flags);
    if (rc != BRG_OK && rc != BRG_ENODATA)
        return BRG_EINVAL;
    x->error_detail = (flags & 1) != 0;
    x->body_out = body;
    x->body_out_len = body_len;
    // libcurl would send "Expect: 100-continue" before larger bodies and wait
    // for the server; an empty Expect header turns that round trip off.
    struct curl_slist *more = curl_slist_append(x->headers, "Expect:");
    if (!more)
        return BRG_ENOMEM;
    x->headers = more;
    return BRG_OK;
}

//  Set up the easy handle of a decoded transfer. BRG_OK or BRG_ENOMEM.
static int
s_setup(s_http_t *self, s_xfer_t *x, int timeout_ms)
{
    long timeout = timeout_ms > 0 ? timeout_ms : self->timeout_ms;
    long connect = self->connect_timeout_ms < timeout ? self->connect_timeout_ms : timeout;
    CURL *e = x->easy = curl_easy_init();
    if (!e)
        return BRG_ENOMEM;
    CURLcode rc = CURLE_OK;
    // Each call fails only for out of memory (or an option this libcurl does
    // not know); the first failure is kept.
#define S_SET(opt, value)                                                                          \
    if (rc == CURLE_OK)                                                                            \
    rc = curl_easy_setopt(e, opt, value)
    S_SET(CURLOPT_URL, x->url);
    S_SET(CURLOPT_PROTOCOLS_STR, "http,https");
    S_SET(CURLOPT_NOSIGNAL, 1L);
    S_SET(CURLOPT_TIMEOUT_MS, timeout);
    S_SET(CURLOPT_CONNECTTIMEOUT_MS, connect);
    S_SET(CURLOPT_USERAGENT, self->user_agent);
    S_SET(CURLOPT_HTTPHEADER, x->headers);
    S_SET(CURLOPT_WRITEFUNCTION, s_on_body);
    S_SET(CURLOPT_WRITEDATA, x);
    S_SET(CURLOPT_ERRORBUFFER, x->errbuf);
    S_SET(CURLOPT_PRIVATE, x);
    S_SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)self->max_response_bytes);
    // An explicit proxy, or "" for none: libcurl would otherwise follow
    // http_proxy / https_proxy / ALL_PROXY from the environment.
    S_SET(CURLOPT_PROXY, self->proxy ? self->proxy : "");
    bool sends_body = strcmp(x->method, "POST") == 0 || strcmp(x->method, "PUT") == 0 ||
                      strcmp(x->method, "PATCH") == 0;
    if (!x->body_out && sends_body)
        x->body_out = ""; // an empty body, so "Content-Length: 0" goes out
    if (x->body_out) {
        S_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_out_len);
        S_SET(CURLOPT_POSTFIELDS, x->body_out);
        if (strcmp(x->method, "POST") != 0)
            S_SET(CURLOPT_CUSTOMREQUEST, x->method);
    } else if (strcmp(x->method, "HEAD") == 0) {
        S_SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(x->method, "GET") != 0) {
        S_SET(CURLOPT_CUSTOMREQUEST, x->method);
    }
#undef S_SET
    return rc == CURLE_OK ? BRG_OK : BRG_ENOMEM;
}

//  Refuse a request before any transfer: answer an ask with the error.
static void
s_reject(s_http_t *self, brg_ctx_t *ctx, int status)
{
    self->counts.rejected++;
    brg_reply_error(ctx, status); // a plain message: nothing to answer (BRG_EINVAL)
}

static void
s_on_request(s_http_t *self, brg_ctx_t *ctx, const brg_msg_t *msg)
{
    if (self->counts.in_flight >= (uint64_t)self->max_pending) {
        s_reject(self, ctx, BRG_EBUSY);
        return;
    }
    s_xfer_t *x = calloc(1, sizeof(*x));
    if (!x) {
        s_reject(self, ctx, BRG_ENOMEM);
        return;
    }
    x->body_max = self->max_response_bytes;
    x->requester = brg_msg_sender(msg);
    x->sys = self->sys;
    int timeout_ms = 0;
    // The copy is kept to answer, and holds the body libcurl sends from.
    int rc = (x->request = brg_msg_dup(msg)) != NULL ? s_decode(x, &timeout_ms) : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = s_setup(self, x, timeout_ms);
    if (rc != BRG_OK) {
        s_xfer_free(x);
        s_reject(self, ctx, rc);
        return;
    }
    self->counts.in_flight++;
    self->counts.requests++;
    x->seq = ++self->next_seq;
    x->out_next = self->out;
    if (self->out)
        self->out->out_prev = x;
    self->out = x;
    pthread_mutex_lock(&self->lock);
    s_list_push(&self->inbox, x);
    pthread_mutex_unlock(&self->lock);
    curl_multi_wakeup(self->multi);
}

//  The Retry-After header of a response in ms from now (delay seconds or an
//  HTTP date; a date in the past is 0), -1 if none or unreadable.
static int64_t
s_retry_after_ms(CURL *easy)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h ||
        !h->value)
        return -1;
    const char *v = h->value;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        char *end;
        unsigned long long seconds = strtoull(v, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end)
            return -1;
        return seconds > 86400ULL * 365 ? 86400LL * 365 * 1000 : (int64_t)seconds * 1000;
    }
    time_t when = curl_getdate(v, NULL);
    if (when == -1)
        return -1;
    time_t now = time(NULL);
    return when <= now ? 0 : (int64_t)(when - now) * 1000;
}

//  Answer a failed transfer with its detail (a request with error_detail).
static void
s_answer_detail(brg_ctx_t *ctx, s_xfer_t *x, int status, const char *why)
{
    long sent = 0;
    curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
    bool nothing_sent = !x->cancelled && (sent == 0 || x->result == CURLE_COULDNT_RESOLVE_HOST ||
                                          x->result == CURLE_COULDNT_CONNECT ||
                                          x->result == CURLE_COULDNT_RESOLVE_PROXY);
    brg_msg_t *reply = brg_msg_new(BRG_HTTP_TAG_ERROR);
    if (reply &&
        (brg_msg_add_int(reply, status) != BRG_OK ||
         brg_msg_add_bool(reply, nothing_sent) != BRG_OK || brg_msg_add_str(reply, why) != BRG_OK))
        brg_msg_destroy(&reply);
    if (reply)
        brg_reply_to(ctx, x->request, &reply);
    else
        brg_reply_error_to(ctx, x->request, status);
}

//  Answer one finished transfer.
static void
s_answer(s_http_t *self, brg_ctx_t *ctx, s_xfer_t *x)
{
    self->counts.in_flight--;
    int status = s_status(x);
    brg_msg_t *reply = NULL;
    if (status == BRG_OK) {
        long code = 0;
        char *type = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &type);
        reply = brg_msg_new(BRG_HTTP_TAG_RESPONSE);
        size_t type_len = type ? strnlen(type, BRG_HTTP_CONTENT_TYPE_MAX) : 0;
        if (!reply || brg_msg_add_int(reply, code) != BRG_OK ||
            brg_msg_add_strn(reply, type ? type : "", type_len) != BRG_OK ||
            brg_msg_add_bin(reply, x->body ? x->body : "", x->body_len) != BRG_OK ||
            brg_msg_add_int(reply, s_retry_after_ms(x->easy)) != BRG_OK) {
            brg_msg_destroy(&reply);
            status = BRG_ENOMEM;
        }
    }
    if (status == BRG_OK) {
        self->counts.responses++;
        brg_reply_to(ctx, x->request, &reply);
        return;
    }
    self->counts.failed++;
    char url[256];
    const char *why = x->cancelled        ? "cancelled by the requester"
                      : x->too_big        ? "response body larger than max_response_bytes"
                      : x->requester_gone ? "the requester of the stream is gone"
                      : x->errbuf[0]      ? x->errbuf
                                          : curl_easy_strerror(x->result);
    if (self->log_errors && !x->cancelled &&
        brg_log_enabled(brg_ctx_system(ctx), BRG_LOG_WARNING)) {
        brg__http_url_for_log(x->url, url, sizeof url);
        brg_system_log(brg_ctx_system(ctx), BRG_LOG_WARNING, "http", brg_self(ctx),
                       "%s %s: %s (%s)", x->method, url, why, brg_err_name(status));
    }
    if (x->error_detail)
        s_answer_detail(ctx, x, status, why);
    else
        brg_reply_error_to(ctx, x->request, status);
}

//  Take x off the actor's list of transfers out (it is answered now).
static void
s_out_remove(s_http_t *self, s_xfer_t *x)
{
    if (x->out_prev)
        x->out_prev->out_next = x->out_next;
    else if (self->out == x)
        self->out = x->out_next;
    if (x->out_next)
        x->out_next->out_prev = x->out_prev;
    x->out_next = x->out_prev = NULL;
}

static void
s_drain(s_http_t *self, brg_ctx_t *ctx)
{
    s_list_t done = {NULL, NULL};
    pthread_mutex_lock(&self->lock);
    s_list_move(&done, &self->done);
    self->wake_sent = false;
    pthread_mutex_unlock(&self->lock);
    s_xfer_t *x = done.head;
    while (x) {
        s_xfer_t *next = x->next;
        s_out_remove(self, x);
        s_answer(self, ctx, x);
        s_xfer_free(x);
        x = next;
    }
}

static void
s_on_stats(s_http_t *self, brg_ctx_t *ctx)
{
    brg_http_stats_t c = self->counts;
    uint64_t f[] = {c.in_flight, c.requests, c.responses, c.failed, c.rejected};
    brg_msg_t *reply = brg_msg_new(BRG_HTTP_TAG_STATS);
    for (size_t k = 0; reply && k < sizeof f / sizeof f[0]; k++)
        if (brg_msg_add_uint(reply, f[k]) != BRG_OK)
            brg_msg_destroy(&reply);
    if (reply)
        brg_reply(ctx, &reply);
    else
        brg_reply_error(ctx, BRG_ENOMEM);
}

//  Queue a cancel for the I/O thread (one the queue has no room for is
//  dropped, and the transfer runs to its end).
static void
s_queue_cancel(s_http_t *self, s_cancel_t cancel)
{
    pthread_mutex_lock(&self->lock);
    bool room = self->n_cancels < self->cap_cancels;
    if (!room && self->n_cancels < 100000) {
        size_t cap = self->cap_cancels ? 2 * self->cap_cancels : 8;
        s_cancel_t *more = realloc(self->cancels, cap * sizeof(*more));
        if (more) {
            self->cancels = more;
            self->cap_cancels = cap;
            room = true;
        }
    }
    if (room)
        self->cancels[self->n_cancels++] = cancel;
    pthread_mutex_unlock(&self->lock);
    if (room)
        curl_multi_wakeup(self->multi);
}

//  A stream cancel [stream_id] (a malformed one is ignored).
static void
s_on_cancel(s_http_t *self, const brg_msg_t *msg)
{
    size_t pos = 0;
    uint64_t id;
    if (brg_msg_read_uint(msg, &pos, &id) != BRG_OK || id == 0)
        return;
    s_queue_cancel(self, (s_cancel_t){id, brg_msg_sender(msg), 0});
}

//  A brg.cancel of a request still out: cancel its transfer (one that
//  matches nothing is ignored: answered already, or never ours).
static void
s_on_ask_cancel(s_http_t *self, const brg_msg_t *msg)
{
    for (s_xfer_t *x = self->out; x; x = x->out_next)
        if (brg_cancel_matches(msg, x->request)) {
            s_queue_cancel(self, (s_cancel_t){0, BRG_REF_NONE, x->seq});
            return;
        }
}

static int
s_behaviour(brg_ctx_t *ctx, const brg_msg_t *msg)
{
    s_http_t *self = brg_state(ctx);
    if (brg_msg_is(msg, S_TAG_WAKE))
        s_drain(self, ctx);
    else if (brg__actors_on_exit(ctx, msg, self->parent))
        return BRG_OK;
    else if (brg_msg_is(msg, BRG_HTTP_TAG_REQUEST))
        s_on_request(self, ctx, msg);
    else if (brg_msg_is(msg, BRG_HTTP_TAG_STATS))
        s_on_stats(self, ctx);
    else if (brg_msg_is(msg, BRG_HTTP_TAG_CANCEL))
        s_on_cancel(self, msg);
    else if (brg_msg_is_cancel(msg))
        s_on_ask_cancel(self, msg);
    else
        return BRG_UNHANDLED;
    return BRG_OK;
}

static int
s_init(brg_ctx_t *ctx, void *arg)
{
    (void)arg;
    s_http_t *self = brg_state(ctx);
    self->self = brg_self(ctx);
    if (!brg_ref_is_none(self->parent))
        brg_trap_exits(ctx, true); // to end with the parent (brg__actors_on_exit)
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Spawning

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static CURLcode s_curl_global;

static void
s_curl_global_init(void)
{
    s_curl_global = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int
s_spawn(brg_system_t *sys, brg_ctx_t *ctx, const brg_http_opts_t *opts, brg_ref_t *http)
{
    const char *agent = opts->user_agent;
    if (opts->max_pending < 1 || opts->max_pending > 1000000 || opts->timeout_ms < 1 ||
        opts->connect_timeout_ms < 1 || opts->max_response_bytes < 1 ||
        opts->max_response_bytes > BRG_MSG_MAX - 4096 ||
        (agent && strlen(agent) > S_USER_AGENT_MAX) ||
        (opts->proxy && !brg__http_url_ok(opts->proxy, strlen(opts->proxy))))
        return BRG_EINVAL;
    pthread_once(&s_curl_once, s_curl_global_init);
    if (s_curl_global != CURLE_OK)
        return BRG_ESYS;
    s_http_t *self = calloc(1, sizeof(*self));
    if (!self)
        return BRG_ENOMEM;
    pthread_mutex_init(&self->lock, NULL);
    atomic_init(&self->quit, false);
    self->sys = sys;
    self->self = BRG_REF_NONE;
    self->max_pending = opts->max_pending;
    self->timeout_ms = opts->timeout_ms;
    self->connect_timeout_ms = opts->connect_timeout_ms;
    self->max_response_bytes = opts->max_response_bytes;
    self->log_errors = opts->log_errors;
    self->parent = ctx ? brg_self(ctx) : BRG_REF_NONE;
    if (opts->proxy && !(self->proxy = strdup(opts->proxy))) {
        s_http_destroy(self);
        return BRG_ENOMEM;
    }
    if (agent)
        snprintf(self->user_agent, sizeof self->user_agent, "%s", agent);
    else
        snprintf(self->user_agent, sizeof self->user_agent, "brigade/%s", brg_version());
    if (!(self->multi = curl_multi_init())) {
        s_http_destroy(self);
        return BRG_ENOMEM;
    }
    if (pthread_create(&self->thread, NULL, s_io_main, self) != 0) {
        s_http_destroy(self);
        return BRG_ESYS;
    }
    self->thread_started = true;
    return brg__actors_spawn(sys, ctx, s_behaviour, self, s_http_destroy, s_init, opts->name, http);
}

//  ---------------------------------------------------------------------------
//  Public API

void
brg_http_opts_init(brg_http_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
    opts->max_pending = 256;
    opts->timeout_ms = 30000;
    opts->connect_timeout_ms = 10000;
    opts->max_response_bytes = 8u * 1024 * 1024;
    opts->log_errors = true;
}

int
brg_http_spawn(brg_ctx_t *ctx, const brg_http_opts_t *opts, brg_ref_t *http)
{
    assert(ctx);
    assert(opts);
    return s_spawn(brg_ctx_system(ctx), ctx, opts, http);
}

int
brg_http_spawn_root(brg_system_t *sys, const brg_http_opts_t *opts, brg_ref_t *http)
{
    assert(sys);
    assert(opts);
    return s_spawn(sys, NULL, opts, http);
}

brg_msg_t *
brg_http_msg_request(const brg_http_request_t *req)
{
    assert(req);
    if (!req->url || strlen(req->url) > BRG_HTTP_URL_MAX || req->n_headers > BRG_HTTP_HEADERS_MAX ||
        (req->n_headers && !req->headers) || (req->body_len && !req->body) ||
        (req->method && strlen(req->method) > BRG_HTTP_METHOD_MAX) || req->timeout_ms < 0)
        return NULL;
    const char *method = req->method ? req->method : req->body ? "POST" : "GET";
    brg_msg_t *msg = brg_msg_new(BRG_HTTP_TAG_REQUEST);
    int rc = msg ? BRG_OK : BRG_ENOMEM;
    if (rc == BRG_OK)
        rc = brg_msg_add_str(msg, method);
    if (rc == BRG_OK)
        rc = brg_msg_add_str(msg, req->url);
    if (rc == BRG_OK)
        rc = brg_msg_add_array(msg, (uint32_t)req->n_headers);
    for (size_t i = 0; rc == BRG_OK && i < req->n_headers; i++)
        rc = req->headers[i] ? brg_msg_add_str(msg, req->headers[i]) : BRG_EINVAL;
    if (rc == BRG_OK)
        rc = req->body ? brg_msg_add_bin(msg, req->body, req->body_len) : brg_msg_add_nil(msg);
    if (rc == BRG_OK)
        rc = brg_msg_add_int(msg, req->timeout_ms);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(msg, req->stream_id);
    if (rc == BRG_OK)
        rc = brg_msg_add_uint(msg, req->error_detail ? 1 : 0);
    if (rc != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

int
brg_http_read_response(const brg_msg_t *reply, brg_http_response_t *out)
{
    assert(reply);
    assert(out);
    if (!brg_msg_is(reply, BRG_HTTP_TAG_RESPONSE))
        return BRG_ETYPE;
    size_t pos = 0;
    int64_t status;
    brg_http_response_t r;
    if (brg_msg_read_int(reply, &pos, &status) != BRG_OK || status < 0 || status > 999 ||
        brg_msg_read_str(reply, &pos, &r.content_type, &r.content_type_len) != BRG_OK ||
        brg_msg_read_bin(reply, &pos, &r.body, &r.body_len) != BRG_OK)
        return BRG_EBADMSG;
    int rc = brg_msg_read_int(reply, &pos, &r.retry_after_ms);
    if (rc == BRG_ENODATA)
        r.retry_after_ms = -1; // an older encoder
    else if (rc != BRG_OK || r.retry_after_ms < -1)
        return BRG_EBADMSG;
    r.status = (int)status;
    *out = r;
    return BRG_OK;
}

int
brg_http_read_chunk(const brg_msg_t *msg, brg_http_chunk_t *out)
{
    assert(msg);
    assert(out);
    if (!brg_msg_is(msg, BRG_HTTP_TAG_CHUNK))
        return BRG_ETYPE;
    size_t pos = 0;
    int64_t status;
    brg_http_chunk_t c;
    if (brg_msg_read_uint(msg, &pos, &c.stream_id) != BRG_OK ||
        brg_msg_read_int(msg, &pos, &status) != BRG_OK || status < 0 || status > 999 ||
        brg_msg_read_bin(msg, &pos, &c.data, &c.len) != BRG_OK)
        return BRG_EBADMSG;
    c.status = (int)status;
    *out = c;
    return BRG_OK;
}

int
brg_http_read_error(const brg_msg_t *msg, brg_http_error_t *out)
{
    assert(msg);
    assert(out);
    if (!brg_msg_is(msg, BRG_HTTP_TAG_ERROR))
        return BRG_ETYPE;
    size_t pos = 0;
    int64_t code;
    brg_http_error_t e;
    if (brg_msg_read_int(msg, &pos, &code) != BRG_OK || code >= 0 || code < -1000 ||
        brg_msg_read_bool(msg, &pos, &e.nothing_sent) != BRG_OK ||
        brg_msg_read_str(msg, &pos, &e.message, &e.message_len) != BRG_OK)
        return BRG_EBADMSG;
    e.code = (int)code;
    *out = e;
    return BRG_OK;
}

brg_msg_t *
brg_http_msg_cancel(uint64_t stream_id)
{
    brg_msg_t *msg = brg_msg_new(BRG_HTTP_TAG_CANCEL);
    if (msg && brg_msg_add_uint(msg, stream_id) != BRG_OK)
        brg_msg_destroy(&msg);
    return msg;
}

brg_msg_t *
brg_http_msg_stats(void)
{
    return brg_msg_new(BRG_HTTP_TAG_STATS);
}

int
brg_http_read_stats(const brg_msg_t *reply, brg_http_stats_t *out)
{
    assert(reply);
    assert(out);
    uint64_t f[5];
    int rc = brg__actors_read_uints(reply, BRG_HTTP_TAG_STATS, f, 5);
    if (rc != BRG_OK)
        return rc;
    *out = (brg_http_stats_t){f[0], f[1], f[2], f[3], f[4]};
    return BRG_OK;
}

static int
s_read_stats(const brg_msg_t *reply, void *out)
{
    return brg_http_read_stats(reply, out);
}

int
brg_http_stats(brg_system_t *sys, brg_ref_t http, int timeout_ms, brg_http_stats_t *out)
{
    assert(sys);
    assert(out);
    return brg__actors_ask_read(sys, http, brg_http_msg_stats(), timeout_ms, s_read_stats, out);
}
