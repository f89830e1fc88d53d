/*
 * ch2o.h — the project's own C face of h2o 2.2.5 + OpenSSL.
 *
 * Only the C files of Sources/CH2O include <h2o.h>; everything here is opaque handles, integers, (ptr, len) pairs and
 * C callbacks taking a `void *ctx`. Threading rule: a handle that belongs to a loop (request, timer, call)
 * is used only on that loop's thread; ch2o_loop_post() is the one way in from other threads.
 */
#ifndef CH2O_H
#define CH2O_H

#include <stddef.h>
#include <stdint.h>
#include "ch2o_hash.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ch2o_loop ch2o_loop_t;
typedef struct ch2o_server ch2o_server_t;
typedef struct ch2o_req ch2o_req_t;
typedef struct ch2o_timer ch2o_timer_t;
typedef struct ch2o_upstream ch2o_upstream_t;
typedef struct ch2o_call ch2o_call_t;
typedef struct ch2o_tls_client ch2o_tls_client_t;

typedef struct ch2o_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} ch2o_header_t;

/* ---------------------------------------------------------------- misc */

/** jemalloc's version string read through mallctl("version"), or NULL when jemalloc is not the allocator. */
const char *ch2o_jemalloc_version(void);
/** jemalloc's stats.allocated (bytes), after refreshing its epoch; 0 if unavailable. */
size_t ch2o_jemalloc_allocated(void);
/** The h2o library version string. */
const char *ch2o_h2o_version(void);
/** The product version one_key_build.sh wrote into version.inc (see version.c), "dev" otherwise. */
const char *ch2o_product_version(void);

/* ---------------------------------------------------------------- loops */

/** Create an event loop (not yet running); its index is unique in the process. */
ch2o_loop_t *ch2o_loop_create(void);
int ch2o_loop_index(ch2o_loop_t *loop);
/** An opaque pointer owned by the caller (the Swift EventLoop object). */
void ch2o_loop_set_user(ch2o_loop_t *loop, void *user);
void *ch2o_loop_get_user(ch2o_loop_t *loop);
/** Run the loop on the calling thread until ch2o_loop_stop(). */
void ch2o_loop_run(ch2o_loop_t *loop);
/** Start a new thread running the loop. Returns 0 on success. */
int ch2o_loop_start_thread(ch2o_loop_t *loop);
/** Ask the loop to stop (any thread); joins its thread when it has one. */
void ch2o_loop_stop_and_join(ch2o_loop_t *loop);
/** 1 when called on the loop's own thread. */
int ch2o_loop_is_current(ch2o_loop_t *loop);
/** Run cb(arg) on the loop's thread, soon. Thread-safe. Returns 0, or -1 (cb not queued) once the loop has
 * stopped running: everything queued before that still runs, so a posted cb either runs or is refused. */
int ch2o_loop_post(ch2o_loop_t *loop, void (*cb)(void *arg), void *arg);
/** Milliseconds on the loop's clock (loop thread only). */
uint64_t ch2o_loop_now(ch2o_loop_t *loop);

/** One-shot timer on the loop (loop thread only). The timer is freed after it fires or is cancelled. */
ch2o_timer_t *ch2o_timer_start(ch2o_loop_t *loop, uint64_t millis, void (*cb)(void *ctx), void *ctx);
void ch2o_timer_cancel(ch2o_timer_t *timer);

/* ---------------------------------------------------------------- TLS configuration */

typedef struct ch2o_tls_config {
    const char *cert_file;   /* PEM certificate chain */
    const char *key_file;    /* PEM private key */
    const char *key_password; /* NULL when the key is not encrypted */
    const char *ca_file;     /* server: verify clients against it (mutual TLS); client: verify the server */
    const char *crl_file;    /* optional CRL, checked for the leaf */
    int min_version;         /* 12 or 13 (default 13) */
    int verify_peer;         /* server: require a client certificate; client: verify the server certificate */
} ch2o_tls_config_t;

/* ---------------------------------------------------------------- server */

enum {
    CH2O_EV_CLIENT_GONE = 1, /* the client left before the response ended; the request is about to be disposed */
    CH2O_EV_DISPOSED = 2,    /* the request's memory is gone; drop the ch2o_req_t pointer */
};

