// thread_flood N SECONDS: start N threads with small stacks, each blocked
// on one barrier-like condition, print "ready" once all exist, hold them
// SECONDS, then release them all at once and exit: a process whose N
// threads appear and vanish together.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER;
static int released;

static void *idle(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!released)
        pthread_cond_wait(&go, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int seconds = argc > 2 ? atoi(argv[2]) : 5;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 16384);
    pthread_t *t = calloc(n, sizeof *t);
    long made = 0;
    for (; made < n; made++) {
        if (pthread_create(&t[made], &attr, idle, NULL) != 0)
            break;
    }
    printf("pid %d\nthreads %ld\nready\n", getpid(), made);
    fflush(stdout);
    sleep(seconds);
    pthread_mutex_lock(&lock);
    released = 1;
    pthread_cond_broadcast(&go);
    pthread_mutex_unlock(&lock);
    for (long i = 0; i < made; i++)
        pthread_join(t[i], NULL);
    printf("done\n");
    fflush(stdout);
    return 0;
}
