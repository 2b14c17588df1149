// Process-context ids: which PCID a CPU tags an address space's TLB entries
// with, and whether loading the space must flush them (docs/smp.md,
// "PCIDs"). The policy alone, portable and host-tested; the x86-64 glue
// (CR4.PCIDE, the CR3 value) is in arch/x86_64/context.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mk {

// What an address space shows the TLB policy: an id that no other space
// ever has, and a generation that grows whenever translations a CPU may
// have cached stop being right.
class TlbSpace {
  public:
    // A fresh id: from one 64-bit counter, never 0 and never reused, so a
    // space freed and another allocated at the same root (the same
    // object's address) can never match a slot the first one left behind.
    TlbSpace();
    TlbSpace(const TlbSpace&) = delete;
    TlbSpace& operator=(const TlbSpace&) = delete;

    uint64_t id() const { return id_; }
    uint64_t generation() const { return __atomic_load_n(&generation_, __ATOMIC_ACQUIRE); }
    // A mapping of it was removed or narrowed, or the space is being torn
    // down: after the page-table change and before the shootdown reads
    // which CPUs have it loaded, so that a CPU that loads it later either
    // sees the new generation (and flushes) or was seen by the shootdown.
    void invalidate() { __atomic_fetch_add(&generation_, 1, __ATOMIC_SEQ_CST); }

  private:
    const uint64_t id_;
    uint64_t generation_ = 0;  // atomic: read by every CPU that loads the space
};

// One CPU's PCIDs: kSlots of them (1..kSlots; PCID 0 is the kernel's, the
// tables every CPU boots with), each remembering the space it was last
// given to and that space's generation when the CPU last flushed it.
// Eviction is least recently loaded: a miss takes the slot whose last load
// is oldest (a slot never used counts as oldest of all), so up to kSlots
// spaces that take turns on a CPU keep their entries. Touched only by its
// CPU, with interrupts off (a context switch).
class PcidTable {
  public:
    // As Linux's six ASIDs a CPU: enough for a client, its servers and a
    // few others; a lookup scans them all.
    static constexpr uint16_t kSlots = 6;
    static constexpr uint16_t kKernelPcid = 0;

    struct Load {
        uint16_t pcid;  // 1..kSlots
        // The CR3 load must drop the PCID's entries: the slot was another
        // space's (or none's), or the space's generation moved on since
        // this CPU last flushed it. Else the entries are still right.
        bool flush;
    };

    // A switch to the space `id` (nonzero) whose generation the caller read
    // (after it published that this CPU has the space loaded: the
    // shootdown's side of the bargain, TlbSpace::invalidate).
    Load load(uint64_t id, uint64_t generation);
    // The CR3 value (CR4.PCIDE set) that loads the page tables at `root`
    // (4 KiB aligned) as `load` says: the PCID in bits 11:0, and bit 63
    // set when the PCID's entries stay (no flush).
    static constexpr uint64_t kCr3NoFlush = uint64_t{1} << 63;
    static constexpr uint64_t cr3(uint64_t root, Load load) {
        return root | load.pcid | (load.flush ? 0 : kCr3NoFlush);
    }
    // A switch to the kernel's tables (PCID 0).
    void load_kernel() { current_ = kKernelPcid; }
    // The PCID loaded now (kKernelPcid after load_kernel() or at start).
    uint16_t current() const { return current_; }

  private:
    struct Slot {
        uint64_t space = 0;       // TlbSpace::id; 0: never used
        uint64_t generation = 0;  // the space's generation at its last flush here
        uint64_t last_load = 0;   // this table's clock at its last load; 0: never
    };
    Slot slots_[kSlots];
    uint64_t clock_ = 0;  // counts loads
    uint16_t current_ = kKernelPcid;
};

}  // namespace mk
