// Threads of known scheduler behaviour, each announcing its tid (comm tp-NAME):
//   spin    spins all the time
//   sleep   sleeps in nanosleep(2) (the system call itself, 1 s at a time):
//           asleep through the window but for a few microseconds a second
//   pin-a, pin-b  spin, both pinned to CPU 0: each about half runnable.
//           Every other thread is kept off CPU 0 (when there is another
//           CPU), so that the two share CPU 0 with nothing but the kernel
//           and the profiler.
//   duty    spins 3 ms, sleeps 7 ms
//   reader  blocked in read(2) on a pipe (pipe_read in the kernel)
//   writer  writes one byte into that pipe every 50 ms: the reader's waker
//   fsync   pwrite BLOCK bytes (4 KiB) + fdatasync in a loop on a file in
//           DIR: blocks in D state on the disk. DIR must be disk-backed: on
//           tmpfs fdatasync never waits, so a tmpfs DIR is refused. The file
//           is unlinked as soon as it is open: nothing is left behind.
// Usage: thread_states SECONDS [DIR [BLOCK]]
//   DIR defaults to $TMPDIR, then /var/tmp; BLOCK to 4096.
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
    fprintf(stderr, "thread_states: %s: %s\n", what, strerror(errno));
    exit(2);
}

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void announce(const char *name) {
    char comm[16];
    snprintf(comm, sizeof comm, "tp-%s", name);
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

static void *spin(void *arg) {
    announce(arg);
    for (;;) sink++;
    return NULL;
}

static void *sleeper(void *arg) {
    announce(arg);
    struct timespec second = {1, 0};
    // nanosleep(2) itself: glibc's nanosleep() calls clock_nanosleep(2).
    for (;;) syscall(SYS_nanosleep, &second, NULL);
    return NULL;
}

static void *pinned(void *arg) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (err) {
        errno = err;
        die("pin to CPU 0");
    }
    announce(arg);
    for (;;) sink++;
    return NULL;
}

static void *duty(void *arg) {
    announce(arg);
    struct timespec rest = {0, 7000000};
    for (;;) {
        spin_for(3000000);
        nanosleep(&rest, NULL);
    }
    return NULL;
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
        fprintf(stderr, "thread_states: %s is tmpfs, where fdatasync never blocks; give a disk-backed directory\n", dir);
        exit(2);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tailprof-fsync-XXXXXX", dir);
    fsync_fd = mkstemp(path);
    if (fsync_fd < 0) die(path);
    unlink(path);
}

int main(int argc, char **argv) {
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 10;
    const char *dir = argc > 2 ? argv[2] : getenv("TMPDIR");
    if (!dir || !*dir) dir = "/var/tmp";
    if (argc > 3) fsync_block = (size_t)strtoul(argv[3], NULL, 0);
    if (fsync_block == 0) {
        fprintf(stderr, "thread_states: BLOCK must be a positive number of bytes\n");
        exit(2);
    }
    open_fsync_file(dir);
    if (pipe(pipe_fds)) die("pipe");
    // Keep this thread and those it creates off CPU 0; pin-a and pin-b move there.
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set)) die("sched_getaffinity");
    if (CPU_COUNT(&set) > 1 && CPU_ISSET(0, &set)) {
        CPU_CLR(0, &set);
        if (sched_setaffinity(0, sizeof set, &set)) die("keep off CPU 0");
    }
    printf("pid %d\n", getpid());
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, NULL, spin, "spin");
    pthread_create(&t, NULL, sleeper, "sleep");
    pthread_create(&t, NULL, pinned, "pin-a");
    pthread_create(&t, NULL, pinned, "pin-b");
    pthread_create(&t, NULL, duty, "duty");
    pthread_create(&t, NULL, reader, "reader");
    pthread_create(&t, NULL, writer, "writer");
    pthread_create(&t, NULL, fsyncer, "fsync");
    usleep(200000);
    printf("ready\n");
    fflush(stdout);
    usleep(seconds * 1000000u);
    return 0;
}
