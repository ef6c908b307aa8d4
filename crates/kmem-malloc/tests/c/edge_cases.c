/* Edge cases of every function kmem-malloc exports, one line per check ("ok NAME" or
 * "FAIL NAME"), then "summary: N checks, M failed"; the exit status is 0 iff none failed.
 *
 * Runs under LD_PRELOAD=libkmem_malloc.so and also on glibc's own malloc (the checks that
 * are kmem's documented choices, where glibc 2.36 differs, only run when
 * kmem_malloc_online_bytes is found: "allocator: kmem"). Built with -fno-builtin so that
 * every call really reaches the allocator. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int checks, failed, kmem;
static size_t page;

#define CHECK(name, cond)                                                                    \
    do {                                                                                     \
        int ok_ = (cond);                                                                    \
        checks++;                                                                            \
        if (!ok_) failed++;                                                                  \
        printf("%s %s\n", ok_ ? "ok" : "FAIL", name);                                        \
    } while (0)

/* Sizes the compiler cannot see through. */
static volatile size_t vSIZE_MAX = SIZE_MAX, vZERO = 0;

static int aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static int all_bytes(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

static void test_malloc(void) {
    void *a = malloc(vZERO), *b = malloc(vZERO);
    CHECK("malloc(0) returns a block", a != NULL && b != NULL);
    CHECK("malloc(0) blocks are unique", a != b);
    CHECK("malloc(0) is 16-aligned", aligned(a, 16) && aligned(b, 16));
    free(a);
    free(b);

    int good = 1;
    for (size_t n = 1; n <= 70000; n = n < 64 ? n + 1 : n * 5 / 4) {
        unsigned char *p = malloc(n);
        if (!p || !aligned(p, 16) || malloc_usable_size(p) < n) good = 0;
        if (p) {
            memset(p, 0x5a, n);
            good &= all_bytes(p, n, 0x5a);
        }
        free(p);
    }
    CHECK("malloc(1..70000) aligned to 16, usable >= size, writable", good);

    size_t big[] = {2u << 20, 3u << 20, 4u << 20, 5u << 20, 24u << 20};
    good = 1;
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        unsigned char *p = malloc(big[i]);
        if (!p || !aligned(p, 16) || malloc_usable_size(p) < big[i]) good = 0;
        if (p) {
            p[0] = 1;
            p[big[i] - 1] = 2;
            good &= p[0] == 1 && p[big[i] - 1] == 2;
        }
        free(p);
    }
    CHECK("malloc of 2..24 MiB (page path and mappings)", good);

    errno = 1234;
    void *p = malloc(100);
    CHECK("malloc success leaves errno alone", p != NULL && errno == 1234);
    free(p);

    errno = 0;
    p = malloc(vSIZE_MAX);
    CHECK("malloc(SIZE_MAX) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    errno = 0;
    p = malloc(vSIZE_MAX / 2);
    CHECK("malloc(SIZE_MAX/2) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    errno = 0;
    p = malloc(vSIZE_MAX - 4095);
    CHECK("malloc(SIZE_MAX-4095) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
}

static void test_free(void) {
    errno = 77;
    free(NULL);
    CHECK("free(NULL) is a no-op, errno kept", errno == 77);
    size_t sizes[] = {1, 100, 5000, 3u << 20, 9u << 20};
    int good = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = malloc(sizes[i]);
        errno = 4321;
        free(p);
        good &= errno == 4321;
    }
    CHECK("free keeps errno (small, page-path and mapped blocks)", good);
}

/* C23's free_sized and free_aligned_sized, where the allocator has them (glibc 2.36 does
 * not): the right size, wrong sizes (a hint only: the block is freed all the same and comes
 * back), large and mapped blocks, NULL; errno kept. */
static void test_free_sized(void) {
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*fas)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    if (!fs || !fas) {
        printf("info free_sized: not exported\n");
        return;
    }
    errno = 88;
    fs(NULL, 10);
    fas(NULL, 64, 10);
    CHECK("free_sized(NULL, n) and free_aligned_sized(NULL, a, n) are no-ops, errno kept", errno == 88);
    size_t sizes[] = {1, 16, 100, 1000, 5000, 3u << 20, 9u << 20};
    int good = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = malloc(sizes[i]);
        memset(p, 0x5a, sizes[i]);
        errno = 4321;
        fs(p, sizes[i]);
        good &= errno == 4321;
        /* A small block freed with its size is the next one of its class (LIFO sheaves). */
        void *q = malloc(sizes[i]);
        good &= q != NULL && (sizes[i] > 4096 || q == p);
        free(q);
    }
    CHECK("free_sized frees small, page-path and mapped blocks (errno kept)", good);
    good = 1;
    size_t wrong[][2] = {{100, 60}, {60, 100}, {24, 0}, {200, 1u << 20}, {5000, 16}};
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        void *p = malloc(wrong[i][0]);
        fs(p, wrong[i][1]);
        void *q = malloc(wrong[i][0]);
        good &= q != NULL && (wrong[i][0] > 4096 || q == p);
        free(q);
    }
    CHECK("free_sized with a wrong size still frees the block", good);
    good = 1;
    size_t aligns[] = {16, 64, 256, 4096};
    for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        void *p = aligned_alloc(aligns[i], 3 * aligns[i]);
        good &= p != NULL && aligned(p, aligns[i]);
        fas(p, aligns[i], 3 * aligns[i]);
    }
    CHECK("free_aligned_sized frees aligned_alloc blocks", good);
}

