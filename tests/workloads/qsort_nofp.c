// One thread named tp-qsort sorts a large array with libc's qsort, over and
// over. Almost all its time is spent in the comparator tp_qsort_cmp, called
// by qsort's internals (glibc: qsort -> qsort_r -> msort_with_tmp, recursive),
// and those are the frames the truth tests expect:
//   _start ... main -> tp_sort_rounds -> qsort_r -> msort_with_tmp... -> tp_qsort_cmp
// Built with -O2 -fomit-frame-pointer: neither this program nor Debian's libc
// keeps frame pointers, so only CFI (.eh_frame) unwinding gives whole stacks.
// The comparator does a fixed amount of arithmetic per call so that it, not
// qsort's bookkeeping, holds the samples; refilling the array between rounds
// is well under 1% of the time. Deterministic: a fixed-seed generator.
// Exits after SECONDS (alarm), so nothing is left behind if the test dies.
// Usage: qsort_nofp SECONDS
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define N 100000
#define WORK 128

static unsigned int values[N];
static volatile unsigned long sink;

// Mixes a key WORK times; the mix is monotonic in nothing, so the comparison
// result still depends only on the keys (a total order: ties broken by key).
__attribute__((noinline)) int tp_qsort_cmp(const void *pa, const void *pb) {
    unsigned int a = *(const unsigned int *)pa, b = *(const unsigned int *)pb;
    unsigned int ha = a, hb = b;
    for (int i = 0; i < WORK; i++) {
        ha = ha * 2654435761u + 0x9e3779b9u;
        hb = hb * 2654435761u + 0x9e3779b9u;
        ha ^= ha >> 15;
        hb ^= hb >> 15;
    }
    if (ha != hb) return ha < hb ? -1 : 1;
    return (a > b) - (a < b);
}

__attribute__((noinline)) void tp_fill(unsigned int *seed) {
    for (int i = 0; i < N; i++) {
        *seed = *seed * 1103515245u + 12345u;
        values[i] = *seed;
    }
}

__attribute__((noinline)) void tp_sort_rounds(volatile int *keep_going) {
    unsigned int seed = 42;
    while (*keep_going) {
        tp_fill(&seed);
        qsort(values, N, sizeof values[0], tp_qsort_cmp);
        sink += values[N / 2];
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: qsort_nofp SECONDS\n");
        return 2;
    }
    static volatile int keep_going = 1;
    prctl(PR_SET_NAME, "tp-qsort", 0, 0, 0);
    alarm((unsigned)atoi(argv[1]));
    printf("pid %d\ntid sort %ld\nready\n", getpid(), (long)syscall(SYS_gettid));
    fflush(stdout);
    tp_sort_rounds(&keep_going);
    printf("%lu\n", sink);
    return 0;
}
