/* A paced OpenAI-compatible upstream for the benchmarks: what an engine looks like on the wire when it decodes.
 *
 * POST /v1/chat/completions (or /v1/completions) with "stream": true answers with a chunked text/event-stream
 * whose events leave one inter-token delay apart, each in its own write() on a TCP_NODELAY socket (so each is its
 * own segment, as a real engine sends one event per token); then "data: [DONE]" and the last chunk. Without
 * "stream": true it answers one JSON chat.completion (after --nonstream-delay-ms). GET /health, /v1/models answer
 * at once. HTTP/1.1 keep-alive, single-threaded epoll: a benchmark backend, not a server.
 *
 *   gcc -O2 -o paced_upstream bench/paced_upstream.c
 *   paced_upstream --host 127.0.0.2 --port 8000 [--events 16] [--delay-ms 5] [--nonstream-delay-ms 0]
 *
 * Pacing: every stream has the same delay, so due times are appended in order and one FIFO is a timer queue.
 * The first event leaves one delay after the request (the "prefill"), so time to first event = delay + path. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int events_per_stream = 16;
static uint64_t delay_ns = 5000000;
static uint64_t nonstream_delay_ns = 0;

struct conn {
    int fd;
    uint32_t gen; /* bumped on close: queued timers of a closed connection are stale */
    char in[65536];
    size_t in_len;
    char *out; /* bytes the kernel did not take yet */
    size_t out_len, out_cap;
    int streaming; /* events sent so far + 1 while a stream is in progress; 0 otherwise */
    int waiting_nonstream;
    int queued; /* an entry in the FIFO points here */
    uint64_t seq;
    struct conn *next_dead;
};

struct due {
    uint64_t at;
    struct conn *c;
    uint32_t gen;
};

static struct due *fifo;
static size_t fifo_head, fifo_tail, fifo_cap;
static int epfd;
static uint64_t next_id;
static struct conn *dead; /* closed connections, freed at the end of the loop turn once no FIFO entry points at them */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void push_due(struct conn *c, uint64_t at)
{
    if (fifo_tail - fifo_head == fifo_cap) {
        size_t ncap = fifo_cap ? fifo_cap * 2 : 1024;
        struct due *n = malloc(ncap * sizeof(*n));
        for (size_t i = 0; i < fifo_cap; ++i)
            n[i] = fifo[(fifo_head + i) % fifo_cap];
        free(fifo);
        fifo = n;
        fifo_tail = fifo_tail - fifo_head;
        fifo_head = 0;
        fifo_cap = ncap;
    }
    fifo[fifo_tail % fifo_cap] = (struct due){at, c, c->gen};
    fifo_tail++;
    c->queued++;
}

static void conn_close(struct conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->gen++;
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    c->next_dead = dead;
    dead = c;
}

static void free_dead(void)
{
    struct conn **pp = &dead;
    while (*pp != NULL) {
        struct conn *c = *pp;
        if (c->queued == 0) {
            *pp = c->next_dead;
            free(c);
        } else {
            pp = &c->next_dead;
        }
    }
}

static void want_write(struct conn *c, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* one write() per call: one event, one segment */
static int send_bytes(struct conn *c, const char *p, size_t len)
{
    if (c->fd < 0)
        return -1;
    if (c->out_len == 0) {
        ssize_t n = write(c->fd, p, len);
        if (n < 0 && errno != EAGAIN) {
            conn_close(c);
            return -1;
        }
        if (n < 0)
            n = 0;
        p += n;
        len -= n;
        if (len == 0)
            return 0;
        want_write(c, 1);
    }
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, len);
    c->out_len += len;
    return 0;
}

static void flush_out(struct conn *c)
{
    ssize_t n = write(c->fd, c->out, c->out_len);
    if (n < 0 && errno != EAGAIN) {
        conn_close(c);
        return;
    }
    if (n > 0) {
        memmove(c->out, c->out + n, c->out_len - n);
        c->out_len -= n;
    }
    if (c->out_len == 0)
        want_write(c, 0);
}

static void send_event(struct conn *c)
{
    char ev[512], chunk[600];
    int k = c->streaming; /* 1-based index of the event due now */
    int n;
    if (k <= events_per_stream) {
        n = snprintf(ev, sizeof(ev),
                     "data: {\"id\":\"chatcmpl-%llu\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                     "\"model\":\"llama3-8b\",\"choices\":[{\"index\":0,\"delta\":{%s\"content\":\"tok%d \"},"
                     "\"logprobs\":null,\"finish_reason\":%s}]}\n\n",
                     (unsigned long long)c->seq, k == 1 ? "\"role\":\"assistant\"," : "", k,
                     k == events_per_stream ? "\"stop\"" : "null");
        int m = snprintf(chunk, sizeof(chunk), "%x\r\n%s\r\n", n, ev);
        c->streaming++;
        if (send_bytes(c, chunk, m) == 0)
            push_due(c, now_ns() + delay_ns);
        return;
    }
    static const char done[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
    c->streaming = 0;
    send_bytes(c, done, sizeof(done) - 1);
}

static void send_nonstream(struct conn *c)
{
    char body[1024], resp[1400];
    int n = snprintf(body, sizeof(body),
                     "{\"id\":\"chatcmpl-%llu\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"llama3-8b\","
                     "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"tok1 tok2 tok3 tok4\"},"
                     "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}",
                     (unsigned long long)c->seq);
    int m = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s", n,
                     body);
    c->waiting_nonstream = 0;
    send_bytes(c, resp, m);
}

