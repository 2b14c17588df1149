#include "frame_allocator.hpp"

#include <gtest/gtest.h>

#include "seed.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace mk {
namespace {

constexpr uint64_t kPage = FrameAllocator::kFrameSize;
constexpr uint64_t kMiB = 1024 * 1024;

PhysRanges view(const std::vector<PhysRange>& v) {
    return PhysRanges{v.data(), v.size()};
}

// An allocator over the given ranges, with bitmap storage on the host heap.
struct Frames {
    std::vector<uint64_t> storage;
    FrameAllocator fa;

    Status init(const std::vector<PhysRange>& usable, const std::vector<PhysRange>& reserved = {},
                uint64_t max_address = FrameAllocator::kNoLimit, PhysRange storage_phys = {}) {
        size_t bytes = FrameAllocator::storage_size(view(usable), max_address);
        storage.assign(bytes / 8 + 1, 0);
        return fa.init(view(usable), view(reserved), max_address, storage.data(), bytes,
                       storage_phys);
    }

    // Allocates until exhaustion; returns the frames in order.
    std::vector<uint64_t> drain() {
        std::vector<uint64_t> out;
        for (;;) {
            Result<uint64_t> r = fa.alloc();
            if (!r) {
                EXPECT_EQ(r.error(), Error::OutOfMemory);
                return out;
            }
            out.push_back(r.value());
        }
    }
};

std::unique_ptr<Frames> make(const std::vector<PhysRange>& usable,
                             const std::vector<PhysRange>& reserved = {},
                             uint64_t max_address = FrameAllocator::kNoLimit) {
    auto f = std::make_unique<Frames>();
    EXPECT_EQ(f->init(usable, reserved, max_address), Error::None);
    return f;
}

TEST(FrameAllocator, NothingUsable) {
    EXPECT_EQ(FrameAllocator::storage_size({}, FrameAllocator::kNoLimit), 0u);
    auto f = make({});
    EXPECT_EQ(f->fa.total_count(), 0u);
    EXPECT_EQ(f->fa.free_count(), 0u);
    EXPECT_EQ(f->fa.alloc().error(), Error::OutOfMemory);
    EXPECT_EQ(f->fa.alloc_contiguous(1).error(), Error::OutOfMemory);
    EXPECT_EQ(f->fa.free_checked(0x1000), Error::InvalidArgument);
    EXPECT_FALSE(f->fa.is_allocated(0x1000));
}

TEST(FrameAllocator, StorageSizeCoversTheSpan) {
    // 1 MiB .. 5 MiB: 1024 frames -> 16 words per bitmap, two bitmaps.
    std::vector<PhysRange> usable = {{1 * kMiB, 4 * kMiB}};
    EXPECT_EQ(FrameAllocator::storage_size(view(usable)), 2u * 16 * 8);
    // A hole in the middle is still covered; the limit cuts the span.
    usable.push_back({9 * kMiB, 1 * kMiB});
    EXPECT_EQ(FrameAllocator::storage_size(view(usable)), 2u * 36 * 8);
    EXPECT_EQ(FrameAllocator::storage_size(view(usable), 5 * kMiB), 2u * 16 * 8);
    EXPECT_EQ(FrameAllocator::storage_size(view(usable), 1 * kMiB), 0u);
}

TEST(FrameAllocator, AllocatesEveryFrameOnceThenRunsOut) {
    auto f = make({{1 * kMiB, 1 * kMiB}});
    EXPECT_EQ(f->fa.total_count(), 256u);
    EXPECT_EQ(f->fa.free_count(), 256u);
    std::vector<uint64_t> frames = f->drain();
    ASSERT_EQ(frames.size(), 256u);
    std::set<uint64_t> unique(frames.begin(), frames.end());
    EXPECT_EQ(unique.size(), 256u);
    for (uint64_t p : frames) {
        EXPECT_EQ(p % kPage, 0u);
        EXPECT_GE(p, 1 * kMiB);
        EXPECT_LT(p, 2 * kMiB);
        EXPECT_TRUE(f->fa.is_allocated(p));
    }
    EXPECT_EQ(f->fa.free_count(), 0u);
    EXPECT_EQ(f->fa.alloc().error(), Error::OutOfMemory);

    // Free one: exactly that one comes back.
    f->fa.free(frames[100]);
    EXPECT_EQ(f->fa.free_count(), 1u);
    EXPECT_FALSE(f->fa.is_allocated(frames[100]));
    Result<uint64_t> again = f->fa.alloc();
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again.value(), frames[100]);
    EXPECT_EQ(f->fa.alloc().error(), Error::OutOfMemory);

