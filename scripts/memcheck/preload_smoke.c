/* A small program for valgrind memcheck under LD_PRELOAD=libkmem_malloc.so
 * (scripts/memcheck.sh): says which library serves malloc, then allocates, fills, checks,
 * reallocates and frees 20,000 blocks of 1 byte to 1 MiB (and a few above 4 MiB) from two
 * threads. Exit status 0 iff every block kept its contents. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 10000

static void *work(void *arg) {
    uintptr_t seed = (uintptr_t)arg;
    static __thread unsigned char *blocks[64];
    static __thread size_t sizes[64];
    long bad = 0;
    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        int slot = (seed >> 33) % 64;
        if (blocks[slot]) {
            for (size_t j = 0; j < sizes[slot]; j += 97)
                bad += blocks[slot][j] != (unsigned char)(slot + j);
            if (seed & 1) {
                size_t n = sizes[slot] * 2 + 1;
                unsigned char *p = realloc(blocks[slot], n);
                if (!p) return (void *)1;
                for (size_t j = 0; j < sizes[slot]; j += 97)
                    bad += p[j] != (unsigned char)(slot + j);
                free(p);
            } else {
                free(blocks[slot]);
            }
            blocks[slot] = NULL;
        }
        size_t size = (seed >> 40) % 100 == 0 ? (5u << 20) : 1 + (seed >> 20) % ((seed >> 60) ? 512 : (1u << 20));
        unsigned char *p = (seed >> 50) & 1 ? calloc(1, size) : malloc(size);
        if (!p) return (void *)1;
        for (size_t j = 0; j < size; j += 97) p[j] = (unsigned char)(slot + j);
        blocks[slot] = p, sizes[slot] = size;
    }
    for (int s = 0; s < 64; s++) free(blocks[s]);
    return (void *)(uintptr_t)(bad != 0);
}

int main(void) {
    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    printf("malloc from: %s\n", m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "?");
    pthread_t t;
    void *r1, *r2;
    if (pthread_create(&t, NULL, work, (void *)7)) return 2;
    r1 = work((void *)3);
    pthread_join(t, &r2);
    puts(r1 || r2 ? "corrupted" : "ok");
    return r1 || r2 ? 1 : 0;
}
