#define _GNU_SOURCE
/* The server: N loop threads sharing one listening socket per listener; requests handed to Swift; whole and
 * streamed responses; the HTTP/1 client-disconnect watchdog; graceful shutdown; the guards h2o 2.2.5 lacks
 * (request smuggling, header floods, fd exhaustion, HTTP/2 rapid reset). */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <time.h>
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
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
    /* no SO_REUSEPORT: a second process on the same port must fail to bind, not silently take half the traffic;
     * our own loops share this one socket (dup'ed per loop) */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (spec->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&spec->addr, spec->addrlen) != 0) {
        if (errno == EADDRINUSE)
            ch2o_copy_err(err, errlen, "cannot bind port %d: %s (another process, or another listener of this one, "
                          "already listens on it)", spec->port, strerror(errno));
        else
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
    return ch2o_server_add_listener_opts(srv, host, port, tls, tag, NULL, err, errlen);
}

int ch2o_server_add_listener_opts(ch2o_server_t *srv, const char *host, int port, const ch2o_tls_config_t *tls, int tag,
                                  const ch2o_listener_options_t *opts, char *err, size_t errlen)
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
    spec->max_connections = opts != NULL && opts->max_connections != 0 ? opts->max_connections : srv->cfg.max_connections;
    spec->fds = calloc(srv->num_threads, sizeof(int));
    if ((spec->fds[0] = bind_one(spec, err, errlen)) < 0)
        return -1;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(spec->fds[0], (struct sockaddr *)&bound, &blen);
    int p = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    spec->port = p;
    if (spec->addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&spec->addr)->sin6_port = htons(p);
    else
        ((struct sockaddr_in *)&spec->addr)->sin_port = htons(p);
    /* one accept queue, one fd per loop: each loop closes its own at shutdown without pulling the socket from
     * under the others */
    for (int i = 1; i < srv->num_threads; ++i) {
        if ((spec->fds[i] = fcntl(spec->fds[0], F_DUPFD_CLOEXEC, 0)) < 0) {
            ch2o_copy_err(err, errlen, "dup of the listening socket: %s", strerror(errno));
            for (int j = 0; j < i; ++j)
                close(spec->fds[j]);
            return -1;
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

/* ---------------------------------------------------------------- notices */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* at most one notice per 5 s per server: an attack must not turn into a log flood */
static void notice(ch2o_server_t *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(ch2o_server_t *srv, const char *fmt, ...)
{
    uint64_t now = mono_ms(), last = atomic_load(&srv->last_notice_ms);
    if ((last != 0 && now - last < 5000) || !atomic_compare_exchange_strong(&srv->last_notice_ms, &last, now)) {
        atomic_fetch_add(&srv->suppressed_notices, 1);
        return;
    }
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint64_t suppressed = atomic_exchange(&srv->suppressed_notices, 0);
    if (suppressed != 0 && n > 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - n, " (%llu similar notices suppressed)", (unsigned long long)suppressed);
    if (srv->on_notice != NULL)
        srv->on_notice(srv->notice_ctx, msg);
    else
        fprintf(stderr, "ch2o: %s\n", msg);
}

void ch2o_server_set_notice_cb(ch2o_server_t *srv, ch2o_notice_cb cb, void *ctx)
{
    srv->on_notice = cb;
    srv->notice_ctx = ctx;
}

/* ---------------------------------------------------------------- connections */

/* per accepted connection, in the socket's on_close slot */
struct conn_info {
    h2o_linklist_t link; /* in its loop's server_conns */
    h2o_socket_t *sock;
    ch2o_server_t *srv;
    struct ch2o_listener_spec *spec;
    ch2o_loop_t *loop;
    uint32_t requests;
    h2o_socket_cb inner_read; /* h2o's read callback, which ours wraps */
    unsigned in_read : 1;
    unsigned closed : 1; /* the socket closed inside the read callback: freed when it returns */
    int drain_fd;        /* 1 + a dup of the socket to drain after h2o's 413 (0: none); set inside the read callback */
    /* HTTP/2 rapid reset (CVE-2023-44487): a token bucket of RST_STREAMs */
    double reset_tokens;
    uint64_t reset_at;
};

static void on_conn_close(void *data)
{
    struct conn_info *ci = data;
    if (h2o_linklist_is_linked(&ci->link))
        h2o_linklist_unlink(&ci->link);
    atomic_fetch_sub(&ci->srv->num_connections, 1);
    atomic_fetch_sub(&ci->spec->num_connections, 1);
    if (ci->in_read)
        ci->closed = 1;
    else
        free(ci);
}

/* ------------------------------------------------ hooks into libh2o (ELF symbol interposition)
 *
 * h2o 2.2.5 parses HTTP/1 heads and HTTP/2 frames inside the library and offers no hook before it acts on them,
 * and we can't patch it (Debian's shared library). Two of its exported functions are called through the PLT from
 * inside the library, so a definition in our executable takes precedence:
 *  - h2o_socket_read_start: every (re)arming of a read callback on our accepted sockets goes through here, which
 *    lets us wrap h2o's callback: we see each batch of bytes before h2o parses it (HTTP/1 head limits) and know
 *    which connection the frames being parsed belong to;
 *  - h2o_http2_decode_rst_stream_payload: called for every RST_STREAM a client sends; returning an h2o error code
 *    makes h2o answer GOAWAY with it and close the connection.
 * The real functions are found with dlsym(RTLD_NEXT). */

typedef void (*read_start_fn)(h2o_socket_t *sock, h2o_socket_cb cb);
typedef void (*send_error_fn)(h2o_req_t *req, int status, const char *reason, const char *body, int flags);
static send_error_fn real_send_error;
typedef int (*decode_rst_fn)(void *payload, const void *frame, const char **err_desc);
static read_start_fn real_read_start;
static decode_rst_fn real_decode_rst;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;
static void find_real(void)
{
    real_read_start = (read_start_fn)dlsym(RTLD_NEXT, "h2o_socket_read_start");
    real_decode_rst = (decode_rst_fn)dlsym(RTLD_NEXT, "h2o_http2_decode_rst_stream_payload");
    real_send_error = (send_error_fn)dlsym(RTLD_NEXT, "h2o_send_error_generic");
}

/* h2o's HTTP/1 request reader (static in lib/http1.c), learnt from the first plain connection */
static _Atomic(h2o_socket_cb) h1_reqread;
/* the connection whose bytes the loop thread is parsing now */
static __thread struct conn_info *reading_ci;
/* HTTP/2 requests completed by the bytes being parsed now; dispatched once the whole read is parsed */
static __thread h2o_linklist_t deferred_reqs;
static __thread int deferred_init;

static void on_server_read(h2o_socket_t *sock, const char *err);

void h2o_socket_read_start(h2o_socket_t *sock, h2o_socket_cb cb)
{
    pthread_once(&real_once, find_real);
    if (sock->on_close.cb == on_conn_close && cb != on_server_read) {
        struct conn_info *ci = sock->on_close.data;
        ci->inner_read = cb;
        cb = on_server_read;
    }
    real_read_start(sock, cb);
}

/* HTTP/1 heads arrive at the start of the socket's input buffer: h2o consumes a request's bytes only after its
 * response (and decodes a chunked body in place, after the head) */
struct h1_head {
    const char *method, *path;
    size_t method_len, path_len;
    int minor_version;
    struct phr_header headers[H2O_MAX_HEADERS];
    size_t num_headers;
};
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers, size_t last_len);

static int parse_h1_head(h2o_socket_t *sock, struct h1_head *h)
{
    if (sock->input == NULL || sock->input->size == 0)
        return -2;
    size_t len = sock->input->size < H2O_MAX_REQLEN ? sock->input->size : H2O_MAX_REQLEN;
    h->num_headers = H2O_MAX_HEADERS;
    return phr_parse_request(sock->input->bytes, len, &h->method, &h->method_len, &h->path, &h->path_len, &h->minor_version,
                             h->headers, &h->num_headers, 0);
}

static size_t count_header_lines(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i + 1 < len; ++i) {
        if (p[i] == '\r' && p[i + 1] == '\n') {
            if (i + 3 < len && p[i + 2] == '\r' && p[i + 3] == '\n')
                break;
            ++n;
        }
    }
    return n; /* the request line's CRLF included: a close enough count of header fields */
}

struct lingering {
    h2o_socket_t *sock;
    ch2o_timer_t *timer;
    size_t drained;
    size_t cap;   /* bytes drained before giving up (then the close resets) */
    int idle;     /* 1: the timer restarts on every read (a large body still on its way) */
    ch2o_loop_t *loop;
};

static void linger_close(struct lingering *l)
{
    h2o_socket_close(l->sock);
    free(l);
}

static void on_linger_timeout(void *arg)
{
    struct lingering *l = arg;
    l->timer = NULL;
    linger_close(l);
}

static void on_linger_read(h2o_socket_t *sock, const char *err)
{
    struct lingering *l = sock->data;
    if (err == NULL) {
        l->drained += sock->input->size;
        h2o_buffer_consume(&sock->input, sock->input->size);
        if (l->drained < l->cap) {
            if (l->idle && l->timer != NULL) {
                ch2o_timer_cancel(l->timer);
                l->timer = ch2o_timer_start(l->loop, 2000, on_linger_timeout, l);
            }
            return;
        }
    }
    if (l->timer != NULL)
        ch2o_timer_cancel(l->timer);
    linger_close(l);
}

/* Reads and discards what a refused client still sends on `fd` (a dup of its socket), until it stops sending or
 * `cap` bytes: the kernel holds the connection open while the dup lives, so h2o's close of its own descriptor does
 * not reset it and the client, still writing its request, gets to read the reply. */
static void start_draining(ch2o_loop_t *loop, int fd, size_t cap, int idle)
{
    struct lingering *l = calloc(1, sizeof(*l));
    l->loop = loop;
    l->cap = cap;
    l->idle = idle;
    l->sock = h2o_evloop_socket_create(loop->evloop, fd, 0);
    l->sock->data = l;
    h2o_socket_read_start(l->sock, on_linger_read);
    l->timer = ch2o_timer_start(loop, 2000, on_linger_timeout, l);
}

/* Answer a plain HTTP/1 connection that h2o is still reading a request from, then let h2o drop it. The reply is
 * written on a dup of the socket, which we keep reading (and discarding) for a while: closing a socket with unread
 * input makes the kernel send RST, and the client would lose the reply. */
static void refuse_h1_in_read(h2o_socket_t *sock, struct conn_info *ci, int status, const char *error)
{
    if (sock->ssl == NULL) {
        char body[256], head[512];
        int blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}", error, status);
        int hlen = snprintf(head, sizeof(head),
                            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                            status, ch2o_reason_phrase(status), blen, body);
        int fd = h2o_socket_get_fd(sock);
        ssize_t unused = write(fd, head, hlen);
        (void)unused;
        shutdown(fd, SHUT_WR);
        int lfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (lfd >= 0)
            start_draining(ci->loop, lfd, 16 * 1024 * 1024, 0);
    }
    /* h2o's reader closes its connection on an error (TLS peers just see the close) */
    ci->inner_read(sock, "request refused");
}

