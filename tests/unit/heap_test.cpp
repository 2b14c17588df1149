#include "heap.hpp"

#include <gtest/gtest.h>

#include "seed.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

namespace mk {
namespace {

// Page-aligned host memory for heap regions, exactly `n` bytes long so ASan
// flags any access past the end.
struct Region {
    explicit Region(size_t n)
        : size(n),
          memory(static_cast<unsigned char*>(::operator new (n, std::align_val_t{4096}))) {}
    ~Region() { ::operator delete (memory, std::align_val_t{4096}); }
    Region(const Region&) = delete;
    Region& operator=(const Region&) = delete;
    size_t size;
    unsigned char* memory;
};

bool inside(const Region& r, const void* p, size_t n) {
    auto* c = static_cast<const unsigned char*>(p);
    return c >= r.memory && c + n <= r.memory + r.size;
}

class HeapTest : public ::testing::Test {
  protected:
    Region region_{64 * 1024};
    Heap heap_;

    void SetUp() override {
        ASSERT_EQ(heap_.add_region(region_.memory, region_.size), Error::None);
    }
    void TearDown() override { EXPECT_TRUE(heap_.check()); }
};

TEST_F(HeapTest, FreshRegionIsOneFreeBlock) {
    HeapStats s = heap_.stats();
    EXPECT_EQ(s.regions, 1u);
    EXPECT_EQ(s.free_blocks, 1u);
    EXPECT_EQ(s.used_blocks, 0u);
    EXPECT_EQ(s.bytes_used, 0u);
    EXPECT_EQ(s.bytes_total, 64u * 1024 - Heap::kHeaderSize);  // minus the end sentinel
    EXPECT_EQ(s.bytes_free, s.bytes_total);
    EXPECT_EQ(s.largest_free, s.bytes_total - Heap::kHeaderSize);
}

TEST_F(HeapTest, AllocFreeBasics) {
    void* a = heap_.alloc(100);
    void* b = heap_.alloc(1);
    void* c = heap_.alloc(1000, 64);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(inside(region_, a, 100));
    EXPECT_TRUE(inside(region_, b, 1));
    EXPECT_TRUE(inside(region_, c, 1000));
    EXPECT_TRUE(heap_.owns(a));
    EXPECT_FALSE(heap_.owns(&a));
    std::fill_n(static_cast<char*>(a), 100, 'a');
    std::fill_n(static_cast<char*>(b), 1, 'b');
    std::fill_n(static_cast<char*>(c), 1000, 'c');
    EXPECT_TRUE(heap_.check());
    HeapStats s = heap_.stats();
    EXPECT_EQ(s.used_blocks, 3u);
    EXPECT_EQ(s.bytes_used + s.bytes_free, s.bytes_total);
    EXPECT_EQ(static_cast<char*>(a)[99], 'a');
    heap_.free(b);
    heap_.free(a);
    heap_.free(c);
    heap_.free(nullptr);  // ignored
    s = heap_.stats();
    EXPECT_EQ(s.used_blocks, 0u);
    EXPECT_EQ(s.free_blocks, 1u);
    EXPECT_EQ(s.bytes_used, 0u);
}

TEST_F(HeapTest, FreedMemoryIsReused) {
    void* a = heap_.alloc(256);
    heap_.free(a);
    void* b = heap_.alloc(256);
    EXPECT_EQ(a, b);
    heap_.free(b);
}

TEST_F(HeapTest, AlignmentIsHonoured) {
    std::vector<void*> blocks;
    for (size_t align = 1; align <= Heap::kMaxAlign; align *= 2) {
        for (size_t size : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{100},
                            size_t{4096}}) {
            void* p = heap_.alloc(size, align);
            ASSERT_NE(p, nullptr) << "size " << size << " align " << align;
            EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << "align " << align;
            EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % Heap::kMinAlign, 0u);
            std::fill_n(static_cast<unsigned char*>(p), size, 0x5a);
            blocks.push_back(p);
            ASSERT_TRUE(heap_.check());
            if (blocks.size() > 12) {  // keep the region from filling up
                heap_.free(blocks.front());
                blocks.erase(blocks.begin());
            }
        }
    }
    for (void* p : blocks) heap_.free(p);
    EXPECT_EQ(heap_.stats().free_blocks, 1u);
}

