/* Allocates and frees blocks of 5-25 MiB in a loop, touching every page of each, and
 * reports on stderr the time it took and what the kernel did for it (getrusage): with blocks
 * handed back to the host on every free, each iteration would map a fresh block and
 * fault in all its pages (thousands of page faults, most of the time in the kernel). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    uint64_t x = 88172645463325252ull, sum = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (5u << 20) + (size_t)(x % (20u << 20));
        unsigned char *p = malloc(n);
        if (!p) {
            printf("malloc(%zu) failed\n", n);
            return 1;
        }
        for (size_t o = 0; o < n; o += 4096) p[o] = (unsigned char)i;
        p[n - 1] = (unsigned char)i;
        sum += p[(n / 2) & ~(size_t)4095] + p[n - 1];
        free(p);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long wall_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    long user_us = ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec;
    long sys_us = ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec;
    printf("iterations %d checksum %llu\n", iters, (unsigned long long)sum);
    fprintf(stderr, "rusage wall_us %ld user_us %ld sys_us %ld minflt %ld\n", wall_us, user_us, sys_us, ru.ru_minflt);
    return 0;
}
