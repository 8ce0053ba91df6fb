// One process, one thread, named COMM, spinning on a CPU until killed or
// until SECONDS have passed (alarm(2): nothing is left behind if the test
// dies). Announces `pid N`, `tid spin N` and `ready`. The test moves it into
// cgroups by writing its pid to cgroup.procs.
// Usage: spinner COMM SECONDS
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile unsigned long sink;

__attribute__((noinline)) void tp_spin(void) {
    for (;;)
        for (int i = 0; i < 1000; i++) sink += i;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: spinner COMM SECONDS\n");
        return 2;
    }
    prctl(PR_SET_NAME, argv[1], 0, 0, 0);
    alarm((unsigned)atoi(argv[2]));
    printf("pid %d\ntid spin %ld\nready\n", getpid(), (long)syscall(SYS_gettid));
    fflush(stdout);
    tp_spin();
    return 0;
}
