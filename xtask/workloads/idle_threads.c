/* idle_threads N: start N threads that stay blocked (never runnable), print
 * "ready" once all exist, and exit when stdin reaches end of file, so the
 * threads vanish with the benchmark that started this process even if it
 * dies. Used by `cargo xtask bench` to measure the cost of one thread-state
 * snapshot per thread on the host.
 *
 * Small stacks (64 KiB) keep 10,000 threads within a few hundred MiB of
 * address space and a few MiB of memory. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

static void *idle(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;)
        pthread_cond_wait(&never, &lock); /* futex wait: sleeping, off CPU */
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s THREADS\n", argv[0]);
        return 2;
    }
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*end != '\0' || n < 0 || n > 1000000) {
        fprintf(stderr, "idle_threads: bad thread count '%s'\n", argv[1]);
        return 2;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int err = pthread_create(&t, &attr, idle, NULL);
        if (err != 0) {
            fprintf(stderr, "idle_threads: thread %ld of %ld: %s (see ulimit -u, kernel.threads-max, kernel.pid_max, vm.max_map_count)\n",
                    i + 1, n, strerror(err));
            return 1;
        }
    }
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}
