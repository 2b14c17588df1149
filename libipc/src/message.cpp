// Messages, and their translation to and from the registers and the IPC
// buffer. encode() and decode() issue no syscalls (host-tested).
#include "mk/ipc.hpp"

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

Message::~Message() {
    close_owned();
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

Message& Message::set_word(unsigned i, uint64_t v) & {
    if (i < abi::kMessageWords) {
        words_[i] = v;
    } else {
        fail(abi::Err::InvalidArgument);
    }
    return *this;
}

Message& Message::append(const void* data, size_t n) & {
    if (n > abi::kMaxPayload - length_) {
        fail(abi::Err::TooLarge);
        return *this;
    }
    __builtin_memcpy(payload_ + length_, data, n);
    length_ += uint32_t(n);
    return *this;
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

void Message::handles_sent() {
    for (unsigned i = 0; i < handle_count_; ++i) owned_[i] = false;
}

Result<const uint8_t*> PayloadReader::bytes(size_t n) {
    if (offset_ > m_.length() || n > m_.length() - offset_) return abi::Err::TooLarge;
    const uint8_t* p = m_.payload() + offset_;
    offset_ += n;
    return p;
}

// --- encode / decode ---

namespace {

// Bits of an info word the kernel never sets on a message it delivers
// (bit 47, "a reply is expected", it may set).
constexpr uint64_t kReservedInBits = abi::MsgInfo::kReservedBits & ~(uint64_t{1} << 47);
constexpr uint64_t kLengthMask = uint64_t{0x3FF} << 32;
constexpr uint64_t kHandlesMask = uint64_t{0x7} << 44;

}  // namespace

Result<uint64_t> encode(const Message& m, abi::IpcBuffer* buffer) {
    if (m.error() != abi::Err::Ok) return m.error();
    if (m.label() >= abi::kNoticeLabelBase) return abi::Err::InvalidArgument;
    if (m.length() > abi::kMaxPayload || m.handle_count() > abi::kMaxHandles) {
        return abi::Err::TooLarge;
    }
    if (m.length() != 0 || m.handle_count() != 0) {
        if (buffer == nullptr) return abi::Err::BadState;
        __builtin_memcpy(buffer->payload, m.payload(), m.length());
        for (unsigned i = 0; i < m.handle_count(); ++i) {
            buffer->handles[i] = m.handle_value(i);
            buffer->handle_flags[i] = m.handle_flags(i);
        }
    }
    abi::MsgInfo info{m.label(), m.length(), m.handle_count(), false};
    return info.encode();
}

Result<Received> decode(uint64_t info_word, const uint64_t (&words)[abi::kMessageWords],
                        uint64_t badge, const abi::IpcBuffer* buffer) {
    static_assert(kReservedInBits ==
                  ~(uint64_t{1} << 47 | kHandlesMask | kLengthMask | uint64_t{0xFFFFFFFF}));
    if ((info_word & kReservedInBits) != 0) return abi::Err::InvalidArgument;
    abi::MsgInfo info = abi::MsgInfo::decode(info_word);
    if (info.length > abi::kMaxPayload || info.handles > abi::kMaxHandles) {
        return abi::Err::TooLarge;
    }
    if ((info.length != 0 || info.handles != 0) && buffer == nullptr) return abi::Err::BadState;

    Received r;
    Message& m = r.message;
    m.label_ = info.label;
    for (unsigned i = 0; i < abi::kMessageWords; ++i) m.words_[i] = words[i];
    if (info.length != 0) {
        __builtin_memcpy(m.payload_, buffer->payload, info.length);
        m.length_ = info.length;
    }
    for (unsigned i = 0; i < info.handles; ++i) {
        abi::HandleValue h = buffer->handles[i];
        m.add_handle(h, abi::kTransferMove, h != abi::kNoHandle);
    }
    r.badge = badge;
    r.call = info.call;
    return r;
}

}  // namespace mk::ipc
