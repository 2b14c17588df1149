// Messages, and their translation to and from the registers and the IPC
// buffer. encode() and decode() issue no syscalls (host-tested).
#include "mk/ipc.hpp"
#include "wire.hpp"

namespace mk::ipc {

const char* error_name(abi::Err e) {
    switch (e) {
        case abi::Err::Ok:
            return "Ok";
        case abi::Err::OutOfMemory:
            return "OutOfMemory";
        case abi::Err::InvalidArgument:
            return "InvalidArgument";
        case abi::Err::BadHandle:
            return "BadHandle";
        case abi::Err::NoRights:
            return "NoRights";
        case abi::Err::WouldBlock:
            return "WouldBlock";
        case abi::Err::TimedOut:
            return "TimedOut";
        case abi::Err::Destroyed:
            return "Destroyed";
        case abi::Err::PeerDied:
            return "PeerDied";
        case abi::Err::BadState:
            return "BadState";
        case abi::Err::TooLarge:
            return "TooLarge";
        case abi::Err::Unsupported:
            return "Unsupported";
        case abi::Err::Interrupted:
            return "Interrupted";
        case abi::Err::BadAddress:
            return "BadAddress";
        case abi::Err::BadSyscall:
            return "BadSyscall";
        case abi::Err::LimitReached:
            return "LimitReached";
    }
    return "unknown error";  // a number from a newer kernel, or a server's own status
}

// --- Message ---

Message::Message(Message&& o) noexcept
    : label_(o.label_), length_(o.length_), handle_count_(o.handle_count_), error_(o.error_) {
    for (unsigned i = 0; i < abi::kMessageWords; ++i) words_[i] = o.words_[i];
    for (unsigned i = 0; i < handle_count_; ++i) {
        handles_[i] = o.handles_[i];
        flags_[i] = o.flags_[i];
        owned_[i] = o.owned_[i];
        o.owned_[i] = false;
    }
    if (length_ != 0) __builtin_memcpy(payload_, o.payload_, length_);
}

Message& Message::operator=(Message&& o) noexcept {
    if (this == &o) return *this;
    close_owned();
    label_ = o.label_;
    length_ = o.length_;
    handle_count_ = o.handle_count_;
    error_ = o.error_;
    for (unsigned i = 0; i < abi::kMessageWords; ++i) words_[i] = o.words_[i];
    for (unsigned i = 0; i < handle_count_; ++i) {
        handles_[i] = o.handles_[i];
        flags_[i] = o.flags_[i];
        owned_[i] = o.owned_[i];
        o.owned_[i] = false;
    }
    if (length_ != 0) __builtin_memcpy(payload_, o.payload_, length_);
    return *this;
}

void Message::clear() {
    close_handles();
    label_ = 0;
    length_ = 0;
    handle_count_ = 0;
    error_ = abi::Err::Ok;
    for (uint64_t& w : words_) w = 0;
}

void Message::handles_returned(const abi::IpcBuffer& buffer) {
    for (unsigned i = 0; i < handle_count_; ++i) {
        if (flags_[i] != abi::kTransferMove) continue;
        handles_[i] = buffer.handles[i];
        if (handles_[i] == abi::kNoHandle) owned_[i] = false;
    }
}

void Message::close_owned() {
    for (unsigned i = 0; i < handle_count_; ++i) {
        if (owned_[i]) {
            owned_[i] = false;
            (void)Handle(handles_[i]).close();
        }
    }
}

Message& Message::add_handle(abi::HandleValue v, uint32_t flags, bool owned) {
    handles_[handle_count_] = v;
    flags_[handle_count_] = flags;
    owned_[handle_count_] = owned;
    ++handle_count_;
    return *this;
}

Message& Message::move_handle(Handle&& h) & {
    if (handle_count_ == abi::kMaxHandles) {
        fail(abi::Err::TooLarge);  // `h` stays with the caller
        return *this;
    }
    if (!h.valid()) {
        fail(abi::Err::BadHandle);
        return *this;
    }
    return add_handle(h.release(), abi::kTransferMove, true);
}

Message& Message::copy_handle(const Handle& h) & {
    if (handle_count_ == abi::kMaxHandles) {
        fail(abi::Err::TooLarge);
        return *this;
    }
    if (!h.valid()) {
        fail(abi::Err::BadHandle);
        return *this;
    }
    return add_handle(h.get(), abi::kTransferCopy, false);
}

Handle Message::take_handle(unsigned i) {
    if (i >= handle_count_ || !owned_[i]) return Handle();
    owned_[i] = false;
    return Handle(handles_[i]);
}

Result<const uint8_t*> PayloadReader::bytes(size_t n) {
    if (offset_ > m_.length() || n > m_.length() - offset_) return abi::Err::TooLarge;
    const uint8_t* p = m_.payload() + offset_;
    offset_ += n;
    return p;
}

// --- encode / decode ---

Result<uint64_t> encode(const Message& m, abi::IpcBuffer* buffer) {
    uint64_t info = 0;
    abi::Err e = detail::Wire::encode(m, buffer, &info);
    if (e != abi::Err::Ok) return e;
    return info;
}

Status decode_into(uint64_t info_word, const uint64_t (&words)[abi::kMessageWords], uint64_t badge,
                   const abi::IpcBuffer* buffer, Received& out) {
    out.message.close_handles();
    return detail::Wire::decode(info_word, words, badge, buffer, out);
}

Result<Received> decode(uint64_t info_word, const uint64_t (&words)[abi::kMessageWords],
                        uint64_t badge, const abi::IpcBuffer* buffer) {
    Result<Received> r(std::in_place);
    abi::Err e = detail::Wire::decode(info_word, words, badge, buffer, *r);
    if (e != abi::Err::Ok) r = e;
    return r;
}

}  // namespace mk::ipc
