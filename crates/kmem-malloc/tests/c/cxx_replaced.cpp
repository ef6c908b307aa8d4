// A C++ program that replaces operator new and the unsized operator delete (a header of
// its own before each block, and counts), as C++ allows: the default sized and array
// deletes must call its operator delete(void*). Under LD_PRELOAD=libkmem_malloc.so, whose
// deletes would otherwise free directly, every delete must still reach the program's.
// Prints "ok: N deletes" and exits 0 when the counts match and every header was intact.
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

static long news, deletes, bad;
static const unsigned long MAGIC = 0x6b6d656d2d6e6577UL;

void *operator new(std::size_t n) {
    unsigned long *h = static_cast<unsigned long *>(std::malloc(n + 16));
    if (!h) throw std::bad_alloc();
    h[0] = MAGIC;
    h[1] = n;
    news++;
    return h + 2;
}
void *operator new[](std::size_t n) { return operator new(n); }
void operator delete(void *p) noexcept {
    if (!p) return;
    unsigned long *h = static_cast<unsigned long *>(p) - 2;
    if (h[0] != MAGIC) bad++;
    h[0] = 0;
    deletes++;
    std::free(h);
}
void operator delete[](void *p) noexcept { operator delete(p); }

struct Node {
    long v[5];
    virtual ~Node() {}
};

int main() {
    for (int i = 0; i < 10000; i++) {
        Node *n = new Node;  // sized delete (operator delete(void*, size_t)): not replaced
        delete n;
        int *a = new int[i % 50 + 1];
        delete[] a;
        std::vector<std::string> v(i % 7, std::string(40, 'x'));
    }
    if (news != deletes || bad) {
        std::printf("FAIL: %ld news, %ld deletes, %ld bad headers\n", news, deletes, bad);
        return 1;
    }
    std::printf("ok: %ld deletes\n", deletes);
    return 0;
}
