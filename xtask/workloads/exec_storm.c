/* exec_storm: an exec storm for `cargo xtask bench` (enrichment section).
 *
 * Run under a name starting with "storm-" (a hard link the benchmark makes,
 * storm-0000, storm-0001, ...), it spins for 1 ms and exits: a short-lived
 * program with a name (comm, exe) of its own. The spin reads
 * CLOCK_MONOTONIC, which the vDSO serves without a system call (a CPU-time
 * clock would make hundreds of system calls per millisecond, and every
 * syscall hook of a profiler would weigh on the storm).
 *
 * Run as `exec_storm DIR COUNT`, it is the driver: it forks and execs
 * DIR/storm-0000 .. DIR/storm-(COUNT-1) one after another, as a shell loop
 * would, waits for each, and prints the wall time of the whole storm in
 * seconds. Each run is a new process (one fork, one exec). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 1000000ll

static volatile unsigned long sink;

static long long clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

__attribute__((noinline)) static void storm_spin(long long ns) {
    long long end = clock_ns(CLOCK_MONOTONIC) + ns;
    do {
        for (int i = 0; i < 1000; i++) sink += i;
    } while (clock_ns(CLOCK_MONOTONIC) < end);
}

int main(int argc, char **argv) {
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (strncmp(base, "storm-", 6) == 0) {
        storm_spin(SPIN_NS);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s DIR COUNT\n", argv[0]);
        return 2;
    }
    char *end;
    long count = strtol(argv[2], &end, 10);
    if (*end != '\0' || count < 0 || count > 9999) {
        fprintf(stderr, "exec_storm: bad count '%s' (0 to 9999)\n", argv[2]);
        return 2;
    }
    long long begin = clock_ns(CLOCK_MONOTONIC);
    for (long i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/storm-%04ld", argv[1], i);
        pid_t pid = fork();
        if (pid < 0) {
            perror("exec_storm: fork");
            return 1;
        }
        if (pid == 0) {
            char *args[] = {path, NULL};
            execv(path, args);
            perror(path);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "exec_storm: %s failed (wait status %#x)\n", path, status);
            return 1;
        }
    }
    long long finish = clock_ns(CLOCK_MONOTONIC);
    /* Monotonic start and end (ns), and the wall time in seconds. */
    printf("%lld %lld %.3f\n", begin, finish, (finish - begin) / 1e9);
    return 0;
}