TEST_F(HeapTest, ZeroSizeGivesUniqueBlocks) {
    void* a = heap_.alloc(0);
    void* b = heap_.alloc(0);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_NE(a, b);
    heap_.free(a);
    heap_.free(b);
}

TEST_F(HeapTest, AllocAllFreeAllThenOneBigBlock) {
    const size_t largest = heap_.stats().largest_free;
    std::vector<void*> blocks;
    std::mt19937_64 rng(1);
    for (;;) {
        void* p = heap_.alloc(1 + rng() % 200, size_t{1} << (rng() % 7));
        if (p == nullptr) break;
        blocks.push_back(p);
    }
    EXPECT_GT(blocks.size(), 100u);
    EXPECT_TRUE(heap_.check());
    // Nearly full: a block of the size that fitted before no longer does.
    EXPECT_EQ(heap_.alloc(largest), nullptr);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    for (void* p : blocks) heap_.free(p);
    HeapStats s = heap_.stats();
    EXPECT_EQ(s.free_blocks, 1u);
    EXPECT_EQ(s.largest_free, largest);
    EXPECT_EQ(heap_.alloc(largest + 1), nullptr);
    void* big = heap_.alloc(largest);
    ASSERT_NE(big, nullptr);
    std::fill_n(static_cast<unsigned char*>(big), largest, 0xab);  // ASan: really all usable
    EXPECT_EQ(heap_.stats().free_blocks, 0u);
    heap_.free(big);
}

TEST_F(HeapTest, NeighboursMergeInEveryOrder) {
    // Free the middle block last, first, and in between: always back to one block.
    for (int order = 0; order < 6; ++order) {
        void* p[3] = {heap_.alloc(64), heap_.alloc(64), heap_.alloc(64)};
        void* tail = heap_.alloc(64);  // keeps the last one from merging with the rest
        int idx[3] = {0, 1, 2};
        for (int k = 0; k < order; ++k) std::next_permutation(idx, idx + 3);
        for (int i : idx) {
            heap_.free(p[i]);
            ASSERT_TRUE(heap_.check()) << "order " << order;
        }
        EXPECT_EQ(heap_.stats().free_blocks, 2u);  // the merged three, and the rest after tail
        heap_.free(tail);
        EXPECT_EQ(heap_.stats().free_blocks, 1u);
    }
}

TEST_F(HeapTest, ExhaustionReturnsNull) {
    EXPECT_EQ(heap_.alloc(64 * 1024), nullptr);
    EXPECT_EQ(heap_.alloc(SIZE_MAX), nullptr);
    EXPECT_EQ(heap_.alloc(SIZE_MAX - 15), nullptr);
    EXPECT_EQ(heap_.alloc(SIZE_MAX / 2, 4096), nullptr);
    EXPECT_EQ(heap_.stats().used_blocks, 0u);
    // A large alignment may not fit where the unaligned size would.
    size_t largest = heap_.stats().largest_free;
    EXPECT_EQ(heap_.alloc(largest - 64, 4096), nullptr);
    EXPECT_NE(heap_.alloc(largest - 4096 - 64, 4096), nullptr);
}

TEST(Heap, AddRegionValidation) {
    Heap heap;
    Region r(8192);
    EXPECT_EQ(heap.add_region(nullptr, 4096), Error::InvalidArgument);
    EXPECT_EQ(heap.add_region(r.memory, 63), Error::InvalidArgument);      // no room for a block
    EXPECT_EQ(heap.add_region(r.memory + 1, 64), Error::InvalidArgument);  // 48 after trimming
    EXPECT_EQ(heap.add_region(reinterpret_cast<void*>(UINTPTR_MAX - 100), 4096),
              Error::InvalidArgument);  // wraps: rejected before touching memory
    EXPECT_EQ(heap.stats().regions, 0u);
    EXPECT_EQ(heap.alloc(1), nullptr);  // no regions: nothing to give
    EXPECT_EQ(heap.add_region(r.memory, 4096), Error::None);
    EXPECT_EQ(heap.add_region(r.memory + 4000, 1000), Error::InvalidArgument);  // overlaps
    EXPECT_EQ(heap.add_region(r.memory + 4096, 4096), Error::None);             // adjacent is fine
    EXPECT_EQ(heap.stats().regions, 2u);
    EXPECT_TRUE(heap.check());
}