    for (uint64_t p : frames) f->fa.free(p);
    EXPECT_EQ(f->fa.free_count(), 256u);
    EXPECT_EQ(f->drain().size(), 256u);
}

TEST(FrameAllocator, NextFitDoesNotReuseTheFrameJustFreed) {
    auto f = make({{1 * kMiB, 16 * kPage}});
    uint64_t a = f->fa.alloc().value();
    f->fa.free(a);
    uint64_t b = f->fa.alloc().value();
    EXPECT_NE(a, b);
    EXPECT_EQ(b, a + kPage);
    // After the end it wraps around to the freed frames.
    std::vector<uint64_t> rest = f->drain();
    EXPECT_EQ(rest.size(), 15u);
    EXPECT_EQ(rest.back(), a);
}

TEST(FrameAllocator, UnalignedEdgesAreTrimmedInward) {
    // [0x1001, 0x5fff) holds frames 0x2000, 0x3000, 0x4000 whole.
    auto f = make({{0x1001, 0x5fff - 0x1001}});
    EXPECT_EQ(f->fa.total_count(), 3u);
    std::vector<uint64_t> frames = f->drain();
    EXPECT_EQ(std::set<uint64_t>(frames.begin(), frames.end()),
              (std::set<uint64_t>{0x2000, 0x3000, 0x4000}));
    // A range inside one frame, or just short of a whole one, holds none.
    EXPECT_EQ(make({{0x1001, 0x800}})->fa.total_count(), 0u);
    EXPECT_EQ(make({{0x1000, 0xfff}})->fa.total_count(), 0u);
    EXPECT_EQ(make({{0x1000, 0x1000}})->fa.total_count(), 1u);
    EXPECT_EQ(make({{0x1000, 0}})->fa.total_count(), 0u);
}

TEST(FrameAllocator, ReservedRangesAreExcluded) {
    const std::vector<PhysRange> reserved = {
        {0, 1 * kMiB},               // the first MiB: 256 frames
        {1 * kMiB, 0x1800},          // kernel image, partial last frame: 2 frames
        {5 * kMiB + 0x10, 0x10},     // a module inside one frame: 1 frame
        {6 * kMiB - 0x800, 0x1000},  // straddles two frames: 2 frames
        {64 * kMiB, 1 * kMiB},       // outside usable memory: no effect
        {8 * kMiB, 0},               // empty: no effect
        {1 * kMiB, 0x1000},          // overlaps the kernel: counted once
    };
    auto f = make({{0, 16 * kMiB}}, reserved);
    EXPECT_EQ(f->fa.total_count(), 4096u - 256 - 2 - 1 - 2);
    std::vector<uint64_t> frames = f->drain();
    EXPECT_EQ(frames.size(), f->fa.total_count());
    for (uint64_t p : frames) {
        for (const PhysRange& r : reserved) {
            if (r.size == 0) continue;
            bool touches = p < r.base + r.size && r.base < p + kPage;
            EXPECT_FALSE(touches) << std::hex << "frame 0x" << p << " touches reserved 0x"
                                  << r.base;
        }
    }
    EXPECT_FALSE(f->fa.is_allocated(0));
    EXPECT_EQ(f->fa.free_checked(0x10000), Error::InvalidArgument);  // reserved: not managed
    EXPECT_EQ(f->fa.free_checked(1 * kMiB + kPage), Error::InvalidArgument);
}

TEST(FrameAllocator, OverlappingAndDuplicatedUsableRangesCountOnce) {
    auto f = make({{1 * kMiB, 2 * kMiB},
                   {2 * kMiB, 2 * kMiB},
                   {1 * kMiB, 2 * kMiB},
                   {3 * kMiB + 0x123, 0x5000}});
    EXPECT_EQ(f->fa.total_count(), 768u);
    std::vector<uint64_t> frames = f->drain();
    EXPECT_EQ(frames.size(), 768u);
    EXPECT_EQ(std::set<uint64_t>(frames.begin(), frames.end()).size(), 768u);
}

