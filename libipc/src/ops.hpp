// The halves of the IPC operations that every operation shares (ipc.cpp),
// inline, and call() whole: the client stubs of the servers (pipe.cpp,
// port.cpp) inline it, so a pipe read or write is one function around its
// syscall, with the checks of a message it builds itself folded away.
// Internal to libipc.
#pragma once

#include "mk/ipc.hpp"
#include "mk/sys.hpp"
#include "wire.hpp"

namespace mk::ipc::detail {

// A message and the send half of a syscall: the info word, and the buffer
// the payload and handles went to (null for a register-only message).
struct Outgoing {
    abi::IpcBuffer* buffer = nullptr;
    uint64_t info = 0;
};

// The payload and handles into this thread's buffer (ipc.cpp). Out of
// line: the send half of a register-only message has no calls in it.
[[gnu::noinline]] abi::Err outgoing_buffered(const Message& msg, Outgoing& out);

// The payload and handles of what a receive returned, from `buffer` (this
// thread's, looked up if null; ipc.cpp). Out of line: the receive half of
// a register-only message has no calls in it.
[[gnu::noinline]] abi::Err received_buffered(uint64_t info, abi::IpcBuffer* buffer, Received& out);

// The send half of a syscall: encode(), into `out`.
inline abi::Err outgoing(const Message& msg, Outgoing& out) {
    if (abi::Err e = Wire::encode_head(msg, &out.info); e != abi::Err::Ok) return e;
    if (Wire::needs_buffer(msg)) return outgoing_buffered(msg, out);
    return abi::Err::Ok;
}

inline sys::Ret invoke_with(abi::Sys number, uint64_t a0, const Outgoing& out, const Message& msg,
                            uint64_t timeout) {
    const uint64_t* w = msg.words();
    return sys::invoke(number, a0, out.info, w[0], w[1], w[2], w[3], timeout);
}

// What a receive returned, into `out` (which owns no handles): decode().
inline abi::Err received(const sys::Ret& r, abi::IpcBuffer* buffer, Received& out) {
    if (abi::Err e = Wire::decode_head(r.r1, r.words, r.r0, out); e != abi::Err::Ok) return e;
    if (Wire::needs_buffer(r.r1)) return received_buffered(r.r1, buffer, out);
    return abi::Err::Ok;
}

// A send half that failed: the kernel handed the moved handles back.
inline abi::Err refused(Message& msg, const Outgoing& out, abi::Err e) {
    if (msg.handle_count() != 0) msg.handles_returned(*out.buffer);
    return e;
}

// call_into().
[[gnu::always_inline]] inline abi::Err call(const Endpoint& ep, Message& msg, Received& out,
                                            uint64_t timeout) {
    out.message.close_handles();
    Outgoing o;
    if (abi::Err e = outgoing(msg, o); e != abi::Err::Ok) return Wire::empty(out, e);
    sys::Ret r = invoke_with(abi::Sys::Call, ep.get(), o, msg, timeout);
    if (!r.ok()) return Wire::empty(out, refused(msg, o, r.status));
    msg.handles_sent();
    return received(r, o.buffer, out);
}

}  // namespace mk::ipc::detail
