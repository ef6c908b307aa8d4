/* Misuse of the allocator, one case per run (`misuse CASE`), for LD_PRELOAD=libkmem_malloc.so
 * only (glibc aborts on most of these). Prints "ok NAME" / "FAIL NAME" per check and, for
 * every report line kmem must write on stderr, "expect LINE" on stdout, in order; the test
 * (preload.rs) compares the two. Exit status 0 iff no check failed. After the misuse each
 * case checks that the allocator keeps working: 10,000 blocks, filled, checked, freed.
 *
 * Cases: double_free, realloc_freed, forged_header, bad_pointers, machine_report. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, failed;

#define CHECK(name, cond)                                                                    \
    do {                                                                                     \
        int ok_ = (cond);                                                                    \
        checks++;                                                                            \
        if (!ok_) failed++;                                                                  \
        printf("%s %s\n", ok_ ? "ok" : "FAIL", name);                                        \
        fflush(stdout);                                                                      \
    } while (0)

#define BIG ((size_t)8 << 20)

/* Pointers the compiler cannot see through (no -Wfree-nonheap-object). */
static void *launder(void *p) {
    void *volatile v = p;
    return v;
}

static void expect(const char *what, void *p) {
    printf("expect kmem: %s%p\n", what, p);
    fflush(stdout);
}

static void fill(unsigned char *p, size_t n, unsigned char v) {
    for (size_t o = 0; o < n; o += 4096) p[o] = v;
    p[n - 1] = v;
}

static int holds(const unsigned char *p, size_t n, unsigned char v) {
    for (size_t o = 0; o < n; o += 4096)
        if (p[o] != v) return 0;
    return p[n - 1] == v;
}

static int disjoint(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x + na <= y || y + nb <= x;
}

/* 10,000 blocks of 1-2048 bytes and a few of 8-12 MiB, each filled and checked, then freed. */
static void keeps_working(void) {
    enum { N = 10000 };
    static unsigned char *ps[N];
    static size_t ns[N];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int good = 1;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ns[i] = i % 1000 == 0 ? BIG + (size_t)(x % (4u << 20)) : 1 + (size_t)(x % 2048);
        ps[i] = malloc(ns[i]);
        if (!ps[i]) {
            good = 0;
            break;
        }
        fill(ps[i], ns[i], (unsigned char)i);
    }
    for (int i = 0; i < N && ps[i]; i++) {
        good &= holds(ps[i], ns[i], (unsigned char)i);
        free(ps[i]);
    }
    CHECK("keeps working: 10000 blocks allocated, filled, checked, freed", good);
}

static void double_free(void) {
    unsigned char *a = malloc(BIG);
    fill(a, BIG, 1);
    free(a);
    expect("free(): double free of a large block at ", a);
    free(launder(a));
    printf("after the double free\n");
    fflush(stdout);
    unsigned char *b = malloc(BIG), *c = malloc(BIG);
    CHECK("two mallocs after a double free succeed", b && c);
    CHECK("and return different blocks", b != c && disjoint(b, BIG, c, BIG));
    fill(b, BIG, 2);
    fill(c, BIG, 3);
    CHECK("each keeps its own contents", holds(b, BIG, 2) && holds(c, BIG, 3));
    free(b);
    free(c);
}

static void realloc_freed(void) {
    unsigned char *a = malloc(BIG);
    free(a);
    expect("realloc(): invalid pointer ", a);
    void *r = realloc(launder(a), BIG - 4096);
    CHECK("realloc of a freed large block is NULL", r == NULL);
    unsigned char *b = malloc(BIG), *c = malloc(BIG);
    CHECK("two later mallocs return different blocks", b && c && disjoint(b, BIG, c, BIG));
    fill(b, BIG, 4);
    fill(c, BIG, 5);
    CHECK("each keeps its own contents", holds(b, BIG, 4) && holds(c, BIG, 5));
    free(b);
    free(c);
    /* Blocks inside kmem's RAM: a slab object (kmalloc-64) and a medium block (malloc-32k).
     * Resizing one in place (the new size fits) would hand it out while its CPU's sheaf
     * still holds it: the machine reports the double free instead. */
    const size_t sizes[2] = {64, 20000};
    const char *caches[2] = {"kmalloc-64", "malloc-32k"};
    for (int i = 0; i < 2; i++) {
        size_t n = sizes[i];
        unsigned char *s = malloc(n);
        free(s);
        printf("expect BUG %s \n", caches[i]);
        fflush(stdout);
        char name[128];
        snprintf(name, sizeof name, "realloc of a freed %zu-byte block, smaller, is NULL", n);
        unsigned char *r = realloc(launder(s), n / 2);
        CHECK(name, r == NULL);
        unsigned char *t = malloc(n), *u = malloc(n);
        snprintf(name, sizeof name, "two later %zu-byte mallocs return blocks of their own", n);
        CHECK(name, t && u && disjoint(t, n, u, n) && (!r || (disjoint(r, n / 2, t, n) && disjoint(r, n / 2, u, n))));
        fill(t, n, 6);
        fill(u, n, 7);
        snprintf(name, sizeof name, "each %zu-byte block keeps its own contents", n);
        CHECK(name, holds(t, n, 6) && holds(u, n, 7));
        free(t);
        free(u);
    }
}

