// Built with -O2 -fomit-frame-pointer. The main thread ("tp-reader")
// blocks in read() on a pipe alternately from two functions; a writer
// thread ("tp-writer") writes one byte every 200 ms. So the reader spends
// all its time blocked, half of it under tp_wait_alpha and half under
// tp_wait_beta, in waits of 200 ms (four snapshot periods at 20 Hz).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int fds[2];

static void *writer(void *arg) {
    (void)arg;
    for (;;) {
        usleep(200000);
        if (write(fds[1], "x", 1) != 1) exit(1);
    }
    return NULL;
}

// The check after read() keeps it from being a tail call, so each
// function stays on the stack while read() blocks.
__attribute__((noinline)) void tp_wait_alpha(void) {
    char c;
    if (read(fds[0], &c, 1) != 1) exit(2);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void tp_wait_beta(void) {
    char c;
    if (read(fds[0], &c, 1) != 1) exit(3);
    __asm__ volatile("" ::: "memory");
}

int main(void) {
    if (pipe(fds) != 0) return 4;
    pthread_t t;
    if (pthread_create(&t, NULL, writer, NULL) != 0) return 5;
    pthread_setname_np(t, "tp-writer");
    pthread_setname_np(pthread_self(), "tp-reader");
    printf("pid %d\nready\n", getpid());
    fflush(stdout);
    for (;;) {
        tp_wait_alpha();
        tp_wait_beta();
    }
}
