/* The proxy generator: relays a server request to an upstream through our client, lets Swift pick another
 * upstream while nothing has reached the client, reports the outcome exactly once, cancels the upstream when
 * the client leaves, and never turns a broken upstream stream into a clean end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define CH2O_PROXY_DEFAULT_BUFFER (1024 * 1024)

struct ch2o_proxy {
    ch2o_req_t *creq; /* NULL once the client left */
    ch2o_upstream_t *up;
    ch2o_call_t *call;
    ch2o_proxy_hooks_t hooks;
    void *ctx;
    h2o_iovec_t method, path, body;
    ch2o_header_t *headers;
    size_t num_headers;
    h2o_iovec_t error_tail;
    uint64_t timeout_ms;
    int attempts;
    int status;
    uint64_t bytes;
    int head_sent;
    int upstream_streams; /* the client response is chunked / DATA frames (no Content-Length) */
    int finished;
    ch2o_timer_t *head_flush; /* sends the head on the next loop turn if no body byte came with it */
    size_t buffer_limit;
    /* a Content-Length reply up to buffer_limit is held until it is complete, so that a short one is an attempt
     * that failed before the head (retried, or an error reply), never a truncated reply the client takes as whole */
    int holding;
    int held_status;
    ch2o_header_t *held_headers;
    size_t held_num_headers;
    char *held;
    size_t held_len, held_cap;
    int paused; /* the upstream is not read while the client has more than buffer_limit bytes unsent */
    uint64_t connect_timeout_ms, head_timeout_ms;
    ch2o_timer_t *connect_deadline, *head_deadline; /* of the current attempt */
};

/* server.c's proceed of streamed responses; the proxy interposes on it to learn when the client drained */
typedef void (*proceed_cb)(h2o_generator_t *self, h2o_req_t *req);
static _Atomic(proceed_cb) server_proceed; /* the same function for every request; set by whichever loop comes first */

static void proxy_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    ch2o_req_t *r = H2O_STRUCT_FROM_MEMBER(ch2o_req_t, generator, self);
    struct ch2o_proxy *p = r->proxy;
    /* while the proxy is attached the response is in progress, so this sends at most the next pending bytes and
     * does not dispose the request */
    atomic_load(&server_proceed)(self, req);
    if (p == NULL || r->proxy != p || !p->paused)
        return;
    if (ch2o_req_stream_pending(r) <= p->buffer_limit / 2) {
        p->paused = 0;
        ch2o_call_pause(p->call, 0);
    }
}

static int on_head(void *ctx, int status, const ch2o_header_t *headers, size_t n);
static int on_body(void *ctx, const void *data, size_t len);
static void on_done(void *ctx, int result, const char *errstr);
static const ch2o_call_callbacks_t proxy_cbs = {on_head, on_body, on_done};

static void stop_deadlines(struct ch2o_proxy *p)
{
    if (p->connect_deadline != NULL)
        ch2o_timer_cancel(p->connect_deadline);
    if (p->head_deadline != NULL)
        ch2o_timer_cancel(p->head_deadline);
    p->connect_deadline = p->head_deadline = NULL;
}

static void proxy_finish(struct ch2o_proxy *p, int result, int call_result)
{
    if (p->finished)
        return;
    p->finished = 1;
    stop_deadlines(p);
    if (p->head_flush != NULL)
        ch2o_timer_cancel(p->head_flush);
    if (p->creq != NULL)
        p->creq->proxy = NULL;
    free(p->held);
    p->held = NULL;
    if (p->hooks.finish != NULL)
        p->hooks.finish(p->ctx, result, call_result, p->status, p->bytes, p->attempts);
    ch2o_upstream_release(p->up);
    free(p->error_tail.base);
    free(p);
}

static void drop_held(struct ch2o_proxy *p)
{
    p->holding = 0;
    free(p->held);
    p->held = NULL;
    p->held_len = p->held_cap = 0;
}

/* The attempt missed a deadline: end it as a timeout before the head (retried elsewhere, or a 504). A frozen
 * upstream still completes TCP handshakes in its kernel, so only the head deadline catches it. */
static void attempt_expired(struct ch2o_proxy *p, const char *why)
{
    stop_deadlines(p);
    if (p->call == NULL || p->finished)
        return;
    ch2o_call_cancel(p->call);
    p->call = NULL;
    on_done(p, CH2O_CALL_ERR_TIMEOUT, why);
}

static void on_connect_deadline(void *ctx)
{
    struct ch2o_proxy *p = ctx;
    p->connect_deadline = NULL;
    if (ch2o_call_is_connecting(p->call))
        attempt_expired(p, "upstream connect deadline");
}

