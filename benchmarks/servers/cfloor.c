/*
 * cfloor: the smallest useful pre-fork line-echo server, as a floor for the
 * benchmark suite.  Nothing here is configurable beyond what the suite needs.
 *
 *   cfloor --port 127.0.0.1:P [--port 127.0.0.1:P2] --workers N [--once]
 *
 * The parent binds, forks N children and replaces any child that exits; on
 * TERM or INT it kills its children and leaves.  A child echoes lines until
 * EOF, or with --once echoes one line and closes.
 *
 * One listener: every child blocks in accept() on the shared socket; the
 * kernel wakes one waiter per connection (exclusive wait queue), so no
 * serialization is needed.
 * Two listeners: the sockets are non-blocking and each child poll()s both,
 * then tries accept(); losers of the race get EAGAIN and poll again.  That is
 * the unserialized "thundering herd" variant, the cheapest thing that works.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LISTENERS 2
#define MAX_WORKERS 1024

static int listeners[MAX_LISTENERS], nlisteners, once;
static pid_t children[MAX_WORKERS];
static int nworkers;
static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

static int bind_listener(const char *spec)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    struct sockaddr_in a = { .sin_family = AF_INET };
    int one = 1, fd;

    if (!colon || (size_t)(colon - spec) >= sizeof host) {
        fprintf(stderr, "cfloor: --port %s: expected HOST:PORT\n", spec);
        exit(2);
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "cfloor: --port %s: %s is not an IPv4 address\n", spec, host);
        exit(2);
    }
    a.sin_port = htons((unsigned short)atoi(colon + 1));
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "cfloor: bind %s: %s\n", spec, strerror(errno));
        exit(1);
    }
    return fd;
}

static void serve(int c)
{
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(c, buf + have, sizeof buf - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        /* Echo every complete line; keep a partial one for the next read. */
        char *end = memrchr(buf, '\n', have);
        if (end) {
            size_t len = (size_t)(end - buf) + 1;
            if (write(c, buf, len) != (ssize_t)len)
                break;
            memmove(buf, buf + len, have - len);
            have -= len;
            if (once)
                break;
        } else if (have == sizeof buf) {
            break;
        }
    }
    close(c);
}

static void child_loop(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    if (nlisteners == 1) {
        for (;;) {
            int c = accept(listeners[0], NULL, NULL);
            if (c >= 0)
                serve(c);
        }
    }
    struct pollfd p[MAX_LISTENERS];
    for (int i = 0; i < nlisteners; i++)
        p[i] = (struct pollfd){ .fd = listeners[i], .events = POLLIN };
    for (;;) {
        if (poll(p, (nfds_t)nlisteners, -1) <= 0)
            continue;
        for (int i = 0; i < nlisteners; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int c = accept(listeners[i], NULL, NULL);
            if (c >= 0) {
                /* The accepted socket inherits nothing from the non-blocking
                 * listener on Linux, so plain blocking I/O works here. */
                serve(c);
            }
        }
    }
}

static pid_t spawn(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        child_loop();
        _exit(0);
    }
    return pid;
}

int main(int argc, char **argv)
{
    static struct option lo[] = {
        {"port", 1, 0, 'p'}, {"workers", 1, 0, 'n'}, {"once", 0, 0, 'o'}, {0, 0, 0, 0}
    };
    struct sigaction sa = { .sa_handler = on_stop };
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (nlisteners == MAX_LISTENERS) {
                fprintf(stderr, "cfloor: at most %d --port\n", MAX_LISTENERS);
                return 2;
            }
            listeners[nlisteners++] = bind_listener(optarg);
            break;
        case 'n': nworkers = atoi(optarg); break;
        case 'o': once = 1; break;
        default:
            fprintf(stderr, "usage: cfloor --port HOST:PORT [--port HOST:PORT] --workers N [--once]\n");
            return 2;
        }
    }
    if (nlisteners == 0 || nworkers < 1 || nworkers > MAX_WORKERS) {
        fprintf(stderr, "cfloor: need --port and --workers 1..%d\n", MAX_WORKERS);
        return 2;
    }
    if (nlisteners > 1)
        for (int i = 0; i < nlisteners; i++)
            fcntl(listeners[i], F_SETFL, fcntl(listeners[i], F_GETFL) | O_NONBLOCK);

    /* No SA_RESTART: the handler must cut wait() short so the loop sees it. */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (int i = 0; i < nworkers; i++)
        children[i] = spawn();
    while (!stopping) {
        int status;
        pid_t pid = wait(&status);
        if (pid < 0)
            continue;
        for (int i = 0; i < nworkers; i++)
            if (children[i] == pid && !stopping)
                children[i] = spawn();
    }
    for (int i = 0; i < nworkers; i++)
        kill(children[i], SIGKILL);
    while (wait(NULL) > 0)
        ;
    return 0;
}