TEST(Heap, UnalignedRegionEdgesAreTrimmed) {
    Heap heap;
    Region r(4096);
    ASSERT_EQ(heap.add_region(r.memory + 3, 1000), Error::None);
    HeapStats s = heap.stats();
    // [r+16, r+1003 & ~15 = r+992): 976 bytes, minus the sentinel.
    EXPECT_EQ(s.bytes_total, 976u - 16);
    void* p = heap.alloc(s.largest_free);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(inside(r, p, s.largest_free));
    EXPECT_GE(static_cast<unsigned char*>(p), r.memory + 3);
    EXPECT_LE(static_cast<unsigned char*>(p) + s.largest_free, r.memory + 1003);
    heap.free(p);
    EXPECT_TRUE(heap.check());
}

TEST(Heap, TooManyRegions) {
    Heap heap;
    Region r(Heap::kMaxRegions * 128 + 128);
    for (size_t i = 0; i < Heap::kMaxRegions; ++i) {
        ASSERT_EQ(heap.add_region(r.memory + i * 128, 128), Error::None);
    }
    EXPECT_EQ(heap.add_region(r.memory + Heap::kMaxRegions * 128, 128), Error::OutOfMemory);
    EXPECT_TRUE(heap.check());
}

TEST(Heap, SeveralRegions) {
    Heap heap;
    Region a(4096), b(16384);
    ASSERT_EQ(heap.add_region(a.memory, a.size), Error::None);
    ASSERT_EQ(heap.add_region(b.memory, b.size), Error::None);
    // Bigger than region a: must come from b.
    void* big = heap.alloc(8000);
    ASSERT_NE(big, nullptr);
    EXPECT_TRUE(inside(b, big, 8000));
    // Bigger than either region: fails although the total free space would suffice.
    EXPECT_EQ(heap.alloc(16384), nullptr);
    // Fill everything; blocks come from both regions and never straddle them.
    std::vector<void*> blocks;
    while (void* p = heap.alloc(500)) {
        EXPECT_TRUE(inside(a, p, 500) || inside(b, p, 500));
        blocks.push_back(p);
    }
    EXPECT_TRUE(
        std::any_of(blocks.begin(), blocks.end(), [&](void* p) { return inside(a, p, 1); }));
    EXPECT_TRUE(
        std::any_of(blocks.begin(), blocks.end(), [&](void* p) { return inside(b, p, 1); }));
    EXPECT_TRUE(heap.check());
    for (void* p : blocks) heap.free(p);
    heap.free(big);
    EXPECT_EQ(heap.stats().free_blocks, 2u);  // one per region: no merge across regions
    EXPECT_EQ(heap.stats().bytes_used, 0u);
    EXPECT_TRUE(heap.check());
}

// --- Kernel bugs: panics with a clear message ---

using HeapDeathTest = HeapTest;

TEST_F(HeapDeathTest, DoubleFree) {
    void* a = heap_.alloc(100);
    heap_.free(a);
    EXPECT_DEATH(heap_.free(a), "heap: double free of 0x");
}

TEST_F(HeapDeathTest, DoubleFreeAfterMergingIntoTheBlockBefore) {
    void* a = heap_.alloc(100);
    void* b = heap_.alloc(100);
    void* c = heap_.alloc(100);
    heap_.free(a);
    heap_.free(b);  // merges into a's block: b's header is left inside it
    EXPECT_DEATH(heap_.free(b), "heap: double free");
    EXPECT_DEATH(heap_.free(a), "heap: double free");
    heap_.free(c);
}

TEST_F(HeapDeathTest, FreeOfAPointerNotFromTheHeap) {
    int on_stack = 0;
    EXPECT_DEATH(heap_.free(&on_stack), "heap: bad free of 0x.*not a block of this heap");
    EXPECT_DEATH(heap_.free(region_.memory), "heap: bad free");  // before the first payload
}

TEST_F(HeapDeathTest, FreeOfAnInteriorPointer) {
    auto* p = static_cast<unsigned char*>(heap_.alloc(256));
    std::fill_n(p, 256, 0);
    EXPECT_DEATH(heap_.free(p + 64), "heap: bad free of 0x.*no allocated block there");
    EXPECT_DEATH(heap_.free(p + 8), "heap: bad free");  // misaligned
    heap_.free(p);
}

