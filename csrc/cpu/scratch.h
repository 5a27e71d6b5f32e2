// Per-thread scratch memory, kept from call to call.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "cpu/vec.h"

namespace se_fused::cpu {

// A call's scratch buffers of A, carved from one block per calling thread
// and slot that is kept from call to call: fresh pages cost a page fault each
// (about 2 us per 4 KB page on the 2-core dev machine, as much as the gate
// MLP's work at 32 x 2048 x 7 x 7). The block grows to the largest call a
// thread has made and is freed when the thread ends. Contents are not
// initialised. A call that needs two lists of buffers (of A and of another
// type that may be A) takes them from two slots.
template <typename A, int kSlot = 0>
class Scratch {
 public:
  explicit Scratch(std::initializer_list<int64_t> sizes) {
    int64_t total = kLanes<A>;  // room to start at a 64-byte boundary
    for (int64_t n : sizes) total += padded(n);
    std::vector<A>& block = storage();
    if (static_cast<int64_t>(block.size()) < total) block.resize(total);
    // Every buffer starts at a 64-byte boundary (a vector load from it does not
    // straddle two cache lines; the gate MLP's products ran 6-10 % faster in a
    // standalone harness, docs/performance.md).
    const uintptr_t base = reinterpret_cast<uintptr_t>(block.data());
    A* next = reinterpret_cast<A*>((base + 63) / 64 * 64);
    for (int64_t n : sizes) {
      buffers_.push_back(next);
      next += padded(n);
    }
  }
  A* operator[](size_t i) const { return buffers_[i]; }

 private:
  static int64_t padded(int64_t n) { return (n + kLanes<A> - 1) / kLanes<A> * kLanes<A>; }
  static std::vector<A>& storage() {
    thread_local std::vector<A> block;
    return block;
  }
  std::vector<A*> buffers_;
};

}  // namespace se_fused::cpu
