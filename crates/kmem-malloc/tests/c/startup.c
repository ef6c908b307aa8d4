/*
 * What the first malloc of a process costs (kmem boots its machine there): prints
 *   startup minflt <page faults of the first malloc> ram_pages <resident pages of the
 *   mapping holding the block> mapping_kb <its size>
 * The mapping is found in /proc/self/maps and its resident pages counted in
 * /proc/self/pagemap, with raw system calls and static buffers, so that nothing after the
 * first malloc allocates. Under glibc the mapping is the heap.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

static char maps[1 << 16];
static uint64_t entries[4096];

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static unsigned long hex(const char **s)
{
    unsigned long v = 0;
    for (;; (*s)++) {
        char c = **s;
        if (c >= '0' && c <= '9')
            v = v * 16 + (unsigned long)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (unsigned long)(c - 'a' + 10);
        else
            return v;
    }
}

int main(void)
{
    long before = minflt();
    void *volatile p = malloc(24);
    long faults = minflt() - before;
    if (!p)
        return 1;
    unsigned long at = (unsigned long)p, lo = 0, hi = 0;
    int fd = open("/proc/self/maps", O_RDONLY);
    ssize_t n = 0, r;
    while (fd >= 0 && n < (ssize_t)sizeof maps - 1 && (r = read(fd, maps + n, sizeof maps - 1 - (size_t)n)) > 0)
        n += r;
    close(fd);
    maps[n] = 0;
    for (const char *l = maps; *l;) {
        const char *s = l;
        unsigned long a = hex(&s);
        s++;
        unsigned long b = hex(&s);
        if (a <= at && at < b) {
            lo = a;
            hi = b;
        }
        while (*l && *l != '\n')
            l++;
        if (*l)
            l++;
    }
    /* Resident pages of the first 128 MiB of the mapping at most (kmem's boot section). */
    unsigned long end = hi - lo > (128ul << 20) ? lo + (128ul << 20) : hi;
    long resident = 0;
    int pm = open("/proc/self/pagemap", O_RDONLY);
    for (unsigned long a = lo; pm >= 0 && a < end;) {
        unsigned long pages = (end - a) / 4096;
        if (pages > sizeof entries / 8)
            pages = sizeof entries / 8;
        if (pread(pm, entries, pages * 8, (off_t)(a / 4096 * 8)) != (ssize_t)(pages * 8))
            break;
        for (unsigned long i = 0; i < pages; i++)
            resident += (long)(entries[i] >> 63);
        a += pages * 4096;
    }
    close(pm);
    printf("startup minflt %ld ram_pages %ld mapping_kb %lu\n", faults, resident, (hi - lo) >> 10);
    free(p);
    return 0;
}
