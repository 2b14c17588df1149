// Handles and the IPC operations: Messages in, syscalls, Messages out.
// Every syscall goes through sys::invoke (a fake kernel on the host).
#include "mk/ipc.hpp"

#include "mk/sys.hpp"
#include "ops.hpp"

namespace mk::ipc {

using detail::Wire;

namespace detail {

abi::Err outgoing_buffered(const Message& msg, Outgoing& out) {
    out.buffer = ipc_buffer();
    return Wire::encode_buffer(msg, out.buffer);
}

abi::Err received_buffered(uint64_t info, abi::IpcBuffer* buffer, Received& out) {
    if (buffer == nullptr) buffer = ipc_buffer();
    return Wire::decode_buffer(info, buffer, out);
}

}  // namespace detail

namespace {

using detail::invoke_with;
using detail::Outgoing;
using detail::outgoing;
using detail::received;
using detail::refused;

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
    return detail::call(ep, msg, out, timeout);
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

sys::Ret recv_raw(const Endpoint& ep, uint64_t timeout) {
    return sys::invoke(abi::Sys::Recv, ep.get(), 0, 0, 0, 0, 0, timeout);
}

sys::Ret reply_recv_raw(const Endpoint& ep, Message& msg, uint64_t timeout) {
    if (msg.handle_count() != 0) {
        // As reply_recv_into(): the reply's handles learn their fate first.
        Status s = reply(msg);
        if (!s && s.error() != abi::Err::BadHandle) return sys::Ret{s.error(), 0, 0, {}};
        return recv_raw(ep, timeout);
    }
    Outgoing o;
    if (abi::Err e = outgoing(msg, o); e != abi::Err::Ok) return sys::Ret{e, 0, 0, {}};
    return invoke_with(abi::Sys::ReplyRecv, ep.get(), o, msg, timeout);
}

Status decode_raw(const sys::Ret& r, Received& out) {
    out.message.close_handles();
    if (!r.ok()) return Wire::empty(out, r.status);
    return received(r, nullptr, out);
}

// The Result forms: the Received is built in place in the Result and
// returned by name, so it is never copied.

Result<Received> call(const Endpoint& ep, Message& msg, uint64_t timeout) {
    Result<Received> result(std::in_place);
    Status s = call_into(ep, msg, *result, timeout);
    if (!s) result = s.error();
    return result;
}

Status ping(const Endpoint& ep, uint64_t timeout) {
    Result<Received> r = call(ep, Message(kLabelPing), timeout);
    if (!r) return r.error();
    abi::Err status = reply_status(r.value().message);
    if (status != abi::Err::Ok) return status;
    return Status();
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

Status Reply::send(uint32_t label, const uint64_t (&words)[abi::kMessageWords]) {
    if (!pending()) return abi::Err::BadState;
    if (label >= abi::kNoticeLabelBase) return abi::Err::InvalidArgument;  // still pending
    sys::Ret r = sys::invoke(abi::Sys::Reply, handle_.get(), label, words[0], words[1], words[2],
                             words[3], 0);
    if (!r.ok()) {
        drop();  // if the caller still waits, PeerDied; else a stale close
        return r.status;
    }
    (void)handle_.release();  // the kernel consumed the one-shot handle
    return Status();
}

}  // namespace mk::ipc
