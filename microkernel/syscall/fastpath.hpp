// The syscall fast path's interface to the entry stub (syscall/fastpath.cpp).
#pragma once

#include <atomic>

#include "trap_frame.hpp"

namespace mk {

// What the fast path tells the entry stub, in rax:rdx. frame == nullptr: a
// miss, nothing changed; the stub takes the general path. Otherwise the
// caller of the syscall is blocked at its frame, the partner is the current
// thread, and the stub moves to `frame` (the partner's user registers),
// releases `lock` (the scheduler lock) and returns to user mode there.
struct FastPathExit {
    TrapFrame* frame;
    std::atomic<bool>* lock;
};

}  // namespace mk

// Call (rax 0) or ReplyRecv (rax 1) from user mode, interrupts off.
extern "C" mk::FastPathExit mk_fastpath(mk::TrapFrame* frame);
