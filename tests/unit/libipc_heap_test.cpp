// The user heap's allocator on plain buffers: splitting and merging,
// alignment, exhaustion, growth, refusal of bad frees, and a randomized run
// against a shadow record of what is live.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <new>
#include <random>
#include <vector>

#include "mk/user_heap.hpp"
#include "seed.hpp"

namespace mk {
namespace {

// Exactly `n` bytes of 4 KiB-aligned memory, so ASan flags a step past them.
struct Region {
    explicit Region(size_t n)
        : size(n), memory(static_cast<uint8_t*>(::operator new (n, std::align_val_t{4096}))) {}
    ~Region() { ::operator delete (memory, std::align_val_t{4096}); }
    Region(const Region&) = delete;
    Region& operator=(const Region&) = delete;
    bool holds(const void* p, size_t n) const {
        auto* c = static_cast<const uint8_t*>(p);
        return c >= memory && c + n <= memory + size;
    }
    size_t size;
    uint8_t* memory;
};

TEST(LibipcHeap, AllocatesFromItsRegionAndMergesBackOnFree) {
    Region r(4096);
    UserHeap heap;
    heap.add_region(r.memory, r.size);
    EXPECT_EQ(heap.free_bytes(), 4096u);
    void* a = heap.allocate(100);
    void* b = heap.allocate(200);
    void* c = heap.allocate(1);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(r.holds(a, 100) && r.holds(b, 200) && r.holds(c, 1));
    EXPECT_GE(heap.usable_size(a), 100u);
    EXPECT_EQ(heap.live_blocks(), 3u);
    std::memset(a, 0xAA, 100);
    std::memset(b, 0xBB, 200);
    std::memset(c, 0xCC, 1);
    EXPECT_TRUE(heap.free(b));  // a hole in the middle
    EXPECT_EQ(heap.free_blocks(), 2u);
    EXPECT_TRUE(heap.free(a));  // merges with the hole after it
    EXPECT_EQ(heap.free_blocks(), 2u);
    EXPECT_TRUE(heap.free(c));  // and everything is one block again
    EXPECT_EQ(heap.free_blocks(), 1u);
    EXPECT_EQ(heap.free_bytes(), 4096u);
    EXPECT_EQ(heap.live_blocks(), 0u);
    EXPECT_TRUE(heap.consistent());
}

TEST(LibipcHeap, ReusesFreedSpace) {
    Region r(1024);
    UserHeap heap;
    heap.add_region(r.memory, r.size);
    void* a = heap.allocate(500);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(heap.allocate(600), nullptr);
    EXPECT_TRUE(heap.free(a));
    void* b = heap.allocate(600);
    EXPECT_EQ(b, a);  // first fit: the same place
    EXPECT_TRUE(heap.free(b));
}

TEST(LibipcHeap, HonoursAlignment) {
    Region r(64 * 1024);
    UserHeap heap;
    heap.add_region(r.memory + 16, r.size - 16);  // a start that is not page aligned
    std::vector<void*> blocks;
    for (size_t align = 1; align <= 4096; align <<= 1) {
        for (size_t size : {size_t{1}, size_t{24}, size_t{100}}) {
            void* p = heap.allocate(size, align);
            ASSERT_NE(p, nullptr) << "align " << align;
            EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % std::max<size_t>(align, 16), 0u);
            EXPECT_TRUE(r.holds(p, size));
            std::memset(p, 0x5A, size);
            blocks.push_back(p);
        }
    }
    EXPECT_TRUE(heap.consistent());
    EXPECT_EQ(heap.allocate(16, 48), nullptr);  // not a power of two
    for (void* p : blocks) EXPECT_TRUE(heap.free(p));
    EXPECT_EQ(heap.free_blocks(), 1u);
    EXPECT_EQ(heap.free_bytes(), r.size - 16);
}

TEST(LibipcHeap, ExhaustionReturnsNull) {
    Region r(4096);
    UserHeap heap;
    heap.add_region(r.memory, r.size);
    std::vector<void*> blocks;
    while (void* p = heap.allocate(64)) blocks.push_back(p);
    EXPECT_GE(blocks.size(), 4096u / 96);  // 80-byte blocks, nearly all of it
    EXPECT_EQ(heap.allocate(1), nullptr);
    EXPECT_EQ(heap.allocate(size_t{1} << 60), nullptr);  // no overflow on huge sizes
    EXPECT_EQ(heap.allocate(~size_t{0}), nullptr);
    for (void* p : blocks) EXPECT_TRUE(heap.free(p));
    EXPECT_EQ(heap.free_bytes(), 4096u);
    UserHeap empty;
    EXPECT_EQ(empty.allocate(1), nullptr);
}

TEST(LibipcHeap, ZeroBytesIsAUsableBlock) {
    Region r(256);
    UserHeap heap;
    heap.add_region(r.memory, r.size);
    void* a = heap.allocate(0);
    void* b = heap.allocate(0);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_NE(a, b);
    EXPECT_TRUE(heap.free(a));
    EXPECT_TRUE(heap.free(b));
}

TEST(LibipcHeap, RefusesBadFrees) {
    Region r(4096);
    UserHeap heap;
    heap.add_region(r.memory, r.size);
    auto* a = static_cast<uint8_t*>(heap.allocate(64));
    void* b = heap.allocate(64);
    EXPECT_TRUE(heap.free(nullptr));
    EXPECT_FALSE(heap.free(a + 16));  // inside a block
    EXPECT_FALSE(heap.free(a + 1));   // misaligned
    EXPECT_TRUE(heap.free(a));
    EXPECT_FALSE(heap.free(a));  // twice
    EXPECT_EQ(heap.live_blocks(), 1u);
    EXPECT_TRUE(heap.consistent());
    EXPECT_TRUE(heap.free(b));
    EXPECT_EQ(heap.free_bytes(), 4096u);
}

TEST(LibipcHeap, TinyRegionsAreIgnored) {
    Region r(64);
    UserHeap heap;
    heap.add_region(r.memory + 1, 30);  // under one block after alignment
    EXPECT_EQ(heap.free_bytes(), 0u);
    heap.add_region(r.memory, 0);
    EXPECT_EQ(heap.allocate(1), nullptr);
}

// Growth through the callback: pieces of one big region, handed out in
// order, so that neighbouring grants also merge.
struct Grower {
    Region& r;
    size_t used = 0;
    int calls = 0;
    static void* grow(void* ctx, size_t min_bytes, size_t* got) {
        auto* g = static_cast<Grower*>(ctx);
        ++g->calls;
        size_t n = std::max<size_t>(min_bytes, 4096);
        n = (n + 4095) & ~size_t{4095};
        if (n > g->r.size - g->used) return nullptr;
        void* p = g->r.memory + g->used;
        g->used += n;
        *got = n;
        return p;
    }
};

TEST(LibipcHeap, GrowsThroughItsCallbackUntilItSaysNo) {
    Region r(64 * 1024);
    Grower g{r};
    UserHeap heap(&Grower::grow, &g);
    std::vector<void*> blocks;
    while (void* p = heap.allocate(1000)) {
        EXPECT_TRUE(r.holds(p, 1000));
        blocks.push_back(p);
    }
    EXPECT_GT(g.calls, 1);
    EXPECT_GE(blocks.size(), 60u);
    for (void* p : blocks) EXPECT_TRUE(heap.free(p));
    EXPECT_EQ(heap.free_blocks(), 1u);  // the grants were adjacent: one block
    void* big = heap.allocate(60 * 1024);
    EXPECT_NE(big, nullptr);
    EXPECT_TRUE(heap.free(big));
    // A request larger than anything the callback can give.
    EXPECT_EQ(heap.allocate(1 << 20), nullptr);
}

TEST(LibipcHeap, GrowthServesLargeAlignedRequests) {
    Region r(64 * 1024);
    Grower g{r};
    UserHeap heap(&Grower::grow, &g);
    void* p = heap.allocate(100, 8192);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 8192, 0u);
    EXPECT_TRUE(heap.free(p));
}

