// A CPU with a scheduler, a boot thread and an idle thread, on the host fake.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "cpu.hpp"
#include "percpu.hpp"
#include "thread.hpp"

namespace mk::testing {

class SchedFixture : public ::testing::Test {
  protected:
    void SetUp() override {
        FakeCpu::reset();
        cpu_ = std::make_unique<PerCpu>();
        Cpu::set_this_cpu(cpu_.get());
        FakeCpu::yield_handler = [] { this_cpu().scheduler.on_yield_vector(); };
        boot_ = Thread::adopt_boot_thread("boot").value();
        idle_ = Thread::create("idle", nullptr, nullptr).value();
        sched().init(*boot_, *idle_);
    }

    void TearDown() override {
        Thread* running = sched().current();
        for (Thread* t : all_threads()) {
            if (t != running && t != idle_) sched().kill(*t);
        }
        for (Thread* t : all_threads()) {
            t->state = ThreadState::Dead;
            Thread::destroy(t);
        }
        Cpu::set_this_cpu(nullptr);
    }

    Scheduler& sched() { return cpu_->scheduler; }

    // A thread created and not started.
    Thread* create(const char* name) {
        Thread* t = Thread::create(name, nullptr, nullptr).value();
        threads_.push_back(t);
        return t;
    }

    Thread* spawn(const char* name) {
        Thread* t = create(name);
        EXPECT_EQ(sched().start(*t), Error::None);
        return t;
    }

    std::vector<Thread*> all_threads() {
        std::vector<Thread*> v = threads_;
        v.push_back(boot_);
        v.push_back(idle_);
        return v;
    }

    // Acting as the current thread, yield through the (fake) yield vector.
    void yield() { sched().yield_now(); }

    std::unique_ptr<PerCpu> cpu_;
    Thread* boot_ = nullptr;
    Thread* idle_ = nullptr;
    std::vector<Thread*> threads_;
};

}  // namespace mk::testing
