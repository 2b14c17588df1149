// Memory and thread syscalls: anonymous mappings, the IPC buffer page,
// threads in the caller's process.
#include <utility>

#include "internal.hpp"
#include "panic.hpp"
#include "percpu.hpp"

namespace mk::syscall {

namespace {

// A length in bytes: page-granular, not zero, at most the process bound.
Result<size_t> decode_pages(uint64_t length) {
    if (length == 0 || (length % abi::kPageSize) != 0) return Error::InvalidArgument;
    if (length / abi::kPageSize > Process::kMaxPages) return Error::LimitReached;
    return size_t(length / abi::kPageSize);
}

Result<uint32_t> decode_prot(uint64_t prot) {
    constexpr uint64_t kAll = abi::kProtRead | abi::kProtWrite | abi::kProtExec;
    if ((prot & ~kAll) != 0 || (prot & abi::kProtRead) == 0) return Error::InvalidArgument;
    if ((prot & abi::kProtWrite) != 0 && (prot & abi::kProtExec) != 0) {
        return Error::InvalidArgument;  // W^X
    }
    return uint32_t(prot);
}

}  // namespace

Status sys_mem_map(Process& p, Thread&, TrapFrame& f) {
    Result<size_t> pages = decode_pages(f.rsi);
    if (!pages) return pages.error();
    Result<uint32_t> prot = decode_prot(f.rdx);
    if (!prot) return prot.error();
    Result<uint64_t> at = p.map_fresh(pages.value(), prot.value());
    if (!at) return at.error();
    f.rdi = at.value();
    return Error::None;
}

Status sys_mem_unmap(Process& p, Thread&, TrapFrame& f) {
    if ((f.rsi % abi::kPageSize) != 0) return Error::InvalidArgument;
    Result<size_t> pages = decode_pages(f.rdx);
    if (!pages) return pages.error();
    if (f.rsi < abi::kUserBase || f.rsi >= abi::kUserEnd ||
        pages.value() > (abi::kUserEnd - f.rsi) / abi::kPageSize) {
        return Error::InvalidArgument;
    }
    return p.unmap(f.rsi, pages.value());
}

// The page stays mapped while registered (Process::unmap refuses it), so
// the kernel can reach it through the direct map at any time.
Status sys_ipc_buffer_set(Process& p, Thread& self, TrapFrame& f) {
    return p.set_ipc_buffer(self, f.rsi);
}

Status sys_thread_create(Process& p, Thread& self, TrapFrame& f) {
    if (f.rsi < abi::kUserBase || f.rsi >= abi::kUserEnd) return Error::InvalidArgument;
    Result<HandleTable::Reservation> reserved = p.handles().reserve(1);
    if (!reserved) return reserved.error();
    HandleTable::Reservation slot = std::move(reserved).value();
    Result<Thread*> t = p.create_thread("thread", f.rsi, f.rdx, f.r10, &self);
    if (!t) return t.error();
    Thread* thread = t.value();
    thread->retain();  // the handle's reference
    // Started before anyone can name it by a handle. A kill of the whole
    // process (another thread's ProcessExit, a ProcessKill) may have ended
    // it in between, before it ever ran: it is buried already, and the
    // process is on its way out.
    Status st = this_cpu().scheduler.start(*thread);
    if (st != Error::None) {
        thread->release();
        return st;
    }
    f.rdi = slot.fill(HandleEntry{Ref<KObject>::adopt(thread), abi::kRightsAll, 0, {}});
    return Error::None;
}

}  // namespace mk::syscall
