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

// Call (rax 0), ReplyRecv (rax 1), Recv (rax 3), Reply (rax 4) or ReplySave
// (rax 5) from user mode, interrupts off: the entry stub calls the one its
// rax names (for a Call with no receiver, mk_fastpath_queue_call). In the kernel they do not
// preserve rbx and r12-r15 (microkernel/meson.build): nothing but the stub may call them.
extern "C" mk::FastPathExit mk_fastpath_call(mk::TrapFrame* frame);
extern "C" mk::FastPathExit mk_fastpath_reply_recv(mk::TrapFrame* frame);
extern "C" mk::FastPathExit mk_fastpath_reply(mk::TrapFrame* frame);       // Reply (rax 4)
extern "C" mk::FastPathExit mk_fastpath_reply_save(mk::TrapFrame* frame);  // ReplySave (rax 5)
extern "C" mk::FastPathExit mk_fastpath_recv(mk::TrapFrame* frame);        // Recv (rax 3)
// Call (rax 0) with a register message that found no receiver waiting (the
// assembly hit path's miss): queued on the endpoint, and the stub returns
// to user mode as the thread resumed, every register from its frame (as
// after Recv).
extern "C" mk::FastPathExit mk_fastpath_queue_call(mk::TrapFrame* frame);
#ifdef MK_HOST
// The host tests play the stub through this one, which dispatches on rax
// (and a Call as the stub's assembly does: mk_fastpath_queue_call for a
// register message with no timeout and no receiver waiting).
extern "C" mk::FastPathExit mk_fastpath(mk::TrapFrame* frame);
// What the stub's assembly finds before it picks an entry for a Call: a
// register message, no timeout, the fast switch on, an endpoint with Send,
// and no receiver waiting (then mk_fastpath_queue_call). Changes nothing.
extern "C" bool mk_fastpath_stub_queues(const mk::TrapFrame* frame);
#endif
