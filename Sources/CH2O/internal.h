/* Private to Sources/CH2O: the only place that includes <h2o.h>. */
#ifndef CH2O_INTERNAL_H
#define CH2O_INTERNAL_H

#define H2O_USE_LIBUV 0
#include <pthread.h>
#include <stdatomic.h>
#include <openssl/ssl.h>
#include <h2o.h>
#include <h2o/http1.h>
#include <h2o/http2.h>
#include <h2o/multithread.h>
#include "ch2o.h"

/* picohttpparser is exported by libh2o-evloop but its header is not shipped. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers, size_t last_len);
struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
};
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

/* Timers. h2o 2.2.5 keeps one FIFO list per distinct duration and scans every list on each loop iteration, so a
 * list per duration (what callers' "deadline - now" durations would need) grows without bound. A deadline is
 * instead linked into the bucket of the largest power of two not above its remaining time; when that bucket fires
 * early it moves down to the next one. So a loop has at most CH2O_TIMER_BUCKETS lists, whatever the durations, a
 * deadline is never fired early, and it is re-linked at most once per bit of its duration. */
#define CH2O_TIMER_BUCKETS 42 /* 0 ms, then 2^0 .. 2^40 ms (about 35 years; longer durations are clamped) */

typedef struct ch2o_deadline ch2o_deadline_t;
struct ch2o_deadline {
    h2o_timeout_entry_t _entry; /* private: linked in one of the loop's buckets */
    ch2o_loop_t *_loop;
    uint64_t _at;               /* private: absolute, on the loop's clock */
    void (*cb)(ch2o_deadline_t *d);
};
/* (Re)arm `d` to call d->cb `millis` from now (loop thread only); replaces a previous arming. */
void ch2o_deadline_link(ch2o_loop_t *loop, ch2o_deadline_t *d, uint64_t millis);
/* Disarm; a no-op when not armed. */
void ch2o_deadline_unlink(ch2o_deadline_t *d);
int ch2o_deadline_is_linked(const ch2o_deadline_t *d);

struct ch2o_loop {
    h2o_evloop_t *evloop;
    int index;
    void *user;
    pthread_t thread;
    int has_thread;
    _Atomic int stop;
    /* h2o keeps per-thread allocators (socket buffers, pools): everything loop-bound is created on the loop's own
     * thread, in loop_init, which also calls on_init (the server's context and listeners) */
    void (*on_init)(ch2o_loop_t *loop);
    pthread_mutex_t init_mutex;
    pthread_cond_t init_cond;
    int initialized;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t post_receiver;
    /* set by the loop's thread once it stops running, under post_mutex: a post after it is refused, not lost */
    pthread_mutex_t post_mutex;
    int closed;
    h2o_timeout_t *buckets[CH2O_TIMER_BUCKETS]; /* created on first use */
    /* idle keep-alive connections of this loop, per upstream (open addressing, loop thread only) */
    struct ch2o_pool_slot *pools;
    size_t pools_cap, pools_used;
    /* server side, when the loop belongs to a server */
    struct ch2o_server *server;
    int server_slot;
    h2o_context_t *h2o_ctx;
    h2o_accept_ctx_t *accept_ctxs;
    h2o_socket_t **listeners;
    int num_listeners;
    h2o_linklist_t server_conns; /* accepted connections still open (struct conn_info) */
};

struct ch2o_pool_slot {
    struct ch2o_upstream *up; /* NULL: free */
    h2o_linklist_t *idle;
};
/* the idle list of `up` on `loop` (created on first use) */
h2o_linklist_t *ch2o_loop_idle_list(ch2o_loop_t *loop, struct ch2o_upstream *up);

pthread_t ch2o_loop_thread(ch2o_loop_t *loop);
ch2o_loop_t *ch2o_loop_current(void);

struct ch2o_req {
    h2o_req_t *req; /* NULL once disposed */
    h2o_generator_t generator;
    ch2o_loop_t *loop;
    struct ch2o_server *server;
    int tag;
    void *ctx;
    enum { CH2O_REQ_FRESH, CH2O_REQ_STREAMING, CH2O_REQ_DONE } state;
    unsigned sending : 1;
    unsigned pending_final : 1;
    unsigned pending_error : 1;
    unsigned gone : 1;
    unsigned in_handler : 1;
    unsigned head_sent : 1;
    h2o_buffer_t *inflight;
    h2o_buffer_t *pending;
    ch2o_deadline_t watchdog;
    struct ch2o_proxy *proxy;
    h2o_linklist_t deferred; /* HTTP/2: linked while waiting for the end of the read that carried it */
};

void ch2o_req_emit(ch2o_req_t *r, int event);
void ch2o_req_stream_start_len(ch2o_req_t *r, int status, const ch2o_header_t *headers, size_t n, size_t content_length,
                               int flush_head);
/* sends the head if nothing is in flight yet */
void ch2o_req_stream_flush_head(ch2o_req_t *r);
void ch2o_req_client_gone(ch2o_req_t *r);
void ch2o_proxy_on_client_gone(struct ch2o_proxy *p);
/* 1 while the call has no established upstream connection yet (TCP connect or TLS handshake) */
int ch2o_call_is_connecting(const ch2o_call_t *call);

struct ch2o_server {
    h2o_globalconf_t globalconf;
    ch2o_server_config_t cfg;
    ch2o_request_cb on_request;
    ch2o_event_cb on_event;
    void *ctx;
    int num_threads;
    ch2o_loop_t **loops;
    struct ch2o_listener_spec *listeners;
    int num_listeners;
    _Atomic int num_connections;
    _Atomic int inflight;
    int prepared;
    int started;
    ch2o_notice_cb on_notice;
    void *notice_ctx;
    _Atomic uint64_t last_notice_ms; /* rate limit of notices */
    _Atomic uint64_t suppressed_notices;
    _Atomic int reserve_fd; /* one descriptor kept back to answer a client while the process is out of them */
};

struct ch2o_listener_spec {
    int tag;
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    SSL_CTX *ssl_ctx;
    h2o_hostconf_t *hostconf;
    h2o_hostconf_t *hosts[2];
    int *fds; /* one per thread: dups of one socket */
    int max_connections; /* 0: no cap */
    _Atomic int num_connections;
};

SSL_CTX *ch2o_ssl_server_ctx(const ch2o_tls_config_t *cfg, char *err, size_t errlen);
SSL_CTX *ch2o_ssl_client_ctx(const ch2o_tls_config_t *cfg, char *err, size_t errlen);
SSL_CTX *ch2o_tls_client_ssl_ctx(ch2o_tls_client_t *tls);
int ch2o_resolve(const char *host, int port, struct sockaddr_storage *out, socklen_t *outlen, char *err, size_t errlen);
void ch2o_set_nodelay(int fd);
const char *ch2o_reason_phrase(int status);
void ch2o_copy_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
