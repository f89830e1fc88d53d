#define _GNU_SOURCE
/* The server: N loop threads, each with its own SO_REUSEPORT listeners; requests handed to Swift; whole and
 * streamed responses; the HTTP/1 client-disconnect watchdog; graceful shutdown. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "internal.h"

struct listener_handler {
    h2o_handler_t super;
    struct ch2o_server *srv;
    int tag;
};

struct loop_listener {
    h2o_accept_ctx_t accept;
    ch2o_loop_t *loop;
    struct ch2o_listener_spec *spec;
};

#define WATCHDOG_MS 250

static int on_req(h2o_handler_t *self, h2o_req_t *req);

ch2o_server_t *ch2o_server_create(const ch2o_server_config_t *cfg, ch2o_request_cb on_request, ch2o_event_cb on_event,
                                  void *server_ctx, char *err, size_t errlen)
{
    ch2o_server_t *srv = calloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    srv->on_request = on_request;
    srv->on_event = on_event;
    srv->ctx = server_ctx;
    srv->num_threads = cfg->num_threads > 0 ? cfg->num_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (srv->num_threads < 1)
        srv->num_threads = 1;
    if (srv->num_threads > 256)
        srv->num_threads = 256;
    h2o_config_init(&srv->globalconf);
    const char *name = cfg->server_name != NULL && cfg->server_name[0] != '\0' ? cfg->server_name : "mindie-ms";
    srv->globalconf.server_name = h2o_strdup(NULL, name, SIZE_MAX);
    srv->globalconf.max_request_entity_size = cfg->max_request_body ? cfg->max_request_body : 1024 * 1024 * 16;
    if (cfg->idle_timeout_ms) {
        srv->globalconf.http1.req_timeout = cfg->idle_timeout_ms;
        srv->globalconf.http2.idle_timeout = cfg->idle_timeout_ms;
    }
    if (srv->cfg.max_header_bytes == 0)
        srv->cfg.max_header_bytes = 64 * 1024;
    if (srv->cfg.upstream_io_timeout_ms == 0)
        srv->cfg.upstream_io_timeout_ms = 600 * 1000;
    if (srv->cfg.graceful_timeout_ms == 0)
        srv->cfg.graceful_timeout_ms = 10 * 1000;
    return srv;
}

static int bind_one(struct ch2o_listener_spec *spec, char *err, size_t errlen)
{
    int fd = socket(spec->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ch2o_copy_err(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (spec->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&spec->addr, spec->addrlen) != 0) {
        ch2o_copy_err(err, errlen, "cannot bind port %d: %s", spec->port, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, SOMAXCONN) != 0) {
        ch2o_copy_err(err, errlen, "listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int ch2o_server_add_listener(ch2o_server_t *srv, const char *host, int port, const ch2o_tls_config_t *tls, int tag,
                             char *err, size_t errlen)
{
    if (srv->started) {
        ch2o_copy_err(err, errlen, "listeners must be added before start");
        return -1;
    }
    srv->listeners = realloc(srv->listeners, sizeof(*srv->listeners) * (srv->num_listeners + 1));
    struct ch2o_listener_spec *spec = &srv->listeners[srv->num_listeners];
    memset(spec, 0, sizeof(*spec));
    spec->tag = tag;
    spec->port = port;
    if (ch2o_resolve(host, port, &spec->addr, &spec->addrlen, err, errlen) != 0)
        return -1;
    if (tls != NULL && (spec->ssl_ctx = ch2o_ssl_server_ctx(tls, err, errlen)) == NULL)
        return -1;
    spec->fds = calloc(srv->num_threads, sizeof(int));
    for (int i = 0; i < srv->num_threads; ++i) {
        if ((spec->fds[i] = bind_one(spec, err, errlen)) < 0) {
            for (int j = 0; j < i; ++j)
                close(spec->fds[j]);
            return -1;
        }
        if (i == 0) {
            struct sockaddr_storage bound;
            socklen_t len = sizeof(bound);
            getsockname(spec->fds[0], (struct sockaddr *)&bound, &len);
            int p = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                                : ntohs(((struct sockaddr_in *)&bound)->sin_port);
            spec->port = p;
            if (spec->addr.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&spec->addr)->sin6_port = htons(p);
            else
                ((struct sockaddr_in *)&spec->addr)->sin_port = htons(p);
        }
    }
    /* each listener gets its own hostconf: h2o falls back to the first (only) entry of the accept context's
     * host list, so the handler knows which listener a request came through */
    char name[32];
    snprintf(name, sizeof(name), "listener-%d", srv->num_listeners);
    spec->hostconf = h2o_config_register_host(&srv->globalconf, h2o_iovec_init(h2o_strdup(NULL, name, SIZE_MAX).base, strlen(name)), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(spec->hostconf, "/", 0);
    struct listener_handler *h = (struct listener_handler *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->srv = srv;
    h->tag = tag;
    spec->hosts[0] = spec->hostconf;
    spec->hosts[1] = NULL;
    srv->num_listeners++;
    return spec->port;
}

/* per accepted connection, in the socket's on_close slot */
struct conn_info {
    ch2o_server_t *srv;
    uint32_t requests;
};

static void on_conn_close(void *data)
{
    struct conn_info *ci = data;
    atomic_fetch_sub(&ci->srv->num_connections, 1);
    free(ci);
}

static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 52\r\n"
                              "Connection: close\r\n\r\n{\"error\":\"too many connections\",\"error_type\":\"busy\"}";

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    struct loop_listener *ll = listener->data;
    ch2o_server_t *srv = ll->loop->server;
    for (int i = 0; i < 64; ++i) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        int fd = h2o_socket_get_fd(sock);
        if (srv->cfg.max_connections > 0 && atomic_load(&srv->num_connections) >= srv->cfg.max_connections) {
            if (ll->accept.ssl_ctx == NULL) {
                ssize_t unused = write(fd, refusal, sizeof(refusal) - 1);
                (void)unused;
                shutdown(fd, SHUT_WR);
            }
            h2o_socket_close(sock);
            continue;
        }
        ch2o_set_nodelay(fd);
        atomic_fetch_add(&srv->num_connections, 1);
        struct conn_info *ci = calloc(1, sizeof(*ci));
        ci->srv = srv;
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = ci;
        h2o_accept(&ll->accept, sock);
    }
}