/* 1 when the bytes read so far already break a limit (and the connection was answered) */
static int h1_check_head(h2o_socket_t *sock, struct conn_info *ci, int r)
{
    if (r > 0 || sock->input == NULL)
        return 0;
    const char *buf = sock->input->bytes;
    size_t size = sock->input->size;
    if (r == -2) {
        /* h2o waits up to ~400 KB and then answers 400; a head is not allowed to grow past our limit */
        if (size > ci->srv->cfg.max_header_bytes + 8192) {
            char msg[128];
            snprintf(msg, sizeof(msg), "request headers are over the limit of %zu bytes", ci->srv->cfg.max_header_bytes);
            refuse_h1_in_read(sock, ci, 431, msg);
            return 1;
        }
        return 0;
    }
    /* a parse error: h2o answers 400 itself, except for the HTTP/2 preface, which it switches on; but too many
     * header fields is 431 (RFC 6585) */
    if (size >= 3 && memcmp(buf, "PRI", 3) == 0)
        return 0;
    if (count_header_lines(buf, size) > H2O_MAX_HEADERS) {
        refuse_h1_in_read(sock, ci, 431, "request has more than " H2O_TO_STR(H2O_MAX_HEADERS) " header fields");
        return 1;
    }
    return 0;
}

/* The start of h2o's HTTP/1 connection (lib/http1.c, 2.2.5), to read the chunked decoder's state: a chunk size
 * announced beyond the body limit is refused at once instead of waited for. */
