// Threads of known scheduler behaviour, each announcing its tid:
//   spin   spins all the time
//   sleep  sleeps in nanosleep
//   pin-a, pin-b  spin, both pinned to CPU 0: each about half runnable
//   duty   spins 3 ms, sleeps 7 ms
// Usage: thread_states SECONDS
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

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
}

static void *sleeper(void *arg) {
    announce(arg);
    for (;;) sleep(100);
}

static void *pinned(void *arg) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    announce(arg);
    for (;;) sink++;
}

static void *duty(void *arg) {
    announce(arg);
    struct timespec rest = {0, 7000000};
    for (;;) {
        spin_for(3000000);
        nanosleep(&rest, NULL);
    }
}

int main(int argc, char **argv) {
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 10;
    printf("pid %d\n", getpid());
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, NULL, spin, "spin");
    pthread_create(&t, NULL, sleeper, "sleep");
    pthread_create(&t, NULL, pinned, "pin-a");
    pthread_create(&t, NULL, pinned, "pin-b");
    pthread_create(&t, NULL, duty, "duty");
    usleep(200000);
    printf("ready\n");
    fflush(stdout);
    usleep(seconds * 1000000u);
    return 0;
}
