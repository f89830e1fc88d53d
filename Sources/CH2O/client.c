/* Our HTTP/1.1 client on h2o_socket: per-loop keep-alive pools per upstream, TLS with client certificates,
 * per-read timeouts, streamed bodies, and exact end-of-body detection (a close before Content-Length or before
 * the terminal chunk is reported as broken — h2o_http1client would report a close at a chunk boundary as a
 * clean end). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "internal.h"

#define IDLE_TIMEOUT_MS 20000
#define MAX_RESPONSE_HEADERS 100
/* a response head is a status line and some headers; more than this is a broken or hostile upstream, and waiting
 * for its end would buffer without limit */
#define MAX_RESPONSE_HEAD_BYTES (64 * 1024)

struct ch2o_upstream {
    char *host;
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    ch2o_tls_client_t *tls;
    _Atomic int refs;
    _Atomic uint64_t connects;
};

struct upconn {
    h2o_socket_t *sock;
    ch2o_upstream_t *up;
    ch2o_loop_t *loop;
    h2o_linklist_t link;
    ch2o_deadline_t idle_entry;
    struct ch2o_call *call;
    int reused;
};

struct ch2o_call {
    ch2o_loop_t *loop;
    ch2o_upstream_t *up;
    struct upconn *conn;
    char *reqbuf;
    size_t reqlen;
    ch2o_call_callbacks_t cbs;
    void *ctx;
    uint64_t timeout_ms;
    ch2o_deadline_t timeout_entry;
    ch2o_timer_t *deferred; /* reports a synchronous connect failure from the loop, never re-entrantly */
    enum { CALL_CONNECTING, CALL_HEAD, CALL_BODY, CALL_DONE } state;
    int retried_fresh;
    int got_bytes;
    int method_is_head;
    int chunked;
    struct phr_chunked_decoder dec;
    size_t content_length; /* SIZE_MAX: until close (or chunked) */
    size_t body_read;
    int keepalive;
    int deferred_result;
    int paused;
    int ending; /* the body bytes being delivered are the last: on_done(OK) follows in the same turn */
    int written; /* the socket wrote all of reqbuf */
};

/* ---------------------------------------------------------------- upstreams */

ch2o_upstream_t *ch2o_upstream_create(const char *host, int port, ch2o_tls_client_t *tls, char *err, size_t errlen)
{
    ch2o_upstream_t *up = calloc(1, sizeof(*up));
    if (ch2o_resolve(host, port, &up->addr, &up->addrlen, err, errlen) != 0) {
        free(up);
        return NULL;
    }
    up->host = strdup(host);
    up->port = port;
    up->refs = 1;
    if (tls != NULL) {
        ch2o_tls_client_retain(tls);
        up->tls = tls;
    }
    return up;
}

void ch2o_upstream_retain(ch2o_upstream_t *up) { atomic_fetch_add(&up->refs, 1); }

void ch2o_upstream_release(ch2o_upstream_t *up)
{
    if (up != NULL && atomic_fetch_sub(&up->refs, 1) == 1) {
        ch2o_tls_client_release(up->tls);
        free(up->host);
        free(up);
    }
}

uint64_t ch2o_upstream_connects(ch2o_upstream_t *up) { return atomic_load(&up->connects); }

static void conn_close(struct upconn *c)
{
    if (h2o_linklist_is_linked(&c->link))
        h2o_linklist_unlink(&c->link);
    ch2o_deadline_unlink(&c->idle_entry);
    if (c->sock != NULL) {
        c->sock->data = NULL;
        h2o_socket_close(c->sock);
    }
    ch2o_upstream_release(c->up);
    free(c);
}

static void on_idle_event(h2o_socket_t *sock, const char *err)
{
    /* an idle keep-alive connection must stay silent: any byte or a close retires it */
    struct upconn *c = sock->data;
    if (c != NULL)
        conn_close(c);
}

static void on_idle_timeout(ch2o_deadline_t *entry)
{
    struct upconn *c = H2O_STRUCT_FROM_MEMBER(struct upconn, idle_entry, entry);
    conn_close(c);
}