TEST(FrameAllocator, HolesBetweenRangesAreNotManaged) {
    auto f = make({{1 * kMiB, 4 * kPage}, {1 * kMiB + 8 * kPage, 4 * kPage}});
    EXPECT_EQ(f->fa.total_count(), 8u);
    for (uint64_t p : f->drain()) {
        EXPECT_TRUE(p < 1 * kMiB + 4 * kPage || p >= 1 * kMiB + 8 * kPage) << std::hex << p;
    }
    EXPECT_EQ(f->fa.free_checked(1 * kMiB + 5 * kPage), Error::InvalidArgument);
}

TEST(FrameAllocator, MaxAddressLimitsWhatIsHandedOut) {
    auto f = make({{1 * kMiB, 7 * kMiB}}, {}, 4 * kMiB + 0x800);
    EXPECT_EQ(f->fa.total_count(), 768u);
    for (uint64_t p : f->drain()) EXPECT_LT(p + kPage, 4 * kMiB + 1);
    // Over the 4 GiB boundary, as on a big machine with the boot mapping's limit.
    auto g = make({{4ull * 1024 * kMiB - 2 * kPage, 4 * kPage}}, {}, 4ull * 1024 * kMiB);
    EXPECT_EQ(g->fa.total_count(), 2u);
}

TEST(FrameAllocator, RangesNearTheTopOfTheAddressSpace) {
    // The end would pass 2^64: clipped, not wrapped.
    auto f = make({{UINT64_MAX - 8 * kPage + 1, 64 * kPage}, {1 * kMiB, 2 * kPage}},
                  {{UINT64_MAX - kPage, 100}}, 1 * kMiB + 4 * kPage);
    EXPECT_EQ(f->fa.total_count(), 2u);
    auto g = make({{UINT64_MAX - 8 * kPage + 1, 64 * kPage}});
    EXPECT_EQ(g->fa.total_count(), 7u);  // the last, partial frame is trimmed
    std::vector<uint64_t> frames = g->drain();
    ASSERT_EQ(frames.size(), 7u);
    EXPECT_EQ(frames.back(), UINT64_MAX - 2 * kPage + 1);
    g->fa.free(frames.back());
}

TEST(FrameAllocator, ContiguousRunsHonourAlignment) {
    // Starts at an odd frame: alignment is of the physical address, not of the index.
    auto f = make({{0x101000, 255 * kPage}});
    Result<uint64_t> a = f->fa.alloc_contiguous(1, 4);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a.value(), 0x104000u);
    Result<uint64_t> b = f->fa.alloc_contiguous(16, 16);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b.value() % (16 * kPage), 0u);
    EXPECT_EQ(b.value(), 0x110000u);
    for (uint64_t i = 0; i < 16; ++i) EXPECT_TRUE(f->fa.is_allocated(b.value() + i * kPage));
    EXPECT_FALSE(f->fa.is_allocated(b.value() + 16 * kPage));
    EXPECT_EQ(f->fa.free_count(), 255u - 17);
    // 0 means 1.
    Result<uint64_t> c = f->fa.alloc_contiguous(3, 0);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c.value(), 0x101000u);
    f->fa.free_contiguous(b.value(), 16);
    f->fa.free_contiguous(c.value(), 3);
    f->fa.free(a.value());
    EXPECT_EQ(f->fa.free_count(), 255u);
    // A 64-frame run at 256 KiB alignment: only 0x140000 and 0x180000 qualify
    // with enough room; the first one wins.
    Result<uint64_t> d = f->fa.alloc_contiguous(64, 64);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.value(), 0x140000u);
}

TEST(FrameAllocator, ContiguousRunsDoNotCrossHolesOrAllocatedFrames) {
    auto f = make({{1 * kMiB, 8 * kPage}, {1 * kMiB + 9 * kPage, 8 * kPage}});
    EXPECT_EQ(f->fa.alloc_contiguous(10).error(), Error::OutOfMemory);
    Result<uint64_t> a = f->fa.alloc_contiguous(8);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a.value(), 1 * kMiB);
    Result<uint64_t> b = f->fa.alloc_contiguous(8);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b.value(), 1 * kMiB + 9 * kPage);
    EXPECT_EQ(f->fa.alloc_contiguous(1).error(), Error::OutOfMemory);

    // Every other frame free: enough frames, no run of two.
    for (uint64_t i = 0; i < 8; i += 2) f->fa.free(a.value() + i * kPage);
    EXPECT_EQ(f->fa.free_count(), 4u);
    EXPECT_EQ(f->fa.alloc_contiguous(2).error(), Error::OutOfMemory);
    EXPECT_TRUE(f->fa.alloc_contiguous(1).ok());
}

