/* Misuse among ordinary work, for LD_PRELOAD=libkmem_malloc.so only (glibc aborts on these):
 * `misuse_stress STEPS SEED [THREADS]` runs STEPS random steps over 3000 slots, on THREADS
 * threads (default 1) taking turns under one lock, so that blocks freed on one thread's CPU
 * are misused on another's (then not aimed at neighbour slots: see `neighbours`): malloc, calloc,
 * posix_memalign, aligned_alloc of 1 byte to 4 MiB (aligned to up to 1 MiB), realloc of live blocks, free; and about
 * one step in fifteen a misuse: free or realloc of a block freed recently (and not live
 * again), of a neighbour slot that is no live block, of an interior pointer of a live block.
 * Every live block keeps a fill of its own, checked on every realloc and every 5000 steps;
 * no two live blocks may overlap; a calloc'd block is zero; an aligned one aligned; and a
 * realloc of anything but a live block's start must return NULL. Prints "misuses N" and
 * "ok", or what broke with the last 16 misuses, and exits 1. The test (misuse_stress.rs)
 * also counts kmem's report lines on stderr: one per misuse. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 3000
static unsigned char *blk[N];
static size_t sz[N];
static unsigned char tagv[N];
static uint64_t x = 88172645463325252ull;
static char logb[16][160];
static int nlog;

static uint64_t rnd(void) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

/* Pointers the compiler cannot see through (no -Wfree-nonheap-object, -Wuse-after-free). */
static void *launder(void *p) {
    void *volatile v = p;
    return v;
}

#define LOG(...) snprintf(logb[nlog++ % 16], sizeof logb[0], __VA_ARGS__)

static void fail(const char *what, long step) {
    printf("FAIL %s at step %ld; the last misuses:\n", what, step);
    for (int k = nlog > 16 ? nlog - 16 : 0; k < nlog; k++) printf("  %s\n", logb[k % 16]);
    exit(1);
}

static int is_live(uintptr_t p) {
    for (int i = 0; i < N; i++)
        if (blk[i] && (uintptr_t)blk[i] <= p && p < (uintptr_t)blk[i] + sz[i]) return 1;
    return 0;
}

/* Sorts `n` spans by start. Not qsort, which mallocs a buffer: every live block must be the
 * program's own, or a misuse aimed at a neighbour could hit a block of the C library's. */
static void sort(uintptr_t (*r)[2], int n) {
    for (int gap = n / 2; gap > 0; gap /= 2)
        for (int i = gap; i < n; i++)
            for (int j = i; j >= gap && r[j - gap][0] > r[j][0]; j -= gap) {
                uintptr_t t0 = r[j][0], t1 = r[j][1];
                r[j][0] = r[j - gap][0];
                r[j][1] = r[j - gap][1];
                r[j - gap][0] = t0;
                r[j - gap][1] = t1;
            }
}

static void check(long step) {
    static uintptr_t r[N][2];
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (!blk[i]) continue;
        r[n][0] = (uintptr_t)blk[i];
        r[n][1] = sz[i];
        n++;
        for (size_t k = 0; k < sz[i]; k += 61)
            if (blk[i][k] != tagv[i]) fail("a live block lost its fill", step);
    }
    sort(r, n);
    for (int i = 1; i < n; i++)
        if (r[i - 1][0] + r[i - 1][1] > r[i][0]) fail("two live blocks overlap", step);
}

static size_t pick(void) {
    unsigned k = rnd() % 100;
    if (k < 70) return 1 + rnd() % 1024;
    if (k < 90) return 1 + rnd() % 16384;
    if (k < 98) return 1 + rnd() % 262144;
    return 1 + rnd() % (4 << 20);
}

static void take(int i, unsigned char *p, size_t n, long step) {
    if (is_live((uintptr_t)p) || is_live((uintptr_t)p + n - 1)) fail("a new block overlaps a live one", step);
    memset(p, (unsigned char)step, n);
    blk[i] = p;
    sz[i] = n;
    tagv[i] = (unsigned char)step;
}

/* free (or realloc, which must fail) of `q`, which is no live block's start. */
static void misuse(unsigned char *q, const char *what, long step) {
    if (rnd() % 2) {
        LOG("step %ld: free of %s %p", step, what, (void *)q);
        free(launder(q));
    } else {
        void *r = realloc(launder(q), 1 + rnd() % 4096);
        LOG("step %ld: realloc of %s %p -> %p", step, what, (void *)q, r);
        if (r) fail("realloc of no live block returned a block", step);
    }
}