static void conn_park(struct upconn *c)
{
    c->call = NULL;
    c->reused = 1;
    h2o_linklist_insert(ch2o_loop_idle_list(c->loop, c->up), &c->link);
    c->idle_entry.cb = on_idle_timeout;
    ch2o_deadline_link(c->loop, &c->idle_entry, IDLE_TIMEOUT_MS);
    h2o_socket_read_start(c->sock, on_idle_event);
}

static struct upconn *conn_take_idle(ch2o_upstream_t *up, ch2o_loop_t *loop)
{
    h2o_linklist_t *anchor = ch2o_loop_idle_list(loop, up);
    while (!h2o_linklist_is_empty(anchor)) {
        struct upconn *c = H2O_STRUCT_FROM_MEMBER(struct upconn, link, anchor->next);
        h2o_linklist_unlink(&c->link);
        ch2o_deadline_unlink(&c->idle_entry);
        /* an idle socket is watched (on_idle_event), so a peer close seen by the loop already retired it; the
         * remaining race is covered by the one fresh-connection retry of a reused connection */
        if (c->sock->input->size == 0) {
            h2o_socket_read_stop(c->sock);
            return c;
        }
        conn_close(c);
    }
    return NULL;
}

/* ---------------------------------------------------------------- calls */

static void call_connect(ch2o_call_t *call);

static void call_free(ch2o_call_t *call)
{
    ch2o_deadline_unlink(&call->timeout_entry);
    if (call->deferred != NULL)
        ch2o_timer_cancel(call->deferred);
    ch2o_upstream_release(call->up);
    free(call->reqbuf);
    free(call);
}

/* The request bytes are needed until they are written and, for a retry on a fresh connection, until the upstream
 * answered; a streamed response then lasts minutes without them. */
static void release_reqbuf(ch2o_call_t *call)
{
    if (call->written && call->state == CALL_BODY && call->reqbuf != NULL) {
        free(call->reqbuf);
        call->reqbuf = NULL;
    }
}

static void call_detach_conn(ch2o_call_t *call, int reuse)
{
    struct upconn *c = call->conn;
    call->conn = NULL;
    if (c == NULL)
        return;
    c->call = NULL;
    if (reuse && c->sock != NULL && c->sock->input->size == 0) {
        h2o_socket_read_stop(c->sock);
        conn_park(c);
    } else {
        conn_close(c);
    }
}

static void call_finish(ch2o_call_t *call, int result, const char *errstr)
{
    call->state = CALL_DONE;
    call_detach_conn(call, result == CH2O_CALL_OK && call->keepalive);
    void (*on_done)(void *, int, const char *) = call->cbs.on_done;
    void *ctx = call->ctx;
    call_free(call);
    on_done(ctx, result, errstr);
}

static void call_fail(ch2o_call_t *call, int result, const char *errstr)
{
    if (call->state == CALL_BODY && call->content_length == SIZE_MAX && !call->chunked && result == CH2O_CALL_ERR_BEFORE_HEAD) {
        /* close-delimited body: the close is the end */
        call->keepalive = 0;
        call_finish(call, CH2O_CALL_OK, NULL);
        return;
    }
    if (call->state == CALL_BODY && result == CH2O_CALL_ERR_BEFORE_HEAD)
        result = CH2O_CALL_ERR_BROKEN;
    /* a pooled connection that turns out dead before any response byte: retry once on a fresh one */
    if (call->state != CALL_BODY && call->conn != NULL && call->conn->reused && !call->got_bytes && !call->retried_fresh &&
        result != CH2O_CALL_ERR_TIMEOUT) {
        call->retried_fresh = 1;
        call_detach_conn(call, 0);
        call_connect(call);
        return;
    }
    call_finish(call, result, errstr);
}

static void on_call_timeout(ch2o_deadline_t *entry)
{
    ch2o_call_t *call = H2O_STRUCT_FROM_MEMBER(ch2o_call_t, timeout_entry, entry);
    call_fail(call, CH2O_CALL_ERR_TIMEOUT, "upstream I/O timeout");
}

static void rearm_timeout(ch2o_call_t *call)
{
    ch2o_deadline_link(call->loop, &call->timeout_entry, call->timeout_ms);
}