typedef struct ch2o_server_config {
    int num_threads;            /* event-loop threads; 0 = number of cores */
    size_t max_request_body;    /* bytes; over it h2o answers 413 */
    size_t max_header_bytes;    /* sum of request-line path and header bytes; over it: 431 */
    int max_connections;        /* over it a new connection gets 503 (plain) or is closed (TLS); 0 = no limit */
    uint64_t idle_timeout_ms;   /* client connection idle timeout (h1 keep-alive, h2) */
    uint64_t upstream_io_timeout_ms; /* default per-read timeout of proxied upstreams */
    uint64_t graceful_timeout_ms;    /* how long shutdown waits for in-flight requests */
    const char *server_name;         /* the Server header of every reply; NULL: "mindie-ms" */
    uint32_t max_requests_per_connection; /* HTTP/1: the last one is answered with Connection: close; a request
                                            * past it (pipelined, HTTP/2) gets 429 and the connection closes; 0 = no limit */
    uint32_t max_stream_resets;  /* HTTP/2: RST_STREAMs a connection may send in a burst (refilled at a tenth of it
                                    per second); past it GOAWAY(ENHANCE_YOUR_CALM). 0 = 200 */
} ch2o_server_config_t;

typedef struct ch2o_listener_options {
    int max_connections; /* open connections on this listener; over it 503 (plain) or close (TLS); 0 = the server's */
} ch2o_listener_options_t;

/** Operational notices from the loops (accept paused for lack of file descriptors, a connection that reset too
 *  many streams...). Rate-limited by the server; called on a loop thread, so it must not block for long. */
typedef void (*ch2o_notice_cb)(void *ctx, const char *message);

/** Called on a loop thread for each request. The handler must answer through ch2o_req_* now or later. */
typedef void (*ch2o_request_cb)(void *server_ctx, ch2o_req_t *req);
/** Called on the request's loop thread with the per-request ctx set by ch2o_req_set_ctx. */
typedef void (*ch2o_event_cb)(void *req_ctx, int event);

ch2o_server_t *ch2o_server_create(const ch2o_server_config_t *cfg, ch2o_request_cb on_request, ch2o_event_cb on_event,
                                  void *server_ctx, char *err, size_t errlen);
/** Add a listener (before start). Returns the bound port (port 0 picks one), or -1 with err filled. */
int ch2o_server_add_listener(ch2o_server_t *srv, const char *host, int port, const ch2o_tls_config_t *tls, int tag,
                             char *err, size_t errlen);
/** ch2o_server_add_listener with per-listener options (opts may be NULL). */
int ch2o_server_add_listener_opts(ch2o_server_t *srv, const char *host, int port, const ch2o_tls_config_t *tls, int tag,
                                  const ch2o_listener_options_t *opts, char *err, size_t errlen);
/** The connection cap in force on listener i (the configured one, lowered at start to fit the process's file
 *  descriptor limit); 0 = none. */
int ch2o_server_listener_max_connections(ch2o_server_t *srv, int i);
/** Where notices go (before start). */
void ch2o_server_set_notice_cb(ch2o_server_t *srv, ch2o_notice_cb cb, void *ctx);
/** Create the loops (no threads yet), so that callers can attach their objects; start() does it if needed. */
int ch2o_server_prepare(ch2o_server_t *srv, char *err, size_t errlen);
/** Start the loop threads. Returns 0 on success. */
int ch2o_server_start(ch2o_server_t *srv, char *err, size_t errlen);
int ch2o_server_num_loops(ch2o_server_t *srv);
ch2o_loop_t *ch2o_server_loop(ch2o_server_t *srv, int i);
/** Graceful shutdown: stop accepting, let in-flight requests finish (up to graceful_timeout_ms), stop loops.
 *  Blocks until every loop thread ended. Call from a thread that is not a loop thread. */
void ch2o_server_shutdown(ch2o_server_t *srv);
/** Current number of open client connections. */
int ch2o_server_connections(ch2o_server_t *srv);

