// The translation of a Message to and from the registers and the IPC
// buffer, inline: encode()/decode() (message.cpp) are these behind a
// Result, and the operations (ipc.cpp) use them directly, so a request's
// send and receive halves cost no extra calls and no Result of a Message.
// Internal to libipc.
#pragma once

#include "mk/ipc.hpp"

namespace mk::ipc::detail {

struct Wire {
    // Bits of an info word the kernel never sets on a message it delivers
    // (bit 47, "a reply is expected", it may set).
    static constexpr uint64_t kReservedInBits = abi::MsgInfo::kReservedBits & ~(uint64_t{1} << 47);
    static constexpr uint64_t kLengthMask = uint64_t{0x3FF} << 32;
    static constexpr uint64_t kHandlesMask = uint64_t{0x7} << 44;
    static_assert(kReservedInBits ==
                  ~(uint64_t{1} << 47 | kHandlesMask | kLengthMask | uint64_t{0xFFFFFFFF}));

    static bool needs_buffer(const Message& m) { return (m.length_ | m.handle_count_) != 0; }
    static bool needs_buffer(uint64_t info_word) {
        return (info_word & (kLengthMask | kHandlesMask)) != 0;
    }

    // encode(), the register half: the checks, and the info word into
    // *info. encode_buffer() is the rest, for a message that needs_buffer().
    static abi::Err encode_head(const Message& m, uint64_t* info) {
        if (m.error_ != abi::Err::Ok) return m.error_;
        if (m.label_ >= abi::kNoticeLabelBase) return abi::Err::InvalidArgument;
        if (m.length_ > abi::kMaxPayload || m.handle_count_ > abi::kMaxHandles) {
            return abi::Err::TooLarge;
        }
        *info = uint64_t(m.label_) | uint64_t(m.length_) << 32 | uint64_t(m.handle_count_) << 44;
        return abi::Err::Ok;
    }
    // encode(), the buffer half: the payload and handles into `buffer`.
    static abi::Err encode_buffer(const Message& m, abi::IpcBuffer* buffer) {
        if (buffer == nullptr) return abi::Err::BadState;
        if (m.length_ != 0) __builtin_memcpy(buffer->payload, m.payload_, m.length_);
        for (unsigned i = 0; i < m.handle_count_; ++i) {
            buffer->handles[i] = m.handles_[i];
            buffer->handle_flags[i] = m.flags_[i];
        }
        return abi::Err::Ok;
    }
    // encode(): the info word into *info (not written on a refusal), the
    // payload and handles into `buffer`.
    static abi::Err encode(const Message& m, abi::IpcBuffer* buffer, uint64_t* info) {
        uint64_t word = 0;
        if (abi::Err e = encode_head(m, &word); e != abi::Err::Ok) return e;
        if (needs_buffer(m)) {
            if (abi::Err e = encode_buffer(m, buffer); e != abi::Err::Ok) return e;
        }
        *info = word;
        return abi::Err::Ok;
    }

    // Makes `out` an empty Received: what a receive that failed leaves.
    // Out of line, and cold: it keeps the receive path free of calls.
    [[gnu::noinline, gnu::cold]] static abi::Err empty(Received& out, abi::Err e) {
        out.message.clear();
        out.badge = 0;
        out.call = false;
        return e;
    }

    // decode(), the register half, into `out`, which owns no handles:
    // checks the info word, then the label, words, badge and call (a
    // refused message leaves `out` empty). decode_buffer() is the rest,
    // for an info word that needs_buffer(); until then `out` has no
    // payload and no handles.
    static abi::Err decode_head(uint64_t info_word, const uint64_t (&words)[abi::kMessageWords],
                                uint64_t badge, Received& out) {
        if ((info_word & kReservedInBits) != 0) return empty(out, abi::Err::InvalidArgument);
        uint32_t length = uint32_t(info_word >> 32) & 0x3FF;
        uint32_t handles = uint32_t(info_word >> 44) & 0x7;
        if (length > abi::kMaxPayload || handles > abi::kMaxHandles) {
            return empty(out, abi::Err::TooLarge);
        }
        Message& m = out.message;
        m.label_ = uint32_t(info_word);
        m.length_ = 0;
        m.handle_count_ = 0;
        m.error_ = abi::Err::Ok;
        for (unsigned i = 0; i < abi::kMessageWords; ++i) m.words_[i] = words[i];
        out.badge = badge;
        out.call = ((info_word >> 47) & 1) != 0;
        return abi::Err::Ok;
    }
    // decode(), the buffer half, after decode_head() accepted `info_word`:
    // the payload and the handles (owned by `out` from now on).
    static abi::Err decode_buffer(uint64_t info_word, const abi::IpcBuffer* buffer, Received& out) {
        if (buffer == nullptr) return empty(out, abi::Err::BadState);
        Message& m = out.message;
        uint32_t length = uint32_t(info_word >> 32) & 0x3FF;
        uint32_t handles = uint32_t(info_word >> 44) & 0x7;
        if (length != 0) __builtin_memcpy(m.payload_, buffer->payload, length);
        m.length_ = length;
        for (unsigned i = 0; i < handles; ++i) {
            abi::HandleValue h = buffer->handles[i];
            m.handles_[i] = h;
            m.flags_[i] = abi::kTransferMove;
            m.owned_[i] = h != abi::kNoHandle;
        }
        m.handle_count_ = handles;
        return abi::Err::Ok;
    }
    // decode() into `out`, which owns no handles (a refused message leaves
    // it empty).
    static abi::Err decode(uint64_t info_word, const uint64_t (&words)[abi::kMessageWords],
                           uint64_t badge, const abi::IpcBuffer* buffer, Received& out) {
        if (abi::Err e = decode_head(info_word, words, badge, out); e != abi::Err::Ok) return e;
        if (needs_buffer(info_word)) return decode_buffer(info_word, buffer, out);
        return abi::Err::Ok;
    }
};

}  // namespace mk::ipc::detail