static void on_head_deadline(void *ctx)
{
    struct ch2o_proxy *p = ctx;
    p->head_deadline = NULL;
    attempt_expired(p, "upstream head deadline");
}

static void start_attempt(struct ch2o_proxy *p)
{
    p->attempts++;
    p->status = 0;
    drop_held(p);
    stop_deadlines(p);
    p->call = ch2o_call_start(p->creq->loop, p->up, p->method.base, p->method.len, p->path.base, p->path.len, p->headers,
                              p->num_headers, p->body.base, p->body.len, p->timeout_ms, &proxy_cbs, p);
    if (p->call == NULL)
        return;
    if (p->connect_timeout_ms != 0)
        p->connect_deadline = ch2o_timer_start(p->creq->loop, p->connect_timeout_ms, on_connect_deadline, p);
    if (p->head_timeout_ms != 0)
        p->head_deadline = ch2o_timer_start(p->creq->loop, p->head_timeout_ms, on_head_deadline, p);
}

/* returns 1 when another attempt was started */
static int try_next(struct ch2o_proxy *p, int call_result, int status)
{
    if (p->hooks.retry == NULL || p->creq == NULL)
        return 0;
    ch2o_upstream_t *next = p->hooks.retry(p->ctx, p->attempts, p->up, call_result, status);
    if (next == NULL)
        return 0;
    ch2o_upstream_release(p->up);
    p->up = next;
    start_attempt(p);
    return 1;
}

static void flush_head(void *ctx)
{
    struct ch2o_proxy *p = ctx;
    p->head_flush = NULL;
    if (p->creq != NULL)
        ch2o_req_stream_flush_head(p->creq);
}

static int header_named(const ch2o_header_t *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

/* 1 when one of the Connection headers among `headers` lists `name` as a token */
static int named_by_connection(const ch2o_header_t *headers, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; ++i) {
        if (!header_named(&headers[i], "connection", 10))
            continue;
        const char *v = headers[i].value, *end = v + headers[i].value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
                ++v;
            const char *tok = v;
            while (v < end && *v != ',' && *v != ' ' && *v != '\t')
                ++v;
            if ((size_t)(v - tok) == len && len != 0 && strncasecmp(tok, name, len) == 0)
                return 1;
        }
    }
    return 0;
}

/* RFC 9110 §7.6.1: these, and whatever a Connection header names, describe one hop and never cross the proxy —
 * the persistence of the client's connection is ours to decide, not the upstream's */
static int is_hop_by_hop(const ch2o_header_t *h, const ch2o_header_t *all, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
    } names[] = {{"connection", 10}, {"keep-alive", 10}, {"proxy-connection", 16}, {"te", 2},
                 {"trailer", 7},     {"transfer-encoding", 17}, {"upgrade", 7}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
        if (header_named(h, names[i].name, names[i].len))
            return 1;
    return named_by_connection(all, n, h->name, h->name_len);
}

static int on_head(void *ctx, int status, const ch2o_header_t *headers, size_t n)
{
    struct ch2o_proxy *p = ctx;
    stop_deadlines(p);
    p->status = status;
    if (p->creq == NULL)
        return 1;
    if (status == 503) {
        ch2o_call_t *current = p->call;
        if (try_next(p, CH2O_CALL_OK, status))
            return 1; /* returning 1 ends the current call; the new attempt is under way */
        p->call = current; /* no other upstream: relay the 503 as it is */
    }
    if (p->creq->req == NULL)
        return 1;
    size_t content_length = SIZE_MAX;
    for (size_t i = 0; i < n; ++i) {
        if (headers[i].name_len == 14 && strncasecmp(headers[i].name, "content-length", 14) == 0)
            content_length = strtoull(headers[i].value, NULL, 10);
        if (headers[i].name_len == 17 && strncasecmp(headers[i].name, "transfer-encoding", 17) == 0)
            content_length = SIZE_MAX;
    }
    h2o_mem_pool_t *pool = &p->creq->req->pool;
    ch2o_header_t *kept = h2o_mem_alloc_pool(pool, sizeof(*kept) * (n + 1));
    size_t num_kept = 0;
    for (size_t i = 0; i < n; ++i)
        if (!is_hop_by_hop(&headers[i], headers, n))
            kept[num_kept++] = headers[i];
    int no_body = status == 204 || status == 304 || (p->method.len == 4 && memcmp(p->method.base, "HEAD", 4) == 0);
    if (!no_body && content_length <= p->buffer_limit) {
        /* the upstream's header bytes live in its socket buffer only until this returns */
        for (size_t i = 0; i < num_kept; ++i) {
            h2o_iovec_t name = h2o_strdup(pool, kept[i].name, kept[i].name_len);
            h2o_iovec_t value = h2o_strdup(pool, kept[i].value, kept[i].value_len);
            kept[i] = (ch2o_header_t){name.base, name.len, value.base, value.len};
        }
        p->holding = 1;
        p->held_status = status;
        p->held_headers = kept;
        p->held_num_headers = num_kept;
        p->held_cap = content_length;
        p->held = malloc(content_length != 0 ? content_length : 1);
        return 0;
    }
    if (p->hooks.head != NULL)
        p->hooks.head(p->ctx, status);
    if (p->creq == NULL || p->creq->req == NULL)
        return 1;
    p->head_sent = 1;
    p->upstream_streams = content_length == SIZE_MAX;
    /* the head waits for the body bytes that usually arrive in the same read: one write instead of two */
    ch2o_req_stream_start_len(p->creq, status, kept, num_kept, content_length, 0);
    if (p->creq->generator.proceed != NULL && p->creq->generator.proceed != proxy_proceed) {
        atomic_store(&server_proceed, p->creq->generator.proceed);
        p->creq->generator.proceed = proxy_proceed;
    }
    p->head_flush = ch2o_timer_start(p->creq->loop, 0, flush_head, p);
    return 0;
}