TEST(FrameAllocator, ContiguousBadArguments) {
    auto f = make({{1 * kMiB, 64 * kPage}});
    EXPECT_EQ(f->fa.alloc_contiguous(0).error(), Error::InvalidArgument);
    EXPECT_EQ(f->fa.alloc_contiguous(1, 3).error(), Error::InvalidArgument);
    EXPECT_EQ(f->fa.alloc_contiguous(1, 6).error(), Error::InvalidArgument);
    EXPECT_EQ(f->fa.alloc_contiguous(65).error(), Error::OutOfMemory);
    EXPECT_EQ(f->fa.alloc_contiguous(SIZE_MAX).error(), Error::OutOfMemory);
    EXPECT_EQ(f->fa.alloc_contiguous(1, size_t{1} << 62).error(), Error::OutOfMemory);
    EXPECT_EQ(f->fa.free_count(), 64u);
    // Frame 0 is aligned to anything.
    auto g = make({{0, 4 * kPage}});
    Result<uint64_t> r = g->fa.alloc_contiguous(2, size_t{1} << 62);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value(), 0u);
}

TEST(FrameAllocator, FreeCheckedRejectsBadFrees) {
    auto f = make({{1 * kMiB, 16 * kPage}});
    uint64_t p = f->fa.alloc().value();
    EXPECT_EQ(f->fa.free_checked(p + 8), Error::InvalidArgument);      // misaligned
    EXPECT_EQ(f->fa.free_checked(p + kPage), Error::InvalidArgument);  // managed, not allocated
    EXPECT_EQ(f->fa.free_checked(0), Error::InvalidArgument);          // below the span
    EXPECT_EQ(f->fa.free_checked(64 * kMiB), Error::InvalidArgument);  // above the span
    EXPECT_EQ(f->fa.free_checked(UINT64_MAX & ~(kPage - 1)), Error::InvalidArgument);
    EXPECT_EQ(f->fa.free_count(), 15u);
    EXPECT_EQ(f->fa.free_checked(p), Error::None);
    EXPECT_EQ(f->fa.free_checked(p), Error::InvalidArgument);  // double free
    EXPECT_EQ(f->fa.free_count(), 16u);
}

using FrameAllocatorDeathTest = ::testing::Test;

TEST_F(FrameAllocatorDeathTest, FreeOfAFrameNotAllocatedPanics) {
    auto f = make({{1 * kMiB, 16 * kPage}});
    uint64_t p = f->fa.alloc().value();
    f->fa.free(p);
    EXPECT_DEATH(f->fa.free(p), "frame allocator: free of 0x100000");
    EXPECT_DEATH(f->fa.free(0x1234), "frame allocator: free of 0x1234");
    EXPECT_DEATH(f->fa.free_contiguous(p, 2), "frame allocator: free of");
}

TEST(FrameAllocator, InitRejectsBadStorageAndSecondInit) {
    std::vector<PhysRange> usable = {{1 * kMiB, 1 * kMiB}};
    size_t bytes = FrameAllocator::storage_size(view(usable));
    std::vector<uint64_t> storage(bytes / 8 + 1);
    {
        FrameAllocator fa;
        EXPECT_EQ(
            fa.init(view(usable), {}, FrameAllocator::kNoLimit, storage.data(), bytes - 8, {}),
            Error::InvalidArgument);
    }
    {
        FrameAllocator fa;
        EXPECT_EQ(fa.init(view(usable), {}, FrameAllocator::kNoLimit, nullptr, bytes, {}),
                  Error::InvalidArgument);
    }
    {
        FrameAllocator fa;
        auto* misaligned = reinterpret_cast<char*>(storage.data()) + 4;
        EXPECT_EQ(fa.init(view(usable), {}, FrameAllocator::kNoLimit, misaligned, bytes, {}),
                  Error::InvalidArgument);
    }
    {
        FrameAllocator fa;
        EXPECT_EQ(fa.init(view(usable), {}, FrameAllocator::kNoLimit, storage.data(), bytes, {}),
                  Error::None);
        EXPECT_EQ(fa.init(view(usable), {}, FrameAllocator::kNoLimit, storage.data(), bytes, {}),
                  Error::InvalidArgument);
        EXPECT_EQ(fa.total_count(), 256u);
    }
}

