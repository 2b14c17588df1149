// Seeds of the randomized host tests: fixed by default so every run of the
// suite is the same; MK_TEST_SEED=<n> replays a seed, MK_TEST_SEED=random
// explores a new one. The seed is printed and recorded in the test report.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

namespace mk::testing {

inline uint64_t test_seed(const char* test_name) {
    uint64_t seed = 20261121;
    if (const char* env = std::getenv("MK_TEST_SEED")) {
        if (std::strcmp(env, "random") == 0) {
            std::random_device rd;
            seed = (uint64_t(rd()) << 32) | rd();
        } else {
            seed = std::strtoull(env, nullptr, 0);
        }
    }
    std::printf("%s seed=%llu (MK_TEST_SEED=<seed> to replay)\n", test_name,
                static_cast<unsigned long long>(seed));
    ::testing::Test::RecordProperty("seed", std::to_string(seed));
    return seed;
}

}  // namespace mk::testing
