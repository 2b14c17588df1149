// Handles and the IPC operations: Messages in, syscalls, Messages out.
// Every syscall goes through sys::invoke (a fake kernel on the host).
#include "mk/ipc.hpp"

#include "mk/sys.hpp"
#include "wire.hpp"

namespace mk::ipc {

namespace {

using detail::Wire;

// A message and the send half of a syscall: the info word, and the buffer
// the payload and handles went to (null for a register-only message).
struct Outgoing {
    abi::IpcBuffer* buffer = nullptr;
    uint64_t info = 0;
};

// The payload and handles into this thread's buffer. Out of line: the
// send half of a register-only message has no calls in it.
[[gnu::noinline]] abi::Err outgoing_buffered(const Message& msg, Outgoing& out) {
    out.buffer = ipc_buffer();
    return Wire::encode_buffer(msg, out.buffer);
}

// The send half of a syscall: encode(), into `out`.
inline abi::Err outgoing(const Message& msg, Outgoing& out) {
    if (abi::Err e = Wire::encode_head(msg, &out.info); e != abi::Err::Ok) return e;
    if (Wire::needs_buffer(msg)) return outgoing_buffered(msg, out);
    return abi::Err::Ok;
}

sys::Ret invoke_with(abi::Sys number, uint64_t a0, const Outgoing& out, const Message& msg,
                     uint64_t timeout) {
    const uint64_t* w = msg.words();
    return sys::invoke(number, a0, out.info, w[0], w[1], w[2], w[3], timeout);
}

// The payload and handles of what a receive returned, from `buffer` (this
// thread's, looked up if null). Out of line: the receive half of a
// register-only message has no calls in it.
[[gnu::noinline]] abi::Err received_buffered(uint64_t info, abi::IpcBuffer* buffer, Received& out) {
    if (buffer == nullptr) buffer = ipc_buffer();
    return Wire::decode_buffer(info, buffer, out);
}

// What a receive returned, into `out` (which owns no handles): decode().
inline abi::Err received(const sys::Ret& r, abi::IpcBuffer* buffer, Received& out) {
    if (abi::Err e = Wire::decode_head(r.r1, r.words, r.r0, out); e != abi::Err::Ok) return e;
    if (Wire::needs_buffer(r.r1)) return received_buffered(r.r1, buffer, out);
    return abi::Err::Ok;
}

// A send half that failed: the kernel handed the moved handles back.
abi::Err refused(Message& msg, const Outgoing& out, abi::Err e) {
    if (msg.handle_count() != 0) msg.handles_returned(*out.buffer);
    return e;
}

}  // namespace

// --- Handle ---

void Handle::close_value(abi::HandleValue v) {
    (void)sys::invoke(abi::Sys::HandleClose, v);
}

Status Handle::close() {
    if (!valid()) return Status();
    return sys::invoke(abi::Sys::HandleClose, release()).status;
}

Result<Handle> Handle::mint(uint32_t rights, uint64_t badge) const {
    sys::Ret r = sys::invoke(abi::Sys::HandleMint, value_, rights, badge);
    if (!r.ok()) return r.status;
    return Handle(abi::HandleValue(r.r0));
}

Result<Endpoint> Endpoint::create() {
    sys::Ret r = sys::invoke(abi::Sys::EndpointCreate);
    if (!r.ok()) return r.status;
    return Endpoint(abi::HandleValue(r.r0));
}

Result<Endpoint> Endpoint::mint(uint32_t rights, uint64_t badge) const {
    Result<Handle> h = Handle::mint(rights, badge);
    if (!h) return h.error();
    return Endpoint(std::move(h).value());
}

// --- operations ---

Status call_into(const Endpoint& ep, Message& msg, Received& out, uint64_t timeout) {
    out.message.close_handles();
    Outgoing o;
    if (abi::Err e = outgoing(msg, o); e != abi::Err::Ok) return Wire::empty(out, e);
    sys::Ret r = invoke_with(abi::Sys::Call, ep.get(), o, msg, timeout);
    if (!r.ok()) return Wire::empty(out, refused(msg, o, r.status));
    msg.handles_sent();
    return received(r, o.buffer, out);
}

Status recv_into(const Endpoint& ep, Received& out, uint64_t timeout) {
    out.message.close_handles();
    sys::Ret r = sys::invoke(abi::Sys::Recv, ep.get(), 0, 0, 0, 0, 0, timeout);
    if (!r.ok()) return Wire::empty(out, r.status);
    return received(r, nullptr, out);
}

Status reply_recv_into(const Endpoint& ep, Message& msg, Received& out, uint64_t timeout) {
    out.message.close_handles();
    if (msg.handle_count() != 0) {
        // Handles in the reply: answer and receive in two calls, so a reply
        // that fails tells its handles' fate before anything arrives (a
        // refused reply hands them back; one that found no caller closed them).
        Status s = reply(msg);
        if (!s && s.error() != abi::Err::BadHandle) return Wire::empty(out, s.error());
        return recv_into(ep, out, timeout);
    }
    Outgoing o;
    if (abi::Err e = outgoing(msg, o); e != abi::Err::Ok) return Wire::empty(out, e);
    sys::Ret r = invoke_with(abi::Sys::ReplyRecv, ep.get(), o, msg, timeout);
    if (!r.ok()) return Wire::empty(out, r.status);
    return received(r, o.buffer, out);
}

// The Result forms: the Received is built in place in the Result and
// returned by name, so it is never copied.

Result<Received> call(const Endpoint& ep, Message& msg, uint64_t timeout) {
    Result<Received> result(std::in_place);
    Status s = call_into(ep, msg, *result, timeout);
    if (!s) result = s.error();
    return result;
}

Status send(const Endpoint& ep, Message& msg, uint64_t timeout) {
    Outgoing o;
    if (abi::Err e = outgoing(msg, o); e != abi::Err::Ok) return e;
    sys::Ret r = invoke_with(abi::Sys::Send, ep.get(), o, msg, timeout);
    if (!r.ok()) return refused(msg, o, r.status);
    msg.handles_sent();
    return Status();
}

Result<Received> recv(const Endpoint& ep, uint64_t timeout) {
    Result<Received> result(std::in_place);
    Status s = recv_into(ep, *result, timeout);
    if (!s) result = s.error();
    return result;
}

Status reply(Message& msg) {
    Outgoing o;
    if (abi::Err e = outgoing(msg, o); e != abi::Err::Ok) return e;
    sys::Ret r = invoke_with(abi::Sys::Reply, abi::kNoHandle, o, msg, 0);
    if (!r.ok()) return refused(msg, o, r.status);
    msg.handles_sent();
    return Status();
}

Result<Received> reply_recv(const Endpoint& ep, Message& msg, uint64_t timeout) {
    Result<Received> result(std::in_place);
    Status s = reply_recv_into(ep, msg, *result, timeout);
    if (!s) result = s.error();
    return result;
}

// --- saved replies ---

Result<Reply> reply_save() {
    sys::Ret r = sys::invoke(abi::Sys::ReplySave);
    if (!r.ok()) return r.status;
    return Reply(Handle(abi::HandleValue(r.r0)));
}

Status Reply::send(Message& msg) {
    if (!pending()) return abi::Err::BadState;
    Outgoing o;
    if (abi::Err e = outgoing(msg, o); e != abi::Err::Ok) {
        return e;  // nothing reached the kernel: still pending
    }
    sys::Ret r = invoke_with(abi::Sys::Reply, handle_.get(), o, msg, 0);
    if (!r.ok()) {
        (void)refused(msg, o, r.status);
        drop();  // if the caller still waits, PeerDied; else a stale close
        return r.status;
    }
    (void)handle_.release();  // the kernel consumed the one-shot handle
    msg.handles_sent();
    return Status();
}

}  // namespace mk::ipc
