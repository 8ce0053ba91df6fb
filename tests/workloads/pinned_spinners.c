// Two threads that spin on the same CPU, so that each waits for the other
// in the run queue: run-queue latency of known total (schedstat's
// run_delay) and of the scheduler's slice length. Announces `pid N`,
// `tid spin-a N`, `tid spin-b N` and `ready`; ends after SECONDS (alarm).
// Usage: pinned_spinners CPU SECONDS
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile unsigned long sink;
static int cpu;

static void *spin(void *name) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    printf("tid %s %ld\n", (char *)name, (long)syscall(SYS_gettid));
    fflush(stdout);
    for (;;)
        for (int i = 0; i < 1000; i++) sink += i;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: pinned_spinners CPU SECONDS\n");
        return 2;
    }
    cpu = atoi(argv[1]);
    alarm((unsigned)atoi(argv[2]));
    printf("pid %d\n", getpid());
    pthread_t a, b;
    pthread_create(&a, NULL, spin, "spin-a");
    pthread_create(&b, NULL, spin, "spin-b");
    usleep(100000);
    printf("ready\n");
    fflush(stdout);
    pthread_join(a, NULL);
    return 0;
}
