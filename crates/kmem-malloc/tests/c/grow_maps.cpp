// Heaps that outgrow a fresh kmem machine's 128 MiB of RAM (the machine grows by hot-add,
// sweeping its slab lists first, and never reclaims while it can grow): 4 threads each
// build a std::map of 400,000 entries with vectors and strings, about 200 MB in all, then
// each thread grows a C buffer by an eighth at a time to 48 MiB with realloc (blocks above
// 4 MiB are host mappings, resized with mremap). Prints a checksum per thread (the same on
// every allocator); on stderr, which allocator served it and, on kmem, that the machine
// grew past its boot RAM.
#include <dlfcn.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

static uint64_t build(int t) {
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 400000; i++) m[std::to_string(i * 7 + t)] = std::vector<int>(i % 7 + 1, i);
    uint64_t s = 0;
    for (auto &kv : m) s = s * 31 + kv.second.size() + kv.first.size() + (uint64_t)kv.second.back();
    size_t n = 0;
    unsigned char *p = nullptr;
    while (n < (48u << 20)) {
        size_t next = n + n / 8 + 4096;
        p = (unsigned char *)realloc(p, next);
        if (!p) abort();
        for (size_t o = (n + 4095) & ~(size_t)4095; o < next; o += 4096) p[o] = (unsigned char)(o / 4096 + t);
        n = next;
    }
    for (size_t o = 0; o < n; o += 4096)
        if (p[o] != (unsigned char)(o / 4096 + t)) abort();
    s += p[n / 2];
    free(p);
    return s;
}

int main() {
    uint64_t out[4];
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++) ts.emplace_back([t, &out] { out[t] = build(t); });
    for (auto &t : ts) t.join();
    for (int t = 0; t < 4; t++) printf("%d %llu\n", t, (unsigned long long)out[t]);
    auto online = (uint64_t(*)(void))dlsym(RTLD_DEFAULT, "kmem_malloc_online_bytes");
    if (online)
        fprintf(stderr, "allocator=kmem online=%llu\n", (unsigned long long)online());
    else
        fprintf(stderr, "allocator=system\n");
    return 0;
}