/* request accessors (loop thread; valid until CH2O_EV_DISPOSED) */
void ch2o_req_set_ctx(ch2o_req_t *req, void *ctx);
int ch2o_req_listener_tag(ch2o_req_t *req);
ch2o_loop_t *ch2o_req_loop(ch2o_req_t *req);
const char *ch2o_req_method(ch2o_req_t *req, size_t *len);
/** The path as received (with query). */
const char *ch2o_req_path(ch2o_req_t *req, size_t *len);
/** Offset of '?' in the path, or SIZE_MAX. */
size_t ch2o_req_query_at(ch2o_req_t *req);
size_t ch2o_req_num_headers(ch2o_req_t *req);
void ch2o_req_header_at(ch2o_req_t *req, size_t i, ch2o_header_t *out);
const void *ch2o_req_body(ch2o_req_t *req, size_t *len);
/** 0x100 / 0x101 for HTTP/1.x, 0x200 for HTTP/2. */
int ch2o_req_http_version(ch2o_req_t *req);
int ch2o_req_is_tls(ch2o_req_t *req);

/** Whole response with Content-Length. The body and headers are copied. */
void ch2o_req_respond(ch2o_req_t *req, int status, const ch2o_header_t *headers, size_t num_headers, const void *body,
                      size_t len);
/** Start a streamed response (chunked on HTTP/1.1, DATA frames on h2); the head is flushed at once. */
void ch2o_req_stream_start(ch2o_req_t *req, int status, const ch2o_header_t *headers, size_t num_headers);
/** Append bytes to the stream (copied; sent as soon as the previous send completed). */
void ch2o_req_stream_write(ch2o_req_t *req, const void *data, size_t len);
/** As ch2o_req_stream_write, without sending now: the bytes go out with the next write, flush or end (so the
 *  last event and the end of a stream leave in one write). */
void ch2o_req_stream_append(ch2o_req_t *req, const void *data, size_t len);
/** Bytes written but not yet handed to the socket. */
size_t ch2o_req_stream_pending(ch2o_req_t *req);
/** End the stream cleanly (after pending bytes). */
void ch2o_req_stream_end(ch2o_req_t *req);
/** Break the stream: the client sees an error (h1: no terminal chunk and a close; h2: RST_STREAM). */
void ch2o_req_stream_abort(ch2o_req_t *req);

/* ---------------------------------------------------------------- upstreams and the client */

/** A TLS client context (client certificate optional, server verified against ca_file when verify_peer). */
ch2o_tls_client_t *ch2o_tls_client_create(const ch2o_tls_config_t *cfg, char *err, size_t errlen);
void ch2o_tls_client_retain(ch2o_tls_client_t *tls);
void ch2o_tls_client_release(ch2o_tls_client_t *tls);

/** An upstream host:port with per-loop pools of keep-alive connections. Resolves the host now (blocking). */
ch2o_upstream_t *ch2o_upstream_create(const char *host, int port, ch2o_tls_client_t *tls, char *err, size_t errlen);
void ch2o_upstream_retain(ch2o_upstream_t *up);
void ch2o_upstream_release(ch2o_upstream_t *up);
/** Connections opened to this upstream so far (all loops). */
uint64_t ch2o_upstream_connects(ch2o_upstream_t *up);

enum {
    CH2O_CALL_OK = 0,
    CH2O_CALL_ERR_CONNECT = 1,     /* could not connect (refused, unreachable, TLS handshake) */
    CH2O_CALL_ERR_BEFORE_HEAD = 2, /* connection failed or closed before the response head */
    CH2O_CALL_ERR_TIMEOUT = 3,     /* no bytes for timeout_ms */
    CH2O_CALL_ERR_BROKEN = 4,      /* the body ended early: close before Content-Length or the terminal chunk */
    CH2O_CALL_ERR_PROTOCOL = 5,    /* the upstream sent something that is not HTTP/1.x */
    CH2O_CALL_CANCELLED = 6,
};

typedef struct ch2o_call_callbacks {
    /* return non-zero to cancel the call (on_done is not called then) */
    int (*on_head)(void *ctx, int status, const ch2o_header_t *headers, size_t num_headers);
    int (*on_body)(void *ctx, const void *data, size_t len);
    void (*on_done)(void *ctx, int result, const char *errstr);
} ch2o_call_callbacks_t;

/** Start an HTTP/1.1 exchange on `loop` (loop thread only). Request bytes are copied. Exactly one of on_done
 *  or a cancel happens. A failure on a reused pooled connection before any response byte is retried once on a
 *  fresh connection. Content-Length is added from body_len; Host is added when absent. */
ch2o_call_t *ch2o_call_start(ch2o_loop_t *loop, ch2o_upstream_t *up, const char *method, size_t method_len,
                             const char *path, size_t path_len, const ch2o_header_t *headers, size_t num_headers,
                             const void *body, size_t body_len, uint64_t timeout_ms, const ch2o_call_callbacks_t *cbs,
                             void *ctx);
