#include <gtest/gtest.h>

#include <string>

#include "log.hpp"

namespace {

#pragma GCC diagnostic ignored "-Wformat-overflow"
#pragma GCC diagnostic ignored "-Wformat"
#pragma GCC diagnostic ignored "-Wformat-security"

std::string fmt_result(const char* buf) {
    return buf;
}

#define fmt(...)                                    \
    [&] {                                           \
        char buf_[128];                             \
        mk::format(buf_, sizeof buf_, __VA_ARGS__); \
        return fmt_result(buf_);                    \
    }()

TEST(Format, Conversions) {
    EXPECT_EQ(fmt("%d %i %u", -42, 7, 4000000000u), "-42 7 4000000000");
    EXPECT_EQ(fmt("%x %X %lx", 255u, 255u, 0xdeadbeefcafeUL), "ff FF deadbeefcafe");
    EXPECT_EQ(fmt("%s|%c|%%", "abc", 'z'), "abc|z|%");
    EXPECT_EQ(fmt("%p", reinterpret_cast<void*>(0x1000)), "0x1000");
    EXPECT_EQ(fmt("%ld %lld %zu", -1L, -9223372036854775807LL - 1, size_t(12)),
              "-1 -9223372036854775808 12");
}

TEST(Format, WidthAndPadding) {
    EXPECT_EQ(fmt("[%5d]", 42), "[   42]");
    EXPECT_EQ(fmt("[%-5d]", 42), "[42   ]");
    EXPECT_EQ(fmt("[%05d]", -42), "[-0042]");
    EXPECT_EQ(fmt("[%016lx]", 0xabcUL), "[0000000000000abc]");
    EXPECT_EQ(fmt("[%-6s]", "ab"), "[ab    ]");
}

TEST(Format, PrecisionAndAlternate) {
    EXPECT_EQ(fmt("[%.3s]", "abcdef"), "[abc]");
    EXPECT_EQ(fmt("[%.*s]", 2, "abcdef"), "[ab]");
    EXPECT_EQ(fmt("[%.*s]", 9, "abc"), "[abc]");
    EXPECT_EQ(fmt("%#x", 0x1fu), "0x1f");
}

TEST(Format, TruncatesButReportsFullLength) {
    char buf[4];
    EXPECT_EQ(mk::format(buf, sizeof buf, "%s", "abcdef"), 6u);
    EXPECT_STREQ(buf, "abc");
    EXPECT_EQ(mk::format(nullptr, 0, "%d", 12345), 5u);
}

TEST(Format, OddInput) {
    const char* null_string = nullptr;
    EXPECT_EQ(fmt("%s", null_string), "(null)");
    EXPECT_EQ(fmt("100%"), "100");
    EXPECT_EQ(fmt("%q"), "%q");
}

}  // namespace
