//  http - an HTTP client actor, for calling outside services from actors
//  without blocking the workers.
//
//  The HTTP actor takes requests as messages, runs every transfer at once on
//  one I/O thread of its own (libcurl's multi interface), and answers each
//  request when its transfer ends: with a response message (any HTTP status,
//  including 4xx and 5xx: the transfer worked), or with an error status:
//
//    BRG_ETIMEDOUT  the request's deadline (timeout_ms) passed
//    BRG_ENETWORK   could not resolve, connect, do TLS, the transfer broke, or
//                   the server's answer was not HTTP (garbage bytes, a broken
//                   status line)
//    BRG_EMSGSIZE   the response body is larger than max_response_bytes
//    BRG_EINVAL     a malformed request (bad URL scheme, method or header)
//    BRG_EBUSY      max_pending requests are in flight already
//    BRG_ENOMEM     out of memory
//
//  Ask it (brg_ask / brg_system_ask) and give the ask a deadline a little
//  longer than the request's timeout_ms, so the HTTP actor's answer, not the
//  ask's own deadline, tells what happened. A request sent with brg_send is
//  answered with the response as a plain message to its sender (errors then
//  only count). With log_errors, every failed transfer also logs one line
//  (brigade/log.h: category "http", level warning; stderr by default) with
//  curl's own explanation ("brigade: warning http: actor <ref>: GET <url>:
//  Failed to connect to 127.0.0.1 port 9: Connection refused (BRG_ENETWORK)").
//
//  Only http:// and https:// URLs are accepted, redirects are not followed,
//  no proxy is used unless opts.proxy names one, and responses are read up
//  to max_response_bytes: an address that came from untrusted input cannot
//  make it read local files or grow without bound. Header names must be
//  tokens and values free of control characters (no injection, no folding).
//  POST, PUT and PATCH without a body send "Content-Length: 0". TLS
//  certificates are verified (libcurl's defaults). Logs show URLs without
//  user:password@ and without the query string.
//
//  Threads: the actor's behaviour runs on a worker and never blocks; its I/O
//  thread only moves bytes and hands finished transfers back to the actor,
//  which answers every request itself. When the actor stops, transfers still
//  running are cancelled and their askers are not answered (they time out).
//  Spawned with brg_http_spawn, it ends when the spawning actor ends, for
//  any reason (it traps exits to see a normal exit too).
//
//  Streaming mode (a request with stream_id > 0). Once the response's status
//  line and headers are in and the status is 2xx, every piece of the body is
//  sent at once, as it arrives, to the request's sender as a plain
//  BRG_HTTP_TAG_CHUNK message [stream_id, status, bytes] (from the I/O
//  thread; sender BRG_REF_NONE), and the final answer (the response, after
//  the last chunk) has an empty body. The actor keeps no body of a 2xx
//  stream, so its memory stays bounded however long the stream runs; the
//  total is still capped by max_response_bytes (then BRG_EMSGSIZE). A
//  status that is not 2xx is not streamed: its body is kept and comes in
//  the response as usual (an error body to read). If the sender is gone,
//  the transfer is aborted. Chunks and the answer reach the sender in order
//  (the chunks are sent before the transfer is handed back to the actor).
//
//  Cancel: BRG_HTTP_TAG_CANCEL [stream_id] (brg_http_msg_cancel) from the
//  sender of a streaming request aborts its transfer (the connection is
//  closed) and the request is answered with BRG_ECANCELED. A cancel that
//  matches no running transfer of that sender is ignored (the request may
//  have been answered already).
//  Any request, streamed or not, can also be cancelled by its asker with
//  the generic cancel (brigade/cancel.h): a BRG_TAG_CANCEL from the
//  request's sender carrying the ask's id (brg_ask_id, then brg_cancel; a
//  limiter or gather in front of the HTTP actor sends it too). It aborts
//  the transfer the same way (the connection is closed, counted `failed`)
//  and answers the request with BRG_ECANCELED (or the error detail of
//  BRG_ECANCELED), so an asker that cancelled its own still open ask gets
//  its callback at once; an asker that gave up sees that answer as a late
//  reply. A cancel that matches no request still in flight is ignored.
//
//  Error detail (a request with error_detail): a failed transfer is answered
//  with a BRG_HTTP_TAG_ERROR message (ask status BRG_OK) instead of an ask
//  error: [code, nothing_sent, message] where code is the error above,
//  nothing_sent is true when no byte of the request left (resolve or connect
//  failed: safe to send again), and message is curl's explanation. Requests
//  refused before a transfer (BRG_EBUSY, BRG_EINVAL, BRG_ENOMEM) are still
//  answered with an ask error.
//
//  Retry-After: a response carries the server's Retry-After header (delay
//  seconds or an HTTP date) as retry_after_ms from when it came, -1 if none.
//
//  Messages with a tag starting "brg.http." are the HTTP actor's protocol.
#ifndef BRG_HTTP_H
#define BRG_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "actor.h"
#include "export.h"
#include "msg.h"
#include "ref.h"
#include "system.h"