static int header_is(const struct phr_header *h, const char *name)
{
    return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

static int value_has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i + tl <= len; ++i)
        if (strncasecmp(v + i, token, tl) == 0)
            return 1;
    return 0;
}

/* returns 1 when the call ended (finished or cancelled) inside */
static int deliver_body(ch2o_call_t *call, h2o_socket_t *sock)
{
    while (sock->input->size != 0) {
        if (call->chunked) {
            size_t size = sock->input->size;
            ssize_t rc = phr_decode_chunked(&call->dec, sock->input->bytes, &size);
            if (rc == -1) {
                call_finish(call, CH2O_CALL_ERR_BROKEN, "invalid chunked encoding from upstream");
                return 1;
            }
            if (size != 0) {
                call->body_read += size;
                call->ending = rc >= 0;
                if (call->cbs.on_body(call->ctx, sock->input->bytes, size) != 0) {
                    call->cbs.on_done = NULL;
                    call_detach_conn(call, 0);
                    call_free(call);
                    return 1;
                }
            }
            h2o_buffer_consume(&sock->input, sock->input->size);
            if (rc >= 0) {
                if (rc != 0)
                    call->keepalive = 0;
                call_finish(call, CH2O_CALL_OK, NULL);
                return 1;
            }
            return 0;
        }
        size_t n = sock->input->size;
        if (call->content_length != SIZE_MAX && n > call->content_length - call->body_read)
            n = call->content_length - call->body_read;
        call->body_read += n;
        call->ending = call->content_length != SIZE_MAX && call->body_read == call->content_length;
        if (n != 0 && call->cbs.on_body(call->ctx, sock->input->bytes, n) != 0) {
            call_detach_conn(call, 0);
            call_free(call);
            return 1;
        }
        h2o_buffer_consume(&sock->input, n);
        if (call->content_length != SIZE_MAX && call->body_read == call->content_length) {
            if (sock->input->size != 0)
                call->keepalive = 0;
            call_finish(call, CH2O_CALL_OK, NULL);
            return 1;
        }
    }
    return 0;
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    struct upconn *c = sock->data;
    ch2o_call_t *call = c != NULL ? c->call : NULL;
    if (call == NULL) {
        if (c != NULL)
            conn_close(c);
        return;
    }
    if (err != NULL) {
        /* bytes that arrived together with the close are still valid */
        if (call->state == CALL_BODY && sock->input->size != 0 && deliver_body(call, sock))
            return;
        call_fail(call, CH2O_CALL_ERR_BEFORE_HEAD, err);
        return;
    }
    if (sock->input->size != 0)
        call->got_bytes = 1;
    rearm_timeout(call);
    while (call->state == CALL_HEAD) {
        struct phr_header headers[MAX_RESPONSE_HEADERS];
        size_t num_headers = MAX_RESPONSE_HEADERS;
        int minor = 0, status = 0;
        const char *msg;
        size_t msg_len;
        int rc = phr_parse_response(sock->input->bytes, sock->input->size, &minor, &status, &msg, &msg_len, headers,
                                    &num_headers, 0);
        if (rc == -2 && sock->input->size <= MAX_RESPONSE_HEAD_BYTES)
            return;
        if (rc == -2 || rc > MAX_RESPONSE_HEAD_BYTES) {
            call->state = CALL_BODY; /* not retryable on this connection: the upstream spoke */
            call_finish(call, CH2O_CALL_ERR_PROTOCOL, "upstream response head over 65536 bytes");
            return;
        }
        if (rc < 0) {
            call->state = CALL_BODY; /* not retryable: the upstream spoke */
            call_finish(call, CH2O_CALL_ERR_PROTOCOL, "invalid HTTP response from upstream");
            return;
        }
        if (status >= 100 && status < 200 && status != 101) {
            h2o_buffer_consume(&sock->input, rc);
            continue;
        }
        call->keepalive = minor >= 1;
        call->content_length = SIZE_MAX;
        for (size_t i = 0; i < num_headers; ++i) {
            if (header_is(&headers[i], "content-length")) {
                call->content_length = strtoull(headers[i].value, NULL, 10);
            } else if (header_is(&headers[i], "transfer-encoding")) {
                if (value_has_token(headers[i].value, headers[i].value_len, "chunked"))
                    call->chunked = 1;
            } else if (header_is(&headers[i], "connection")) {
                if (value_has_token(headers[i].value, headers[i].value_len, "close"))
                    call->keepalive = 0;
            }
        }
        if (call->chunked)
            call->content_length = SIZE_MAX;
        if (call->method_is_head || status == 204 || status == 304)
            call->content_length = 0, call->chunked = 0;
        if (call->content_length == SIZE_MAX && !call->chunked)
            call->keepalive = 0;
        call->dec.consume_trailer = 1;
        call->state = CALL_BODY;
        release_reqbuf(call);
        ch2o_header_t out[MAX_RESPONSE_HEADERS];
        for (size_t i = 0; i < num_headers; ++i)
            out[i] = (ch2o_header_t){headers[i].name, headers[i].name_len, headers[i].value, headers[i].value_len};
        int stop = call->cbs.on_head(call->ctx, status, out, num_headers);
        h2o_buffer_consume(&sock->input, rc);
        if (stop) {
            call_detach_conn(call, 0);
            call_free(call);
            return;
        }
        if (call->content_length == 0) {
            call_finish(call, CH2O_CALL_OK, NULL);
            return;
        }
    }
    deliver_body(call, sock);
}

