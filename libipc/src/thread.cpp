// Which IPC buffer is this thread's: a table of (stack range, buffer),
// looked up by the stack pointer (see "Threads and their IPC buffers" in
// mk/ipc.hpp).
//
// Slots are claimed with a compare-and-swap on `hi` (0: free, kClaimed: being
// filled), then published with a release store of the real `hi`; a lookup
// reads `hi` with acquire, so it sees a slot whole or not at all. A thread
// only ever changes its own slot after that, and never while it is looking.
#include "mk/ipc.hpp"
#include "mk/sys.hpp"

namespace mk::ipc {

namespace {

struct Slot {
    uintptr_t lo;
    uintptr_t hi;  // 0: free
    abi::IpcBuffer* buffer;
};

constexpr uintptr_t kClaimed = 1;

Slot g_slots[kMaxThreads];

uintptr_t stack_pointer() {
    return reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
}

Slot* find(uintptr_t sp) {
    for (Slot& s : g_slots) {
        uintptr_t hi = __atomic_load_n(&s.hi, __ATOMIC_ACQUIRE);
        if (hi > kClaimed && s.lo <= sp && sp < hi) return &s;
    }
    return nullptr;
}

}  // namespace

abi::IpcBuffer* ipc_buffer() {
    Slot* s = find(stack_pointer());
    return s != nullptr ? s->buffer : nullptr;
}

Status register_thread(abi::IpcBuffer* buffer, uintptr_t stack_lo, uintptr_t stack_hi) {
    uintptr_t sp = stack_pointer();
    if (buffer == nullptr || stack_hi <= kClaimed || stack_lo >= stack_hi || sp < stack_lo ||
        sp >= stack_hi) {
        return abi::Err::InvalidArgument;
    }
    sys::Ret r = sys::invoke(abi::Sys::IpcBufferSet, 0, reinterpret_cast<uint64_t>(buffer));
    if (!r.ok()) return r.status;
    if (Slot* mine = find(sp)) {  // registered before: a new buffer
        mine->buffer = buffer;
        return Status();
    }
    for (Slot& s : g_slots) {
        uintptr_t expected = 0;
        if (__atomic_compare_exchange_n(&s.hi, &expected, kClaimed, false, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            s.lo = stack_lo;
            s.buffer = buffer;
            __atomic_store_n(&s.hi, stack_hi, __ATOMIC_RELEASE);
            return Status();
        }
    }
    return abi::Err::LimitReached;
}

void unregister_thread() {
    if (Slot* s = find(stack_pointer())) {
        s->buffer = nullptr;
        s->lo = 0;
        __atomic_store_n(&s->hi, 0, __ATOMIC_RELEASE);
    }
}

}  // namespace mk::ipc
