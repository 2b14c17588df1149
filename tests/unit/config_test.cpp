// The kernel command line's on/off words (microkernel/config.*).
#include "config.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mk {
namespace {

// `word`=off turns `field` off; it is on without the word, and a value
// other than on/off is a bad word that leaves it on.
void expect_on_off_word(const std::string& word, bool KernelConfig::*field) {
    const std::string on = "/boot/kernel.elf ktest=all";
    EXPECT_TRUE(parse_kernel_config(on.c_str(), on.size()).*field) << word;
    const std::string off = "/boot/kernel.elf " + word + "=off ktest=all";
    KernelConfig c = parse_kernel_config(off.c_str(), off.size());
    EXPECT_FALSE(c.*field) << word;
    EXPECT_EQ(c.bad_words, 0u) << word;
    const std::string bad = word + "=2";
    KernelConfig b = parse_kernel_config(bad.c_str(), bad.size());
    EXPECT_TRUE(b.*field) << word;
    EXPECT_EQ(b.bad_words, 1u) << word;
}

TEST(KernelConfig, SmpOnByDefaultOffWithSmpOff) {
    expect_on_off_word("smp", &KernelConfig::smp);
}

TEST(KernelConfig, PcidOnByDefaultOffWithPcidOff) {
    expect_on_off_word("pcid", &KernelConfig::pcid);
}

}  // namespace
}  // namespace mk
