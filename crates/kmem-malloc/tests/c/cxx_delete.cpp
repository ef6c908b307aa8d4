// C++ new/delete under LD_PRELOAD=libkmem_malloc.so: every form of operator delete the
// library defines (plain, array, sized, aligned, nothrow), polymorphic deletes (the sized
// delete gets the dynamic type's size), and a mix of containers. Prints "ok NAME" per check
// and "summary: N checks, M failed"; exits 0 iff none failed. Prints "delete: kmem" when the
// sized delete resolves to the library's (dlsym), so the test knows it ran there.
#include <dlfcn.h>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

static int checks, failed;
#define CHECK(name, cond)                                                                    \
    do {                                                                                     \
        bool ok_ = (cond);                                                                   \
        checks++;                                                                            \
        if (!ok_) failed++;                                                                  \
        std::printf("%s %s\n", ok_ ? "ok" : "FAIL", name);                                   \
    } while (0)

struct Base {
    virtual ~Base() {}
    virtual long sum() const = 0;
};
template <int N> struct Derived : Base {
    char bytes[N];
    explicit Derived(char c) { std::memset(bytes, c, N); }
    long sum() const override {
        long s = 0;
        for (char b : bytes) s += b;
        return s;
    }
};
struct alignas(64) Wide {
    double v[5];
};
struct Tracked {
    std::string name;
    ~Tracked() {}
};

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    void *sym = dlsym(RTLD_DEFAULT, "_ZdlPvm");
    Dl_info info;
    bool kmem = sym && dladdr(sym, &info) && info.dli_fname && std::strstr(info.dli_fname, "kmem_malloc");
    std::printf("delete: %s\n", kmem ? "kmem" : "other");

    bool good = true;
    for (int round = 0; round < 1000; round++) {
        // Polymorphic deletes of several sizes: sized delete with the dynamic size.
        std::vector<Base *> v;
        for (int i = 0; i < 64; i++) {
            switch (i % 4) {
            case 0: v.push_back(new Derived<8>(1)); break;
            case 1: v.push_back(new Derived<100>(1)); break;
            case 2: v.push_back(new Derived<900>(1)); break;
            default: v.push_back(new Derived<5000>(1)); break;
            }
        }
        long want[] = {8, 100, 900, 5000};
        for (int i = 0; i < 64; i++) good &= v[i]->sum() == want[i % 4];
        for (Base *b : v) delete b;
    }
    CHECK("polymorphic sized deletes (8 B .. 5000 B objects)", good);

    good = true;
    for (int i = 0; i < 2000; i++) {
        Tracked *t = new Tracked[i % 7 + 1];  // an array cookie: sized delete[] of the whole
        t[0].name = "x";
        delete[] t;
        int *a = new int[i % 300 + 1];
        a[i % 300] = i;
        good &= a[i % 300] == i;
        delete[] a;
        char *c = new (std::nothrow) char[i + 1];
        good &= c != nullptr;
        operator delete[](c, std::nothrow);
    }
    CHECK("array and nothrow deletes", good);

    good = true;
    for (int i = 0; i < 2000; i++) {
        Wide *w = new Wide;  // aligned new/delete (align_val_t forms)
        good &= (reinterpret_cast<unsigned long>(w) & 63) == 0;
        delete w;
        Wide *ws = new Wide[i % 5 + 1];
        good &= (reinterpret_cast<unsigned long>(ws) & 63) == 0;
        delete[] ws;
        void *p = operator new(100, std::align_val_t(256));
        good &= (reinterpret_cast<unsigned long>(p) & 255) == 0;
        operator delete(p, 100, std::align_val_t(256));
        void *q = operator new(40, std::align_val_t(128), std::nothrow);
        operator delete(q, std::align_val_t(128), std::nothrow);
    }
    CHECK("aligned, sized-aligned and nothrow-aligned deletes", good);

    // A wrong size is only a hint: the block is freed all the same.
    good = true;
    for (int i = 0; i < 1000; i++) {
        void *p = operator new(300);
        std::memset(p, 7, 300);
        operator delete(p, 24);
        void *q = operator new(300);
        good &= q != nullptr;
        operator delete(q, 300);
    }
    CHECK("a sized delete with a wrong size frees the block", good);

    good = true;
    {
        std::map<int, std::string> m;
        std::list<std::unique_ptr<std::vector<int>>> l;
        for (int i = 0; i < 50000; i++) {
            m[i % 997] = std::string(i % 50, 'a');
            l.push_back(std::make_unique<std::vector<int>>(i % 20, i));
            if (l.size() > 300) l.pop_front();
        }
        for (auto &kv : m) good &= kv.second.size() == static_cast<size_t>(kv.first % 50) || kv.second.size() < 50;
    }
    CHECK("containers (map, list, unique_ptr, string, vector)", good);

    std::printf("summary: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}