/** Cancel a call in progress (loop thread); its connection is closed, on_done is not called. */
void ch2o_call_cancel(ch2o_call_t *call);
/** Stop reading the response body (paused = 1) or read again (0), for back-pressure from a slow consumer. While
 *  paused the call's I/O timeout does not run. Only while the body is being read; otherwise a no-op (loop thread). */
void ch2o_call_pause(ch2o_call_t *call, int paused);
/** Inside on_body: whether these bytes are the body's last (on_done with CH2O_CALL_OK follows in the same turn). */
int ch2o_call_ending(const ch2o_call_t *call);

/* ---------------------------------------------------------------- proxy */

enum {
    CH2O_PROXY_OK = 0,
    CH2O_PROXY_UPSTREAM_ERROR = 1, /* failed after the head went to the client (or a non-retryable failure) */
    CH2O_PROXY_CANCELLED = 2,      /* the client left */
    CH2O_PROXY_GAVE_UP = 3,        /* every attempt failed before the head; a 502/503 was sent */
    CH2O_PROXY_TIMEOUT = 4,
};

typedef struct ch2o_proxy_hooks {
    /** An attempt failed before the response head (connect error, reset, timeout, or a 503 from upstream).
     *  Return the next upstream to try (retained by the callee for the attempt) or NULL to give up. */
    ch2o_upstream_t *(*retry)(void *ctx, int attempt, ch2o_upstream_t *failed, int call_result, int status);
    /** Called exactly once per proxied request, on its loop. `result` is CH2O_PROXY_*; `call_result` the last
     *  attempt's CH2O_CALL_*; `status` the upstream's status (0 if none); `bytes` body bytes relayed. */
    void (*finish)(void *ctx, int result, int call_result, int status, uint64_t bytes, int attempts);
    /** The response head arrived and is about to be sent (informational; may be NULL). */
    void (*head)(void *ctx, int status);
    /** The first body bytes were relayed (may be NULL). */
    void (*first_body)(void *ctx);
    /** Every attempt failed before the head and the client is owed `status` (502, or 504 after a timeout) with
     *  `message` (NUL-terminated). Answer now with ch2o_req_respond (in the caller's dialect) and return 1, or
     *  return 0 for the default JSON body. May be NULL. */
    int (*error_reply)(void *ctx, ch2o_req_t *req, int status, const char *message);
} ch2o_proxy_hooks_t;

typedef struct ch2o_proxy_options {
    const char *path; size_t path_len;         /* NULL: the client's path */
    const void *body; size_t body_len;         /* NULL: the client's body */
    const ch2o_header_t *extra_headers; size_t num_extra_headers; /* added (replacing same-named client headers) */
    uint64_t timeout_ms;                       /* per-read upstream timeout; 0: the server's default */
    const void *error_tail; size_t error_tail_len; /* sent (then a clean end) when a chunked stream breaks */
    /* the most bytes held for one client: a Content-Length body up to it is buffered whole (a short one is then
     * an upstream failure the client never sees: retried, or a 502); above it, reading the upstream pauses while
     * the client's unsent bytes exceed it. 0: 1 MiB */
    size_t client_buffer_bytes;
    /* per-attempt deadlines (0: none); an attempt past one fails as a timeout before the head, so it is retried */
    uint64_t connect_timeout_ms;               /* until the connection to the upstream is established */
    uint64_t head_timeout_ms;                  /* until the upstream's response head arrives */
} ch2o_proxy_options_t;

/** Relay the request to `up` (retained by the callee) and the answer back. */
void ch2o_proxy_start(ch2o_req_t *req, ch2o_upstream_t *up, const ch2o_proxy_options_t *opts,
                      const ch2o_proxy_hooks_t *hooks, void *ctx);
/** Stop a proxied request from our side (a timeout, a removed instance): the upstream exchange is cancelled;
 *  before the head the client gets `status` with `body`, after it `body` ends the stream (a clean end when
 *  the response streams, else a broken one). finish() reports `result`. No-op when already finished. */
void ch2o_proxy_abort(ch2o_req_t *req, int status, const ch2o_header_t *headers, size_t num_headers, const void *body,
                      size_t len, int result);

#ifdef __cplusplus
}
#endif

#endif
