// Spins for 10 ms of its own CPU time, then exits. The exec storm test
// hard-links this binary to many names (storm-000, storm-001, ...) and runs
// them one after another: each run is a new process whose comm and exe are
// the name it was run by. No output.
#define _GNU_SOURCE
#include <time.h>

static volatile unsigned long sink;

static long long cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

__attribute__((noinline)) void tp_storm_spin(long long ns) {
    long long end = cpu_ns() + ns;
    do {
        for (int i = 0; i < 1000; i++) sink += i;
    } while (cpu_ns() < end);
}

int main(void) {
    tp_storm_spin(10000000ll);
    return 0;
}
