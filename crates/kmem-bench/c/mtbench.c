/*
 * Allocator workloads for LD_PRELOAD comparisons (scripts/preload_bench.sh builds this with
 * gcc and runs it under glibc, libkmem_malloc.so, mimalloc and jemalloc). Plain malloc/free,
 * blocks of 8 to 1000 bytes (uniform), the first bytes of each written. A fixed amount of
 * work, split among the threads, so the wall time of a run is what is compared.
 *
 *   mtbench larson THREADS [STEPS]      server: 1000 slots per thread, all shared; a step
 *                                       takes a random slot of any thread (atomic exchange),
 *                                       puts a new block in and frees the old one, which
 *                                       another thread allocated most of the time.
 *                                       STEPS in all (default 4,000,000).
 *   mtbench threadtest THREADS [PAIRS]  each thread allocates 1000 blocks, frees them in
 *                                       order, again; PAIRS in all (default 4,000,000).
 *   mtbench churn THREADS [WORKERS]     THREADS lanes each create a short-lived thread and
 *                                       join it, in a loop; a thread allocates and frees
 *                                       100 blocks 20 times and exits. WORKERS in all
 *                                       (default 2000).
 *   mtbench churn1 [STEPS]              one thread, 2000 live blocks, each step frees a
 *                                       random one and allocates another (default 4,000,000).
 *   mtbench many THREADS [PAIRS]        THREADS threads, all alive at once (a barrier after
 *                                       each has allocated once), each allocating a block
 *                                       and freeing it, in a loop; PAIRS in all (default
 *                                       4,000,000). More threads than an allocator has
 *                                       per-thread or per-CPU caches for.
 *   mtbench grow THREADS [BLOCKS]       each thread builds a heap that only grows: it
 *                                       allocates BLOCKS/THREADS blocks, keeps three in four
 *                                       (the fourth freed at once), then frees them all;
 *                                       BLOCKS in all (default 1,000,000: about 380 MB live
 *                                       at the peak, more than a fresh kmem machine's RAM).
 *
 * Prints on stderr which allocator served it (from the symbols the process has), so that a
 * preload that did not take is noticed. Exit status 0 on success.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SIZE 8
#define MAX_SIZE 1000
#define LARSON_SLOTS 1000
#define TT_BLOCKS 1000
#define CHURN_BATCH 100
#define CHURN_ROUNDS 20
#define CHURN1_LIVE 2000

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static size_t below(uint64_t *s, size_t n) { return (size_t)(((rng_next(s) >> 32) * n) >> 32); }

static size_t rsize(uint64_t *s) { return MIN_SIZE + below(s, MAX_SIZE - MIN_SIZE + 1); }

static void *new_block(size_t size) {
    uint32_t *p = malloc(size);
    if (!p) {
        fprintf(stderr, "mtbench: malloc(%zu) failed\n", size);
        exit(1);
    }
    p[0] = (uint32_t)size;
    p[1] = 0x6b6d656d;
    return p;
}

static void free_block(void *p) {
    if (((uint32_t *)p)[1] != 0x6b6d656d) {
        fprintf(stderr, "mtbench: block %p corrupted\n", p);
        exit(1);
    }
    free(p);
}

/* ---- larson ------------------------------------------------------------------------ */
static _Atomic(void *) *slots;
static size_t nslots;

struct larson_arg {
    int t;
    long steps;
    pthread_barrier_t *bar;
};

static void *larson_thread(void *v) {
    struct larson_arg *a = v;
    uint64_t rng = 0x6c617273ULL * (a->t + 1) | 1;
    for (size_t i = (size_t)a->t * LARSON_SLOTS; i < (size_t)(a->t + 1) * LARSON_SLOTS; i++)
        atomic_store(&slots[i], new_block(rsize(&rng)));
    pthread_barrier_wait(a->bar);
    for (long k = 0; k < a->steps; k++) {
        size_t i = below(&rng, nslots);
        void *old = atomic_exchange(&slots[i], new_block(rsize(&rng)));
        free_block(old);
    }
    return NULL;
}