TEST(FrameAllocator, PlaceStorageAvoidsReservedRanges) {
    std::vector<PhysRange> usable = {{0, 0x9f000}, {1 * kMiB, 127 * kMiB}};
    std::vector<PhysRange> reserved = {
        {0, 1 * kMiB},                  // low memory
        {1 * kMiB, 2 * kMiB + 0x10},    // kernel image: ends inside a frame
        {3 * kMiB + 3 * kPage, 0x100},  // boot information: leaves a 2-frame gap before it
        {4 * kMiB, 1 * kMiB},           // a module
    };
    Result<uint64_t> small = FrameAllocator::place_storage(view(usable), view(reserved),
                                                           FrameAllocator::kNoLimit, 2 * kPage);
    ASSERT_TRUE(small.ok());
    EXPECT_EQ(small.value(), 3 * kMiB + kPage);  // right after the kernel's partial frame
    Result<uint64_t> larger = FrameAllocator::place_storage(view(usable), view(reserved),
                                                            FrameAllocator::kNoLimit, 3 * kPage);
    ASSERT_TRUE(larger.ok());
    EXPECT_EQ(larger.value(), 3 * kMiB + 4 * kPage);  // past the boot information
    Result<uint64_t> big = FrameAllocator::place_storage(view(usable), view(reserved),
                                                         FrameAllocator::kNoLimit, 2 * kMiB);
    ASSERT_TRUE(big.ok());
    EXPECT_EQ(big.value(), 5 * kMiB);  // past the module
    // Limits: must end below max_address; too big; zero bytes.
    EXPECT_EQ(
        FrameAllocator::place_storage(view(usable), view(reserved), 6 * kMiB, 2 * kMiB).error(),
        Error::OutOfMemory);
    EXPECT_TRUE(
        FrameAllocator::place_storage(view(usable), view(reserved), 7 * kMiB, 2 * kMiB).ok());
    EXPECT_EQ(FrameAllocator::place_storage(view(usable), view(reserved), FrameAllocator::kNoLimit,
                                            200 * kMiB)
                  .error(),
              Error::OutOfMemory);
    EXPECT_EQ(
        FrameAllocator::place_storage(view(usable), view(reserved), FrameAllocator::kNoLimit, 0)
            .error(),
        Error::InvalidArgument);
    // The lowest fit wins, whatever the order of the usable ranges.
    std::vector<PhysRange> reversed = {usable[1], usable[0]};
    EXPECT_EQ(
        FrameAllocator::place_storage(view(reversed), {}, FrameAllocator::kNoLimit, kPage).value(),
        0u);
}

TEST(FrameAllocator, TheBootSequenceExcludesTheStorageItself) {
    std::vector<PhysRange> usable = {{0, 0x9f000}, {1 * kMiB, 63 * kMiB}};
    std::vector<PhysRange> reserved = {{0, 1 * kMiB}, {1 * kMiB, 1 * kMiB}};
    const uint64_t limit = 4ull * 1024 * kMiB;
    size_t bytes = FrameAllocator::storage_size(view(usable), limit);
    Result<uint64_t> phys =
        FrameAllocator::place_storage(view(usable), view(reserved), limit, bytes);
    ASSERT_TRUE(phys.ok());
    EXPECT_EQ(phys.value(), 2 * kMiB);
    Frames f;
    ASSERT_EQ(f.init(usable, reserved, limit, PhysRange{phys.value(), bytes}), Error::None);
    const size_t storage_frames = (bytes + kPage - 1) / kPage;
    EXPECT_EQ(f.fa.total_count(), 64 * 256 - 512 - storage_frames);
    EXPECT_EQ(f.fa.free_checked(phys.value()), Error::InvalidArgument);
    for (uint64_t p : f.drain()) {
        EXPECT_FALSE(p >= phys.value() && p < phys.value() + bytes) << std::hex << p;
    }
}

// --- Randomized against a model: the set of managed frames and of allocated ones ---

