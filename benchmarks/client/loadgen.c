/*
 * loadgen: a line-echo load generator for the netserver benchmark suite.
 *
 * T threads (default 2), each with its own epoll set and its share of the C
 * non-blocking connections.  Each connection sends a line, reads until '\n',
 * checks the echo and records the latency.
 * Three modes:
 *   conn        one request per connection: connect, send, read, close, repeat
 *   persist     one connection per slot for the whole run, requests back to back
 *   http-close  conn with HTTP: send "GET / HTTP/1.1" with "Connection: close",
 *               read until the server closes; a reply counts when it begins
 *               with a 200 status line (anything else is a "status" error)
 *
 * Why C and epoll: on a 2-core machine the client shares the CPU with the
 * server, so it has to spend as little as possible per request: a few
 * syscalls and no context switches.  Why two threads: on loopback the
 * sender's syscall also runs the receiver's TCP processing (the server's
 * SYN handling, its accept-queue wake-up), so most of the client's time is
 * kernel work it cannot avoid, and one thread tops out near one core.
 *
 * Why many source addresses: with one source address, the 4-tuples towards
 * one server port run out (TIME_WAIT holds each for a while) near 14k
 * connections/s on loopback.  Each new socket binds to 127.0.0.<first..> in
 * turn with IP_BIND_ADDRESS_NO_PORT, which defers the port choice to
 * connect() so the kernel can pick a port per full 4-tuple.
 *
 * Output: one JSON object on stdout.  Latency is measured from connect()
 * (conn mode) or send() (persist mode) to the '\n' of the echo, in
 * microseconds, in a histogram exact to 1 us below 65.536 ms and to 1 ms
 * above.  At the deadline no new request starts; those in flight get up to
 * 1 s to finish (so connections close in order) and are neither counted nor
 * errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_PORTS 8
#define FINE_BUCKETS 65536          /* 1 us each: 0 .. 65.535 ms */
#define COARSE_BUCKETS 120000       /* 1 ms each: up to 120 s */
#define LINE_MAX_BYTES 512
#define DRAIN_NS 1000000000ull     /* at most 1 s to let requests in flight finish */

enum state { IDLE, CONNECTING, READING };

enum err_kind {
    E_REFUSED, E_ADDR, E_CONNECT, E_RESET, E_EOF, E_TIMEOUT, E_MISMATCH,
    E_STATUS, E_OTHER, E_KINDS
};
static const char *err_names[E_KINDS] = {
    "refused", "addr_unavailable", "connect", "reset", "eof", "timeout",
    "mismatch", "status", "other"
};

struct slot {
    int fd;
    enum state st;
    int port_idx;
    uint64_t t_req;     /* start of the current request, ns */
    size_t got;
    char buf[LINE_MAX_BYTES];
};

static struct {
    struct in_addr target;
    int ports[MAX_PORTS];
    int nports;
    int conns;
    int threads;
    double duration;
    double warmup;
    int persist;
    int http;
    int src_first, src_count;
    int timeout_ms;
    int cpu;
    const char *message;
    size_t msg_len;
} opt;

struct stats {
    uint64_t requests;
    uint64_t errors[E_KINDS];
    uint64_t connects;
    uint32_t *fine;
    uint32_t *coarse;
    uint64_t lat_max;
    double lat_sum;
};

/* One per thread: nothing is shared between threads but opt and the clock. */
struct worker {
    pthread_t tid;
    int ep;
    struct slot *slots;
    int nslots;
    unsigned src_rr, port_rr;
    int measuring;
    uint64_t t_measure, t_end;
    struct stats st;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen --port P [--port P2 ...] [--host 127.0.0.1]\n"
        "               [--conns 50] [--threads 2] [--duration 5] [--warmup 0]\n"
        "               [--mode conn|persist|http-close] [--src-first 2] [--src-count 16]\n"
        "               [--timeout-ms 5000] [--cpu N] [--message 'hello world\\n']\n");
    exit(2);
}