static void test_calloc(void) {
    void *a = calloc(vZERO, 10), *b = calloc(10, vZERO);
    CHECK("calloc(0, n) and calloc(n, 0) return unique blocks", a && b && a != b);
    free(a);
    free(b);

    errno = 0;
    void *p = calloc(vSIZE_MAX / 2 + 1, 2);
    CHECK("calloc overflow (SIZE_MAX/2+1 * 2) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    errno = 0;
    p = calloc(vSIZE_MAX / 2 / 4 + 1, 8);
    CHECK("calloc overflow (SIZE_MAX/8+1 * 8) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    errno = 0;
    p = calloc(vSIZE_MAX, 1);
    CHECK("calloc(SIZE_MAX, 1) is NULL with ENOMEM", p == NULL && errno == ENOMEM);

    /* Dirty blocks first, so that calloc reuses them: it must still zero. */
    size_t sizes[] = {24, 4096, 100000, 3u << 20, 9u << 20};
    int good = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (int r = 0; r < 3; r++) {
            unsigned char *d = malloc(sizes[i]);
            memset(d, 0xab, sizes[i]);
            free(d);
            unsigned char *z = calloc(1, sizes[i]);
            good &= z != NULL && all_bytes(z, sizes[i], 0);
            free(z);
        }
    }
    CHECK("calloc zeroes reused blocks (24 B .. 9 MiB)", good);
    unsigned char *q = calloc(1000, 1000);
    CHECK("calloc(1000, 1000) is a zeroed block", q && all_bytes(q, 1000000, 0));
    free(q);
}

static void test_realloc(void) {
    unsigned char *p = realloc(NULL, 100);
    CHECK("realloc(NULL, n) is malloc(n)", p != NULL && malloc_usable_size(p) >= 100);
    memset(p, 7, 100);
    errno = 55;
    void *r = realloc(p, vZERO);
    CHECK("realloc(p, 0) frees p and returns NULL (glibc), errno kept", r == NULL && errno == 55);
    void *z = realloc(NULL, vZERO);
    CHECK("realloc(NULL, 0) is a unique minimal block", z != NULL);
    free(z);

    /* Grow through every route and back, keeping the contents. */
    size_t steps[] = {10, 1000, 100000, 3u << 20, 5u << 20, 21u << 20, 6u << 20, 2u << 20, 5000, 16, 1};
    unsigned char *b = NULL;
    size_t have = 0;
    int good = 1;
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        size_t n = steps[i];
        unsigned char *nb = realloc(b, n);
        if (!nb) {
            good = 0;
            break;
        }
        size_t keep = have < n ? have : n;
        for (size_t j = 0; j < keep; j += (keep > 4096 ? 4093 : 1)) good &= nb[j] == (unsigned char)(j * 31 + 1);
        for (size_t j = 0; j < n; j++) nb[j] = (unsigned char)(j * 31 + 1);
        good &= aligned(nb, 16);
        b = nb;
        have = n;
    }
    CHECK("realloc grows and shrinks (10 B .. 21 MiB .. 1 B) keeping contents", good);
    free(b);

    p = malloc(64);
    memset(p, 9, 64);
    errno = 0;
    r = realloc(p, vSIZE_MAX);
    CHECK("realloc(p, SIZE_MAX) is NULL with ENOMEM", r == NULL && errno == ENOMEM);
    CHECK("a failed realloc leaves p intact", all_bytes(p, 64, 9));
    errno = 0;
    r = realloc(p, vSIZE_MAX - 4095);
    CHECK("realloc(p, SIZE_MAX-4095) is NULL with ENOMEM", r == NULL && errno == ENOMEM && all_bytes(p, 64, 9));
    free(p);

    /* A block from memalign keeps its contents through realloc. */
    unsigned char *m = memalign(4096, 3000);
    memset(m, 3, 3000);
    unsigned char *m2 = realloc(m, 10000);
    CHECK("realloc of a memalign block keeps contents", m2 && all_bytes(m2, 3000, 3));
    free(m2);
}