struct h1_conn_prefix {
    h2o_conn_t super;
    h2o_socket_t *sock;
    h2o_linklist_t _conns;
    h2o_timeout_t *_timeout;
    h2o_timeout_entry_t _timeout_entry;
    uint64_t _req_index;
    size_t _prevreqlen;
    size_t _reqsize;
    struct {
        void (*handle_incoming_entity)(void *conn);
        struct phr_chunked_decoder decoder; /* only in the chunked reader */
    } * _req_entity_reader;
};

static int head_is_chunked(const struct h1_head *h)
{
    for (size_t i = 0; i < h->num_headers; ++i)
        if (h->headers[i].name_len == 17 && strncasecmp(h->headers[i].name, "transfer-encoding", 17) == 0)
            return 1;
    return 0;
}

static int h1_check_chunk(h2o_socket_t *sock, struct conn_info *ci)
{
    struct h1_conn_prefix *conn = sock->data;
    if (conn == NULL || conn->sock != sock || conn->_req_entity_reader == NULL)
        return 0;
    struct h1_head h;
    if (parse_h1_head(sock, &h) <= 0 || !head_is_chunked(&h))
        return 0;
    size_t left = conn->_req_entity_reader->decoder.bytes_left_in_chunk;
    size_t limit = ci->srv->globalconf.max_request_entity_size;
    if (left > limit) {
        char msg[160];
        snprintf(msg, sizeof(msg), "a chunk of %zu bytes is over the body limit of %zu bytes", left, limit);
        refuse_h1_in_read(sock, ci, 413, msg);
        return 1;
    }
    return 0;
}