/* runs on the loop's own thread, before it serves (see loop_init) */
static void server_loop_init(ch2o_loop_t *loop)
{
    ch2o_server_t *srv = loop->server;
    int t = loop->server_slot;
    loop->h2o_ctx = calloc(1, sizeof(h2o_context_t));
    h2o_context_init(loop->h2o_ctx, loop->evloop, &srv->globalconf);
    loop->num_listeners = srv->num_listeners;
    loop->listeners = calloc(srv->num_listeners, sizeof(h2o_socket_t *));
    for (int i = 0; i < srv->num_listeners; ++i) {
        struct ch2o_listener_spec *spec = &srv->listeners[i];
        struct loop_listener *ll = calloc(1, sizeof(*ll));
        ll->accept.ctx = loop->h2o_ctx;
        ll->accept.hosts = spec->hosts;
        ll->accept.ssl_ctx = spec->ssl_ctx;
        ll->loop = loop;
        ll->spec = spec;
        h2o_socket_t *sock = h2o_evloop_socket_create(loop->evloop, spec->fds[t], H2O_SOCKET_FLAG_DONT_READ);
        sock->data = ll;
        loop->listeners[i] = sock;
        h2o_socket_read_start(sock, on_accept);
    }
}

int ch2o_server_prepare(ch2o_server_t *srv, char *err, size_t errlen)
{
    if (srv->prepared)
        return 0;
    srv->prepared = 1;
    srv->loops = calloc(srv->num_threads, sizeof(*srv->loops));
    for (int t = 0; t < srv->num_threads; ++t) {
        ch2o_loop_t *loop = ch2o_loop_create();
        srv->loops[t] = loop;
        loop->server = srv;
        loop->server_slot = t;
        loop->on_init = server_loop_init;
    }
    return 0;
}

