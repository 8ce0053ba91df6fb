// A spinner whose hot function is named by the build: TP_HOT=tp_original_hot
// for the binary that runs, TP_HOT=tp_impostor_hot for the one the test
// writes over its path once it runs. Same code, so the impostor's hot
// function sits at the same offset: a symbolizer that reads the path on disk
// instead of the mapped file names the frame wrongly rather than not at all.
// Announces `pid N`, `tid spin N` and `ready`; exits after SECONDS (alarm).
// Usage: replaced SECONDS
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef TP_HOT
#error "build with -DTP_HOT=NAME"
#endif

static volatile unsigned long sink;

__attribute__((noinline)) void TP_HOT(void) {
    for (;;)
        for (int i = 0; i < 1000; i++) sink += i;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: replaced SECONDS\n");
        return 2;
    }
    prctl(PR_SET_NAME, "tp-replaced", 0, 0, 0);
    alarm((unsigned)atoi(argv[1]));
    printf("pid %d\ntid spin %ld\nready\n", getpid(), (long)syscall(SYS_gettid));
    fflush(stdout);
    TP_HOT();
    return 0;
}