/* The Content-Length of a parsed head: -1 when absent, -2 when there is more than one or it is not a number */
static long long head_content_length(const struct h1_head *h)
{
    long long cl = -1;
    for (size_t i = 0; i < h->num_headers; ++i) {
        if (h->headers[i].name_len != 14 || strncasecmp(h->headers[i].name, "content-length", 14) != 0)
            continue;
        if (cl != -1 || h->headers[i].value_len == 0 || h->headers[i].value_len > 15)
            return -2;
        cl = 0;
        for (size_t k = 0; k < h->headers[i].value_len; ++k) {
            char c = h->headers[i].value[k];
            if (c < '0' || c > '9')
                return -2;
            cl = cl * 10 + (c - '0');
        }
    }
    return cl;
}

/* h2o keeps a request's bytes (head and a Content-Length body) in the socket's input buffer until the response is
 * complete, and that buffer was allocated for a read (8 kB, one touched page and a 10 kB jemalloc region): a
 * streamed response holds it for minutes. When the buffer holds exactly one whole request, it moves here to a
 * buffer of its size before h2o parses it, so that h2o's pointers into it (path, headers, body) are into the copy.
 * h2o does not read the socket again until the response is done (then it consumes the request, which frees the
 * copy: its capacity is not the prototype's), so nothing is appended to the copy while those pointers live.
 * Plain connections only: a TLS socket's input is refilled by the TLS layer. */
static void h1_compact_input(h2o_socket_t *sock, const struct h1_head *h, int head_len)
{
    h2o_buffer_t *in = sock->input;
    if (sock->ssl != NULL || in == NULL || in->bytes == NULL || in->_fd != -1 || head_is_chunked(h))
        return;
    long long cl = head_content_length(h);
    if (cl == -2)
        return;
    size_t need = (size_t)head_len + (cl > 0 ? (size_t)cl : 0);
    if (in->size != need || offsetof(h2o_buffer_t, _buf) + need > in->capacity / 2)
        return;
    h2o_buffer_t *copy = malloc(offsetof(h2o_buffer_t, _buf) + need);
    if (copy == NULL)
        return;
    copy->capacity = need;
    copy->size = need;
    copy->bytes = copy->_buf;
    copy->_prototype = in->_prototype;
    copy->_fd = -1;
    memcpy(copy->_buf, in->bytes, need);
    h2o_buffer_dispose(&sock->input);
    sock->input = copy;
}

