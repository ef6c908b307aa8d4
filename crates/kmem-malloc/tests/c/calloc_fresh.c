/* calloc of memory nobody has written: kmem's page allocator knows a fresh block reads as
 * zero (PG_zeroed) and does not clear it, so the process's resident set does not grow by
 * what it calloc'd and never touched (glibc's calloc of a fresh mmap behaves the same).
 * Memory written, freed and calloc'd again must read as zero all the same.
 * Prints "rss_growth_kb N" and "ok" lines; exits 1 on a non-zero byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char l[256];
    long v = -1;
    while (f && fgets(l, sizeof l, f))
        if (!strncmp(l, "VmRSS:", 6)) v = atol(l + 6);
    if (f) fclose(f);
    return v;
}

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

int main(void) {
    enum { N = 64, SIZE = 1 << 20 };
    unsigned char *p[N];
    long r0 = rss_kb();
    for (int i = 0; i < N; i++) {
        p[i] = calloc(1, SIZE);
        if (!p[i]) return 1;
        /* One byte per 64 KiB: reading a fresh page maps the zero page, not a new one. */
        for (size_t o = 0; o < SIZE; o += 65536)
            if (p[i][o]) { printf("FAIL fresh calloc %d not zero at %zu\n", i, o); return 1; }
    }
    printf("rss_growth_kb %ld\n", rss_kb() - r0);
    /* Written, freed, calloc'd again: cleared, whatever the blocks merged into meanwhile. */
    for (int i = 0; i < N; i++) memset(p[i], 0xa5, SIZE);
    for (int i = 0; i < N; i++) free(p[i]);
    for (int round = 0; round < 2; round++) {
        size_t size = round ? 3 * SIZE : SIZE / 4;
        int n = round ? N / 3 : 4 * N;
        for (int i = 0; i < n; i++) {
            unsigned char *q = calloc(1, size);
            if (!q || !all_zero(q, size)) { printf("FAIL calloc(%zu) after frees not zero\n", size); return 1; }
            memset(q, 0x5a, size);
            free(q);
        }
    }
    printf("ok\n");
    return 0;
}
