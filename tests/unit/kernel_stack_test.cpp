// The kernel stacks' slot bitmap (microkernel/kernel_stack.hpp), and thread
// creation when a stack cannot be had.
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

using KernelStackTest = testing::SchedFixture;

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
    uint32_t before = kernel_stacks_in_use();
    size_t live = fake_kalloc_live();
    fake_kalloc_fail_after(0);  // the stack's memory
    Result<Thread*> t = Thread::create("t", nullptr, nullptr);
    fake_kalloc_fail_after(SIZE_MAX);
    EXPECT_EQ(t.error(), Error::OutOfMemory);
    EXPECT_EQ(kernel_stacks_in_use(), before);
    EXPECT_EQ(fake_kalloc_live(), live);
    fake_kalloc_fail_after(1);  // the stack, not the thread's IPC state
    t = Thread::create("t", nullptr, nullptr);
    fake_kalloc_fail_after(SIZE_MAX);
    EXPECT_EQ(t.error(), Error::OutOfMemory);
    EXPECT_EQ(kernel_stacks_in_use(), before);
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
}

}  // namespace
}  // namespace mk
