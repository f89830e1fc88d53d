/* Event loops, timers, cross-thread posting and small shared helpers. */
#include <errno.h>
#include <signal.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jemalloc/jemalloc.h>
#include "internal.h"

static _Atomic int next_loop_index;

struct post_msg {
    h2o_multithread_message_t super;
    void (*cb)(void *);
    void *arg;
};

static void on_post(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        struct post_msg *m = H2O_STRUCT_FROM_MEMBER(struct post_msg, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        m->cb(m->arg);
        free(m);
    }
}

static pthread_once_t ignore_sigpipe_once = PTHREAD_ONCE_INIT;
static void ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

ch2o_loop_t *ch2o_loop_create(void)
{
    /* a peer that leaves must be an error code on write, not the death of the process */
    pthread_once(&ignore_sigpipe_once, ignore_sigpipe);
    int index = atomic_fetch_add(&next_loop_index, 1);
    ch2o_loop_t *loop = calloc(1, sizeof(*loop));
    loop->index = index;
    pthread_mutex_init(&loop->init_mutex, NULL);
    pthread_cond_init(&loop->init_cond, NULL);
    pthread_mutex_init(&loop->post_mutex, NULL);
    return loop;
}

/* on the loop's own thread (h2o's socket buffers and memory pools use thread-local allocators) */
static void loop_init(ch2o_loop_t *loop)
{
    loop->evloop = h2o_evloop_create();
    loop->queue = h2o_multithread_create_queue(loop->evloop);
    h2o_multithread_register_receiver(loop->queue, &loop->post_receiver, on_post);
    if (loop->on_init != NULL)
        loop->on_init(loop);
    pthread_mutex_lock(&loop->init_mutex);
    loop->initialized = 1;
    pthread_cond_broadcast(&loop->init_cond);
    pthread_mutex_unlock(&loop->init_mutex);
}

int ch2o_loop_index(ch2o_loop_t *loop) { return loop->index; }
void ch2o_loop_set_user(ch2o_loop_t *loop, void *user) { loop->user = user; }
void *ch2o_loop_get_user(ch2o_loop_t *loop) { return loop->user; }

static __thread ch2o_loop_t *current_loop;

int ch2o_loop_is_current(ch2o_loop_t *loop) { return current_loop == loop; }

ch2o_loop_t *ch2o_loop_current(void) { return current_loop; }

pthread_t ch2o_loop_thread(ch2o_loop_t *loop) { return loop->thread; }

void ch2o_loop_run(ch2o_loop_t *loop)
{
    if (!loop->initialized)
        loop_init(loop);
    current_loop = loop;
    while (!atomic_load(&loop->stop))
        h2o_evloop_run(loop->evloop, INT32_MAX);
    pthread_mutex_lock(&loop->post_mutex);
    loop->closed = 1;
    pthread_mutex_unlock(&loop->post_mutex);
    /* what was posted before closing still runs (its caller may wait on it): one more non-blocking turn delivers
     * the queue's pending messages */
    h2o_evloop_run(loop->evloop, 0);
    current_loop = NULL;
}

static void *loop_main(void *arg)
{
    ch2o_loop_run(arg);
    return NULL;
}

int ch2o_loop_start_thread(ch2o_loop_t *loop)
{
    if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0)
        return -1;
    loop->has_thread = 1;
    /* posting needs the loop's queue: return once the thread built it */
    pthread_mutex_lock(&loop->init_mutex);
    while (!loop->initialized)
        pthread_cond_wait(&loop->init_cond, &loop->init_mutex);
    pthread_mutex_unlock(&loop->init_mutex);
    return 0;
}

static void set_stop(void *arg) { atomic_store(&((ch2o_loop_t *)arg)->stop, 1); }

void ch2o_loop_stop_and_join(ch2o_loop_t *loop)
{
    ch2o_loop_post(loop, set_stop, loop);
    if (loop->has_thread && !pthread_equal(pthread_self(), loop->thread)) {
        pthread_join(loop->thread, NULL);
        loop->has_thread = 0;
    }
}

int ch2o_loop_post(ch2o_loop_t *loop, void (*cb)(void *), void *arg)
{
    pthread_mutex_lock(&loop->post_mutex);
    if (loop->closed) {
        pthread_mutex_unlock(&loop->post_mutex);
        return -1;
    }
    struct post_msg *m = calloc(1, sizeof(*m));
    m->cb = cb;
    m->arg = arg;
    h2o_multithread_send_message(&loop->post_receiver, &m->super);
    pthread_mutex_unlock(&loop->post_mutex);
    return 0;
}

uint64_t ch2o_loop_now(ch2o_loop_t *loop) { return h2o_now(loop->evloop); }

static unsigned bucket_of(uint64_t remaining)
{
    if (remaining == 0)
        return 0;
    unsigned b = 64 - (unsigned)__builtin_clzll(remaining); /* 1 + floor(log2(remaining)) */
    return b < CH2O_TIMER_BUCKETS ? b : CH2O_TIMER_BUCKETS - 1;
}

static void on_bucket_fire(h2o_timeout_entry_t *entry);