static void on_write_complete(h2o_socket_t *sock, const char *err)
{
    struct upconn *c = sock->data;
    ch2o_call_t *call = c != NULL ? c->call : NULL;
    if (call == NULL)
        return;
    if (err == NULL) {
        call->written = 1;
        release_reqbuf(call);
        return;
    }
    call_fail(call, CH2O_CALL_ERR_BEFORE_HEAD, err);
}

static void call_send(ch2o_call_t *call)
{
    struct upconn *c = call->conn;
    c->call = call;
    c->sock->data = c;
    call->state = CALL_HEAD;
    call->written = 0;
    rearm_timeout(call);
    h2o_iovec_t buf = h2o_iovec_init(call->reqbuf, call->reqlen);
    h2o_socket_write(c->sock, &buf, 1, on_write_complete);
    h2o_socket_read_start(c->sock, on_read);
}

/* the call a connect/handshake event belongs to, or NULL (the call is gone: the connection is closed; or the
 * step failed: the call is finished with a connect error) */
static ch2o_call_t *connecting_call(h2o_socket_t *sock, const char *err)
{
    struct upconn *c = sock->data;
    ch2o_call_t *call = c != NULL ? c->call : NULL;
    if (call == NULL) {
        if (c != NULL)
            conn_close(c);
        return NULL;
    }
    if (err != NULL) {
        call_finish(call, CH2O_CALL_ERR_CONNECT, err);
        return NULL;
    }
    return call;
}

static void on_handshake(h2o_socket_t *sock, const char *err)
{
    ch2o_call_t *call = connecting_call(sock, err);
    if (call != NULL)
        call_send(call);
}

static void on_connect(h2o_socket_t *sock, const char *err)
{
    ch2o_call_t *call = connecting_call(sock, err);
    if (call == NULL)
        return;
    struct upconn *c = call->conn;
    ch2o_set_nodelay(h2o_socket_get_fd(sock));
    if (c->up->tls != NULL) {
        h2o_socket_ssl_handshake(sock, ch2o_tls_client_ssl_ctx(c->up->tls), c->up->host, on_handshake);
        return;
    }
    call_send(call);
}

static void on_deferred_failure(void *arg)
{
    ch2o_call_t *call = arg;
    call->deferred = NULL;
    call_finish(call, call->deferred_result, "connection failed");
}

static void call_connect(ch2o_call_t *call)
{
    struct upconn *c = calloc(1, sizeof(*c));
    c->up = call->up;
    ch2o_upstream_retain(c->up);
    c->loop = call->loop;
    c->call = call;
    call->conn = c;
    call->state = CALL_CONNECTING;
    atomic_fetch_add(&call->up->connects, 1);
    c->sock = h2o_socket_connect(call->loop->evloop, (struct sockaddr *)&call->up->addr, call->up->addrlen, on_connect);
    if (c->sock == NULL) {
        call_detach_conn(call, 0);
        call->deferred_result = CH2O_CALL_ERR_CONNECT;
        call->deferred = ch2o_timer_start(call->loop, 0, on_deferred_failure, call);
        return;
    }
    c->sock->data = c;
    rearm_timeout(call);
}

