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
#define WORKLOAD "tier_truth"
#define COMM_PREFIX "tt-"
#include "thread_kinds.h"

struct spec {
    const char *name;
    int cpu;                  // -1: not pinned
    unsigned long spin_us;    // 0 with sleep_us 0: spin for ever
    unsigned long sleep_us;
};

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
    announce(s->name);
}

static void *spinner(void *arg) {
    const struct spec *s = arg;
    start(s);
    if (!s->spin_us) for (;;) sink++;
    struct timespec rest = {(time_t)(s->sleep_us / 1000000), (long)(s->sleep_us % 1000000) * 1000};
    for (;;) {
        spin_for(s->spin_us * 1000ull);
        nanosleep(&rest, NULL);
    }
    return NULL;
}

static void *sleeper(void *arg) {
    announce(arg);
    struct timespec t = {0, 20000000};
    for (;;) syscall(SYS_nanosleep, &t, NULL);
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
    open_fsync_file(dir);
    if (pipe(pipe_fds)) die("pipe");
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("pid %d\n", getpid());
    fflush(stdout);
    static struct spec specs[] = {
        {"mix21", 0, 2000, 1000}, {"duty37", 0, 3000, 7000}, {"pin-a", 1, 0, 0}, {"pin-b", 1, 0, 0},
    };

    pthread_t t;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        if (specs[i].cpu >= cpus) specs[i].cpu = cpus - 1;
        pthread_create(&t, NULL, spinner, &specs[i]);
    }
    pthread_create(&t, NULL, fsyncer, "fsync");
    pthread_create(&t, NULL, reader, "reader");
    pthread_create(&t, NULL, writer, "writer");
    pthread_create(&t, NULL, sleeper, "sleep");
    usleep(300000);
    printf("ready\n");
    fflush(stdout);
    usleep(seconds * 1000000u);
    return 0;
}