static int on_body(void *ctx, const void *data, size_t len)
{
    struct ch2o_proxy *p = ctx;
    if (p->creq == NULL)
        return 1;
    if (p->holding) {
        if (len > p->held_cap - p->held_len)
            len = p->held_cap - p->held_len; /* never: the client stops at Content-Length */
        memcpy(p->held + p->held_len, data, len);
        p->held_len += len;
        return 0;
    }
    if (p->bytes == 0 && len != 0 && p->hooks.first_body != NULL)
        p->hooks.first_body(p->ctx);
    p->bytes += len;
    if (p->creq == NULL)
        return 1;
    if (ch2o_call_ending(p->call))
        ch2o_req_stream_append(p->creq, data, len); /* the end follows at once: one write for both */
    else
        ch2o_req_stream_write(p->creq, data, len);
    /* back-pressure: a client that reads slower than the upstream writes must not make us buffer without bound */
    if (!p->paused && p->creq != NULL && ch2o_req_stream_pending(p->creq) > p->buffer_limit) {
        p->paused = 1;
        ch2o_call_pause(p->call, 1);
    }
    return 0;
}

/* the held reply is complete: it goes out whole, with its own Content-Length */
static void release_held(struct ch2o_proxy *p)
{
    p->holding = 0;
    if (p->hooks.head != NULL)
        p->hooks.head(p->ctx, p->held_status);
    if (p->creq == NULL || p->creq->req == NULL)
        return;
    p->head_sent = 1;
    p->bytes = p->held_len;
    if (p->held_len != 0 && p->hooks.first_body != NULL)
        p->hooks.first_body(p->ctx);
    if (p->creq == NULL || p->creq->req == NULL)
        return;
    ch2o_req_respond(p->creq, p->held_status, p->held_headers, p->held_num_headers, p->held, p->held_len);
}

static void on_done(void *ctx, int result, const char *errstr)
{
    struct ch2o_proxy *p = ctx;
    p->call = NULL;
    stop_deadlines(p);
    if (p->creq == NULL) {
        proxy_finish(p, CH2O_PROXY_CANCELLED, result);
        return;
    }
    if (result == CH2O_CALL_OK) {
        if (p->holding)
            release_held(p);
        else
            ch2o_req_stream_end(p->creq);
        proxy_finish(p, CH2O_PROXY_OK, result);
        return;
    }
    if (!p->head_sent) {
        drop_held(p);
        if (try_next(p, result, 0))
            return;
        int timeout = result == CH2O_CALL_ERR_TIMEOUT;
        int status = timeout ? 504 : 502;
        char message[256];
        snprintf(message, sizeof(message), "upstream %s after %d attempt%s: %s", timeout ? "timed out" : "failed", p->attempts,
                 p->attempts == 1 ? "" : "s", errstr ? errstr : "error");
        if (p->hooks.error_reply == NULL || !p->hooks.error_reply(p->ctx, p->creq, status, message)) {
            char body[320];
            snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}", message, status);
            static const ch2o_header_t ct = {"content-type", 12, "application/json", 16};
            ch2o_req_respond(p->creq, status, &ct, 1, body, strlen(body));
        }
        proxy_finish(p, timeout ? CH2O_PROXY_TIMEOUT : CH2O_PROXY_GAVE_UP, result);
        return;
    }
    if (p->upstream_streams && p->error_tail.len != 0) {
        ch2o_req_stream_write(p->creq, p->error_tail.base, p->error_tail.len);
        ch2o_req_stream_end(p->creq);
    } else {
        ch2o_req_stream_abort(p->creq);
    }
    proxy_finish(p, result == CH2O_CALL_ERR_TIMEOUT ? CH2O_PROXY_TIMEOUT : CH2O_PROXY_UPSTREAM_ERROR, result);
}