static void record_latency(struct worker *w, uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (!w->measuring)
        return;
    w->st.requests++;
    w->st.lat_sum += (double)us;
    if (us > w->st.lat_max)
        w->st.lat_max = us;
    if (us < FINE_BUCKETS) {
        w->st.fine[us]++;
    } else {
        uint64_t ms = us / 1000;
        if (ms >= COARSE_BUCKETS)
            ms = COARSE_BUCKETS - 1;
        w->st.coarse[ms]++;
    }
}

static void record_error(struct worker *w, enum err_kind k)
{
    if (w->measuring)
        w->st.errors[k]++;
}

static uint64_t percentile(const struct stats *st, double p)
{
    uint64_t want, seen = 0;
    if (st->requests == 0)
        return 0;
    want = (uint64_t)(p * (double)st->requests);
    if (want >= st->requests)
        want = st->requests - 1;
    for (uint64_t i = 0; i < FINE_BUCKETS; i++) {
        seen += st->fine[i];
        if (seen > want)
            return i;
    }
    for (uint64_t i = 0; i < COARSE_BUCKETS; i++) {
        seen += st->coarse[i];
        if (seen > want)
            return i * 1000;
    }
    return st->lat_max;
}

static void close_slot(struct slot *s)
{
    if (s->fd >= 0) {
        /* close() also removes the fd from the epoll set. */
        close(s->fd);
        s->fd = -1;
    }
    s->st = IDLE;
    s->got = 0;
}

static enum err_kind classify(int e, int connecting)
{
    switch (e) {
    case ECONNREFUSED: return E_REFUSED;
    case EADDRNOTAVAIL: return E_ADDR;
    case ECONNRESET: case EPIPE: return connecting ? E_CONNECT : E_RESET;
    case ETIMEDOUT: return E_TIMEOUT;
    default: return connecting ? E_CONNECT : E_OTHER;
    }
}

static void watch(struct worker *w, struct slot *s, int op, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)(s - w->slots) };
    if (epoll_ctl(w->ep, op, s->fd, &ev) < 0)
        die("epoll_ctl");
}

static void send_request(struct worker *w, struct slot *s, int op)
{
    ssize_t n = send(s->fd, opt.message, opt.msg_len, MSG_NOSIGNAL);
    if (n == (ssize_t)opt.msg_len) {
        if (op)
            watch(w, s, op, EPOLLIN);
        s->st = READING;
        s->got = 0;
        return;
    }
    /* A message this short always fits an empty socket buffer, so a short
     * write means the peer is gone. */
    record_error(w, n < 0 ? classify(errno, 0) : E_OTHER);
    close_slot(s);
}

static void open_slot(struct worker *w, struct slot *s)
{
    struct sockaddr_in dst = { .sin_family = AF_INET };
    int one = 1, fd, rc;
    ssize_t n;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (opt.src_count > 0) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        unsigned k = w->src_rr++ % (unsigned)opt.src_count;
        src.sin_addr.s_addr = htonl((127u << 24) | ((unsigned)opt.src_first + k));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            record_error(w, classify(errno, 1));
            close(fd);
            return;
        }
    }
    s->port_idx = (int)(w->port_rr++ % (unsigned)opt.nports);
    dst.sin_addr = opt.target;
    dst.sin_port = htons((uint16_t)opt.ports[s->port_idx]);
    s->fd = fd;
    s->got = 0;
    s->t_req = now_ns();
    if (w->measuring)
        w->st.connects++;
    rc = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    if (rc < 0 && errno != EINPROGRESS) {
        record_error(w, classify(errno, 1));
        close_slot(s);
        return;
    }
    /* On loopback the handshake usually completes inside connect() even
     * when it says EINPROGRESS, so try to send at once and skip a round
     * through epoll; fall back to waiting for EPOLLOUT if it is not ready. */
    n = send(fd, opt.message, opt.msg_len, MSG_NOSIGNAL);
    if (n == (ssize_t)opt.msg_len) {
        watch(w, s, EPOLL_CTL_ADD, EPOLLIN);
        s->st = READING;
        return;
    }
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)) {
        record_error(w, n < 0 ? classify(errno, 1) : E_OTHER);
        close_slot(s);
        return;
    }
    watch(w, s, EPOLL_CTL_ADD, EPOLLOUT);
    s->st = CONNECTING;
}