int ch2o_server_start(ch2o_server_t *srv, char *err, size_t errlen)
{
    if (ch2o_server_prepare(srv, err, errlen) != 0)
        return -1;
    srv->started = 1;
    for (int t = 0; t < srv->num_threads; ++t) {
        if (ch2o_loop_start_thread(srv->loops[t]) != 0) {
            ch2o_copy_err(err, errlen, "pthread_create failed");
            return -1;
        }
    }
    return 0;
}

int ch2o_server_num_loops(ch2o_server_t *srv) { return srv->num_threads; }
ch2o_loop_t *ch2o_server_loop(ch2o_server_t *srv, int i) { return srv->loops[i]; }
int ch2o_server_connections(ch2o_server_t *srv) { return atomic_load(&srv->num_connections); }

static void begin_shutdown(void *arg)
{
    ch2o_loop_t *loop = arg;
    for (int i = 0; i < loop->num_listeners; ++i) {
        if (loop->listeners[i] != NULL) {
            h2o_socket_read_stop(loop->listeners[i]);
            h2o_socket_close(loop->listeners[i]);
            loop->listeners[i] = NULL;
        }
    }
    h2o_context_request_shutdown(loop->h2o_ctx);
}

void ch2o_server_shutdown(ch2o_server_t *srv)
{
    if (!srv->started)
        return;
    for (int t = 0; t < srv->num_threads; ++t)
        ch2o_loop_post(srv->loops[t], begin_shutdown, srv->loops[t]);
    /* drain: wait for in-flight requests (not for idle keep-alive connections) */
    for (uint64_t waited = 0; waited < srv->cfg.graceful_timeout_ms; waited += 5) {
        if (atomic_load(&srv->inflight) == 0)
            break;
        usleep(5000);
    }
    for (int t = 0; t < srv->num_threads; ++t)
        ch2o_loop_stop_and_join(srv->loops[t]);
    srv->started = 0;
}

/* ---------------------------------------------------------------- requests */

static void on_watchdog(ch2o_deadline_t *entry);

void ch2o_req_emit(ch2o_req_t *r, int event)
{
    if (r->ctx != NULL && r->server->on_event != NULL)
        r->server->on_event(r->ctx, event);
}

static void on_req_dispose(void *p)
{
    ch2o_req_t *r = p;
    ch2o_deadline_unlink(&r->watchdog);
    if (r->state != CH2O_REQ_DONE && !r->gone) {
        r->gone = 1;
        ch2o_req_emit(r, CH2O_EV_CLIENT_GONE);
        if (r->proxy != NULL)
            ch2o_proxy_on_client_gone(r->proxy);
    }
    r->req = NULL;
    if (r->inflight != NULL)
        h2o_buffer_dispose(&r->inflight);
    if (r->pending != NULL)
        h2o_buffer_dispose(&r->pending);
    atomic_fetch_sub(&r->server->inflight, 1);
    ch2o_req_emit(r, CH2O_EV_DISPOSED);
    r->ctx = NULL;
}

static size_t header_bytes(h2o_req_t *req)
{
    size_t total = req->path.len;
    for (size_t i = 0; i < req->headers.size; ++i)
        total += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return total;
}

