#include "thread.hpp"

#include "kernel_stack.hpp"
#include "memory.hpp"
#include "object/reply.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "process.hpp"

namespace mk {

namespace {

// The registry: which thread each id names. Ids are (generation << 32) |
// (slot + 1), so an id stays unique after its thread is gone and its slot
// reused. Only a thread's creation and destruction use it: a reply finds
// its caller on its own callers queue, never through an id.
constexpr uint32_t kMaxThreads = ThreadRegistry::kMaxThreads;
// --- Guarded by g_registry_lock (a leaf: nothing is taken under it) ---
SpinLock g_registry_lock{LockLevel::ThreadRegistry};
Thread* g_threads[kMaxThreads];
uint32_t g_generations[kMaxThreads];
uint32_t g_next_slot = 0;

Result<uint64_t> register_slot(Thread* t) {
    for (uint32_t n = 0; n < kMaxThreads; ++n) {
        uint32_t slot = (g_next_slot + n) % kMaxThreads;
        if (g_threads[slot] != nullptr) continue;
        g_threads[slot] = t;
        g_next_slot = slot + 1;
        return (uint64_t(++g_generations[slot]) << 32) | (slot + 1);
    }
    return Error::OutOfMemory;
}

uint32_t slot_of(uint64_t id) {
    return uint32_t(id & 0xFFFFFFFF) - 1;
}

}  // namespace

bool Thread::registered(uint64_t id) {
    uint32_t slot = slot_of(id);
    LockGuard guard(g_registry_lock);
    return slot < kMaxThreads && g_threads[slot] != nullptr && g_threads[slot]->id_ == id;
}

const char* thread_state_name(ThreadState s) {
    switch (s) {
        case ThreadState::Created:
            return "created";
        case ThreadState::Running:
            return "running";
        case ThreadState::Ready:
            return "ready";
        case ThreadState::Blocked:
            return "blocked";
        case ThreadState::Dead:
            return "dead";
    }
    return "?";
}

Thread::Thread(uint64_t id, const char* name, IpcState* ipc_state)
    : KObject(ObjectType::Thread), ipc(ipc_state), id_(id) {
    size_t i = 0;
    for (; name != nullptr && name[i] != '\0' && i + 1 < kNameLength; ++i) name_[i] = name[i];
    name_[i] = '\0';
}

Thread::~Thread() {
    MK_ASSERT(!queue_hook.is_linked());
    MK_ASSERT(!timeout_hook.is_linked());
    MK_ASSERT(!move_hook.is_linked());
}

Result<Thread*> Thread::make(const char* name) {
    // One block: the Thread, then its IpcState (kThreadIpcStateOffset).
    constexpr size_t kAlign =
        alignof(Thread) > alignof(IpcState) ? alignof(Thread) : alignof(IpcState);
    void* mem = kalloc(kThreadIpcStateOffset + sizeof(IpcState), kAlign);
    if (mem == nullptr) return Error::OutOfMemory;
    IpcState* ipc = new (static_cast<char*>(mem) + kThreadIpcStateOffset) IpcState{};
    Thread* t = new (mem) Thread(uint64_t(0), name, ipc);
    MK_ASSERT(reinterpret_cast<char*>(t->ipc) - reinterpret_cast<char*>(t) ==
              ptrdiff_t(kThreadIpcStateOffset));  // where syscall.S finds it
    Result<uint64_t> id = Error::OutOfMemory;
    t->cpu = Cpu::cpu_index();
    t->affinity = 1u << t->cpu;
    {
        LockGuard guard(g_registry_lock);
        id = register_slot(t);
        if (id) t->id_ = id.value();
    }
    if (!id) {
        free_block(t);
        return id.error();
    }
    return t;
}

Result<Thread*> Thread::create(const char* name, Entry entry, void* arg) {
    Result<KernelStack> stack = kernel_stack_create();
    if (!stack) return stack.error();
    Result<Thread*> t = make(name);
    if (!t) {
        kernel_stack_destroy(stack.value());  // never used
        return t.error();
    }
    t.value()->stack_ = stack.value();
    Cpu::init_context(t.value()->context, stack.value().top, entry, arg);
    return t.value();
}

Result<Thread*> Thread::adopt_boot_thread(const char* name) {
    return make(name);
}

void Thread::destroy(Thread* thread) {
    if (thread == nullptr) return;
    for (bool again = false;; again = true) {
        if (again) __builtin_ia32_pause();
        // This CPU's scheduler lock, then the thread's CPU's as a second
        // one (off_cpu_locked).
        LockGuard guard(this_cpu().scheduler.lock());
        MK_ASSERT(thread->state == ThreadState::Dead || thread->state == ThreadState::Created);
        // A thread that ran may have ended on another CPU a moment ago
        // (its creator or the reaper saw it Dead): that CPU is off its
        // stack once this has its lock. A CPU that reads it across a gap
        // (a move of it, a kill of it that still fails its callers, a
        // HomeLock naming it: Thread::gap_holds) is not done with it:
        // again, once it is.
        if (!this_cpu().scheduler.off_cpu_locked(*thread)) continue;
        MK_ASSERT(thread->ipc->callers.empty());
        // The thread is gone from now on, whoever still holds a reference:
        // its id names nothing, and a Created one can no longer be started.
        thread->state = ThreadState::Dead;
        uint32_t slot = slot_of(thread->id_);
        LockGuard registry(g_registry_lock);
        MK_ASSERT(slot < kMaxThreads && g_threads[slot] == thread);
        g_threads[slot] = nullptr;
        break;
    }
    // Off every CPU for good: its kernel stack, its FPU area and its place
    // in its process go now (the last thread of a process ends the
    // process). The stack goes to the stack cache, still mapped, for the
    // next thread made (kernel_stack.hpp); a full cache unmaps its oldest.
    // Nothing of a dead thread reads its stack, whoever still holds a
    // reference.
    if (thread->stack_.top != nullptr) {
        kernel_stack_destroy(thread->stack_);  // no lock held: a batch's TLB shootdown
        thread->stack_ = KernelStack{};
    }
    Cpu::release_context(thread->context);
    if (thread->process != nullptr) {
        thread->process->remove_thread(*thread);
        thread->process->release();
        thread->process = nullptr;
        thread->handles = nullptr;
    }
    // Outside the lock: the last release frees, and freeing takes the heap lock.
    thread->release();  // the creator's reference
}

void Thread::free_object(Thread* thread) {
    MK_ASSERT(thread->stack_.top == nullptr);  // Thread::destroy freed it
    Reply::free_spare(thread->ipc->spare_reply);
    free_block(thread);
}

void Thread::free_block(Thread* thread) {
    IpcState* ipc = thread->ipc;
    thread->~Thread();
    ipc->~IpcState();
    kfree(thread);
}

WaitQueue::~WaitQueue() {
    MK_ASSERT(list_.empty());
}

bool WaitQueue::contains(const Thread& t) const {
    for (const Thread& x : list_) {
        if (&x == &t) return true;
    }
    return false;
}

}  // namespace mk
