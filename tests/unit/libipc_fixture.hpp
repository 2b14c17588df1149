// Shared set-up of the libipc host tests: a clean fake kernel and an IPC
// buffer registered for the test thread (for its whole address range: the
// host has no stack layout to speak of).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "mk/ipc.hpp"
#include "user_kernel.hpp"

namespace mk::ipc {

class LibipcTest : public ::testing::Test {
  protected:
    void SetUp() override {
        kernel().reset();
        ASSERT_TRUE(register_thread(&buffer_, 0, UINTPTR_MAX).ok());
        ASSERT_EQ(kernel().buffer, &buffer_);
        kernel().calls.clear();
    }
    void TearDown() override {
        unregister_thread();
        kernel().reset();
    }
    static testing::FakeUserKernel& kernel() { return testing::fake_user_kernel(); }

    abi::IpcBuffer buffer_{};
};

}  // namespace mk::ipc