TEST_F(HeapDeathTest, BadAlignment) {
    EXPECT_DEATH((void)heap_.alloc(16, 3), "heap: alignment 3 is not a power of two");
    EXPECT_DEATH((void)heap_.alloc(16, 8192), "heap: alignment 8192");
    EXPECT_DEATH((void)heap_.alloc(16, 0), "heap: alignment 0");
}

// --- Randomized against a model, with content checks ---

uint8_t pattern(uint64_t id, size_t i) {
    return static_cast<uint8_t>((id * 131 + i * 7) ^ (id >> 8));
}

TEST(HeapRandom, MatchesAModelAndKeepsContents) {
    const uint64_t seed = mk::testing::test_seed("HeapRandom.MatchesAModelAndKeepsContents");
    std::mt19937_64 rng(seed);

    Region r1(1 << 20), r2(256 * 1024);
    Heap heap;
    ASSERT_EQ(heap.add_region(r1.memory, r1.size), Error::None);
    ASSERT_EQ(heap.add_region(r2.memory + 8, r2.size - 24), Error::None);
    const HeapStats fresh = heap.stats();

    struct Block {
        size_t size;
        uint64_t id;
    };
    std::map<uintptr_t, Block> live;  // the model: address -> block
    uint64_t next_id = 1;
    size_t failures = 0;

    auto verify_and_free = [&](std::map<uintptr_t, Block>::iterator it) {
        auto* p = reinterpret_cast<unsigned char*>(it->first);
        for (size_t i = 0; i < it->second.size; ++i) {
            ASSERT_EQ(p[i], pattern(it->second.id, i))
                << "block " << it->second.id << " byte " << i;
        }
        heap.free(p);
        live.erase(it);
    };

    for (int op = 0; op < 30000; ++op) {
        // Phases: mostly allocating, then mostly freeing, so the heap fills and drains.
        const bool filling = (op / 3000) % 2 == 0;
        if (live.empty() || rng() % 100 < (filling ? 65u : 35u)) {
            size_t size;
            switch (rng() % 10) {
                case 0:
                    size = 0;
                    break;
                case 1:
                    size = rng() % 65536;
                    break;
                case 2:
                    size = rng() % 4096;
                    break;
                default:
                    size = rng() % 256;
                    break;
            }
            size_t align = size_t{1} << (rng() % 4 == 0 ? rng() % 13 : rng() % 5);
            void* p = heap.alloc(size, align);
            if (p == nullptr) {
                ++failures;
                continue;
            }
            uintptr_t a = reinterpret_cast<uintptr_t>(p);
            ASSERT_EQ(a % align, 0u);
            ASSERT_TRUE(inside(r1, p, size) || inside(r2, p, size));
            // No overlap with any live block (zero-size blocks count as one byte).
            auto next = live.lower_bound(a);
            if (next != live.end()) {
                ASSERT_GE(next->first, a + std::max<size_t>(size, 1));
            }
            if (next != live.begin()) {
                auto prev = std::prev(next);
                ASSERT_LE(prev->first + std::max<size_t>(prev->second.size, 1), a);
            }
            Block b{size, next_id++};
            for (size_t i = 0; i < size; ++i) static_cast<unsigned char*>(p)[i] = pattern(b.id, i);
            live.emplace(a, b);
        } else {
            auto it = live.begin();
            std::advance(it, long(rng() % live.size()));
            verify_and_free(it);
            if (HasFatalFailure()) return;
        }
        if (op % 500 == 0) {
            ASSERT_TRUE(heap.check()) << "op " << op;
            HeapStats s = heap.stats();
            ASSERT_EQ(s.used_blocks, live.size());
            ASSERT_EQ(s.bytes_used + s.bytes_free, s.bytes_total);
        }
    }
    EXPECT_GT(failures, 0u) << "the heap never filled up: the test is too gentle";
    while (!live.empty()) {
        verify_and_free(live.begin());
        if (HasFatalFailure()) return;
    }
    ASSERT_TRUE(heap.check());
    HeapStats s = heap.stats();
    EXPECT_EQ(s.free_blocks, 2u);
    EXPECT_EQ(s.bytes_used, 0u);
    EXPECT_EQ(s.bytes_free, fresh.bytes_free);
    EXPECT_EQ(s.largest_free, fresh.largest_free);
}

}  // namespace
}  // namespace mk
