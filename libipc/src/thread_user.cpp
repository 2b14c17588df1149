// Threads in ring 3: the main thread's IPC buffer, and start_thread().
// Only in the user build (it needs the entry stub in thread_start.S).
#include "mk/ipc.hpp"
#include "mk/sys.hpp"

extern "C" {
void libipc_thread_entry();
[[noreturn]] void libipc_thread_main(void* start);
}

namespace mk::ipc {

namespace {

// What a new thread needs to know, written at the top of its stack.
struct ThreadStart {
    void (*fn)(void*);
    void* arg;
    abi::IpcBuffer* buffer;
    uintptr_t stack_lo;
    uintptr_t stack_hi;
};

Result<uintptr_t> map_pages(size_t pages) {
    sys::Ret r =
        sys::invoke(abi::Sys::MemMap, 0, pages * abi::kPageSize, abi::kProtRead | abi::kProtWrite);
    if (!r.ok()) return r.status;
    return uintptr_t(r.r0);
}

}  // namespace

Status init_main_thread() {
    Result<uintptr_t> page = map_pages(1);
    if (!page) return page.error();
    constexpr uintptr_t kStackHi = abi::kUserEnd;
    constexpr uintptr_t kStackLo = kStackHi - abi::kMainStackPages * abi::kPageSize;
    return register_thread(reinterpret_cast<abi::IpcBuffer*>(*page), kStackLo, kStackHi);
}

// The stack, then the IPC buffer page just above it: an overflow runs down,
// away from the buffer. The ThreadStart record sits at the top of the stack.
Result<Handle> start_thread(void (*fn)(void*), void* arg, size_t stack_pages) {
    if (fn == nullptr || stack_pages == 0 || stack_pages > (uint64_t{1} << 20)) {
        return abi::Err::InvalidArgument;
    }
    Result<uintptr_t> base = map_pages(stack_pages + 1);
    if (!base) return base.error();
    uintptr_t stack_lo = *base;
    uintptr_t stack_hi = stack_lo + stack_pages * abi::kPageSize;
    auto* start = reinterpret_cast<ThreadStart*>(stack_hi - sizeof(ThreadStart));
    *start = ThreadStart{fn, arg, reinterpret_cast<abi::IpcBuffer*>(stack_hi), stack_lo, stack_hi};
    uintptr_t top = reinterpret_cast<uintptr_t>(start) & ~uintptr_t{15};
    sys::Ret r =
        sys::invoke(abi::Sys::ThreadCreate, 0, reinterpret_cast<uint64_t>(&libipc_thread_entry),
                    top, reinterpret_cast<uint64_t>(start));
    if (!r.ok()) {
        (void)sys::invoke(abi::Sys::MemUnmap, 0, stack_lo, (stack_pages + 1) * abi::kPageSize);
        return r.status;
    }
    return Handle(abi::HandleValue(r.r0));
}

}  // namespace mk::ipc

void libipc_thread_main(void* p) {
    auto* start = static_cast<mk::ipc::ThreadStart*>(p);
    // Without a buffer (a kernel that refuses it) the thread still runs:
    // register-only messages need none.
    bool registered =
        bool(mk::ipc::register_thread(start->buffer, start->stack_lo, start->stack_hi));
    start->fn(start->arg);
    if (registered) mk::ipc::unregister_thread();
    mk::sys::thread_exit();
}
