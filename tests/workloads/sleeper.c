// One thread that sleeps exactly 10 ms (clock_nanosleep, relative) in a
// loop: every off-CPU sleeping interval is 10 ms plus the timer slack and
// wakeup latency. Announces `pid N`, `tid sleeper N`, `ready`; ends after
// SECONDS (alarm). Usage: sleeper SECONDS
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: sleeper SECONDS\n");
        return 2;
    }
    alarm((unsigned)atoi(argv[1]));
    prctl(PR_SET_NAME, "sleeper", 0, 0, 0);
    printf("pid %d\ntid sleeper %ld\nready\n", getpid(), (long)syscall(SYS_gettid));
    fflush(stdout);
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    for (;;) clock_nanosleep(CLOCK_MONOTONIC, 0, &ten_ms, NULL);
}