static unsigned char *recent[64];
static int nr;
static long mis;
/* Whether misuses aim at neighbour slots: not with threads, whose creation gave the C library
 * blocks of its own (each thread's DTV) that a neighbour slot could be. */
static int neighbours = 1;

/* One random step (the caller holds the lock). */
static void step(long s) {
    int i = rnd() % N;
    unsigned op = rnd() % 100;
    if (op < 3 && nr) {
        unsigned char *p = recent[rnd() % nr];
        if (!is_live((uintptr_t)p)) {
            misuse(p, "a freed block", s);
            mis++;
        }
    } else if (op < 5 && blk[i] && neighbours) {
        long k = (long)(rnd() % 9) - 4;
        uintptr_t q = (uintptr_t)blk[i] + (k ? k : 1) * (long)(sz[i] < 16 ? 16 : (sz[i] + 15) & ~(size_t)15);
        if (!is_live(q) && !is_live(q + 15)) {
            misuse((unsigned char *)q, "a neighbour", s);
            mis++;
        }
    } else if (op < 7 && blk[i] && sz[i] > 16) {
        misuse(blk[i] + 8 + 16 * (rnd() % ((sz[i] - 9) / 16 + 1)), "an interior pointer", s);
        mis++;
    } else if (op < 30 && blk[i]) {
        size_t n = pick();
        unsigned char *q = realloc(blk[i], n);
        if (!q) fail("realloc of a live block failed", s);
        for (size_t k = 0; k < (n < sz[i] ? n : sz[i]); k += 61)
            if (q[k] != tagv[i]) fail("realloc lost the contents", s);
        blk[i] = 0;
        take(i, q, n, s);
    } else if (blk[i]) {
        if (nr < 64) recent[nr++] = blk[i];
        else recent[rnd() % 64] = blk[i];
        free(blk[i]);
        blk[i] = 0;
    } else {
        size_t n = pick(), al = 16;
        unsigned char *p;
        void *v = 0;
        switch (rnd() % 4) {
        case 0: p = malloc(n); break;
        case 1:
            p = calloc(1, n);
            for (size_t j = 0; p && j < n; j += 97)
                if (p[j]) fail("calloc returned a dirty block", s);
            break;
        case 2:
            al = (size_t)16 << (rnd() % 17);
            p = posix_memalign(&v, al, n) ? 0 : v;
            break;
        default:
            al = (size_t)64 << (rnd() % 15);
            n = (n + al - 1) & ~(al - 1);
            p = aligned_alloc(al, n);
        }
        if (!p) fail("out of memory", s);
        if ((uintptr_t)p & (al - 1)) fail("a misaligned block", s);
        take(i, p, n, s);
    }
    if (s % 5000 == 0) check(s);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start;
static long steps, next;

static void *worker(void *arg) {
    /* Every thread exists before the first step: pthread_create's own allocations never
     * take a block the steps freed (which a double free would then hit). */
    if (arg) pthread_barrier_wait(&start);
    for (;;) {
        pthread_mutex_lock(&lock);
        long s = next++;
        if (s < steps) step(s);
        pthread_mutex_unlock(&lock);
        if (s >= steps) return NULL;
    }
}

int main(int argc, char **argv) {
    /* stdout unbuffered: its buffer would be a block of the C library's among the program's. */
    setvbuf(stdout, NULL, _IONBF, 0);
    steps = argc > 1 ? atol(argv[1]) : 100000;
    x ^= argc > 2 ? (uint64_t)atol(argv[2]) : 0;
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    pthread_t t[16];
    if (threads < 1 || threads > 16) threads = 1;
    neighbours = threads == 1;
    pthread_barrier_init(&start, NULL, threads);
    for (int k = 1; k < threads; k++) pthread_create(&t[k], NULL, worker, &start);
    if (threads > 1) pthread_barrier_wait(&start);
    worker(NULL);
    for (int k = 1; k < threads; k++) pthread_join(t[k], NULL);
    check(steps);
    printf("misuses %ld\nok\n", mis);
    return 0;
}