static void on_writable(struct worker *w, struct slot *s)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        record_error(w, classify(err ? err : errno, 1));
        close_slot(s);
        return;
    }
    send_request(w, s, EPOLL_CTL_MOD);
}

/* HTTP: read until the server closes, keeping the first bytes for the
 * status line; returns 1 at EOF after a 200 reply. */
static int on_readable_http(struct worker *w, struct slot *s)
{
    static const char ok11[] = "HTTP/1.1 200", ok10[] = "HTTP/1.0 200";
    char scratch[4096];
    for (;;) {
        int full = s->got == sizeof s->buf;
        ssize_t n = full ? recv(s->fd, scratch, sizeof scratch, 0)
                         : recv(s->fd, s->buf + s->got, sizeof s->buf - s->got, 0);
        if (n > 0) {
            if (!full)
                s->got += (size_t)n;
            continue;
        }
        if (n == 0) {
            if (s->got >= sizeof ok11 - 1 &&
                (!memcmp(s->buf, ok11, sizeof ok11 - 1) || !memcmp(s->buf, ok10, sizeof ok10 - 1)))
                return 1;
            record_error(w, s->got ? E_STATUS : E_EOF);
            close_slot(s);
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR)
            continue;
        record_error(w, classify(errno, 0));
        close_slot(s);
        return 0;
    }
}

/* Returns 1 when a full, correct line has arrived. */
static int on_readable(struct worker *w, struct slot *s)
{
    if (opt.http)
        return on_readable_http(w, s);
    for (;;) {
        ssize_t n = recv(s->fd, s->buf + s->got, sizeof s->buf - s->got, 0);
        if (n > 0) {
            s->got += (size_t)n;
            if (memchr(s->buf, '\n', s->got)) {
                if (s->got != opt.msg_len || memcmp(s->buf, opt.message, opt.msg_len)) {
                    record_error(w, E_MISMATCH);
                    close_slot(s);
                    return 0;
                }
                return 1;
            }
            if (s->got == sizeof s->buf) {
                record_error(w, E_MISMATCH);
                close_slot(s);
                return 0;
            }
            continue;
        }
        if (n == 0) {
            record_error(w, E_EOF);
            close_slot(s);
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR)
            continue;
        record_error(w, classify(errno, 0));
        close_slot(s);
        return 0;
    }
}

static int active_slots(const struct worker *w)
{
    int n = 0;
    for (int i = 0; i < w->nslots; i++)
        n += w->slots[i].fd >= 0;
    return n;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[256];
    uint64_t last_sweep = now_ns();
    uint64_t limit = (uint64_t)opt.timeout_ms * 1000000ull;
    /* After the deadline, requests in flight may finish (uncounted) for up to
     * a second, so the run ends with orderly closes: cutting them off would
     * reset connections the server is still answering, and some servers
     * treat that as a crash of the child. */
    uint64_t drain_end = w->t_end + DRAIN_NS;
    int draining = 0;

    for (int i = 0; i < w->nslots; i++) {
        w->slots[i].fd = -1;
        open_slot(w, &w->slots[i]);
    }
    for (;;) {
        uint64_t now = now_ns();
        if (!draining && now >= w->t_end) {
            draining = 1;
            w->measuring = 0;
        }
        if (draining && (now >= drain_end || active_slots(w) == 0))
            break;
        if (!draining && !w->measuring && now >= w->t_measure)
            w->measuring = 1;
        int n = epoll_wait(w->ep, evs, 256, 10);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct slot *s = &w->slots[evs[i].data.u32];
            if (s->fd < 0)
                continue;
            if (s->st == CONNECTING) {
                on_writable(w, s);
            } else if (s->st == READING && on_readable(w, s)) {
                uint64_t t = now_ns();
                record_latency(w, t - s->t_req);
                if (opt.persist && !draining) {
                    s->t_req = t;
                    send_request(w, s, 0);
                } else {
                    close_slot(s);
                }
            }
        }
        now = now_ns();
        if (now - last_sweep > 50000000ull) {
            last_sweep = now;
            for (int i = 0; i < w->nslots; i++) {
                if (w->slots[i].fd >= 0 && now - w->slots[i].t_req > limit) {
                    record_error(w, E_TIMEOUT);
                    close_slot(&w->slots[i]);
                }
            }
        }
        if (draining || now >= w->t_end)
            continue;
        for (int i = 0; i < w->nslots; i++)
            if (w->slots[i].fd < 0)
                open_slot(w, &w->slots[i]);
    }
    for (int i = 0; i < w->nslots; i++)
        close_slot(&w->slots[i]);
    return NULL;
}