static void dispatch(ch2o_req_t *r);

static void flush_deferred(void)
{
    while (deferred_init && !h2o_linklist_is_empty(&deferred_reqs)) {
        ch2o_req_t *r = H2O_STRUCT_FROM_MEMBER(ch2o_req_t, deferred, deferred_reqs.next);
        h2o_linklist_unlink(&r->deferred);
        dispatch(r);
    }
}

static void on_server_read(h2o_socket_t *sock, const char *err)
{
    struct conn_info *ci = sock->on_close.data;
    h2o_socket_cb inner = ci->inner_read;
    int h1 = inner == atomic_load_explicit(&h1_reqread, memory_order_relaxed);
    struct conn_info *outer = reading_ci;
    reading_ci = ci;
    ci->in_read = 1;
    int refused = 0;
    if (err == NULL && h1) {
        struct h1_head h;
        int r = parse_h1_head(sock, &h);
        refused = h1_check_head(sock, ci, r);
        if (!refused && r > 0)
            h1_compact_input(sock, &h, r);
    }
    if (!refused) {
        inner(sock, err);
        if (!ci->closed && err == NULL && h1 && ci->inner_read == inner)
            h1_check_chunk(sock, ci);
    }
    ci->in_read = 0;
    reading_ci = outer;
    if (ci->drain_fd != 0) {
        start_draining(ci->loop, ci->drain_fd - 1, (size_t)1 << 30, 1);
        ci->drain_fd = 0;
    }
    if (ci->closed)
        free(ci);
    if (outer == NULL)
        flush_deferred();
}

static uint32_t reset_budget(ch2o_server_t *srv) { return srv->cfg.max_stream_resets != 0 ? srv->cfg.max_stream_resets : 200; }

int h2o_http2_decode_rst_stream_payload(void *payload, const void *frame, const char **err_desc)
{
    pthread_once(&real_once, find_real);
    int ret = real_decode_rst(payload, frame, err_desc);
    struct conn_info *ci = reading_ci;
    if (ret != 0 || ci == NULL)
        return ret;
    uint32_t burst = reset_budget(ci->srv);
    uint64_t now = h2o_now(ci->loop->evloop);
    if (ci->reset_at == 0) {
        ci->reset_tokens = burst;
    } else {
        ci->reset_tokens += (double)(now - ci->reset_at) * burst / 10000.0;
        if (ci->reset_tokens > burst)
            ci->reset_tokens = burst;
    }
    ci->reset_at = now;
    if (ci->reset_tokens < 1) {
        *err_desc = "too many stream resets";
        notice(ci->srv, "closed an HTTP/2 connection on port %d: it reset streams faster than %u per 10 s (GOAWAY "
                        "ENHANCE_YOUR_CALM)", ci->spec->port, burst);
        return H2O_HTTP2_ERROR_ENHANCE_YOUR_CALM;
    }
    ci->reset_tokens -= 1;
    return 0;
}

/* h2o answers a body over max_request_entity_size with 413 "request entity is too large" and closes the connection
 * while the client is still sending: the close of a socket with unread input resets it, and the client (over TLS
 * always, since refuse_h1_in_read cannot write there) never reads the 413. Here the reply names the limit, and a
 * dup of the socket keeps draining the body after h2o closes (started once h2o's read callback returns). */
