// The workload of the thread-state truth tests of both tiers (issue: running
// time read as runnable, sampled states missing running threads). Threads
// of known scheduler behaviour, each announcing its tid (comm tt-NAME):
//   mix21   spins 2 ms, sleeps 1 ms          } both pinned to CPU 0:
//   duty37  spins 3 ms, sleeps 7 ms          } a periodic spin/sleep pair
//   pin-a, pin-b  spin, both pinned to CPU 1
//   fsync   pwrite BLOCK bytes + fdatasync in a loop on a file in DIR (disk
//           waits in D state; DIR must be disk-backed, tmpfs is refused)
//   reader  blocked in read(2) on a pipe
//   writer  writes one byte into that pipe every 50 ms
//   sleep   nanosleep(2) loop of 20 ms
// On a 2-CPU host every CPU is shared, so the snapshot thread always
// preempts one of them. The main thread and the unpinned ones may run
// anywhere.
// Usage: tier_truth SECONDS DIR [BLOCK]   (BLOCK defaults to 4096)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

static volatile unsigned long sink;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static int pipe_fds[2];
static int fsync_fd = -1;
static size_t fsync_block = 4096;

struct spec {
    const char *name;
    int cpu;                  // -1: not pinned
    unsigned long spin_us;    // 0 with sleep_us 0: spin for ever
    unsigned long sleep_us;
};

static void die(const char *what) {
    fprintf(stderr, "tier_truth: %s: %s\n", what, strerror(errno));
    exit(2);
}

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void start(const struct spec *s) {
    if (s->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(s->cpu, &set);
        int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        if (err) {
            errno = err;
            die("pin");
        }
    }
    char comm[16];
    snprintf(comm, sizeof comm, "tt-%s", s->name);
    pthread_setname_np(pthread_self(), comm);
    pthread_mutex_lock(&print_lock);
    printf("tid %s %ld\n", s->name, (long)syscall(SYS_gettid));
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);
}

static void *spinner(void *arg) {
    const struct spec *s = arg;
    start(s);
    if (!s->spin_us) for (;;) sink++;
    struct timespec rest = {(time_t)(s->sleep_us / 1000000), (long)(s->sleep_us % 1000000) * 1000};
    for (;;) {
        unsigned long long end = now_ns() + s->spin_us * 1000ull;
        while (now_ns() < end)
            for (int i = 0; i < 100; i++) sink += i;
        nanosleep(&rest, NULL);
    }
    return NULL;
}

static void *sleeper(void *arg) {
    start(arg);
    struct timespec t = {0, 20000000};
    for (;;) syscall(SYS_nanosleep, &t, NULL);
    return NULL;
}

static void *reader(void *arg) {
    start(arg);
    char c;
    for (;;)
        if (read(pipe_fds[0], &c, 1) < 0 && errno != EINTR) die("read pipe");
    return NULL;
}

static void *writer(void *arg) {
    start(arg);
    struct timespec gap = {0, 50000000};
    for (;;) {
        nanosleep(&gap, NULL);
        if (write(pipe_fds[1], "x", 1) != 1) die("write pipe");
    }
    return NULL;
}

static void *fsyncer(void *arg) {
    start(arg);
    char *block = malloc(fsync_block);
    if (!block) die("malloc");
    for (unsigned long n = 0;; n++) {
        memset(block, (int)(n & 0xff), fsync_block);
        if (pwrite(fsync_fd, block, fsync_block, 0) != (ssize_t)fsync_block) die("pwrite");
        if (fdatasync(fsync_fd)) die("fdatasync");
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tier_truth SECONDS DIR [BLOCK]\n");
        return 2;
    }
    unsigned seconds = (unsigned)atoi(argv[1]);
    const char *dir = argv[2];
    if (argc > 3) fsync_block = (size_t)strtoul(argv[3], NULL, 0);
    if (fsync_block == 0) {
        fprintf(stderr, "tier_truth: BLOCK must be a positive number of bytes\n");
        return 2;
    }
    struct statfs fs;
    if (statfs(dir, &fs)) die(dir);
    if (fs.f_type == TMPFS_MAGIC) {
        fprintf(stderr, "tier_truth: %s is tmpfs, where fdatasync never blocks; give a disk-backed directory\n", dir);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tailprof-tier-XXXXXX", dir);
    fsync_fd = mkstemp(path);
    if (fsync_fd < 0) die(path);
    unlink(path);
    if (pipe(pipe_fds)) die("pipe");
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("pid %d\n", getpid());
    fflush(stdout);
    static struct spec specs[] = {
        {"mix21", 0, 2000, 1000}, {"duty37", 0, 3000, 7000}, {"pin-a", 1, 0, 0}, {"pin-b", 1, 0, 0},
    };
    static struct spec others[] = {{"fsync", -1, 0, 0}, {"reader", -1, 0, 0}, {"writer", -1, 0, 0}, {"sleep", -1, 0, 0}};
    pthread_t t;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        if (specs[i].cpu >= cpus) specs[i].cpu = cpus - 1;
        pthread_create(&t, NULL, spinner, &specs[i]);
    }
    pthread_create(&t, NULL, fsyncer, &others[0]);
    pthread_create(&t, NULL, reader, &others[1]);
    pthread_create(&t, NULL, writer, &others[2]);
    pthread_create(&t, NULL, sleeper, &others[3]);
    usleep(300000);
    printf("ready\n");
    fflush(stdout);
    usleep(seconds * 1000000u);
    return 0;
}