TEST(LibipcHeap, RandomAllocationsKeepTheirContents) {
    std::mt19937_64 rng(mk::testing::test_seed("LibipcHeap.RandomAllocationsKeepTheirContents"));
    Region r(256 * 1024);
    UserHeap heap;
    heap.add_region(r.memory, r.size);
    struct Live {
        size_t size;
        uint8_t fill;
    };
    std::map<uint8_t*, Live> live;
    for (int step = 0; step < 20000; ++step) {
        bool alloc = live.empty() || rng() % 100 < 55;
        if (alloc) {
            size_t size = rng() % 4 == 0 ? rng() % 4000 : rng() % 200;
            size_t align = size_t{1} << (rng() % 4 == 0 ? rng() % 10 : 0);
            auto* p = static_cast<uint8_t*>(heap.allocate(size, align));
            if (p == nullptr) continue;  // full for now
            ASSERT_TRUE(r.holds(p, size));
            ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % std::max<size_t>(align, 16), 0u);
            auto next = live.lower_bound(p);
            if (next != live.end()) {
                ASSERT_LE(p + size, next->first);
            }
            if (next != live.begin()) {
                auto prev = std::prev(next);
                ASSERT_LE(prev->first + prev->second.size, p);
            }
            uint8_t fill = uint8_t(rng());
            std::memset(p, fill, size);
            live[p] = Live{size, fill};
        } else {
            auto it = live.begin();
            std::advance(it, rng() % live.size());
            for (size_t i = 0; i < it->second.size; ++i) {
                ASSERT_EQ(it->first[i], it->second.fill) << "block overwritten";
            }
            ASSERT_TRUE(heap.free(it->first));
            live.erase(it);
        }
        if (step % 1000 == 0) {
            ASSERT_TRUE(heap.consistent());
        }
    }
    EXPECT_EQ(heap.live_blocks(), live.size());
    for (auto& [p, l] : live) ASSERT_TRUE(heap.free(p));
    EXPECT_TRUE(heap.consistent());
    EXPECT_EQ(heap.free_blocks(), 1u);
    EXPECT_EQ(heap.free_bytes(), r.size);
}

}  // namespace
}  // namespace mk
