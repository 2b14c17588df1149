// IPC messages: a label and a few words in registers, plus a per-thread IPC
// buffer for longer payloads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mk {

constexpr size_t kMessageWords = 4;     // carried in registers (the fast path)
constexpr size_t kIpcBufferSize = 480;  // bytes in a thread's IPC buffer
constexpr size_t kMessageHandles = 4;   // handles one message can carry

struct Message {
    uint64_t label = 0;
    uint64_t words[kMessageWords] = {};
    // Bytes of payload in the sender's IPC buffer (0..kIpcBufferSize); they
    // land in the receiver's IPC buffer. 0 is a register-only message.
    uint32_t length = 0;
    // Handles carried (0..kMessageHandles), in the sender's IpcState::handles.
    uint32_t handle_count = 0;

    bool register_only() const { return length == 0 && handle_count == 0; }
    bool fits() const { return length <= kIpcBufferSize && handle_count <= kMessageHandles; }
};

// The right to answer one received call, once. It names the caller and that
// call; any later use (after a reply, a drop, the caller's death or timeout)
// is refused with Error::BadHandle. Plain data: it may be kept and used later
// (deferred reply).
struct ReplyToken {
    uint64_t caller = 0;  // the caller's thread id; 0: not a call
    uint64_t call = 0;    // which of its calls

    bool valid() const { return caller != 0; }
};

// What a receive delivers.
struct Received {
    Message msg;
    uint64_t badge = 0;  // the sender's badge, set by the kernel
    ReplyToken reply;    // valid() when the sender is waiting in call()
};

}  // namespace mk
