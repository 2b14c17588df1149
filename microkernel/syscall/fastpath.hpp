// The syscall fast path's interface to the entry stub (syscall/fastpath.cpp).
#pragma once

#include "trap_frame.hpp"

namespace mk {

// What the fast path tells the entry stub, in rax. frame == nullptr: a
// miss, nothing changed; the stub takes the general path. Otherwise the
// caller of the syscall is blocked at its frame, the partner is the current
// thread, and the stub moves to `frame` (the partner's user registers),
// releases this CPU's scheduler lock (which the fast path left held) and
// returns to user mode there.
struct FastPathExit {
    TrapFrame* frame;
};

}  // namespace mk

// Call (rax 0) or ReplyRecv (rax 1) from user mode, interrupts off: the
// entry stub calls the one its rax names; mk_fastpath() dispatches on rax
// (for the host tests, which play the stub).
extern "C" mk::FastPathExit mk_fastpath_call(mk::TrapFrame* frame);
extern "C" mk::FastPathExit mk_fastpath_reply_recv(mk::TrapFrame* frame);
extern "C" mk::FastPathExit mk_fastpath(mk::TrapFrame* frame);
