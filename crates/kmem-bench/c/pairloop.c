/* One hot malloc(64) + free pair in a loop, N times (argv[1]): what `perf stat` measures
 * under each allocator (scripts/device_bench.sh) to tell cycles per pair from instructions
 * per pair where a machine has hardware counters. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 64;
    void *volatile sink;
    for (long i = 0; i < n; i++) {
        void *p = malloc(size);
        if (!p)
            return 1;
        *(volatile char *)p = 1;
        sink = p;
        free(sink);
    }
    printf("%ld pairs of %zu B\n", n, size);
    return 0;
}