void ch2o_proxy_on_client_gone(struct ch2o_proxy *p)
{
    p->creq = NULL;
    if (p->call != NULL) {
        ch2o_call_cancel(p->call);
        p->call = NULL;
    }
    proxy_finish(p, CH2O_PROXY_CANCELLED, CH2O_CALL_CANCELLED);
}

void ch2o_proxy_start(ch2o_req_t *r, ch2o_upstream_t *up, const ch2o_proxy_options_t *opts, const ch2o_proxy_hooks_t *hooks,
                      void *ctx)
{
    struct ch2o_proxy *p = calloc(1, sizeof(*p));
    h2o_req_t *req = r->req;
    p->creq = r;
    p->up = up;
    p->hooks = *hooks;
    p->ctx = ctx;
    p->timeout_ms = opts->timeout_ms ? opts->timeout_ms : r->server->cfg.upstream_io_timeout_ms;
    p->buffer_limit = opts->client_buffer_bytes ? opts->client_buffer_bytes : CH2O_PROXY_DEFAULT_BUFFER;
    p->connect_timeout_ms = opts->connect_timeout_ms;
    p->head_timeout_ms = opts->head_timeout_ms;
    p->method = req->method;
    p->path = opts->path != NULL ? h2o_strdup(&req->pool, opts->path, opts->path_len) : req->path;
    if (opts->body != NULL) {
        p->body.base = h2o_mem_alloc_pool(&req->pool, opts->body_len + 1);
        memcpy(p->body.base, opts->body, opts->body_len);
        p->body.len = opts->body_len;
    } else {
        p->body = req->entity.base != NULL ? req->entity : h2o_iovec_init(NULL, 0);
    }
    if (opts->error_tail_len != 0) {
        p->error_tail.base = malloc(opts->error_tail_len);
        memcpy(p->error_tail.base, opts->error_tail, opts->error_tail_len);
        p->error_tail.len = opts->error_tail_len;
    }
    /* client headers (minus host and those the caller replaces) + the caller's extra headers */
    p->headers = h2o_mem_alloc_pool(&req->pool, sizeof(ch2o_header_t) * (req->headers.size + opts->num_extra_headers));
    ch2o_header_t *client = h2o_mem_alloc_pool(&req->pool, sizeof(ch2o_header_t) * (req->headers.size + 1));
    for (size_t i = 0; i < req->headers.size; ++i) {
        h2o_header_t *h = &req->headers.entries[i];
        client[i] = (ch2o_header_t){h->name->base, h->name->len, h->value.base, h->value.len};
    }
    for (size_t i = 0; i < req->headers.size; ++i) {
        ch2o_header_t ch = client[i];
        if (header_named(&ch, "host", 4) || is_hop_by_hop(&ch, client, req->headers.size))
            continue;
        int replaced = 0;
        for (size_t j = 0; j < opts->num_extra_headers; ++j)
            if (header_named(&ch, opts->extra_headers[j].name, opts->extra_headers[j].name_len))
                replaced = 1;
        if (!replaced)
            p->headers[p->num_headers++] = ch;
    }
    for (size_t j = 0; j < opts->num_extra_headers; ++j) {
        const ch2o_header_t *e = &opts->extra_headers[j];
        h2o_iovec_t n = h2o_strdup(&req->pool, e->name, e->name_len), v = h2o_strdup(&req->pool, e->value, e->value_len);
        p->headers[p->num_headers++] = (ch2o_header_t){n.base, n.len, v.base, v.len};
    }
    r->proxy = p;
    if (!ch2o_deadline_is_linked(&r->watchdog) && req->version < 0x200 && !r->in_handler)
        ch2o_deadline_link(r->loop, &r->watchdog, 250);
    start_attempt(p);
}

void ch2o_proxy_abort(ch2o_req_t *r, int status, const ch2o_header_t *headers, size_t num_headers, const void *body,
                      size_t len, int result)
{
    struct ch2o_proxy *p = r->proxy;
    if (p == NULL || p->finished)
        return;
    if (p->call != NULL) {
        ch2o_call_cancel(p->call);
        p->call = NULL;
    }
    if (!p->head_sent) {
        ch2o_req_respond(r, status, headers, num_headers, body, len);
    } else if (p->upstream_streams) {
        ch2o_req_stream_write(r, body, len);
        ch2o_req_stream_end(r);
    } else {
        ch2o_req_stream_abort(r);
    }
    proxy_finish(p, result, CH2O_CALL_CANCELLED);
}