static void deadline_place(ch2o_deadline_t *d, uint64_t now)
{
    ch2o_loop_t *loop = d->_loop;
    unsigned b = bucket_of(d->_at > now ? d->_at - now : 0);
    if (loop->buckets[b] == NULL) {
        loop->buckets[b] = calloc(1, sizeof(h2o_timeout_t));
        h2o_timeout_init(loop->evloop, loop->buckets[b], b == 0 ? 0 : (uint64_t)1 << (b - 1));
    }
    d->_entry.cb = on_bucket_fire;
    h2o_timeout_link(loop->evloop, loop->buckets[b], &d->_entry);
}

static void on_bucket_fire(h2o_timeout_entry_t *entry)
{
    ch2o_deadline_t *d = H2O_STRUCT_FROM_MEMBER(ch2o_deadline_t, _entry, entry);
    uint64_t now = h2o_now(d->_loop->evloop);
    if (now < d->_at) {
        /* the bucket is at most half of what remained: move down (never into a bucket that runs again now) */
        deadline_place(d, now);
        return;
    }
    d->cb(d);
}

void ch2o_deadline_link(ch2o_loop_t *loop, ch2o_deadline_t *d, uint64_t millis)
{
    if (h2o_timeout_is_linked(&d->_entry))
        h2o_timeout_unlink(&d->_entry);
    uint64_t now = h2o_now(loop->evloop);
    uint64_t cap = (uint64_t)1 << (CH2O_TIMER_BUCKETS - 1);
    d->_loop = loop;
    d->_at = now + (millis < cap ? millis : cap);
    deadline_place(d, now);
}

void ch2o_deadline_unlink(ch2o_deadline_t *d)
{
    if (h2o_timeout_is_linked(&d->_entry))
        h2o_timeout_unlink(&d->_entry);
}

int ch2o_deadline_is_linked(const ch2o_deadline_t *d) { return h2o_timeout_is_linked((h2o_timeout_entry_t *)&d->_entry); }

static size_t pool_hash(struct ch2o_upstream *up) { return ((uintptr_t)up >> 4) * 0x9E3779B97F4A7C15ull; }

h2o_linklist_t *ch2o_loop_idle_list(ch2o_loop_t *loop, struct ch2o_upstream *up)
{
    if (loop->pools_used * 2 >= loop->pools_cap) {
        size_t old_cap = loop->pools_cap;
        struct ch2o_pool_slot *old = loop->pools;
        loop->pools_cap = old_cap ? old_cap * 2 : 16;
        loop->pools = calloc(loop->pools_cap, sizeof(*loop->pools));
        for (size_t i = 0; i < old_cap; ++i) {
            if (old[i].up == NULL)
                continue;
            size_t j = pool_hash(old[i].up) & (loop->pools_cap - 1);
            while (loop->pools[j].up != NULL)
                j = (j + 1) & (loop->pools_cap - 1);
            loop->pools[j] = old[i];
        }
        free(old);
    }
    size_t j = pool_hash(up) & (loop->pools_cap - 1);
    while (loop->pools[j].up != NULL) {
        if (loop->pools[j].up == up)
            return loop->pools[j].idle;
        j = (j + 1) & (loop->pools_cap - 1);
    }
    loop->pools[j].up = up;
    loop->pools[j].idle = malloc(sizeof(h2o_linklist_t));
    h2o_linklist_init_anchor(loop->pools[j].idle);
    loop->pools_used++;
    return loop->pools[j].idle;
}

struct ch2o_timer {
    ch2o_deadline_t entry;
    void (*cb)(void *);
    void *ctx;
};

static void on_timer(ch2o_deadline_t *entry)
{
    ch2o_timer_t *t = H2O_STRUCT_FROM_MEMBER(ch2o_timer_t, entry, entry);
    void (*cb)(void *) = t->cb;
    void *ctx = t->ctx;
    free(t);
    cb(ctx);
}

ch2o_timer_t *ch2o_timer_start(ch2o_loop_t *loop, uint64_t millis, void (*cb)(void *), void *ctx)
{
    ch2o_timer_t *t = calloc(1, sizeof(*t));
    t->entry.cb = on_timer;
    t->cb = cb;
    t->ctx = ctx;
    ch2o_deadline_link(loop, &t->entry, millis);
    return t;
}

void ch2o_timer_cancel(ch2o_timer_t *t)
{
    ch2o_deadline_unlink(&t->entry);
    free(t);
}

/* ---------------------------------------------------------------- helpers */

const char *ch2o_jemalloc_version(void)
{
    const char *v = NULL;
    size_t sz = sizeof(v);
    if (mallctl("version", &v, &sz, NULL, 0) != 0)
        return NULL;
    return v;
}

size_t ch2o_jemalloc_allocated(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof(epoch);
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    size_t allocated = 0;
    sz = sizeof(allocated);
    if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
        return 0;
    return allocated;
}

const char *ch2o_h2o_version(void) { return H2O_VERSION; }

void ch2o_copy_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int ch2o_resolve(const char *host, int port, struct sockaddr_storage *out, socklen_t *outlen, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
    if (strcmp(host, "*") == 0 || host[0] == '\0') {
        host = NULL;
        hints.ai_flags |= AI_PASSIVE;
        hints.ai_family = AF_INET;
    }
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || res == NULL) {
        ch2o_copy_err(err, errlen, "cannot resolve %s:%d: %s", host ? host : "*", port, gai_strerror(rc));
        return -1;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void ch2o_set_nodelay(int fd)
{
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

const char *ch2o_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 424: return "Failed Dependency";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
