/* idle_procs N: fork N child processes that stay blocked (never runnable),
 * print "ready" once all exist, and exit when stdin reaches end of file,
 * after the children: they read end of file on a pipe then, exit, and are
 * reaped before this process exits (so none is left dying when the next
 * measurement starts); they are killed should this process die first
 * (PR_SET_PDEATHSIG). Used by
 * `cargo xtask bench` to measure tailprof's memory per tracked process.
 *
 * Each child is one process of one thread, named like its parent (no
 * exec), with a few pages of memory of its own. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PROCESSES\n", argv[0]);
        return 2;
    }
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*end != '\0' || n < 0 || n > 100000) {
        fprintf(stderr, "idle_procs: bad process count '%s'\n", argv[1]);
        return 2;
    }
    int hold[2];
    if (pipe(hold) != 0) {
        perror("idle_procs: pipe");
        return 1;
    }
    pid_t parent = getpid();
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "idle_procs: process %ld of %ld: %s (see ulimit -u, kernel.pid_max)\n", i + 1, n,
                    strerror(errno));
            return 1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(0);
            close(hold[1]);
            char c;
            while (read(hold[0], &c, 1) < 0 && errno == EINTR) {
            }
            _exit(0);
        }
    }
    close(hold[0]);
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    close(hold[1]);
    while (wait(NULL) > 0 || errno == EINTR) {
    }
    return 0;
}
