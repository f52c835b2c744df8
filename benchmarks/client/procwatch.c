/*
 * procwatch: time how long until a server's children are waiting for
 * connections, for the process figures of the benchmark suite.
 *
 *   procwatch --ppid P --count N [--exclude p1,p2] [--wchan tok1,tok2]
 *             [--any-state] [--old-gone]
 *             [--signal SIG --target PID] [--since-ns T] [--timeout-ms 10000]
 *             [--interval-us 100]
 *
 * It optionally sends SIG to PID first (kill -9 of a child for respawn,
 * HUP of the parent for a restart), then scans /proc every interval until
 * at least N children of P that are not in the exclude list are blocked in
 * a kernel function whose name contains one of the wchan tokens ("in the
 * accept path"), and prints one JSON line with the elapsed time.  The clock
 * starts at --since-ns (a CLOCK_MONOTONIC value, e.g. taken by the caller
 * just before it exec'd the server) or at the kill.
 *
 * Why C, and why incremental: a respawn takes about 2 ms, and a full /proc
 * scan (readdir plus a stat read per process) costs about 1 ms, so polling
 * that way every 100 us would keep a whole core busy next to the server
 * being measured.  Instead new pids are found through
 * /proc/sys/kernel/ns_last_pid (only pids allocated since the last poll are
 * looked at), a child once seen waiting is not read again (at idle nothing
 * wakes it), and a full scan runs only at the start, every 50 ms as a
 * safety net, and after the pid counter wraps.  A poll then costs a few
 * microseconds plus one wchan read per child not yet waiting.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 4096
#define MAX_TOKENS 16
#define MAX_PENDING 256
#define PENDING_NS 20000000ull   /* retry a pid that did not exist yet for 20 ms */
#define FULL_SCAN_NS 50000000ull

struct kid {
    int pid;
    int old;    /* in --exclude: the previous generation */
    int ready;  /* seen in the accept path (sticky: at idle nothing wakes it) */
    int alive;
};

static int exclude[MAX_LIST], nexclude;
static char *tokens[MAX_TOKENS];
static int ntokens;
static struct kid kids[MAX_LIST];
static int nkids;
static struct { int pid; uint64_t since; } pending[MAX_PENDING];
static int npending;
static unsigned char *notours;   /* bitmap over pids known not to be children */
static int pid_max = 4194304;
static int ppid;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        return -1;
    n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return (int)n;
}

static int read_int(const char *path)
{
    char buf[64];
    return read_small(path, buf, sizeof buf) < 0 ? -1 : atoi(buf);
}

/* State letter and ppid from /proc/PID/stat; the comm field may hold spaces
 * and ')' so the fields are counted from the last ')'.  -1: no such pid. */
static int stat_of(int pid, char *state, int *parent)
{
    char path[64], buf[512], *p;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return -1;
    p = strrchr(buf, ')');
    if (!p || p[1] == 0 || p[2] == 0 || p[3] == 0)
        return -1;
    *state = p[2];
    *parent = atoi(p + 4);
    return 0;
}

static int alive_child(int pid)
{
    char state;
    int parent;
    return stat_of(pid, &state, &parent) == 0 && parent == ppid && state != 'Z' && state != 'X';
}

/* /proc/TID/stat exists for threads too; a child is a thread-group leader. */
static int is_process(int pid)
{
    char path[64], buf[1024], *p;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (read_small(path, buf, sizeof buf) < 0 || !(p = strstr(buf, "\nTgid:")))
        return 0;
    return atoi(p + 6) == pid;
}

static int in_accept_path(int pid)
{
    char path[64], wchan[128];
    snprintf(path, sizeof path, "/proc/%d/wchan", pid);
    if (read_small(path, wchan, sizeof wchan) < 0)
        return 0;
    for (int i = 0; i < ntokens; i++)
        if (strstr(wchan, tokens[i]))
            return 1;
    return 0;
}

static int excluded(int pid)
{
    for (int i = 0; i < nexclude; i++)
        if (exclude[i] == pid)
            return 1;
    return 0;
}

