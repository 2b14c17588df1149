// What the syscall fuzzer (fuzz.cpp), its canary (canary.cpp) and the
// driver that runs them (fuzz_driver.cpp, init of the fuzz ISO) agree on.
#pragma once

#include <cstdint>

namespace fuzz {

// How many random syscalls one run makes at least.
constexpr uint64_t kCalls = 1000000;

// The fuzzer's start handles, in this order.
enum StartHandle : unsigned {
    kStartReport = 0,   // Send: where the fuzzer reports when it is done
    kStartCanary = 1,   // Send | Grant | Duplicate, badged: the canary's endpoint
    kStartModules = 2,  // the boot modules (Manage | Duplicate), to spawn children
    kStartCount = 3,
};

// The fuzzer's report (a send on kStartReport): words[0] the random calls
// made, [1] the seed, [2] anomalies seen (a result the ABI does not allow,
// a register the kernel did not preserve), [3] calls that returned Ok.
constexpr uint32_t kLabelReport = 0xF022D0E;

// Calls to the canary: any label; the reply has label kLabelCanary and
// words[0] = canary_checksum(words of the call), words[1] = how many
// messages the canary has taken so far.
constexpr uint32_t kLabelCanary = 0xCA4A21;

constexpr uint64_t canary_checksum(uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3) {
    uint64_t x = w0 * 0x9E3779B97F4A7C15ull;
    x ^= (w1 << 17 | w1 >> 47) + 0x632BE59BD9B4E019ull;
    x ^= w2 * 0xD6E8FEB86659FD93ull;
    x ^= (w3 >> 7) ^ (w3 << 57);
    return x ^ (x >> 31);
}

}  // namespace fuzz