/* The program's own .bss, dressed up as a large block with the old in-band header (magic
 * "kmemhuge", mapping base, length, usable bytes) just before the pointer. */
static unsigned char forged[4 * 4096] __attribute__((aligned(4096)));

static void forged_header(void) {
    unsigned char *ptr = forged + 2 * 4096;
    uint64_t header[4] = {0x6b6d656d68756765ull, (uint64_t)(uintptr_t)forged, 64u << 20, 2 * 4096};
    memcpy(ptr - sizeof header, header, sizeof header);
    expect("free(): invalid pointer ", ptr);
    free(launder(ptr));
    CHECK("malloc_usable_size of the forged block is 0", malloc_usable_size(launder(ptr)) == 0);
    /* Large mallocs never return the .bss; frees enough to evict every cached mapping leave
     * it mapped (a munmap of what the header names would make the writes below fault). */
    int good = 1;
    void *ps[40];
    for (int i = 0; i < 40; i++) {
        ps[i] = malloc(BIG + (size_t)i * (1 << 20));
        good &= ps[i] && disjoint(ps[i], BIG, forged, 64u << 20);
    }
    for (int i = 0; i < 40; i++) free(ps[i]);
    CHECK("no large malloc returned the forged block", good);
    forged[0] = 7;
    CHECK("the .bss is still mapped and unchanged", forged[0] == 7 && memcmp(ptr - sizeof header, header, sizeof header) == 0);
}

static long a_global = 5;

static void bad_pointers(void) {
    char on_stack[64] = {0};
    unsigned char *big = malloc(BIG);
    fill(big, BIG, 9);
    void *wild = (void *)(uintptr_t)0x7ead00000000ull;
    void *ps[4] = {on_stack + 8, &a_global, big + 4096, wild};
    const char *names[4] = {"stack", "global", "interior of a large block", "wild"};
    for (int i = 0; i < 4; i++) {
        char name[128];
        snprintf(name, sizeof name, "malloc_usable_size(%s) is 0", names[i]);
        CHECK(name, malloc_usable_size(launder(ps[i])) == 0);
        expect("free(): invalid pointer ", ps[i]);
        free(launder(ps[i]));
        expect("realloc(): invalid pointer ", ps[i]);
        snprintf(name, sizeof name, "realloc(%s) is NULL", names[i]);
        CHECK(name, realloc(launder(ps[i]), 100) == NULL);
    }
    CHECK("the stack and the global are untouched", on_stack[8] == 0 && a_global == 5);
    CHECK("the large block is live and intact", holds(big, BIG, 9) && malloc_usable_size(big) >= BIG);
    free(big);
}

/* A misuse inside kmem's RAM is the machine's to report (kfree's WARNING). */
static void machine_report(void) {
    unsigned char *a = malloc(1 << 20);
    printf("expect WARNING: \n");
    fflush(stdout);
    free(launder(a + 8192));
    printf("after the machine's report\n");
    fflush(stdout);
    free(a);
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "double_free")) double_free();
    else if (!strcmp(c, "realloc_freed")) realloc_freed();
    else if (!strcmp(c, "forged_header")) forged_header();
    else if (!strcmp(c, "bad_pointers")) bad_pointers();
    else if (!strcmp(c, "machine_report")) machine_report();
    else {
        fprintf(stderr, "usage: misuse double_free|realloc_freed|forged_header|bad_pointers|machine_report\n");
        return 2;
    }
    keeps_working();
    printf("summary: %d checks, %d failed\n", checks, failed);
    return failed != 0;
}