static int known_kid(int pid)
{
    for (int i = 0; i < nkids; i++)
        if (kids[i].pid == pid)
            return 1;
    return 0;
}

static void set_notours(int pid, int on)
{
    if (pid <= 0 || pid > pid_max)
        return;
    if (on)
        notours[pid >> 3] |= (unsigned char)(1u << (pid & 7));
    else
        notours[pid >> 3] &= (unsigned char)~(1u << (pid & 7));
}

static int is_notours(int pid)
{
    return pid > 0 && pid <= pid_max && (notours[pid >> 3] >> (pid & 7)) & 1;
}

/* Look at one pid: a new child is added, anything else remembered as not
 * ours, and a pid not there yet (fork in progress) retried for a while. */
static void probe(int pid, uint64_t now, int may_pend)
{
    char state;
    int parent;
    if (known_kid(pid))
        return;
    if (stat_of(pid, &state, &parent) < 0) {
        if (may_pend && npending < MAX_PENDING) {
            pending[npending].pid = pid;
            pending[npending].since = now;
            npending++;
        }
        return;
    }
    if (parent == ppid && state != 'Z' && state != 'X' && is_process(pid) && nkids < MAX_LIST) {
        kids[nkids].pid = pid;
        kids[nkids].old = excluded(pid);
        kids[nkids].ready = 0;
        kids[nkids].alive = 1;
        nkids++;
        set_notours(pid, 0);
    } else {
        set_notours(pid, 1);
    }
}

static void full_scan(uint64_t now)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        int pid = atoi(e->d_name);
        if (!is_notours(pid))
            probe(pid, now, 0);
    }
    closedir(d);
}

static void new_pids(int *last, uint64_t now)
{
    int cur = read_int("/proc/sys/kernel/ns_last_pid");
    if (cur < 0 || *last < 0) {
        full_scan(now);
        return;
    }
    if (cur == *last)
        return;
    if (cur > *last) {
        for (int p = *last + 1; p <= cur; p++) {
            set_notours(p, 0);
            probe(p, now, 1);
        }
    } else {
        /* The pid counter wrapped: every bit may be stale. */
        memset(notours, 0, (size_t)pid_max / 8 + 1);
        full_scan(now);
    }
    *last = cur;
}

static void retry_pending(uint64_t now)
{
    int keep = 0;
    for (int i = 0; i < npending; i++) {
        int pid = pending[i].pid;
        char state;
        int parent;
        if (stat_of(pid, &state, &parent) == 0) {
            probe(pid, now, 0);
        } else if (now - pending[i].since < PENDING_NS) {
            pending[keep++] = pending[i];
        }
    }
    npending = keep;
}

static void parse_list(char *s, int *out, int *n)
{
    for (char *t = strtok(s, ","); t && *n < MAX_LIST; t = strtok(NULL, ","))
        out[(*n)++] = atoi(t);
}