static void larson(int threads, long steps) {
    nslots = (size_t)threads * LARSON_SLOTS;
    slots = calloc(nslots, sizeof *slots);
    pthread_t tid[threads];
    struct larson_arg args[threads];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, threads);
    for (int t = 0; t < threads; t++) {
        args[t] = (struct larson_arg){t, steps / threads, &bar};
        pthread_create(&tid[t], NULL, larson_thread, &args[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    for (size_t i = 0; i < nslots; i++) free_block(atomic_load(&slots[i]));
    free(slots);
}

/* ---- threadtest -------------------------------------------------------------------- */
static void *tt_thread(void *v) {
    long pairs = (long)(intptr_t)v;
    uint64_t rng = 0x74746573ULL ^ (uint64_t)(uintptr_t)&pairs;
    size_t sizes[TT_BLOCKS];
    void *blocks[TT_BLOCKS];
    for (int i = 0; i < TT_BLOCKS; i++) sizes[i] = rsize(&rng);
    for (long round = 0; round * TT_BLOCKS < pairs; round++) {
        for (int i = 0; i < TT_BLOCKS; i++) blocks[i] = new_block(sizes[(i + round) % TT_BLOCKS]);
        for (int i = 0; i < TT_BLOCKS; i++) free_block(blocks[i]);
    }
    return NULL;
}

static void threadtest(int threads, long pairs) {
    pthread_t tid[threads];
    for (int t = 0; t < threads; t++) pthread_create(&tid[t], NULL, tt_thread, (void *)(intptr_t)(pairs / threads));
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
}

/* ---- churn ------------------------------------------------------------------------- */
static void *churn_worker(void *v) {
    uint64_t rng = (uint64_t)(uintptr_t)v * 0x9E3779B97F4A7C15ULL | 1;
    void *blocks[CHURN_BATCH];
    for (int r = 0; r < CHURN_ROUNDS; r++) {
        for (int i = 0; i < CHURN_BATCH; i++) blocks[i] = new_block(rsize(&rng));
        for (int i = 0; i < CHURN_BATCH; i++) free_block(blocks[i]);
    }
    return NULL;
}

struct lane_arg {
    int lane;
    long workers;
};

static void *churn_lane(void *v) {
    struct lane_arg *a = v;
    for (long w = 0; w < a->workers; w++) {
        pthread_t t;
        if (pthread_create(&t, NULL, churn_worker, (void *)(uintptr_t)(a->lane * 1000003L + w + 1))) {
            fprintf(stderr, "mtbench: pthread_create failed\n");
            exit(1);
        }
        pthread_join(t, NULL);
    }
    return NULL;
}

static void churn(int threads, long workers) {
    pthread_t tid[threads];
    struct lane_arg args[threads];
    for (int t = 0; t < threads; t++) {
        args[t] = (struct lane_arg){t, workers / threads};
        pthread_create(&tid[t], NULL, churn_lane, &args[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
}

/* ---- churn1 ------------------------------------------------------------------------ */
static void churn1(long steps) {
    uint64_t rng = 0x6368726eULL;
    void **live = malloc(CHURN1_LIVE * sizeof *live);
    for (int i = 0; i < CHURN1_LIVE; i++) live[i] = new_block(rsize(&rng));
    for (long k = 0; k < steps; k++) {
        size_t i = below(&rng, CHURN1_LIVE);
        free_block(live[i]);
        live[i] = new_block(rsize(&rng));
    }
    for (int i = 0; i < CHURN1_LIVE; i++) free_block(live[i]);
    free(live);
}

/* ---- many -------------------------------------------------------------------------- */
static pthread_barrier_t many_barrier;

static void *many_thread(void *v) {
    long pairs = (long)(intptr_t)v;
    uint64_t rng = 0x6d616e79ULL ^ (uint64_t)(uintptr_t)&pairs;
    free_block(new_block(rsize(&rng)));
    pthread_barrier_wait(&many_barrier);
    for (long i = 0; i < pairs; i++) free_block(new_block(rsize(&rng)));
    return NULL;
}

static void many(int threads, long pairs) {
    pthread_t *tid = malloc(threads * sizeof *tid);
    pthread_barrier_init(&many_barrier, NULL, threads);
    for (int t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, many_thread, (void *)(intptr_t)(pairs / threads))) {
            fprintf(stderr, "mtbench: pthread_create failed\n");
            exit(1);
        }
    }
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    pthread_barrier_destroy(&many_barrier);
    free(tid);
}

/* ---- grow -------------------------------------------------------------------------- */
static void *grow_thread(void *v) {
    long blocks = (long)(intptr_t)v;
    uint64_t rng = 0x67726f77ULL ^ (uint64_t)(uintptr_t)&blocks;
    void **kept = malloc(blocks * sizeof *kept);
    long n = 0;
    for (long i = 0; i < blocks; i++) {
        void *p = new_block(rsize(&rng));
        if (i % 4 == 3)
            free_block(p);
        else
            kept[n++] = p;
    }
    for (long i = 0; i < n; i++) free_block(kept[i]);
    free(kept);
    return NULL;
}

static void grow(int threads, long blocks) {
    pthread_t *tid = malloc(threads * sizeof *tid);
    for (int t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, grow_thread, (void *)(intptr_t)(blocks / threads))) {
            fprintf(stderr, "mtbench: pthread_create failed\n");
            exit(1);
        }
    }
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    free(tid);
}

static const char *allocator(void) {
    if (dlsym(RTLD_DEFAULT, "kmem_malloc_online_bytes")) return "kmem";
    if (dlsym(RTLD_DEFAULT, "mi_version")) return "mimalloc";
    if (dlsym(RTLD_DEFAULT, "mallctl")) return "jemalloc";
    return "glibc";
}

int main(int argc, char **argv) {
    if (argc < 2) goto usage;
    const char *mode = argv[1];
    if (!strcmp(mode, "churn1")) {
        churn1(argc > 2 ? atol(argv[2]) : 4000000);
    } else {
        if (argc < 3 || atoi(argv[2]) < 1) goto usage;
        int threads = atoi(argv[2]);
        long n = argc > 3 ? atol(argv[3]) : 0;
        if (!strcmp(mode, "larson"))
            larson(threads, n ? n : 4000000);
        else if (!strcmp(mode, "threadtest"))
            threadtest(threads, n ? n : 4000000);
        else if (!strcmp(mode, "churn"))
            churn(threads, n ? n : 2000);
        else if (!strcmp(mode, "many"))
            many(threads, n ? n : 4000000);
        else if (!strcmp(mode, "grow"))
            grow(threads, n ? n : 1000000);
        else
            goto usage;
    }
    fprintf(stderr, "allocator=%s\n", allocator());
    return 0;
usage:
    fprintf(stderr, "usage: mtbench larson|threadtest|churn|many|grow THREADS [N] | mtbench churn1 [STEPS]\n");
    return 2;
}