//  Longest URL, method and one header line (bytes, without the NUL).
#define BRG_HTTP_URL_MAX 4096
#define BRG_HTTP_METHOD_MAX 16
#define BRG_HTTP_HEADER_MAX 8192
//  Most header lines in one request.
#define BRG_HTTP_HEADERS_MAX 64
//  Longest Content-Type passed on in a response (longer ones are cut).
#define BRG_HTTP_CONTENT_TYPE_MAX 1024

//  Tags of the protocol.
#define BRG_HTTP_TAG_REQUEST "brg.http.request"   // -> brg.http.response or an error
#define BRG_HTTP_TAG_RESPONSE "brg.http.response" // [status, content_type, body]
#define BRG_HTTP_TAG_STATS "brg.http.stats"       // -> the counters, in field order
#define BRG_HTTP_TAG_CHUNK "brg.http.chunk"       // [stream_id, status, bytes], streaming
#define BRG_HTTP_TAG_CANCEL "brg.http.cancel"     // [stream_id]: abort that stream
#define BRG_HTTP_TAG_ERROR "brg.http.error"       // [code, nothing_sent, message]

//  HTTP actor options. Start from brg_http_opts_init(&opts); the actor
//  copies them and their strings.
typedef struct brg_http_opts {
    int max_pending;           // requests in flight at once; more get BRG_EBUSY (default 256)
    int timeout_ms;            // a request's deadline unless it sets its own (default 30000)
    int connect_timeout_ms;    // deadline to connect, within timeout_ms (default 10000)
    size_t max_response_bytes; // larger bodies fail with BRG_EMSGSIZE (default 8 MiB,
                               // at most BRG_MSG_MAX - 4096)
    const char *user_agent;    // User-Agent header (default "brigade/<version>")
    bool log_errors;           // log one line per failed transfer, see above (default true)
    const char *proxy;         // proxy URL (http:// or https://); NULL: none (default).
                               // The environment's http_proxy etc. are never used.
    const char *name;          // optional registered name of the actor
} brg_http_opts_t;

//  One request, as brg_http_msg_request encodes it (the strings are copied).
typedef struct brg_http_request {
    const char *method;         // "GET", "POST", ...; NULL: POST with a body, else GET
    const char *url;            // http:// or https://
    const char *const *headers; // header lines "Name: value", no CR or LF
    size_t n_headers;           //   (at most BRG_HTTP_HEADERS_MAX)
    const void *body;           // request body, or NULL
    size_t body_len;            //
    int timeout_ms;             // > 0: this request's deadline; 0: the actor's default
    uint64_t stream_id;         // > 0: streaming mode (see above), 0: the whole body at the end
    bool error_detail;          // failures as BRG_HTTP_TAG_ERROR messages (see above)
} brg_http_request_t;

//  A response as brg_http_read_response sees it. The pointers point into the
//  reply message: valid while the caller keeps the message.
typedef struct brg_http_response {
    int status;               // HTTP status code, e.g. 200
    const char *content_type; // Content-Type value (not NUL-terminated), "" if none
    size_t content_type_len;  //
    const void *body;         // the body (not NUL-terminated)
    size_t body_len;          //
    int64_t retry_after_ms;   // the Retry-After header in ms (>= 0), -1 if none
} brg_http_response_t;

//  A streamed piece of a body, as brg_http_read_chunk sees it (a view into
//  the message).
typedef struct brg_http_chunk {
    uint64_t stream_id;
    int status; // the response's HTTP status (2xx)
    const void *data;
    size_t len;
} brg_http_chunk_t;