static void simple(struct conn *c, const char *body)
{
    char resp[512];
    int m = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n\r\n%s",
                     strlen(body), body);
    send_bytes(c, resp, m);
}

/* parses and starts the requests in c->in while no response is in progress (HTTP/1.1 answers in order) */
static void serve_input(struct conn *c)
{
    while (c->fd >= 0 && !c->streaming && !c->waiting_nonstream) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (end == NULL)
            return;
        size_t head_len = end + 4 - c->in;
        size_t body_len = 0;
        for (char *p = c->in; p < end; ++p) {
            if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0) {
                body_len = strtoul(p + 16, NULL, 10);
                break;
            }
        }
        if (head_len + body_len > sizeof(c->in)) {
            conn_close(c);
            return;
        }
        if (c->in_len < head_len + body_len)
            return;
        c->seq = ++next_id;
        int is_post = strncmp(c->in, "POST ", 5) == 0;
        int is_models = strncmp(c->in, "GET /v1/models", 14) == 0;
        const char *body = c->in + head_len;
        int stream = is_post && (memmem(body, body_len, "\"stream\":true", 13) != NULL ||
                                 memmem(body, body_len, "\"stream\": true", 14) != NULL);
        size_t used = head_len + body_len;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (!is_post) {
            simple(c, is_models
                          ? "{\"object\":\"list\",\"data\":[{\"id\":\"llama3-8b\",\"object\":\"model\"}]}"
                          : "{}");
            continue;
        }
        if (stream) {
            static const char head[] = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                                       "transfer-encoding: chunked\r\n\r\n";
            c->streaming = 1;
            if (send_bytes(c, head, sizeof(head) - 1) == 0)
                push_due(c, now_ns() + delay_ns);
            return;
        }
        if (nonstream_delay_ns == 0) {
            send_nonstream(c);
            continue;
        }
        c->waiting_nonstream = 1;
        push_due(c, now_ns() + nonstream_delay_ns);
        return;
    }
}

static void on_readable(struct conn *c)
{
    for (;;) {
        if (c->in_len == sizeof(c->in)) {
            conn_close(c);
            return;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c);
            return;
        }
        if (n < 0)
            break;
        c->in_len += n;
        break; /* level-triggered: anything left is read on the next turn */
    }
    serve_input(c);
}

static void run_due(void)
{
    uint64_t now = now_ns();
    while (fifo_head != fifo_tail) {
        struct due d = fifo[fifo_head % fifo_cap];
        if (d.at > now)
            break;
        fifo_head++;
        d.c->queued--;
        if (d.c->fd < 0 || d.c->gen != d.gen)
            continue;
        if (d.c->waiting_nonstream) {
            send_nonstream(d.c);
        } else if (d.c->streaming) {
            send_event(d.c);
        }
        if (d.c->fd >= 0 && !d.c->streaming && !d.c->waiting_nonstream)
            serve_input(d.c); /* a pipelined request waited for this response */
    }
}

static double arg_num(int *i, int argc, char **argv)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", argv[*i]);
        exit(2);
    }
    return atof(argv[++*i]);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            port = (int)arg_num(&i, argc, argv);
        else if (strcmp(argv[i], "--events") == 0)
            events_per_stream = (int)arg_num(&i, argc, argv);
        else if (strcmp(argv[i], "--delay-ms") == 0)
            delay_ns = (uint64_t)(arg_num(&i, argc, argv) * 1e6);
        else if (strcmp(argv[i], "--nonstream-delay-ms") == 0)
            nonstream_delay_ns = (uint64_t)(arg_num(&i, argc, argv) * 1e6);
        else {
            fprintf(stderr, "usage: %s --host IP --port N [--events 16] [--delay-ms 5] [--nonstream-delay-ms 0]\n", argv[0]);
            return 2;
        }
    }
    if (events_per_stream < 1) {
        fprintf(stderr, "--events must be at least 1\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "--host must be an IPv4 address: %s\n", host);
        return 2;
    }
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4096) != 0) {
        perror("bind/listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[256];
    for (;;) {
        struct timespec ts, *tp = NULL;
        if (fifo_head != fifo_tail) {
            uint64_t at = fifo[fifo_head % fifo_cap].at, now = now_ns();
            uint64_t wait = at > now ? at - now : 0;
            ts.tv_sec = wait / 1000000000ull;
            ts.tv_nsec = wait % 1000000000ull;
            tp = &ts;
        }
        int n = epoll_pwait2(epfd, evs, 256, tp, NULL);
        if (n < 0 && errno != EINTR) {
            perror("epoll_pwait2");
            return 1;
        }
        for (int i = 0; i < n; ++i) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
                    struct conn *nc = calloc(1, sizeof(*nc));
                    nc->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (c->fd < 0)
                continue;
            if (evs[i].events & EPOLLOUT)
                flush_out(c);
            if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(c);
        }
        run_due();
        free_dead();
    }
}