void h2o_send_error_generic(h2o_req_t *req, int status, const char *reason, const char *body, int flags)
{
    pthread_once(&real_once, find_real);
    struct conn_info *ci = reading_ci;
    char msg[160];
    if (status == 413 && ci != NULL && (flags & H2O_SEND_ERROR_HTTP1_CLOSE_CONNECTION) != 0) {
        snprintf(msg, sizeof(msg), "request body is over the limit of %zu bytes\n", ci->srv->globalconf.max_request_entity_size);
        body = msg;
        if (ci->drain_fd == 0) {
            int fd = fcntl(h2o_socket_get_fd(ci->sock), F_DUPFD_CLOEXEC, 0);
            if (fd >= 0)
                ci->drain_fd = fd + 1;
        }
    }
    real_send_error(req, status, reason, body, flags);
}

/* ---------------------------------------------------------------- accepting */

struct accept_state {
    ch2o_loop_t *loop;
    ch2o_timer_t *resume;
    int paused;
};

struct loop_listener {
    h2o_accept_ctx_t accept;
    ch2o_loop_t *loop;
    struct ch2o_listener_spec *spec;
    struct accept_state *state;
    h2o_socket_t *sock;
};

static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 52\r\n"
                              "Connection: close\r\n\r\n{\"error\":\"too many connections\",\"error_type\":\"busy\"}";
static const char no_fds[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 67\r\n"
                             "Connection: close\r\n\r\n{\"error\":\"server is out of file descriptors\",\"error_type\":\"busy\"}";

static void on_accept(h2o_socket_t *listener, const char *err);

static void resume_accepting(void *arg)
{
    struct accept_state *st = arg;
    st->resume = NULL;
    st->paused = 0;
    ch2o_loop_t *loop = st->loop;
    for (int i = 0; i < loop->num_listeners; ++i)
        if (loop->listeners[i] != NULL)
            h2o_socket_read_start(loop->listeners[i], on_accept);
}

/* Out of descriptors: the pending connection stays in the backlog and the listener stays readable, so h2o's loop
 * would spin on it. Answer one client with the reserved descriptor, then stop polling the listeners for a while. */
static void on_out_of_fds(struct loop_listener *ll, int error)
{
    ch2o_server_t *srv = ll->loop->server;
    int reserve = atomic_exchange(&srv->reserve_fd, -1);
    if (reserve >= 0) {
        close(reserve);
        int fd = accept4(h2o_socket_get_fd(ll->sock), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (ll->accept.ssl_ctx == NULL) {
                ssize_t unused = write(fd, no_fds, sizeof(no_fds) - 1);
                (void)unused;
            }
            close(fd);
        }
        atomic_store(&srv->reserve_fd, open("/dev/null", O_RDONLY | O_CLOEXEC));
    }
    struct accept_state *st = ll->state;
    if (!st->paused) {
        st->paused = 1;
        ch2o_loop_t *loop = ll->loop;
        for (int i = 0; i < loop->num_listeners; ++i)
            if (loop->listeners[i] != NULL)
                h2o_socket_read_stop(loop->listeners[i]);
        st->resume = ch2o_timer_start(loop, 100, resume_accepting, st);
    }
    notice(srv, "accept on port %d failed: %s; accepting paused for 100 ms (%d connections open)", ll->spec->port,
           strerror(error), atomic_load(&srv->num_connections));
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    struct loop_listener *ll = listener->data;
    ch2o_server_t *srv = ll->loop->server;
    struct ch2o_listener_spec *spec = ll->spec;
    for (int i = 0; i < 64; ++i) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL) {
            int e = errno;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
                on_out_of_fds(ll, e);
            return;
        }
        int fd = h2o_socket_get_fd(sock);
        if (spec->max_connections > 0 && atomic_load(&spec->num_connections) >= spec->max_connections) {
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
        atomic_fetch_add(&spec->num_connections, 1);
        struct conn_info *ci = calloc(1, sizeof(*ci));
        ci->srv = srv;
        ci->spec = spec;
        ci->loop = ll->loop;
        ci->sock = sock;
        h2o_linklist_insert(&ll->loop->server_conns, &ci->link);
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = ci;
        h2o_accept(&ll->accept, sock);
        if (ll->accept.ssl_ctx == NULL && atomic_load_explicit(&h1_reqread, memory_order_relaxed) == NULL &&
            sock->on_close.data == ci && ci->inner_read != NULL)
            atomic_store(&h1_reqread, ci->inner_read);
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
    h2o_linklist_init_anchor(&loop->server_conns);
    struct accept_state *st = calloc(1, sizeof(*st));
    st->loop = loop;
    if (!deferred_init) {
        h2o_linklist_init_anchor(&deferred_reqs);
        deferred_init = 1;
    }
    for (int i = 0; i < srv->num_listeners; ++i) {
        struct ch2o_listener_spec *spec = &srv->listeners[i];
        struct loop_listener *ll = calloc(1, sizeof(*ll));
        ll->accept.ctx = loop->h2o_ctx;
        ll->accept.hosts = spec->hosts;
        ll->accept.ssl_ctx = spec->ssl_ctx;
        ll->loop = loop;
        ll->spec = spec;
        ll->state = st;
        h2o_socket_t *sock = h2o_evloop_socket_create(loop->evloop, spec->fds[t], H2O_SOCKET_FLAG_DONT_READ);
        sock->data = ll;
        ll->sock = sock;
        loop->listeners[i] = sock;
        h2o_socket_read_start(sock, on_accept);
    }
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 64;
    int n = 0;
    while (readdir(d) != NULL)
        ++n;
    closedir(d);
    return n - 2;
}

/* Each listener's cap is lowered to fit the descriptor limit: a connection flood on one port must leave
 * descriptors for the others and for upstream connections (a proxied request holds two). */
static void fit_caps_to_fd_limit(ch2o_server_t *srv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30))
        return;
    long budget = (long)rl.rlim_cur - count_open_fds() - 16 - 2 * srv->num_threads;
    long share = budget / 2;
    if (share < 4)
        share = 4;
    for (int i = 0; i < srv->num_listeners; ++i) {
        struct ch2o_listener_spec *spec = &srv->listeners[i];
        if (spec->max_connections <= 0 || spec->max_connections > share)
            spec->max_connections = (int)share;
    }
}

