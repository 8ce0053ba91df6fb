// A thread named tp-ratio spends two thirds of its time in
// tp_hot_two_thirds and one third in tp_hot_one_third. Each spins for a
// slice of clock time (2 ms and 1 ms), not a count of iterations: two
// identical loops can run at different speeds (perf sees the same), while
// time slices hold the ratio. Built with frame pointers.
// Usage: hot_ratio SECONDS
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static inline unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); // vDSO: no system call
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

__attribute__((noinline)) void tp_hot_two_thirds(unsigned long long ns) {
    unsigned long long end = now_ns() + ns;
    do {
        for (int i = 0; i < 1000; i++) sink += i;
    } while (now_ns() < end);
}

__attribute__((noinline)) void tp_hot_one_third(unsigned long long ns) {
    unsigned long long end = now_ns() + ns;
    do {
        for (int i = 0; i < 1000; i++) sink += i;
    } while (now_ns() < end);
}

__attribute__((noinline)) void *tp_worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "tp-ratio");
    printf("tid ratio %ld\n", (long)syscall(SYS_gettid));
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        tp_hot_two_thirds(2000000);
        tp_hot_one_third(1000000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 10;
    printf("pid %d\n", getpid());
    fflush(stdout);
    pthread_t t;
    if (pthread_create(&t, NULL, tp_worker, NULL) != 0) return 1;
    usleep(seconds * 1000000u);
    return 0;
}
