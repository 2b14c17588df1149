#include "thread.hpp"

#include <atomic>

#include "memory.hpp"
#include "panic.hpp"

namespace mk {

namespace {
std::atomic<uint32_t> g_next_thread_id{1};
}

const char* thread_state_name(ThreadState s) {
    switch (s) {
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

Thread::Thread(uint32_t id, const char* name) : id_(id) {
    size_t i = 0;
    for (; name != nullptr && name[i] != '\0' && i + 1 < kNameLength; ++i) name_[i] = name[i];
    name_[i] = '\0';
}

Thread::~Thread() {
    MK_ASSERT(!queue_hook.is_linked());
    MK_ASSERT(!timeout_hook.is_linked());
}

Result<Thread*> Thread::create(const char* name, Entry entry, void* arg) {
    void* stack = kalloc(kStackSize, 16);
    if (stack == nullptr) return Error::OutOfMemory;
    Thread* t = knew<Thread>(g_next_thread_id.fetch_add(1), name);
    if (t == nullptr) {
        kfree(stack);
        return Error::OutOfMemory;
    }
    t->stack_ = stack;
    Cpu::init_context(t->context, static_cast<char*>(stack) + kStackSize, entry, arg);
    return t;
}

Result<Thread*> Thread::adopt_boot_thread(const char* name) {
    Thread* t = knew<Thread>(g_next_thread_id.fetch_add(1), name);
    if (t == nullptr) return Error::OutOfMemory;
    return t;
}

void Thread::destroy(Thread* thread) {
    if (thread == nullptr) return;
    MK_ASSERT(thread->state == ThreadState::Dead || !thread->started);
    void* stack = thread->stack_;
    kdelete(thread);
    kfree(stack);
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
