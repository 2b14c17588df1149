// The kernel stacks' slot bitmap and cache of freed stacks
// (microkernel/kernel_stack.hpp), and thread creation when a stack cannot
// be had.
#include <gtest/gtest.h>

#include <set>

#include "fake_heap.hpp"
#include "kernel_stack.hpp"
#include "sched_fixture.hpp"

namespace mk {
namespace {

TEST(SlotBitmap, HandsOutEverySlotOnceThenRefuses) {
    SlotBitmap<130> slots;  // more than two words, the last one partial
    std::set<uint32_t> seen;
    for (uint32_t i = 0; i < 130; ++i) {
        Result<uint32_t> s = slots.take();
        ASSERT_TRUE(s.ok());
        EXPECT_LT(s.value(), 130u);
        EXPECT_TRUE(seen.insert(s.value()).second) << "slot " << s.value() << " twice";
        EXPECT_TRUE(slots.is_taken(s.value()));
    }
    EXPECT_EQ(slots.taken(), 130u);
    Result<uint32_t> none = slots.take();
    EXPECT_EQ(none.error(), Error::OutOfMemory);
    EXPECT_FALSE(slots.is_taken(130));  // out of range: never taken
}

TEST(SlotBitmap, GivenBackSlotIsFoundAgainWhenFull) {
    SlotBitmap<64> slots;
    for (int i = 0; i < 64; ++i) ASSERT_TRUE(slots.take().ok());
    slots.give_back(17);
    EXPECT_FALSE(slots.is_taken(17));
    EXPECT_EQ(slots.taken(), 63u);
    Result<uint32_t> again = slots.take();
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again.value(), 17u);
    EXPECT_EQ(slots.take().error(), Error::OutOfMemory);
}

// Next fit: a slot given back is not the next one handed out while others
// are free, so a stale pointer into a dead stack keeps faulting for a while.
TEST(SlotBitmap, GivenBackSlotIsNotReusedAtOnce) {
    SlotBitmap<8> slots;
    uint32_t a = slots.take().value();
    uint32_t b = slots.take().value();
    slots.give_back(a);
    uint32_t c = slots.take().value();
    EXPECT_NE(c, a);
    EXPECT_NE(c, b);
    // Around the end and back to the start.
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(slots.take().ok());
    EXPECT_EQ(slots.take().value(), a);
    EXPECT_EQ(slots.taken(), 8u);
}

TEST(SlotBitmapDeathTest, GivingBackAFreeSlotIsAKernelBug) {
    SlotBitmap<8> slots;
    uint32_t a = slots.take().value();
    slots.give_back(a);
    EXPECT_DEATH(slots.give_back(a), "");
    EXPECT_DEATH(slots.give_back(8), "");
}

KernelStack stack_in(uint32_t slot) {
    return KernelStack{reinterpret_cast<void*>(uintptr_t{0x1000} * (slot + 1)), slot};
}

// The stack put back last is the first taken again (its lines are the
// likeliest in the caches); none left: take() says so.
TEST(StackCache, ReusesTheLastStackPutBack) {
    StackCache<4> cache;
    KernelStack evicted[StackCache<4>::kBatch];
    KernelStack out;
    EXPECT_FALSE(cache.take(out));
    EXPECT_EQ(cache.put(stack_in(1), evicted), 0u);
    EXPECT_EQ(cache.put(stack_in(2), evicted), 0u);
    EXPECT_EQ(cache.size(), 2u);
    ASSERT_TRUE(cache.take(out));
    EXPECT_EQ(out.slot, 2u);
    EXPECT_EQ(out.top, stack_in(2).top);
    ASSERT_TRUE(cache.take(out));
    EXPECT_EQ(out.slot, 1u);
    EXPECT_FALSE(cache.take(out));
    EXPECT_EQ(cache.size(), 0u);
}

// Full, it hands its oldest half over to be unmapped in one batch and
// keeps the newest ones and the stack put back.
TEST(StackCache, FullCacheGivesUpItsOldestHalf) {
    using Cache = StackCache<8>;
    static_assert(Cache::kBatch == 4);
    Cache cache;
    KernelStack evicted[Cache::kBatch];
    for (uint32_t slot = 0; slot < 8; ++slot) ASSERT_EQ(cache.put(stack_in(slot), evicted), 0u);
    ASSERT_EQ(cache.put(stack_in(8), evicted), 4u);
    for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(evicted[i].slot, i);
    EXPECT_EQ(cache.size(), 5u);
    KernelStack out;
    for (uint32_t slot : {8u, 7u, 6u, 5u, 4u}) {
        ASSERT_TRUE(cache.take(out));
        EXPECT_EQ(out.slot, slot);
    }
    EXPECT_FALSE(cache.take(out));
}

TEST(StackCache, TakeOldestEmptiesInOrder) {
    StackCache<8> cache;
    KernelStack evicted[StackCache<8>::kBatch];
    for (uint32_t slot = 10; slot < 13; ++slot) ASSERT_EQ(cache.put(stack_in(slot), evicted), 0u);
    KernelStack out[8];
    ASSERT_EQ(cache.take_oldest(out, 2), 2u);
    EXPECT_EQ(out[0].slot, 10u);
    EXPECT_EQ(out[1].slot, 11u);
    ASSERT_EQ(cache.take_oldest(out, 8), 1u);
    EXPECT_EQ(out[0].slot, 12u);
    EXPECT_EQ(cache.take_oldest(out, 8), 0u);
}

// A stack put back twice would be handed to two threads.
TEST(StackCacheDeathTest, PuttingBackAStackTwiceIsAKernelBug) {
    StackCache<4> cache;
    KernelStack evicted[StackCache<4>::kBatch];
    ASSERT_EQ(cache.put(stack_in(3), evicted), 0u);
    EXPECT_DEATH((void)cache.put(stack_in(3), evicted), "");
}

// Room for every thread and every CPU's stacks: a boot stack and three
// interrupt stacks for each CPU but the boot CPU, three for the boot CPU.
TEST(KernelStackSlots, EveryThreadAndEveryCpusStacksFit) {
    EXPECT_EQ(kernel_stack_slots_needed(1, 1), 4u);  // a thread, the boot CPU's IST stacks
    EXPECT_EQ(kernel_stack_slots_needed(0, 2), 7u);  // and a second CPU's four
    EXPECT_GE(kKernelStackSlots, kernel_stack_slots_needed(ThreadRegistry::kMaxThreads, kMaxCpus));
    EXPECT_EQ(kKernelStackSlots % 64, 0u);  // whole words of the bitmap
}

using KernelStackTest = testing::SchedFixture;

// A dead thread's stack serves the next thread, still mapped: the cycle of
// a thread's creation and end maps, unmaps and shoots down nothing.
TEST_F(KernelStackTest, CreateReusesADeadThreadsStack) {
    kernel_stack_cache_drain();
    FakeCpu::reset();
    Result<Thread*> a = Thread::create("a", nullptr, nullptr);
    ASSERT_TRUE(a.ok());
    void* const first = a.value()->context.stack_top;  // its stack's (the fake's init_context)
    EXPECT_EQ(FakeCpu::kernel_stack_maps, 1u);
    uint32_t in_use = kernel_stacks_in_use();
    Thread::destroy(a.value());
    EXPECT_EQ(kernel_stacks_in_use(), in_use - 1);
    EXPECT_EQ(kernel_stacks_cached(), 1u);
    for (int i = 0; i < 3; ++i) {
        Result<Thread*> b = Thread::create("b", nullptr, nullptr);
        ASSERT_TRUE(b.ok());
        EXPECT_EQ(b.value()->context.stack_top, first);
        EXPECT_EQ(kernel_stacks_cached(), 0u);
        EXPECT_EQ(kernel_stacks_in_use(), in_use);
        Thread::destroy(b.value());
    }
    EXPECT_EQ(FakeCpu::kernel_stack_maps, 1u);
    EXPECT_TRUE(FakeCpu::kernel_stack_unmaps.empty());
}

// More dead stacks than the cache holds: the oldest half is unmapped in
// one call (one shootdown), not one call per stack.
TEST_F(KernelStackTest, FullCacheUnmapsABatchAtOnce) {
    kernel_stack_cache_drain();
    FakeCpu::reset();
    constexpr uint32_t kN = kKernelStackCacheSize + 1;
    KernelStack stacks[kN];
    for (KernelStack& s : stacks) {
        Result<KernelStack> r = kernel_stack_create();
        ASSERT_TRUE(r.ok());
        s = r.value();
    }
    uint32_t in_use = kernel_stacks_in_use();
    size_t live = fake_kalloc_live();
    for (uint32_t i = 0; i < kKernelStackCacheSize; ++i) kernel_stack_destroy(stacks[i]);
    EXPECT_TRUE(FakeCpu::kernel_stack_unmaps.empty());
    EXPECT_EQ(kernel_stacks_cached(), kKernelStackCacheSize);
    kernel_stack_destroy(stacks[kKernelStackCacheSize]);
    ASSERT_EQ(FakeCpu::kernel_stack_unmaps.size(), 1u);
    const std::vector<uint32_t>& batch = FakeCpu::kernel_stack_unmaps[0];
    ASSERT_EQ(batch.size(), size_t{kKernelStackCacheSize / 2});
    for (size_t i = 0; i < batch.size(); ++i) EXPECT_EQ(batch[i], stacks[i].slot);
    EXPECT_EQ(fake_kalloc_live(), live - kKernelStackCacheSize / 2);
    EXPECT_EQ(kernel_stacks_cached(), kKernelStackCacheSize / 2 + 1);
    EXPECT_EQ(kernel_stacks_in_use(), in_use - kN);
    // Drained, the rest goes in one call too, memory and slots back.
    kernel_stack_cache_drain();
    ASSERT_EQ(FakeCpu::kernel_stack_unmaps.size(), 2u);
    EXPECT_EQ(FakeCpu::kernel_stack_unmaps[1].size(), size_t{kKernelStackCacheSize / 2 + 1});
    EXPECT_EQ(kernel_stacks_cached(), 0u);
    EXPECT_EQ(fake_kalloc_live(), live - kN);
}

// Every stack taken is given back when its thread is destroyed.
TEST_F(KernelStackTest, DestroyGivesTheStackBack) {
    uint32_t before = kernel_stacks_in_use();
    Result<Thread*> t = Thread::create("t", nullptr, nullptr);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(kernel_stacks_in_use(), before + 1);
    Thread::destroy(t.value());
    EXPECT_EQ(kernel_stacks_in_use(), before);
}

// No memory for the stack, or for the thread after its stack: an error to
// the caller, nothing kept (the slot goes back; ASan sees no leak).
TEST_F(KernelStackTest, NoMemoryIsAnErrorAndKeepsNothing) {
    kernel_stack_cache_drain();  // else the stack comes from the cache
    uint32_t before = kernel_stacks_in_use();
    size_t live = fake_kalloc_live();
    fake_kalloc_fail_after(0);  // the stack's memory
    Result<Thread*> t = Thread::create("t", nullptr, nullptr);
    fake_kalloc_fail_after(SIZE_MAX);
    EXPECT_EQ(t.error(), Error::OutOfMemory);
    EXPECT_EQ(kernel_stacks_in_use(), before);
    EXPECT_EQ(kernel_stacks_cached(), 0u);
    EXPECT_EQ(fake_kalloc_live(), live);
    fake_kalloc_fail_after(1);  // the stack, not the thread's IPC state
    t = Thread::create("t", nullptr, nullptr);
    fake_kalloc_fail_after(SIZE_MAX);
    EXPECT_EQ(t.error(), Error::OutOfMemory);
    EXPECT_EQ(kernel_stacks_in_use(), before);
    // The stack, never used, waits in the cache for the next thread.
    EXPECT_EQ(kernel_stacks_cached(), 1u);
    kernel_stack_cache_drain();
    EXPECT_EQ(fake_kalloc_live(), live);
}

// Out of slots: an error to the caller, never a panic; a slot given back
// serves the next thread.
TEST_F(KernelStackTest, NoSlotIsAnError) {
    std::vector<KernelStack> taken;
    for (;;) {
        Result<KernelStack> s = kernel_stack_create();
        if (!s) {
            EXPECT_EQ(s.error(), Error::OutOfMemory);
            break;
        }
        taken.push_back(s.value());
        ASSERT_LE(taken.size(), size_t{kKernelStackSlots});
    }
    EXPECT_EQ(kernel_stacks_in_use(), kKernelStackSlots);
    Result<Thread*> t = Thread::create("t", nullptr, nullptr);
    EXPECT_EQ(t.error(), Error::OutOfMemory);
    kernel_stack_destroy(taken.back());
    taken.pop_back();
    t = Thread::create("t", nullptr, nullptr);
    ASSERT_TRUE(t.ok());
    Thread::destroy(t.value());
    for (KernelStack s : taken) kernel_stack_destroy(s);
    kernel_stack_cache_drain();
    EXPECT_EQ(kernel_stacks_cached(), 0u);
}

}  // namespace
}  // namespace mk