static void respond_json(h2o_req_t *req, int status, const char *body)
{
    static h2o_generator_t generator = {NULL, NULL};
    req->res.status = status;
    req->res.reason = ch2o_reason_phrase(status);
    size_t len = strlen(body);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_iovec_t buf = h2o_strdup(&req->pool, body, len);
    h2o_start_response(req, &generator);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct listener_handler *h = (struct listener_handler *)self;
    ch2o_server_t *srv = h->srv;
    size_t hb = header_bytes(req);
    if (hb > srv->cfg.max_header_bytes) {
        char body[160];
        snprintf(body, sizeof(body), "{\"error\":\"request headers are %zu bytes, over the limit of %zu bytes\",\"status\":431}", hb,
                 srv->cfg.max_header_bytes);
        respond_json(req, 431, body);
        return 0;
    }
    if (srv->cfg.max_requests_per_connection != 0) {
        h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
        if (sock != NULL && sock->on_close.cb == on_conn_close) {
            struct conn_info *ci = sock->on_close.data;
            if (++ci->requests > srv->cfg.max_requests_per_connection) {
                char body[128];
                snprintf(body, sizeof(body), "{\"error\":\"Connection request out of limit, max is %u\",\"code\":429}",
                         srv->cfg.max_requests_per_connection);
                req->http1_is_persistent = 0;
                respond_json(req, 429, body);
                return 0;
            }
        }
    }
    ch2o_req_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_req_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->server = srv;
    r->loop = ch2o_loop_current();
    r->tag = h->tag;
    r->watchdog.cb = on_watchdog;
    atomic_fetch_add(&srv->inflight, 1);
    r->in_handler = 1;
    srv->on_request(srv->ctx, r);
    r->in_handler = 0;
    if (r->req != NULL && r->state == CH2O_REQ_FRESH && req->version < 0x200 && !r->gone)
        ch2o_deadline_link(r->loop, &r->watchdog, WATCHDOG_MS);
    return 0;
}

void ch2o_req_set_ctx(ch2o_req_t *r, void *ctx) { r->ctx = ctx; }
int ch2o_req_listener_tag(ch2o_req_t *r) { return r->tag; }
ch2o_loop_t *ch2o_req_loop(ch2o_req_t *r) { return r->loop; }

const char *ch2o_req_method(ch2o_req_t *r, size_t *len)
{
    *len = r->req->method.len;
    return r->req->method.base;
}

const char *ch2o_req_path(ch2o_req_t *r, size_t *len)
{
    *len = r->req->path.len;
    return r->req->path.base;
}

size_t ch2o_req_query_at(ch2o_req_t *r) { return r->req->query_at; }
size_t ch2o_req_num_headers(ch2o_req_t *r) { return r->req->headers.size; }

void ch2o_req_header_at(ch2o_req_t *r, size_t i, ch2o_header_t *out)
{
    h2o_header_t *h = &r->req->headers.entries[i];
    out->name = h->name->base;
    out->name_len = h->name->len;
    out->value = h->value.base;
    out->value_len = h->value.len;
}

const void *ch2o_req_body(ch2o_req_t *r, size_t *len)
{
    *len = r->req->entity.base != NULL ? r->req->entity.len : 0;
    return r->req->entity.base;
}

int ch2o_req_http_version(ch2o_req_t *r) { return r->req->version; }

int ch2o_req_is_tls(ch2o_req_t *r)
{
    h2o_socket_t *sock = r->req->conn->callbacks->get_socket != NULL ? r->req->conn->callbacks->get_socket(r->req->conn) : NULL;
    return sock != NULL && sock->ssl != NULL;
}

static int is_hop_by_hop(const char *name, size_t len)
{
    /* hop-by-hop headers, and those h2o sets itself (date, server) */
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
                                        "te", "content-length", "trailer", "http2-settings", "date", "server"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return 1;
    return 0;
}