static void test_reallocarray(void) {
    unsigned char *p = reallocarray(NULL, 10, 8);
    CHECK("reallocarray(NULL, 10, 8) allocates 80 bytes", p && malloc_usable_size(p) >= 80);
    memset(p, 4, 80);
    errno = 0;
    void *r = reallocarray(p, vSIZE_MAX / 2 + 1, 2);
    CHECK("reallocarray overflow is NULL with ENOMEM", r == NULL && errno == ENOMEM);
    CHECK("a failed reallocarray leaves p intact", all_bytes(p, 80, 4));
    unsigned char *q = reallocarray(p, 1000, 8);
    CHECK("reallocarray grows keeping contents", q && all_bytes(q, 80, 4));
    r = reallocarray(q, vZERO, 8);
    CHECK("reallocarray(p, 0, n) frees p and returns NULL (as realloc)", r == NULL);
}

static void test_posix_memalign(void) {
    size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 4097, SIZE_MAX};
    int good = 1;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *p = (void *)0x1234;
        errno = 99;
        int rc = posix_memalign(&p, bad[i], 64);
        good &= rc == EINVAL && p == (void *)0x1234 && errno == 99;
    }
    CHECK("posix_memalign: bad alignments are EINVAL, *p and errno untouched", good);

    size_t aligns[] = {8, 16, 32, 64, 256, 4096, 65536, 1u << 21, 1u << 22, 1u << 23};
    size_t sizes[] = {0, 1, 100, 5000, 5u << 20};
    good = 1;
    for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++) {
            void *p = NULL;
            errno = 98;
            int rc = posix_memalign(&p, aligns[i], sizes[j]);
            good &= rc == 0 && p != NULL && aligned(p, aligns[i]) && errno == 98;
            if (p && sizes[j]) {
                memset(p, 1, sizes[j]);
                good &= malloc_usable_size(p) >= sizes[j];
            }
            free(p);
        }
    }
    CHECK("posix_memalign: alignments 8 .. 8 MiB, sizes 0 .. 5 MiB", good);

    void *p = (void *)0x1234;
    errno = 97;
    int rc = posix_memalign(&p, 16, vSIZE_MAX);
    CHECK("posix_memalign(SIZE_MAX) is ENOMEM, *p untouched", rc == ENOMEM && p == (void *)0x1234);
    if (kmem) CHECK("kmem: a failed posix_memalign leaves errno alone", errno == 97);
    rc = posix_memalign(&p, (size_t)1 << 62, 1);
    CHECK("posix_memalign(2^62 alignment) is ENOMEM", rc == ENOMEM && p == (void *)0x1234);
}

static void test_aligned_alloc(void) {
    void *p = aligned_alloc(64, 100);
    CHECK("aligned_alloc(64, 100): size need not be a multiple", p && aligned(p, 64));
    free(p);
    p = aligned_alloc(4096, 4096);
    CHECK("aligned_alloc(4096, 4096)", p && aligned(p, 4096));
    free(p);
    p = aligned_alloc(1u << 21, 3u << 20);
    CHECK("aligned_alloc(2 MiB, 3 MiB)", p && aligned(p, 1u << 21));
    free(p);
    p = aligned_alloc(1, 10);
    CHECK("aligned_alloc(1, 10) is 16-aligned", p && aligned(p, 16));
    free(p);
    errno = 0;
    p = aligned_alloc(64, vSIZE_MAX);
    CHECK("aligned_alloc(64, SIZE_MAX) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
    if (kmem) {
        errno = 0;
        p = aligned_alloc(vZERO, 16);
        CHECK("kmem: aligned_alloc(0, n) is NULL with EINVAL", p == NULL && errno == EINVAL);
        errno = 0;
        p = aligned_alloc(24, 48);
        CHECK("kmem: aligned_alloc(24, n) is NULL with EINVAL", p == NULL && errno == EINVAL);
    }
}

static void test_memalign(void) {
    size_t small[] = {0, 1, 2, 8, 16};
    int good = 1;
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        void *p = memalign(small[i], 10);
        good &= p != NULL && aligned(p, 16);
        free(p);
    }
    CHECK("memalign(0..16, n) is 16-aligned", good);
    void *p = memalign(24, 100);
    CHECK("memalign(24) rounds the alignment up to 32", p && aligned(p, 32));
    free(p);
    p = memalign(1u << 21, 100);
    CHECK("memalign(2 MiB, 100)", p && aligned(p, 1u << 21));
    free(p);
    errno = 0;
    p = memalign(vSIZE_MAX, 10);
    CHECK("memalign(SIZE_MAX) is NULL with EINVAL", p == NULL && errno == EINVAL);
    errno = 0;
    p = memalign(64, vSIZE_MAX);
    CHECK("memalign(64, SIZE_MAX) is NULL with ENOMEM", p == NULL && errno == ENOMEM);
}

