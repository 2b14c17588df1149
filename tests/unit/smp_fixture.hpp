// Several CPUs on the host fake: CPU 0 is SchedFixture's, the others each
// get a PerCpu whose first code becomes its idle thread. The test plays
// each CPU in turn (on_cpu): the fake's switches return, so a CPU is a
// state machine the test drives, as with one CPU.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "sched_fixture.hpp"

namespace mk::testing {

class SmpFixture : public SchedFixture {
  protected:
    // `cpus`: how many, CPU 0 included.
    explicit SmpFixture(uint32_t cpus = 2) : cpus_(cpus) {}

    void SetUp() override {
        SchedFixture::SetUp();
        for (uint32_t i = 1; i < cpus_; ++i) {
            auto cpu = std::make_unique<PerCpu>();
            cpu->index = i;
            others_.push_back(std::move(cpu));
            idles_.push_back(nullptr);
            on_cpu(i, [&] {
                // The CPU's first code becomes its idle thread (cpu_join).
                idles_[i - 1] = Thread::adopt_boot_thread("idle").value();
                sched_at(i).init(*idles_[i - 1], *idles_[i - 1]);
            });
        }
        cpu1_ = others_.empty() ? nullptr : others_[0].get();
        idle1_ = idles_.empty() ? nullptr : idles_[0];
    }

    void TearDown() override {
        // Each CPU goes back to its idle thread, blocking whatever it runs,
        // so that the fixture can end every thread from CPU 0.
        for (uint32_t i = 1; i < cpus_; ++i) {
            on_cpu(i, [&] {
                Scheduler& s = sched_at(i);
                LockGuard guard(s.lock());
                while (s.current() != idles_[i - 1]) s.block_current_locked(nullptr, 0);
            });
        }
        for (Thread* idle : idles_) {
            idle->state = ThreadState::Dead;
            Thread::destroy(idle);
        }
        SchedFixture::TearDown();
    }

    // Runs `fn` as CPU `index`.
    void on_cpu(uint32_t index, const std::function<void()>& fn) {
        Cpu::set_this_cpu(index == 0 ? cpu_.get() : others_[index - 1].get());
        fn();
        Cpu::set_this_cpu(cpu_.get());
    }

    Scheduler& sched_at(uint32_t index) {
        return index == 0 ? sched() : others_[index - 1]->scheduler;
    }
    Scheduler& sched1() { return sched_at(1); }
    Thread* idle_of(uint32_t index) { return index == 0 ? idle_ : idles_[index - 1]; }

    // A thread created on CPU 0 and homed on CPU `index`, not started.
    Thread* create_on(uint32_t index, const char* name) {
        Thread* t = create(name);
        LockGuard guard(sched().lock());  // placement reads each CPU's load under its lock
        Scheduler::set_home_locked(*t, index);
        return t;
    }

    // A thread homed on CPU `index` (not 0), running there (the CPU idled
    // before).
    Thread* running_on(uint32_t index, const char* name) {
        Thread* t = create_on(index, name);
        EXPECT_EQ(sched().start(*t), Error::None);
        on_cpu(index, [&] { sched_at(index).preempt_if_needed(); });  // the idle CPU takes it
        EXPECT_EQ(sched_at(index).current(), t);
        return t;
    }

    // A thread of CPU `index` that ran there and blocked on `q` (with a
    // timeout of `ticks`, 0: none), as an IPC receive blocks: the CPU
    // idles after.
    Thread* blocked_on(uint32_t index, const char* name, WaitQueue& q, uint64_t ticks = 0) {
        Thread* t = running_on(index, name);
        on_cpu(index, [&] {
            LockGuard guard(sched_at(index).lock());
            sched_at(index).block_current_locked(&q, ticks);
        });
        EXPECT_EQ(t->state, ThreadState::Blocked);
        return t;
    }

    Thread* create_on_1(const char* name) { return create_on(1, name); }
    Thread* running_on_1(const char* name) { return running_on(1, name); }
    Thread* blocked_on_1(const char* name, WaitQueue& q, uint64_t ticks = 0) {
        return blocked_on(1, name, q, ticks);
    }

    uint32_t cpus_;
    std::vector<std::unique_ptr<PerCpu>> others_;
    std::vector<Thread*> idles_;
    PerCpu* cpu1_ = nullptr;  // CPU 1's, the one most tests use
    Thread* idle1_ = nullptr;
    SpinLock endpoint_lock_{LockLevel::Endpoint};  // an endpoint's, for IpcGuard
};

}  // namespace mk::testing
