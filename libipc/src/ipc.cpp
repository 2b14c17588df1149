// Handles and the IPC operations: Messages in, syscalls, Messages out.
// Every syscall goes through sys::invoke (a fake kernel on the host).
#include "mk/ipc.hpp"

#include "mk/sys.hpp"

namespace mk::ipc {

namespace {

bool needs_buffer(const Message& m) {
    return m.length() != 0 || m.handle_count() != 0;
}

bool needs_buffer(uint64_t info_word) {
    abi::MsgInfo info = abi::MsgInfo::decode(info_word);
    return info.length != 0 || info.handles != 0;
}

// What a receive returned: the message out of the registers and, when it
// has a payload or handles, this thread's buffer.
Result<Received> received(const sys::Ret& r, abi::IpcBuffer* buffer) {
    if (buffer == nullptr && needs_buffer(r.r1)) buffer = ipc_buffer();
    return decode(r.r1, r.words, r.r0, buffer);
}

// A message and the send half of a syscall: the info word, or why not.
struct Outgoing {
    abi::IpcBuffer* buffer = nullptr;
    uint64_t info = 0;
};

Result<Outgoing> outgoing(const Message& msg) {
    Outgoing out;
    if (needs_buffer(msg)) out.buffer = ipc_buffer();
    Result<uint64_t> info = encode(msg, out.buffer);
    if (!info) return info.error();
    out.info = *info;
    return out;
}

sys::Ret invoke_with(abi::Sys number, uint64_t a0, const Outgoing& out, const Message& msg,
                     uint64_t timeout) {
    const uint64_t* w = msg.words();
    return sys::invoke(number, a0, out.info, w[0], w[1], w[2], w[3], timeout);
}

}  // namespace

// --- Handle ---

void Handle::reset(abi::HandleValue v) {
    abi::HandleValue old = value_;
    value_ = v;
    if (old != abi::kNoHandle) (void)sys::invoke(abi::Sys::HandleClose, old);
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

Result<Received> call(const Endpoint& ep, Message& msg, uint64_t timeout) {
    Result<Outgoing> out = outgoing(msg);
    if (!out) return out.error();
    sys::Ret r = invoke_with(abi::Sys::Call, ep.get(), *out, msg, timeout);
    if (!r.ok()) {
        if (msg.handle_count() != 0) msg.handles_returned(*out->buffer);
        return r.status;
    }
    msg.handles_sent();
    return received(r, out->buffer);
}

Status send(const Endpoint& ep, Message& msg, uint64_t timeout) {
    Result<Outgoing> out = outgoing(msg);
    if (!out) return out.error();
    sys::Ret r = invoke_with(abi::Sys::Send, ep.get(), *out, msg, timeout);
    if (!r.ok()) {
        if (msg.handle_count() != 0) msg.handles_returned(*out->buffer);
        return r.status;
    }
    msg.handles_sent();
    return Status();
}

Result<Received> recv(const Endpoint& ep, uint64_t timeout) {
    sys::Ret r = sys::invoke(abi::Sys::Recv, ep.get(), 0, 0, 0, 0, 0, timeout);
    if (!r.ok()) return r.status;
    return received(r, nullptr);
}

Status reply(Message& msg) {
    Result<Outgoing> out = outgoing(msg);
    if (!out) return out.error();
    sys::Ret r = invoke_with(abi::Sys::Reply, abi::kNoHandle, *out, msg, 0);
    if (!r.ok()) {
        if (msg.handle_count() != 0) msg.handles_returned(*out->buffer);
        return r.status;
    }
    msg.handles_sent();
    return Status();
}

Result<Received> reply_recv(const Endpoint& ep, Message& msg, uint64_t timeout) {
    if (msg.handle_count() != 0) {
        // Handles in the reply: answer and receive in two calls, so a reply
        // that fails tells its handles' fate before anything arrives (a
        // refused reply hands them back; one that found no caller closed them).
        Status s = reply(msg);
        if (!s && s.error() != abi::Err::BadHandle) return s.error();
        return recv(ep, timeout);
    }
    Result<Outgoing> out = outgoing(msg);
    if (!out) return out.error();
    sys::Ret r = invoke_with(abi::Sys::ReplyRecv, ep.get(), *out, msg, timeout);
    if (!r.ok()) return r.status;
    return received(r, out->buffer);
}

// --- saved replies ---

Result<Reply> reply_save() {
    sys::Ret r = sys::invoke(abi::Sys::ReplySave);
    if (!r.ok()) return r.status;
    return Reply(Handle(abi::HandleValue(r.r0)));
}

Status Reply::send(Message& msg) {
    if (!pending()) return abi::Err::BadState;
    Result<Outgoing> out = outgoing(msg);
    if (!out) return out.error();  // nothing reached the kernel: still pending
    sys::Ret r = invoke_with(abi::Sys::Reply, handle_.get(), *out, msg, 0);
    if (!r.ok()) {
        if (msg.handle_count() != 0) msg.handles_returned(*out->buffer);
        drop();  // if the caller still waits, PeerDied; else a stale close
        return r.status;
    }
    (void)handle_.release();  // the kernel consumed the one-shot handle
    msg.handles_sent();
    return Status();
}

}  // namespace mk::ipc