static void test_valloc_pvalloc(void) {
    size_t sizes[] = {0, 1, 4096, 5000, 3u << 20};
    int good = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = valloc(sizes[i]);
        good &= p != NULL && aligned(p, page);
        free(p);
    }
    CHECK("valloc is page-aligned (0 .. 3 MiB)", good);
    errno = 0;
    void *p = valloc(vSIZE_MAX);
    CHECK("valloc(SIZE_MAX) is NULL with ENOMEM", p == NULL && errno == ENOMEM);

    p = pvalloc(1);
    CHECK("pvalloc(1) is a whole page", p && aligned(p, page) && malloc_usable_size(p) >= page);
    free(p);
    p = pvalloc(page + 1);
    CHECK("pvalloc(page + 1) is two whole pages", p && aligned(p, page) && malloc_usable_size(p) >= 2 * page);
    free(p);
    p = pvalloc(vZERO);
    CHECK("pvalloc(0) returns a page-aligned block", p && aligned(p, page));
    if (kmem) CHECK("kmem: pvalloc(0) is one whole page", p && malloc_usable_size(p) >= page);
    free(p);
    errno = 0;
    p = pvalloc(vSIZE_MAX - 100);
    CHECK("pvalloc(SIZE_MAX-100) overflows rounding: NULL with ENOMEM", p == NULL && errno == ENOMEM);
}

static void test_usable_size(void) {
    CHECK("malloc_usable_size(NULL) is 0", malloc_usable_size(NULL) == 0);
    size_t sizes[] = {0, 1, 16, 17, 100, 1000, 5000, 100000};
    size_t kmem_expect[] = {16, 16, 16, 32, 128, 1024, 8192, 131072};
    int good = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = malloc(sizes[i]);
        size_t u = malloc_usable_size(p);
        printf("info malloc_usable_size(malloc(%zu)) = %zu\n", sizes[i], u);
        good &= u >= sizes[i];
        if (kmem) good &= u == kmem_expect[i];
        free(p);
    }
    CHECK(kmem ? "kmem: malloc_usable_size is kmalloc's bucket (16, 32, 128, 1024, ...)"
               : "malloc_usable_size >= size",
          good);
}

/* Threads: first call realloc, TLS destructors that allocate and free at thread exit, blocks
 * freed by another thread than the one that allocated them. */
static pthread_key_t key;
static void *shared_blocks[64];

static void key_dtor(void *v) {
    free(v);
    void *p = malloc(200);
    free(realloc(p, 5000));
}

static void *thread_first_realloc(void *arg) {
    unsigned char *p = realloc(NULL, 100); /* the thread's first allocator call */
    if (!p) return (void *)1;
    memset(p, 5, 100);
    p = realloc(p, 100000);
    if (!p || !all_bytes(p, 100, 5)) return (void *)1;
    free(p);
    return arg;
}

static void *thread_first_realloc_existing(void *arg) {
    unsigned char *b = arg; /* allocated by the main thread */
    unsigned char *n = realloc(b, 70000); /* the thread's first allocator call */
    if (!n || !all_bytes(n, 1000, 6)) return NULL;
    return n;
}

static void *thread_worker(void *arg) {
    long t = (long)arg;
    pthread_setspecific(key, malloc(300));
    for (int r = 0; r < 200; r++) {
        void *ps[32];
        for (int i = 0; i < 32; i++) ps[i] = malloc((size_t)(16 << (i % 12)) + (size_t)t);
        for (int i = 0; i < 32; i++) free(ps[i]);
    }
    free(shared_blocks[t]); /* allocated by main */
    return NULL;
}