static void usage(void)
{
    fprintf(stderr, "usage: procwatch --ppid P --count N [--exclude p,..] [--wchan t,..]\n"
                    "                 [--any-state] [--old-gone]\n"
                    "                 [--signal SIG --target PID] [--since-ns T]\n"
                    "                 [--timeout-ms 10000] [--interval-us 100]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct option lo[] = {
        {"ppid", 1, 0, 'p'}, {"count", 1, 0, 'c'}, {"exclude", 1, 0, 'x'},
        {"wchan", 1, 0, 'w'}, {"signal", 1, 0, 's'}, {"target", 1, 0, 't'},
        {"since-ns", 1, 0, 'S'}, {"timeout-ms", 1, 0, 'T'},
        {"interval-us", 1, 0, 'i'}, {"any-state", 0, 0, 'a'}, {"old-gone", 0, 0, 'g'},
        {0, 0, 0, 0}
    };
    int count = 0, sig = 0, target = 0, timeout_ms = 10000, interval_us = 100, c;
    int any_state = 0, old_gone = 0, last;
    uint64_t t0 = 0, deadline, last_full;
    long polls = 0;
    char wbuf[MAX_TOKENS * 64] = "inet_csk_accept";

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p': ppid = atoi(optarg); break;
        case 'c': count = atoi(optarg); break;
        case 'x': parse_list(optarg, exclude, &nexclude); break;
        case 'w': snprintf(wbuf, sizeof wbuf, "%s", optarg); break;
        case 's': sig = atoi(optarg); break;
        case 't': target = atoi(optarg); break;
        case 'S': t0 = strtoull(optarg, NULL, 10); break;
        case 'T': timeout_ms = atoi(optarg); break;
        case 'i': interval_us = atoi(optarg); break;
        case 'a': any_state = 1; break;
        case 'g': old_gone = 1; break;
        default: usage();
        }
    }
    if (ppid <= 1 || count <= 0 || (sig && target <= 1))
        usage();
    for (char *t = strtok(wbuf, ","); t && ntokens < MAX_TOKENS; t = strtok(NULL, ","))
        tokens[ntokens++] = t;
    if (read_int("/proc/sys/kernel/pid_max") > 0)
        pid_max = read_int("/proc/sys/kernel/pid_max");
    notours = calloc((size_t)pid_max / 8 + 1, 1);
    if (!notours) {
        printf("{\"ok\": false, \"error\": \"out of memory\"}\n");
        return 1;
    }

    /* Know the current children before any signal, so the counter starts
     * from a complete picture. */
    last = read_int("/proc/sys/kernel/ns_last_pid");
    last_full = now_ns();
    full_scan(last_full);
    if (sig) {
        t0 = now_ns();
        if (kill(target, sig) < 0) {
            printf("{\"ok\": false, \"error\": \"kill %d: %s\"}\n", target, strerror(errno));
            return 1;
        }
    } else if (t0 == 0) {
        t0 = now_ns();
    }
    deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

    for (;;) {
        int nready = 0, nold = 0, nlive = 0;
        uint64_t t = now_ns();

        polls++;
        new_pids(&last, t);
        retry_pending(t);
        if (t - last_full > FULL_SCAN_NS) {
            full_scan(t);
            last_full = t;
        }
        for (int i = 0; i < nkids; i++) {
            struct kid *k = &kids[i];
            if (!k->alive)
                continue;
            if (k->old) {
                if (old_gone && !(k->alive = alive_child(k->pid)))
                    continue;
                nold++;
                continue;
            }
            if (any_state) {
                if ((k->alive = alive_child(k->pid)))
                    nready++;
                continue;
            }
            if (!k->ready)
                k->ready = in_accept_path(k->pid);
            nready += k->ready;
        }
        for (int i = 0; i < nkids; i++)
            nlive += kids[i].alive;
        t = now_ns();
        if (nready >= count && !(old_gone && nold > 0)) {
            int first = 1;
            printf("{\"ok\": true, \"elapsed_us\": %.1f, \"t_ready_ns\": %llu, \"polls\": %ld, "
                   "\"children\": %d, \"ready\": [",
                   (double)(t - t0) / 1000.0, (unsigned long long)t, polls, nlive);
            for (int i = 0; i < nkids; i++) {
                if (kids[i].old || !kids[i].alive || !(any_state || kids[i].ready))
                    continue;
                printf("%s%d", first ? "" : ", ", kids[i].pid);
                first = 0;
            }
            printf("]}\n");
            return 0;
        }
        if (t > deadline) {
            printf("{\"ok\": false, \"error\": \"timeout: %d of %d wanted children %s "
                   "after %d ms (%d children seen, %d of them old)\", \"polls\": %ld}\n",
                   nready, count, any_state ? "alive" : "in the accept path", timeout_ms, nlive, nold, polls);
            return 1;
        }
        {
            /* A parent that died is a zombie until the suite reaps it. */
            char state;
            int grandparent;
            if (stat_of(ppid, &state, &grandparent) < 0 || state == 'Z' || state == 'X') {
                printf("{\"ok\": false, \"error\": \"the server's parent (pid %d) exited\", \"polls\": %ld}\n",
                       ppid, polls);
                return 1;
            }
        }
        struct timespec ts = { 0, (long)interval_us * 1000L };
        nanosleep(&ts, NULL);
    }
}
