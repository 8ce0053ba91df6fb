// Opens the named pipe FIFO read-write (so that open(2) does not wait for a
// writer) and blocks in read(2) on it forever: nobody writes. Thread (and
// process) name tp-fifo-reader. Announces `pid N`, `tid reader N` and
// `ready`. Ends after SECONDS (alarm(2)) if nobody kills it first.
// Usage: fifo_reader FIFO SECONDS
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fifo_reader FIFO SECONDS\n");
        return 2;
    }
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "fifo_reader: open %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    prctl(PR_SET_NAME, "tp-fifo-reader", 0, 0, 0);
    alarm((unsigned)atoi(argv[2]));
    printf("pid %d\ntid reader %ld\nready\n", getpid(), (long)syscall(SYS_gettid));
    fflush(stdout);
    char buf[64];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "fifo_reader: read: %s\n", strerror(errno));
            return 2;
        }
    }
}