static void add_response_headers(h2o_req_t *req, const ch2o_header_t *headers, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        if (headers[i].name_len == 10 && strncasecmp(headers[i].name, "connection", 10) == 0 && headers[i].value_len >= 5 &&
            strncasecmp(headers[i].value, "close", 5) == 0) {
            /* the handler wants this HTTP/1 connection closed after the reply; h2o then says so itself */
            req->http1_is_persistent = 0;
            continue;
        }
        if (is_hop_by_hop(headers[i].name, headers[i].name_len))
            continue;
        h2o_iovec_t name = h2o_strdup(&req->pool, headers[i].name, headers[i].name_len);
        h2o_strtolower(name.base, name.len);
        h2o_iovec_t value = h2o_strdup(&req->pool, headers[i].value, headers[i].value_len);
        h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 1, NULL, value.base, value.len);
    }
}

static void unlink_watchdog(ch2o_req_t *r)
{
    ch2o_deadline_unlink(&r->watchdog);
}

void ch2o_req_respond(ch2o_req_t *r, int status, const ch2o_header_t *headers, size_t n, const void *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};
    if (r->req == NULL || r->state != CH2O_REQ_FRESH)
        return;
    h2o_req_t *req = r->req;
    unlink_watchdog(r);
    r->state = CH2O_REQ_DONE;
    req->res.status = status;
    req->res.reason = ch2o_reason_phrase(status);
    req->res.content_length = len;
    add_response_headers(req, headers, n);
    h2o_iovec_t buf = h2o_iovec_init(NULL, 0);
    if (len != 0) {
        buf.base = h2o_mem_alloc_pool(&req->pool, len);
        memcpy(buf.base, body, len);
        buf.len = len;
    }
    h2o_start_response(req, &generator);
    h2o_send(req, &buf, len != 0 ? 1 : 0, H2O_SEND_STATE_FINAL);
}

static void flush(ch2o_req_t *r)
{
    h2o_buffer_t *t = r->inflight;
    r->inflight = r->pending;
    r->pending = t;
    if (r->pending->size != 0)
        h2o_buffer_consume(&r->pending, r->pending->size);
    h2o_iovec_t buf = h2o_iovec_init(r->inflight->bytes, r->inflight->size);
    h2o_send_state_t st = r->pending_error ? H2O_SEND_STATE_ERROR
                          : r->pending_final ? H2O_SEND_STATE_FINAL
                                             : H2O_SEND_STATE_IN_PROGRESS;
    if (st != H2O_SEND_STATE_IN_PROGRESS) {
        r->state = CH2O_REQ_DONE;
        unlink_watchdog(r);
    }
    r->sending = 1;
    r->head_sent = 1;
    h2o_send(r->req, &buf, buf.len != 0 ? 1 : 0, st);
}

static void on_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    ch2o_req_t *r = H2O_STRUCT_FROM_MEMBER(ch2o_req_t, generator, self);
    r->sending = 0;
    if (r->inflight->size != 0)
        h2o_buffer_consume(&r->inflight, r->inflight->size);
    if (r->state == CH2O_REQ_STREAMING && (r->pending->size != 0 || r->pending_final || r->pending_error))
        flush(r);
}

void ch2o_req_client_gone(ch2o_req_t *r)
{
    if (r->gone || r->req == NULL || r->state == CH2O_REQ_DONE)
        return;
    r->gone = 1;
    unlink_watchdog(r);
    ch2o_req_emit(r, CH2O_EV_CLIENT_GONE);
    if (r->proxy != NULL)
        ch2o_proxy_on_client_gone(r->proxy);
    if (r->req == NULL)
        return;
    /* end the exchange so that h2o writes, sees the dead socket and disposes the request */
    if (r->state == CH2O_REQ_FRESH) {
        r->gone = 0; /* let respond() run */
        ch2o_req_respond(r, 499, NULL, 0, "client closed request", 21);
        r->gone = 1;
    } else if (r->state == CH2O_REQ_STREAMING) {
        r->pending_error = 1;
        if (!r->sending)
            flush(r);
    }
}

