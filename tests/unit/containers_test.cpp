// The servers' containers (mk/containers.hpp): a Fifo keeps arrival order
// whether its elements sit in its inline node or on the heap, a queue of one
// takes nothing from the heap, and every element is destroyed exactly once.
#include <gtest/gtest.h>

#include <memory>
#include <utility>
#include <vector>

#include "mk/containers.hpp"

namespace mk {
namespace {

// Counts live instances, so a test sees each destroyed exactly once.
struct Tracked {
    static inline int live = 0;
    std::unique_ptr<int> v;
    explicit Tracked(int x) : v(std::make_unique<int>(x)) { ++live; }
    Tracked(Tracked&& o) noexcept : v(std::move(o.v)) { ++live; }
    Tracked& operator=(Tracked&& o) noexcept {
        v = std::move(o.v);
        return *this;
    }
    ~Tracked() { --live; }
    int value() const { return *v; }
};

std::vector<int> drain(Fifo<Tracked>& f) {
    std::vector<int> out;
    while (!f.empty()) out.push_back(f.pop_front().value());
    return out;
}

TEST(Fifo, OneElementUsesTheInlineNode) {
    Fifo<Tracked> f;
    EXPECT_FALSE(f.uses_inline_node());
    ASSERT_TRUE(f.push_back(Tracked(1)));
    EXPECT_TRUE(f.uses_inline_node());
    EXPECT_EQ(f.front().value(), 1);
    EXPECT_EQ(f.pop_front().value(), 1);
    EXPECT_FALSE(f.uses_inline_node());
    EXPECT_TRUE(f.empty());
    EXPECT_EQ(Tracked::live, 0);
}

TEST(Fifo, ArrivalOrderHoldsAcrossInlineAndHeapNodes) {
    size_t total = 0;
    {
        Fifo<Tracked> f;
        f.count_in(&total);
        for (int i = 1; i <= 3; ++i) ASSERT_TRUE(f.push_back(Tracked(i)));
        EXPECT_EQ(total, 3u);
        EXPECT_EQ(f.pop_front().value(), 1);  // the inline node: free again
        EXPECT_FALSE(f.uses_inline_node());
        ASSERT_TRUE(f.push_back(Tracked(4)));  // behind 2 and 3, in the inline node
        EXPECT_TRUE(f.uses_inline_node());
        ASSERT_TRUE(f.push_back(Tracked(5)));
        EXPECT_EQ(f.size(), 4u);
        EXPECT_EQ(drain(f), (std::vector<int>{2, 3, 4, 5}));
        EXPECT_EQ(total, 0u);
        ASSERT_TRUE(f.push_back(Tracked(6)));
        ASSERT_TRUE(f.push_back(Tracked(7)));
        EXPECT_EQ(total, 2u);
    }  // destroyed with elements in both kinds of node
    EXPECT_EQ(Tracked::live, 0);
}

TEST(Fifo, ExtractIfFreesTheInlineNodeForReuse) {
    Fifo<Tracked> f;
    for (int i = 1; i <= 4; ++i) ASSERT_TRUE(f.push_back(Tracked(i)));
    std::vector<int> taken;
    size_t n = f.extract_if([](const Tracked& t) { return t.value() % 2 == 1; },
                            [&taken](Tracked&& t) { taken.push_back(t.value()); });
    EXPECT_EQ(n, 2u);
    EXPECT_EQ(taken, (std::vector<int>{1, 3}));
    EXPECT_FALSE(f.uses_inline_node());  // 1 was in it
    ASSERT_TRUE(f.push_back(Tracked(5)));
    EXPECT_TRUE(f.uses_inline_node());
    // The tail stays right after taking the last element out.
    n = f.extract_if([](const Tracked& t) { return t.value() == 5; }, [](Tracked&&) {});
    EXPECT_EQ(n, 1u);
    ASSERT_TRUE(f.push_back(Tracked(6)));
    EXPECT_EQ(drain(f), (std::vector<int>{2, 4, 6}));
    EXPECT_EQ(Tracked::live, 0);
}

TEST(Fifo, ClearDestroysEverything) {
    Fifo<Tracked> f;
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(f.push_back(Tracked(i)));
    f.clear();
    EXPECT_TRUE(f.empty());
    EXPECT_FALSE(f.uses_inline_node());
    EXPECT_EQ(Tracked::live, 0);
}

}  // namespace
}  // namespace mk