static int is_hop_by_hop(const char *name, size_t len)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
                                        "te", "content-length", "trailer", "http2-settings", "expect"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return 1;
    return 0;
}

ch2o_call_t *ch2o_call_start(ch2o_loop_t *loop, ch2o_upstream_t *up, const char *method, size_t method_len,
                             const char *path, size_t path_len, const ch2o_header_t *headers, size_t num_headers,
                             const void *body, size_t body_len, uint64_t timeout_ms, const ch2o_call_callbacks_t *cbs,
                             void *ctx)
{
    ch2o_call_t *call = calloc(1, sizeof(*call));
    call->loop = loop;
    call->up = up;
    ch2o_upstream_retain(up);
    call->cbs = *cbs;
    call->ctx = ctx;
    call->timeout_ms = timeout_ms ? timeout_ms : 30000;
    call->timeout_entry.cb = on_call_timeout;
    call->method_is_head = method_len == 4 && memcmp(method, "HEAD", 4) == 0;

    size_t cap = method_len + path_len + strlen(up->host) + body_len + 128;
    int has_host = 0;
    for (size_t i = 0; i < num_headers; ++i) {
        cap += headers[i].name_len + headers[i].value_len + 4;
        if (headers[i].name_len == 4 && strncasecmp(headers[i].name, "host", 4) == 0)
            has_host = 1;
    }
    char *p = call->reqbuf = malloc(cap);
    memcpy(p, method, method_len), p += method_len;
    *p++ = ' ';
    memcpy(p, path, path_len), p += path_len;
    memcpy(p, " HTTP/1.1\r\n", 11), p += 11;
    if (!has_host)
        p += sprintf(p, "host: %s:%d\r\n", up->host, up->port);
    for (size_t i = 0; i < num_headers; ++i) {
        if (is_hop_by_hop(headers[i].name, headers[i].name_len))
            continue;
        memcpy(p, headers[i].name, headers[i].name_len), p += headers[i].name_len;
        *p++ = ':', *p++ = ' ';
        memcpy(p, headers[i].value, headers[i].value_len), p += headers[i].value_len;
        *p++ = '\r', *p++ = '\n';
    }
    int needs_length = body_len != 0 || (method_len == 4 && memcmp(method, "POST", 4) == 0) ||
                       (method_len == 3 && memcmp(method, "PUT", 3) == 0) || (method_len == 5 && memcmp(method, "PATCH", 5) == 0);
    if (needs_length)
        p += sprintf(p, "content-length: %zu\r\n", body_len);
    *p++ = '\r', *p++ = '\n';
    if (body_len != 0)
        memcpy(p, body, body_len), p += body_len;
    call->reqlen = p - call->reqbuf;

    struct upconn *c = conn_take_idle(up, loop);
    if (c != NULL) {
        call->conn = c;
        call_send(call);
    } else {
        call_connect(call);
    }
    return call;
}

void ch2o_call_cancel(ch2o_call_t *call)
{
    if (call == NULL)
        return;
    call_detach_conn(call, 0);
    call_free(call);
}

int ch2o_call_ending(const ch2o_call_t *call) { return call != NULL && call->ending; }

void ch2o_call_pause(ch2o_call_t *call, int paused)
{
    if (call == NULL || call->state != CALL_BODY || call->conn == NULL || call->conn->sock == NULL || call->paused == !!paused)
        return;
    call->paused = !!paused;
    if (call->paused) {
        /* the upstream's unread bytes wait in the kernel: its TCP window closes and it stops sending */
        h2o_socket_read_stop(call->conn->sock);
        ch2o_deadline_unlink(&call->timeout_entry);
    } else {
        h2o_socket_read_start(call->conn->sock, on_read);
        rearm_timeout(call);
    }
}

int ch2o_call_is_connecting(const ch2o_call_t *call)
{
    return call != NULL && call->state == CALL_CONNECTING;
}
