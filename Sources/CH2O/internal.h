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

#define CH2O_TIMEOUT_SLOTS 512

struct ch2o_timeout_slot {
    uint64_t millis;
    h2o_timeout_t *timeout;
};

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
    struct ch2o_timeout_slot slots[CH2O_TIMEOUT_SLOTS];
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
};

struct ch2o_pool_slot {
    struct ch2o_upstream *up; /* NULL: free */
    h2o_linklist_t *idle;
};
/* the idle list of `up` on `loop` (created on first use) */
h2o_linklist_t *ch2o_loop_idle_list(ch2o_loop_t *loop, struct ch2o_upstream *up);

/* a cached h2o_timeout_t for a duration (durations are quantized so the set stays small) */
h2o_timeout_t *ch2o_loop_timeout(ch2o_loop_t *loop, uint64_t millis);
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
    h2o_timeout_entry_t watchdog;
    struct ch2o_proxy *proxy;
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
};

struct ch2o_listener_spec {
    int tag;
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    SSL_CTX *ssl_ctx;
    h2o_hostconf_t *hostconf;
    h2o_hostconf_t *hosts[2];
    int *fds; /* one per thread */
};

SSL_CTX *ch2o_ssl_server_ctx(const ch2o_tls_config_t *cfg, char *err, size_t errlen);
SSL_CTX *ch2o_ssl_client_ctx(const ch2o_tls_config_t *cfg, char *err, size_t errlen);
SSL_CTX *ch2o_tls_client_ssl_ctx(ch2o_tls_client_t *tls);
int ch2o_resolve(const char *host, int port, struct sockaddr_storage *out, socklen_t *outlen, char *err, size_t errlen);
void ch2o_set_nodelay(int fd);
const char *ch2o_reason_phrase(int status);
void ch2o_copy_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