TEST(FrameAllocatorRandom, MatchesASetModel) {
    const uint64_t seed = mk::testing::test_seed("FrameAllocatorRandom.MatchesASetModel");
    std::mt19937_64 rng(seed);
    constexpr uint64_t kSpaceFrames = 4096;  // a 16 MiB physical address space

    for (int round = 0; round < 20; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        auto random_range = [&](uint64_t max_frames) {
            uint64_t base = rng() % (kSpaceFrames * kPage);
            uint64_t size = rng() % (max_frames * kPage);
            if (rng() % 2 == 0) base &= ~(kPage - 1);
            if (rng() % 2 == 0) size &= ~(kPage - 1);
            return PhysRange{base, size};
        };
        std::vector<PhysRange> usable, reserved;
        for (size_t i = 1 + rng() % 6; i > 0; --i) usable.push_back(random_range(2048));
        for (size_t i = rng() % 6; i > 0; --i) reserved.push_back(random_range(64));
        const uint64_t limit =
            rng() % 3 == 0 ? (rng() % (kSpaceFrames * kPage)) : FrameAllocator::kNoLimit;

        // The model: frame f is managed if some usable range holds it whole,
        // it ends at or below the limit, and no reserved range touches it.
        std::set<uint64_t> managed;
        for (uint64_t f = 0; f < kSpaceFrames + 2048; ++f) {
            uint64_t lo = f * kPage, hi = lo + kPage;
            bool in_usable = false, touched = false;
            for (const PhysRange& r : usable) in_usable |= r.base <= lo && hi <= r.base + r.size;
            for (const PhysRange& r : reserved)
                touched |= r.size > 0 && r.base < hi && lo < r.base + r.size;
            if (in_usable && !touched && hi <= limit) managed.insert(lo);
        }

        Frames frames;
        ASSERT_EQ(frames.init(usable, reserved, limit), Error::None);
        FrameAllocator& fa = frames.fa;
        ASSERT_EQ(fa.total_count(), managed.size());
        std::set<uint64_t> allocated;

        auto pick_managed = [&]() {
            auto it = managed.begin();
            std::advance(it, long(rng() % managed.size()));
            return *it;
        };
        auto run_is_free = [&](uint64_t start, size_t count) {
            for (size_t i = 0; i < count; ++i) {
                uint64_t p = start + i * kPage;
                if (!managed.count(p) || allocated.count(p)) return false;
            }
            return true;
        };

        for (int op = 0; op < 3000; ++op) {
            switch (rng() % 7) {
                case 0:
                case 1: {
                    Result<uint64_t> r = fa.alloc();
                    if (allocated.size() == managed.size()) {
                        ASSERT_EQ(r.error(), Error::OutOfMemory);
                    } else {
                        ASSERT_TRUE(r.ok());
                        ASSERT_TRUE(managed.count(r.value())) << std::hex << r.value();
                        ASSERT_TRUE(allocated.insert(r.value()).second) << "handed out twice";
                    }
                    break;
                }
                case 2: {
                    size_t count = 1 + rng() % 8;
                    size_t align = size_t{1} << (rng() % 4);
                    Result<uint64_t> r = fa.alloc_contiguous(count, align);
                    if (r.ok()) {
                        ASSERT_EQ(r.value() % (align * kPage), 0u);
                        ASSERT_TRUE(run_is_free(r.value(), count)) << std::hex << r.value();
                        for (size_t i = 0; i < count; ++i) allocated.insert(r.value() + i * kPage);
                    } else {
                        ASSERT_EQ(r.error(), Error::OutOfMemory);
                        // No aligned free run may exist anywhere.
                        std::vector<bool> is_free(kSpaceFrames + 2048 + 8, false);
                        for (uint64_t p : managed) is_free[p / kPage] = !allocated.count(p);
                        for (uint64_t f = 0; f < kSpaceFrames + 2048; f += align) {
                            size_t run = 0;
                            while (run < count && is_free[f + run]) ++run;
                            ASSERT_LT(run, count) << "missed a run at frame 0x" << std::hex << f;
                        }
                    }
                    break;
                }
                case 3:
                case 4:
                case 5:
                    if (!allocated.empty()) {
                        auto it = allocated.begin();
                        std::advance(it, long(rng() % allocated.size()));
                        ASSERT_EQ(fa.free_checked(*it), Error::None);
                        allocated.erase(it);
                    }
                    break;
                default: {
                    // A bad free: of a free managed frame, an unmanaged address, or misaligned.
                    uint64_t p = rng() % ((kSpaceFrames + 64) * kPage);
                    if (rng() % 2 == 0 && !managed.empty()) p = pick_managed();
                    bool valid = p % kPage == 0 && allocated.count(p);
                    if (valid) break;  // that would be a good free
                    ASSERT_EQ(fa.free_checked(p), Error::InvalidArgument) << std::hex << p;
                    break;
                }
            }
            ASSERT_EQ(fa.free_count(), managed.size() - allocated.size());
        }
        for (uint64_t p : managed) ASSERT_EQ(fa.is_allocated(p), allocated.count(p) != 0);
    }
}

}  // namespace
}  // namespace mk