static void on_stop(h2o_generator_t *self, h2o_req_t *req)
{
    ch2o_req_t *r = H2O_STRUCT_FROM_MEMBER(ch2o_req_t, generator, self);
    unlink_watchdog(r);
    if (!r->gone && r->state != CH2O_REQ_DONE) {
        r->gone = 1;
        r->state = CH2O_REQ_DONE; /* h2o no longer accepts sends for this request */
        ch2o_req_emit(r, CH2O_EV_CLIENT_GONE);
        if (r->proxy != NULL)
            ch2o_proxy_on_client_gone(r->proxy);
    }
    r->state = CH2O_REQ_DONE;
}

static void on_watchdog(ch2o_deadline_t *entry)
{
    ch2o_req_t *r = H2O_STRUCT_FROM_MEMBER(ch2o_req_t, watchdog, entry);
    if (r->req == NULL || r->state == CH2O_REQ_DONE || r->gone)
        return;
    h2o_socket_t *sock = r->req->conn->callbacks->get_socket != NULL ? r->req->conn->callbacks->get_socket(r->req->conn) : NULL;
    if (sock != NULL) {
        struct pollfd pfd = {.fd = h2o_socket_get_fd(sock), .events = POLLRDHUP};
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
            ch2o_req_client_gone(r);
            return;
        }
    }
    ch2o_deadline_link(r->loop, &r->watchdog, WATCHDOG_MS);
}

void ch2o_req_stream_start(ch2o_req_t *r, int status, const ch2o_header_t *headers, size_t n)
{
    ch2o_req_stream_start_len(r, status, headers, n, SIZE_MAX, 1);
}

void ch2o_req_stream_flush_head(ch2o_req_t *r)
{
    /* an empty in-progress send after the head would never be followed by proceed (nothing to write) */
    if (r->req != NULL && r->state == CH2O_REQ_STREAMING && !r->sending && !r->head_sent)
        flush(r);
}

void ch2o_req_stream_start_len(ch2o_req_t *r, int status, const ch2o_header_t *headers, size_t n, size_t content_length,
                               int flush_head)
{
    if (r->req == NULL || r->state != CH2O_REQ_FRESH)
        return;
    h2o_req_t *req = r->req;
    r->state = CH2O_REQ_STREAMING;
    req->res.status = status;
    req->res.reason = ch2o_reason_phrase(status);
    req->res.content_length = content_length;
    add_response_headers(req, headers, n);
    h2o_buffer_init(&r->inflight, &h2o_socket_buffer_prototype);
    h2o_buffer_init(&r->pending, &h2o_socket_buffer_prototype);
    r->generator.proceed = on_proceed;
    r->generator.stop = on_stop;
    h2o_start_response(req, &r->generator);
    if (flush_head)
        flush(r); /* the head goes out now; otherwise with the first bytes */
    if (req->version < 0x200 && !ch2o_deadline_is_linked(&r->watchdog))
        ch2o_deadline_link(r->loop, &r->watchdog, WATCHDOG_MS);
}

void ch2o_req_stream_write(ch2o_req_t *r, const void *data, size_t len)
{
    if (r->req == NULL || r->state != CH2O_REQ_STREAMING || len == 0)
        return;
    h2o_iovec_t dst = h2o_buffer_reserve(&r->pending, len);
    memcpy(dst.base, data, len);
    r->pending->size += len;
    if (!r->sending)
        flush(r);
}

size_t ch2o_req_stream_pending(ch2o_req_t *r)
{
    if (r->req == NULL || r->state != CH2O_REQ_STREAMING)
        return 0;
    return r->pending->size + r->inflight->size;
}

void ch2o_req_stream_end(ch2o_req_t *r)
{
    if (r->req == NULL || r->state != CH2O_REQ_STREAMING)
        return;
    r->pending_final = 1;
    if (!r->sending)
        flush(r);
}

void ch2o_req_stream_abort(ch2o_req_t *r)
{
    if (r->req == NULL || r->state != CH2O_REQ_STREAMING)
        return;
    r->pending_error = 1;
    if (!r->sending)
        flush(r);
}