static void test_threads(void) {
    pthread_t th;
    void *ret = NULL;
    int good = pthread_create(&th, NULL, thread_first_realloc, (void *)42) == 0 && pthread_join(th, &ret) == 0 && ret == (void *)42;
    CHECK("a new thread whose first call is realloc(NULL, n)", good);

    unsigned char *b = malloc(1000);
    memset(b, 6, 1000);
    ret = NULL;
    good = pthread_create(&th, NULL, thread_first_realloc_existing, b) == 0 && pthread_join(th, &ret) == 0 && ret != NULL;
    CHECK("a new thread whose first call is realloc of the main thread's block", good);
    free(ret);

    pthread_key_create(&key, key_dtor);
    pthread_t ts[16];
    good = 1;
    for (int round = 0; round < 4; round++) {
        for (long t = 0; t < 16; t++) shared_blocks[t] = malloc(100 + (size_t)t * 1000);
        for (long t = 0; t < 16; t++) good &= pthread_create(&ts[t], NULL, thread_worker, (void *)t) == 0;
        for (long t = 0; t < 16; t++) good &= pthread_join(ts[t], NULL) == 0;
    }
    CHECK("64 threads: cross-thread frees, TLS destructors that allocate at thread exit", good);
}

/* fork: the child gets a copy of the heap and can allocate; the parent's heap is its own. */
static volatile int stop_alloc;
static void *thread_alloc_loop(void *arg) {
    (void)arg;
    while (!stop_alloc) {
        void *ps[16];
        for (int i = 0; i < 16; i++) ps[i] = malloc((size_t)(32 << (i % 10)));
        for (int i = 0; i < 16; i++) free(ps[i]);
        free(malloc(5u << 20));
    }
    return NULL;
}

static void test_fork(void) {
    unsigned char *b = malloc(100000);
    memset(b, 8, 100000);
    unsigned char *h = malloc(6u << 20);
    memset(h, 9, 6u << 20);
    pthread_t th;
    pthread_create(&th, NULL, thread_alloc_loop, NULL);
    int good = 1;
    for (int r = 0; r < 10; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            int ok = all_bytes(b, 100000, 8) && all_bytes(h, 6u << 20, 9);
            memset(b, 0, 100000);
            memset(h, 0, 6u << 20);
            for (int i = 0; i < 1000; i++) {
                unsigned char *p = malloc((size_t)i * 37 + 1);
                memset(p, 1, (size_t)i * 37 + 1);
                free(p);
            }
            free(malloc(7u << 20));
            _exit(ok ? 0 : 3);
        }
        int status = 0;
        good &= pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        good &= all_bytes(b, 100000, 8) && all_bytes(h, 6u << 20, 9);
    }
    stop_alloc = 1;
    pthread_join(th, NULL);
    CHECK("fork (10 times, while another thread allocates): the child's heap is a copy", good);
    free(b);
    free(h);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    page = (size_t)sysconf(_SC_PAGESIZE);
    kmem = dlsym(RTLD_DEFAULT, "kmem_malloc_online_bytes") != NULL;
    printf("allocator: %s\n", kmem ? "kmem" : "glibc");
    test_malloc();
    test_free();
    test_free_sized();
    test_calloc();
    test_realloc();
    test_reallocarray();
    test_posix_memalign();
    test_aligned_alloc();
    test_memalign();
    test_valloc_pvalloc();
    test_usable_size();
    test_threads();
    test_fork();
    {
        /* malloc_trim: 64 blocks of 1 MiB, every page touched, freed, then given back (glibc
         * returns 1 when it released memory, 0 when there was none; kmem the same). */
        void *v[64];
        for (int i = 0; i < 64; i++) {
            v[i] = malloc(1 << 20);
            memset(v[i], i, 1 << 20);
        }
        for (int i = 0; i < 64; i++) free(v[i]);
        int r = malloc_trim(0);
        printf("info malloc_trim(0) after freeing 64 MiB = %d\n", r);
        CHECK("malloc_trim(0) after freeing 64 MiB gives memory back (returns 1)", r == 1);
    }
    if (kmem) {
        unsigned long long (*online)(void) = (unsigned long long (*)(void))dlsym(RTLD_DEFAULT, "kmem_malloc_online_bytes");
        unsigned long long n = online();
        printf("info kmem online bytes: %llu\n", n);
        CHECK("kmem: the machine is booted (online bytes > 0)", n > 0);
    }
    printf("summary: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}
