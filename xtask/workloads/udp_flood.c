/* udp_flood: a softirq-heavy load for `cargo xtask bench` (noise section).
 *
 * `udp_flood SECONDS SENDER_CPU RECEIVER_CPU` starts a receiver thread
 * bound to a UDP socket on 127.0.0.1 and a sender thread that sends 64-byte
 * datagrams to it, one send(2) each, as fast as it can, for SECONDS. A CPU
 * of -1 leaves that thread unpinned. The benchmark pins both threads to one
 * CPU: the two threads then take turns on it (context switches, wake-ups)
 * and the throughput varies far less from run to run than with a thread on
 * each CPU or unpinned.
 *
 * Every datagram goes through the loopback device: the sender's send(2)
 * queues it on its CPU's backlog and raises NET_RX, whose softirq runs when
 * the sender re-enables bottom halves and delivers the datagram to the
 * receiver's socket, waking the receiver when it sleeps in recv(2).
 * Datagrams the receiver is too slow for are dropped at its socket (UDP has
 * no flow control); the sender does not block.
 *
 * It prints, one per line:
 *   received N      datagrams the receiver got in the window
 *   sent N          datagrams the kernel accepted from the sender
 *   send_calls N    send(2) calls (every one counts, failed or not)
 *   recv_calls N    recv(2) calls (every one counts, failed or not)
 *   seconds S       the window, measured (thread start to stop)
 *   received/s R    received / seconds: the throughput */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 64

static atomic_int stop;
static int rx_fd, tx_fd;
static unsigned long long received, recv_calls, sent, send_calls;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (err) {
        fprintf(stderr, "udp_flood: could not pin to CPU %d: %s\n", cpu, strerror(err));
        exit(1);
    }
}

static void *receiver(void *arg) {
    pin(*(int *)arg);
    char buf[PAYLOAD];
    /* The receive timeout lets the thread see `stop` when nothing comes. */
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        recv_calls++;
        /* Only datagrams received within the window count. */
        if (recv(rx_fd, buf, sizeof buf, 0) == PAYLOAD && !atomic_load_explicit(&stop, memory_order_relaxed))
            received++;
    }
    return NULL;
}

static void *sender(void *arg) {
    pin(*(int *)arg);
    char buf[PAYLOAD];
    memset(buf, 'x', sizeof buf);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        send_calls++;
        if (send(tx_fd, buf, sizeof buf, 0) == PAYLOAD) sent++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: udp_flood SECONDS SENDER_CPU RECEIVER_CPU\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    int tx_cpu = atoi(argv[2]), rx_cpu = atoi(argv[3]);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    rx_fd = socket(AF_INET, SOCK_DGRAM, 0);
    tx_fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    if (rx_fd < 0 || tx_fd < 0 || bind(rx_fd, (struct sockaddr *)&addr, sizeof addr) ||
        getsockname(rx_fd, (struct sockaddr *)&addr, &len) ||
        setsockopt(rx_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
        connect(tx_fd, (struct sockaddr *)&addr, sizeof addr)) {
        perror("udp_flood: socket set-up");
        return 1;
    }

    pthread_t rx, tx;
    double begin = now();
    if (pthread_create(&rx, NULL, receiver, &rx_cpu) || pthread_create(&tx, NULL, sender, &tx_cpu)) {
        fprintf(stderr, "udp_flood: could not start threads\n");
        return 1;
    }
    struct timespec nap = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (time_t)seconds) * 1e9)};
    while (nanosleep(&nap, &nap) && errno == EINTR) {
    }
    atomic_store(&stop, 1);
    double elapsed = now() - begin;
    pthread_join(tx, NULL);
    pthread_join(rx, NULL);

    printf("received %llu\nsent %llu\nsend_calls %llu\nrecv_calls %llu\nseconds %.6f\nreceived/s %.0f\n", received,
           sent, send_calls, recv_calls, elapsed, received / elapsed);
    return 0;
}
