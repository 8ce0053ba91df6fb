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
#define WORKLOAD "thread_states"
#define COMM_PREFIX "tp-"
#include "thread_kinds.h"

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
