/* Misuse on several threads at once, for LD_PRELOAD=libkmem_malloc.so only: `misuse_threads
 * THREADS ROUNDS` starts THREADS threads that each, ROUNDS times, allocate a 2000-byte block,
 * fill it and free it twice. Every second free is a double free, whose report (a slab BUG
 * with a hex dump of the 2 KiB object, several KiB of text) the threads write at the same
 * moment; the test (preload.rs) checks that each report is whole: THREADS * ROUNDS lines that
 * start with "BUG ", and no report text begins mid-line. Prints "ok" at the end. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rounds;
static pthread_barrier_t start;

/* Pointers the compiler cannot see through (no -Wuse-after-free, -Wfree-nonheap-object). */
static void *launder(void *p) {
    void *volatile v = p;
    return v;
}

static void *worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&start);
    for (int i = 0; i < rounds; i++) {
        char *p = malloc(2000);
        memset(p, 'a' + i % 26, 2000);
        free(p);
        free(launder(p));
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    rounds = argc > 2 ? atoi(argv[2]) : 50;
    pthread_t t[64];
    if (threads < 1 || threads > 64) threads = 4;
    pthread_barrier_init(&start, NULL, threads);
    for (int k = 0; k < threads; k++) pthread_create(&t[k], NULL, worker, NULL);
    for (int k = 0; k < threads; k++) pthread_join(t[k], NULL);
    printf("ok\n");
    return 0;
}
