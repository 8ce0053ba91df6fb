/* unwind_qsort: a CPU-bound loop whose hot function is a comparator that
 * libc's qsort calls, for the `unwind` section of `cargo xtask bench`. Built
 * with -O2 -fomit-frame-pointer, like libc itself: a frame-pointer walk stops
 * after a frame or two; unwinding with .eh_frame reaches main.
 *
 * Prints "ready" once running; on SIGTERM, finishes the current round and
 * prints "ROUNDS SECONDS" (sorts done and the time since "ready"). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N 20000

static volatile sig_atomic_t stop;

static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

/* Compares a hash of the values, so that the comparisons are not trivial. */
__attribute__((noinline)) static int compare(const void *a, const void *b) {
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    x = (x * 2654435761u) ^ (x >> 13);
    y = (y * 2654435761u) ^ (y >> 13);
    return (x > y) - (x < y);
}

__attribute__((noinline)) static void sort_round(unsigned *v, size_t n, unsigned *seed) {
    unsigned s = *seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        v[i] = s;
    }
    *seed = s;
    qsort(v, n, sizeof *v, compare);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    unsigned *v = malloc(N * sizeof *v);
    if (!v) {
        perror("malloc");
        return 1;
    }
    unsigned seed = 2463534242u;
    unsigned long rounds = 0;
    printf("ready\n");
    fflush(stdout);
    double begin = now();
    while (!stop) {
        sort_round(v, N, &seed);
        rounds++;
    }
    printf("%lu %.3f\n", rounds, now() - begin);
    free(v);
    return 0;
}
