#include "pcid.hpp"

namespace mk {

namespace {

uint64_t g_next_space_id = 1;  // atomic; 0 marks a slot never used

}  // namespace

TlbSpace::TlbSpace() : id_(__atomic_fetch_add(&g_next_space_id, 1, __ATOMIC_RELAXED)) {}

PcidTable::Load PcidTable::load(uint64_t id, uint64_t generation) {
    ++clock_;
    uint16_t victim = 0;
    for (uint16_t i = 0; i < kSlots; ++i) {
        Slot& s = slots_[i];
        if (s.space == id) {
            s.last_load = clock_;
            current_ = uint16_t(i + 1);
            // An older generation: something it had mapped was taken away
            // since this CPU last flushed it, and the shootdown may have
            // missed this CPU (it had switched away). Never newer.
            if (s.generation == generation) return {current_, false};
            s.generation = generation;
            return {current_, true};
        }
        if (s.last_load < slots_[victim].last_load) victim = i;
    }
    slots_[victim] = {id, generation, clock_};
    current_ = uint16_t(victim + 1);
    return {current_, true};
}

}  // namespace mk