int ch2o_server_listener_max_connections(ch2o_server_t *srv, int i)
{
    return i >= 0 && i < srv->num_listeners ? srv->listeners[i].max_connections : 0;
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
    fit_caps_to_fd_limit(srv);
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
    if (loop->num_listeners > 0 && loop->listeners[0] != NULL) {
        struct accept_state *st = ((struct loop_listener *)loop->listeners[0]->data)->state;
        if (st->resume != NULL) {
            ch2o_timer_cancel(st->resume);
            st->resume = NULL;
        }
    }
    for (int i = 0; i < loop->num_listeners; ++i) {
        if (loop->listeners[i] != NULL) {
            h2o_socket_read_stop(loop->listeners[i]);
            h2o_socket_close(loop->listeners[i]);
            loop->listeners[i] = NULL;
        }
    }
    h2o_context_request_shutdown(loop->h2o_ctx);
}

/* Connections still open when the drain ends (idle keep-alive ones, h2o 2.2 has no HTTP/1 shutdown hook, and
 * requests past the grace period) would otherwise stay open with nobody reading once the loop stops: a peer that
 * pooled one would wait on it forever. Shutting the socket down sends the FIN now; h2o then sees the end of input
 * and closes the connection itself. */
static void shut_connections(void *arg)
{
    ch2o_loop_t *loop = arg;
    for (h2o_linklist_t *l = loop->server_conns.next; l != &loop->server_conns; l = l->next) {
        struct conn_info *ci = H2O_STRUCT_FROM_MEMBER(struct conn_info, link, l);
        shutdown(h2o_socket_get_fd(ci->sock), SHUT_RDWR);
    }
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
        ch2o_loop_post(srv->loops[t], shut_connections, srv->loops[t]);
    for (int waited = 0; waited < 500 && atomic_load(&srv->num_connections) > 0; waited += 5)
        usleep(5000);
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
    if (h2o_linklist_is_linked(&r->deferred))
        h2o_linklist_unlink(&r->deferred);
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

/* RFC 9112 §6.1/§6.3: a message with both Content-Length and Transfer-Encoding, or with Content-Lengths that
 * differ, has no trustworthy framing (the classic smuggling primitives). h2o frames such a request by
 * Transfer-Encoding (or by the first Content-Length) and drops those headers from req->headers, so they are read
 * again from the head, still at the start of the socket's input buffer. NULL when the framing is sound. */
static const char *h1_framing_error(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (sock == NULL)
        return NULL;
    struct h1_head h;
    if (parse_h1_head(sock, &h) <= 0 || h.path_len != req->input.path.len ||
        memcmp(h.path, req->input.path.base, h.path_len) != 0)
        return NULL; /* not the head of this request: nothing to say */
    int te = 0, cl = 0;
    const char *cl_value = NULL;
    size_t cl_len = 0;
    for (size_t i = 0; i < h.num_headers; ++i) {
        const struct phr_header *x = &h.headers[i];
        if (x->name_len == 17 && strncasecmp(x->name, "transfer-encoding", 17) == 0) {
            ++te;
        } else if (x->name_len == 14 && strncasecmp(x->name, "content-length", 14) == 0) {
            if (cl != 0 && (x->value_len != cl_len || memcmp(x->value, cl_value, cl_len) != 0))
                return "conflicting Content-Length headers";
            ++cl;
            cl_value = x->value;
            cl_len = x->value_len;
        }
    }
    if (te != 0 && cl != 0)
        return "both Content-Length and Transfer-Encoding";
    if (te > 1)
        return "more than one Transfer-Encoding header";
    return NULL;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct listener_handler *h = (struct listener_handler *)self;
    ch2o_server_t *srv = h->srv;
    if (req->version < 0x200) {
        const char *framing = h1_framing_error(req);
        if (framing != NULL) {
            char body[160];
            snprintf(body, sizeof(body), "{\"error\":\"ambiguous request framing: %s\",\"status\":400}", framing);
            req->http1_is_persistent = 0; /* the bytes after this request can't be trusted to be a request */
            respond_json(req, 400, body);
            return 0;
        }
    }
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
            ++ci->requests;
            /* HTTP/1: the last request the limit allows is served with "Connection: close", so a keep-alive client
             * reconnects instead of losing its next request to a 429 (DECISIONS: connection request limit); only a
             * request the client sent anyway (pipelined, or an HTTP/2 stream) gets the reference's 429 */
            if (req->version < 0x200 && ci->requests == srv->cfg.max_requests_per_connection)
                req->http1_is_persistent = 0;
            if (ci->requests > srv->cfg.max_requests_per_connection) {
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
    if (req->version >= 0x200 && reading_ci != NULL && deferred_init) {
        /* HTTP/2 rapid reset: a client sends HEADERS and RST_STREAM together. Nothing starts for this stream until
         * the rest of the bytes read with it are parsed; a reset among them disposes it (see on_req_dispose). */
        h2o_linklist_insert(&deferred_reqs, &r->deferred);
        return 0;
    }
    dispatch(r);
    return 0;
}

static void dispatch(ch2o_req_t *r)
{
    ch2o_server_t *srv = r->server;
    h2o_req_t *req = r->req;
    r->in_handler = 1;
    srv->on_request(srv->ctx, r);
    r->in_handler = 0;
    if (r->req != NULL && r->state == CH2O_REQ_FRESH && req->version < 0x200 && !r->gone)
        ch2o_deadline_link(r->loop, &r->watchdog, WATCHDOG_MS);
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

/* 1 when the bytes were queued (the stream is open and len is not 0) */
static int stream_queue(ch2o_req_t *r, const void *data, size_t len)
{
    if (r->req == NULL || r->state != CH2O_REQ_STREAMING || len == 0)
        return 0;
    h2o_iovec_t dst = h2o_buffer_reserve(&r->pending, len);
    memcpy(dst.base, data, len);
    r->pending->size += len;
    return 1;
}

void ch2o_req_stream_write(ch2o_req_t *r, const void *data, size_t len)
{
    if (stream_queue(r, data, len) && !r->sending)
        flush(r);
}

void ch2o_req_stream_append(ch2o_req_t *r, const void *data, size_t len) { (void)stream_queue(r, data, len); }

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
