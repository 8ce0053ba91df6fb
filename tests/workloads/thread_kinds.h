// Threads of known scheduler behaviour shared by the truth-test workloads
// (thread_states.c, tier_truth.c). The including file defines WORKLOAD (its
// name, for messages) and COMM_PREFIX (each thread is named COMM_PREFIX NAME
// and announces "tid NAME TID" on stdout):
//   reader  blocked in read(2) on a pipe
//   writer  writes one byte into that pipe every 50 ms: the reader's waker
//   fsyncer pwrite fsync_block bytes + fdatasync in a loop on a file made by
//           open_fsync_file(DIR): blocks in D state on the disk. DIR must be
//           disk-backed (on tmpfs fdatasync never waits): tmpfs is refused.
//           The file is unlinked as soon as it is open.
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

static void die(const char *what) {
    fprintf(stderr, WORKLOAD ": %s: %s\n", what, strerror(errno));
    exit(2);
}

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void announce(const char *name) {
    char comm[16];
    snprintf(comm, sizeof comm, COMM_PREFIX "%s", name);
    pthread_setname_np(pthread_self(), comm);
    pthread_mutex_lock(&print_lock);
    printf("tid %s %ld\n", name, (long)syscall(SYS_gettid));
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);
}

static void spin_for(unsigned long long ns) {
    unsigned long long end = now_ns() + ns;
    while (now_ns() < end)
        for (int i = 0; i < 100; i++) sink += i;
}

static void *reader(void *arg) {
    announce(arg);
    char c;
    for (;;)
        if (read(pipe_fds[0], &c, 1) < 0 && errno != EINTR) die("read pipe");
    return NULL;
}

static void *writer(void *arg) {
    announce(arg);
    struct timespec gap = {0, 50000000};
    for (;;) {
        nanosleep(&gap, NULL);
        if (write(pipe_fds[1], "x", 1) != 1) die("write pipe");
    }
    return NULL;
}

static void *fsyncer(void *arg) {
    announce(arg);
    char *block = malloc(fsync_block);
    if (!block) die("malloc");
    for (unsigned long n = 0;; n++) {
        memset(block, (int)(n & 0xff), fsync_block);
        if (pwrite(fsync_fd, block, fsync_block, 0) != (ssize_t)fsync_block) die("pwrite");
        if (fdatasync(fsync_fd)) die("fdatasync");
    }
    return NULL;
}

static void open_fsync_file(const char *dir) {
    struct statfs fs;
    if (statfs(dir, &fs)) die(dir);
    if (fs.f_type == TMPFS_MAGIC) {
        fprintf(stderr, WORKLOAD ": %s is tmpfs, where fdatasync never blocks; give a disk-backed directory\n", dir);
        exit(2);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tailprof-fsync-XXXXXX", dir);
    fsync_fd = mkstemp(path);
    if (fsync_fd < 0) die(path);
    unlink(path);
}