//  A failure with its detail, as brg_http_read_error sees it.
typedef struct brg_http_error {
    int code;          // BRG_ETIMEDOUT, BRG_ENETWORK, BRG_EMSGSIZE, BRG_ECANCELED, ...
    bool nothing_sent; // no byte of the request was sent
    const char *message;
    size_t message_len;
} brg_http_error_t;

//  Counters as the actor reports them (a plain value: read its fields).
typedef struct brg_http_stats {
    uint64_t in_flight; // transfers running now
    uint64_t requests;  // requests accepted (transfers started)
    uint64_t responses; // of those, answered with a response (any HTTP status)
    uint64_t failed;    // of those, answered with an error: BRG_ETIMEDOUT,
                        // BRG_ENETWORK, BRG_EMSGSIZE, BRG_EINVAL (libcurl refused
                        // the URL), BRG_ECANCELED or BRG_ENOMEM
    uint64_t rejected;  // requests refused before a transfer: BRG_EBUSY,
                        // BRG_EINVAL (malformed) or BRG_ENOMEM
} brg_http_stats_t;

//  Fill with the defaults (see the fields).
BRG_EXPORT void brg_http_opts_init(brg_http_opts_t *opts);

//  Spawn an HTTP actor from inside a behaviour, linked to the calling actor
//  (so it ends with it, also on a normal exit, and can be a supervisor's
//  child). Errors: BRG_EINVAL (a value out of range, a too long name or user
//  agent, a proxy that is not an http(s) URL), BRG_ENOMEM,
//  BRG_ESYS (libcurl could not be set up), then as brg_spawn; on error
//  nothing is spawned. On BRG_OK *http (if not NULL) is its address.
BRG_EXPORT int brg_http_spawn(brg_ctx_t *ctx, const brg_http_opts_t *opts, brg_ref_t *http);

//  The same from any thread, with no link. Thread: any.
BRG_EXPORT int brg_http_spawn_root(brg_system_t *sys, const brg_http_opts_t *opts, brg_ref_t *http);

//  Encode a request (tag BRG_HTTP_TAG_REQUEST). NULL if out of memory or if
//  req is plainly not valid: no URL, a URL over BRG_HTTP_URL_MAX or a method
//  over BRG_HTTP_METHOD_MAX bytes, more than BRG_HTTP_HEADERS_MAX headers, a
//  NULL header, a NULL body with body_len > 0, a negative timeout_ms, or a
//  message over BRG_MSG_MAX. Caller owns the returned message. The actor
//  checks the rest (scheme and host, method and header syntax). A request
//  asked in a trace (brigade/trace.h) goes out with a W3C `traceparent`
//  header of its context, unless req->headers has one.
BRG_EXPORT brg_msg_t *brg_http_msg_request(const brg_http_request_t *req);

//  Read a response (views into reply). BRG_OK, BRG_ETYPE (another tag) or
//  BRG_EBADMSG.
BRG_EXPORT int brg_http_read_response(const brg_msg_t *reply, brg_http_response_t *out);

//  Read a streamed chunk (views into msg). BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_http_read_chunk(const brg_msg_t *msg, brg_http_chunk_t *out);

//  Read an error-detail reply (views into msg). BRG_OK, BRG_ETYPE or BRG_EBADMSG.
BRG_EXPORT int brg_http_read_error(const brg_msg_t *msg, brg_http_error_t *out);

//  A cancel of the sender's stream stream_id. NULL if out of memory. Caller owns it.
BRG_EXPORT brg_msg_t *brg_http_msg_cancel(uint64_t stream_id);

//  A request for the counters, for brg_ask. NULL if out of memory. Caller owns it.
BRG_EXPORT brg_msg_t *brg_http_msg_stats(void);

//  Read the reply to a stats request. BRG_OK, or BRG_ETYPE / BRG_EBADMSG.
BRG_EXPORT int brg_http_read_stats(const brg_msg_t *reply, brg_http_stats_t *out);

//  The counters, blocking. Errors: those of brg_system_ask, BRG_ENOMEM and
//  the reader's. Thread: any thread but the system's own (there: BRG_EDEADLK at once, as
//  brg_system_ask).
BRG_EXPORT int brg_http_stats(brg_system_t *sys, brg_ref_t http, int timeout_ms,
                              brg_http_stats_t *out);

#endif