static void parse_args(int argc, char **argv)
{
    static struct option lo[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"conns", 1, 0, 'c'},
        {"threads", 1, 0, 'T'},
        {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'}, {"mode", 1, 0, 'm'},
        {"src-first", 1, 0, 'f'}, {"src-count", 1, 0, 'n'},
        {"timeout-ms", 1, 0, 't'}, {"cpu", 1, 0, 'u'}, {"message", 1, 0, 'M'},
        {0, 0, 0, 0}
    };
    int c;
    opt.conns = 50;
    opt.threads = 2;
    opt.duration = 5.0;
    opt.src_first = 2;
    opt.src_count = 16;
    opt.timeout_ms = 5000;
    opt.cpu = -1;
    opt.message = "hello world\n";
    inet_pton(AF_INET, "127.0.0.1", &opt.target);
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h':
            if (inet_pton(AF_INET, optarg, &opt.target) != 1 ||
                (ntohl(opt.target.s_addr) >> 24) != 127) {
                fprintf(stderr, "loadgen: --host %s: only 127.0.0.0/8 addresses are allowed\n", optarg);
                exit(2);
            }
            break;
        case 'p':
            if (opt.nports == MAX_PORTS) usage();
            opt.ports[opt.nports++] = atoi(optarg);
            break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'T': opt.threads = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'm':
            if (!strcmp(optarg, "persist")) opt.persist = 1;
            else if (!strcmp(optarg, "http-close")) opt.http = 1;
            else if (strcmp(optarg, "conn")) usage();
            break;
        case 'f': opt.src_first = atoi(optarg); break;
        case 'n': opt.src_count = atoi(optarg); break;
        case 't': opt.timeout_ms = atoi(optarg); break;
        case 'u': opt.cpu = atoi(optarg); break;
        case 'M': opt.message = optarg; break;
        default: usage();
        }
    }
    if (opt.http) {
        /* The request is fixed; the line checks below are for the echo modes. */
        opt.message = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        opt.msg_len = strlen(opt.message);
        if (opt.nports == 0 || opt.conns <= 0 || opt.duration <= 0 || opt.duration > 600 ||
            opt.threads < 1 || opt.threads > 64 || opt.src_first < 1 || opt.src_first + opt.src_count > 255)
            usage();
        if (opt.threads > opt.conns)
            opt.threads = opt.conns;
        return;
    }
    opt.msg_len = strlen(opt.message);
    if (opt.nports == 0 || opt.conns <= 0 || opt.duration <= 0 || opt.duration > 600 ||
        opt.threads < 1 || opt.threads > 64 ||
        opt.msg_len == 0 || opt.msg_len >= LINE_MAX_BYTES ||
        opt.message[opt.msg_len - 1] != '\n' || memchr(opt.message, '\n', opt.msg_len - 1) ||
        opt.src_first < 1 || opt.src_first + opt.src_count > 255)
        usage();
    if (opt.threads > opt.conns)
        opt.threads = opt.conns;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    struct stats total = {0};
    struct worker *ws;
    struct rlimit rl;
    uint64_t t0, t_measure, t_end, t_done;
    double cpu0, cpu1;

    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (opt.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(opt.cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            die("sched_setaffinity");
    }
    total.fine = calloc(FINE_BUCKETS, sizeof *total.fine);
    total.coarse = calloc(COARSE_BUCKETS, sizeof *total.coarse);
    ws = calloc((size_t)opt.threads, sizeof *ws);
    if (!total.fine || !total.coarse || !ws)
        die("calloc");

    t0 = now_ns();
    t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
    t_end = t_measure + (uint64_t)(opt.duration * 1e9);
    for (int t = 0; t < opt.threads; t++) {
        struct worker *w = &ws[t];
        w->nslots = opt.conns / opt.threads + (t < opt.conns % opt.threads);
        w->slots = calloc((size_t)w->nslots, sizeof *w->slots);
        w->st.fine = calloc(FINE_BUCKETS, sizeof *w->st.fine);
        w->st.coarse = calloc(COARSE_BUCKETS, sizeof *w->st.coarse);
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!w->slots || !w->st.fine || !w->st.coarse || w->ep < 0)
            die("thread setup");
        /* Threads start on different source addresses, so their connections
         * spread over the address range from the first request on. */
        w->src_rr = (unsigned)(t * 7);
        w->port_rr = (unsigned)t;
        w->t_measure = t_measure;
        w->t_end = t_end;
        w->measuring = opt.warmup <= 0;
    }
    /* CPU time is counted over the whole run, warm-up included, then scaled
     * to the measured window below. */
    cpu0 = cpu_seconds();
    for (int t = 0; t < opt.threads; t++)
        if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0)
            die("pthread_create");
    for (int t = 0; t < opt.threads; t++)
        pthread_join(ws[t].tid, NULL);
    t_done = now_ns();
    cpu1 = cpu_seconds();

    for (int t = 0; t < opt.threads; t++) {
        struct stats *st = &ws[t].st;
        total.requests += st->requests;
        total.connects += st->connects;
        total.lat_sum += st->lat_sum;
        if (st->lat_max > total.lat_max)
            total.lat_max = st->lat_max;
        for (int k = 0; k < E_KINDS; k++)
            total.errors[k] += st->errors[k];
        for (int i = 0; i < FINE_BUCKETS; i++)
            total.fine[i] += st->fine[i];
        for (int i = 0; i < COARSE_BUCKETS; i++)
            total.coarse[i] += st->coarse[i];
    }

    /* The drain after the deadline is not part of the measured window. */
    double secs = (double)((t_done < t_end ? t_done : t_end) - t_measure) / 1e9;
    double all_secs = (double)(t_done - t0) / 1e9;
    double cpu = (cpu1 - cpu0) * (all_secs > 0 ? secs / all_secs : 1.0);
    uint64_t nerr = 0;
    for (int k = 0; k < E_KINDS; k++)
        nerr += total.errors[k];
    printf("{\"mode\": \"%s\", \"conns\": %d, \"threads\": %d, \"ports\": %d, \"duration_s\": %.3f, "
           "\"requests\": %llu, \"rps\": %.1f, \"errors\": %llu, \"errors_by_kind\": {",
           opt.http ? "http-close" : opt.persist ? "persist" : "conn", opt.conns, opt.threads, opt.nports, secs,
           (unsigned long long)total.requests, (double)total.requests / secs,
           (unsigned long long)nerr);
    for (int k = 0; k < E_KINDS; k++)
        printf("%s\"%s\": %llu", k ? ", " : "", err_names[k], (unsigned long long)total.errors[k]);
    printf("}, \"connects\": %llu, \"latency_us\": {\"p50\": %llu, \"p99\": %llu, "
           "\"max\": %llu, \"mean\": %.1f}, \"client_cpu_s\": %.3f, \"client_cpu_pct\": %.1f}\n",
           (unsigned long long)total.connects,
           (unsigned long long)percentile(&total, 0.50), (unsigned long long)percentile(&total, 0.99),
           (unsigned long long)total.lat_max,
           total.requests ? total.lat_sum / (double)total.requests : 0.0,
           cpu, secs > 0 ? 100.0 * cpu / secs : 0.0);
    return 0;
}
