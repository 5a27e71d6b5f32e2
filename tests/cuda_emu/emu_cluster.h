// Thread-block clusters and cp.async copies on the emulated device (included
// at the end of emu.h; see README.md).
//
// GPCs: the device's SMs in groups of g_sms_per_gpc (the last may have fewer;
// 0: one GPC). A cluster launch (cudaLaunchKernelEx with
// cudaLaunchAttributeClusterDimension) runs its clusters as slots free up, as
// an ordinary launch runs its blocks (nothing promised across clusters); each
// cluster takes its blocks' slots together, at once and in one GPC, from the
// pool every launch of every host thread shares, and its blocks run
// concurrently on OS threads, meeting at the cluster barrier.
//
// Distributed shared memory (SE_CLUSTER_STORE, se_sync.h se_cluster_store):
// a store into a block of the cluster, checked (inside a cluster launch of an
// sm_90+ image, the rank inside the cluster, the address aligned to the value
// and inside the storing block's shared memory), is kept by the cluster and
// lands at its next barrier, when every block has arrived: a read before the
// barrier sees what was there before. A store still pending when the
// cluster's blocks have all returned aborts.
//
// cp.async: each CUDA thread keeps its copies in issue order with their
// commit group; a wait completes (performs) the copies of every committed
// group but the newest n, at that moment, so a read before the wait (or by
// another thread before the copying thread's wait and a barrier) sees the
// 0xff bytes shared memory starts with. Copies never committed are never
// completed by a wait (as wait_group on a GPU), and copies still pending when
// the thread returns abort.
#pragma once

namespace emu {

// ------------------------------------------------------------- clusters
// Whether [p, p + n) lies inside [base, base + size).
inline bool within(const void* p, size_t n, const void* base, size_t size) {
  const uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
  return base && a >= b && a + n <= b + size;
}
inline bool nonportable_cluster(KernelInfo* ki, int dev) {
  std::lock_guard<std::mutex> g(ki->m);
  auto it = ki->nonportable.find(dev);
  return it != ki->nonportable.end() && it->second != 0;
}
// The largest cluster a launch may ask for: 8 (portable), 16 with the kernel's
// cudaFuncAttributeNonPortableClusterSizeAllowed (an H100's limits).
inline int cluster_limit(KernelInfo* ki, int dev) { return nonportable_cluster(ki, dev) ? 16 : 8; }
// Blocks of one launch (occupancy per SM occ) that the largest GPC holds at once.
inline int gpc_blocks(const Device& d, int occ) { return occ * d.sms_per_gpc; }
// Clusters of c blocks that fit at once over all GPCs.
inline int active_clusters(const Device& d, int occ, int c) {
  int n = 0;
  for (int g = 0; g < d.gpcs(); ++g) n += occ * d.gpc_sms(g) / c;
  return n;
}

// The cluster rules of a launch (after the ordinary checks): a device before
// sm_90 has no cluster launch (cudaErrorNotSupported); a cluster of 0 blocks,
// of y or z above 1 (the grids are 1-D), above 8 without the kernel's
// non-portable opt-in, above 16, or not dividing the grid:
// cudaErrorInvalidClusterSize; one that no GPC can hold at the launch's
// threads and shared memory: cudaErrorLaunchOutOfResources (the real driver's
// code for this may differ; callers fall back on any error).
inline cudaError_t check_cluster(LaunchPlan* p, dim3 cl) {
  if (p->coop) fatal("a cooperative cluster launch: the emulator does not model it");
  if (p->d.cc < 90) return cudaErrorNotSupported;
  if (cl.x == 0 || cl.y != 1 || cl.z != 1 || cl.x > 16 || (int)cl.x > cluster_limit(p->ki, p->dev) ||
      p->grid % cl.x != 0)
    return cudaErrorInvalidClusterSize;
  if (gpc_blocks(p->d, occupancy(p->d, p->ki, p->threads, p->smem)) < (int)cl.x) return cudaErrorLaunchOutOfResources;
  p->cluster = (int)cl.x;
  return cudaSuccess;
}

// A distributed shared-memory store waiting for the cluster's barrier.
struct RemoteStore {
  unsigned char* dst;
  unsigned char bytes[8];
  size_t n;
};
// One running cluster: its barrier among blocks (OS threads), its blocks'
// slots (by rank), its pending distributed shared-memory stores.
struct ClusterRun {
  const LaunchPlan* plan;
  int64_t id;
  int size;
  std::vector<Slot*> blocks;
  std::mutex m;
  std::condition_variable cv;
  int count = 0, exited = 0;
  uint64_t gen = 0;
  std::vector<RemoteStore> pending;
};

[[noreturn]] inline void cluster_deadlock(const ClusterRun& c) {
  char msg[300];
  snprintf(msg, sizeof msg,
           "cluster barrier deadlocked: in cluster %ld, %d block(s) returned while the others wait at or come to "
           "the cluster sync (%d waiting): a cluster sync not reached by every block of the cluster",
           (long)c.id, c.exited, c.count);
  fatal(msg);
}

// The cluster barrier (cooperative_groups::this_cluster().sync()): block_meet
// (emu.h), the blocks meeting at the cluster's count; a block of the cluster
// that returned instead is a deadlock.
inline void cluster_sync() {
  Slot* s = tl_slot;
  if (!s->cluster) fatal("cluster sync outside a cluster launch (cudaLaunchAttributeClusterDimension)");
  if (s->cluster->plan->d.binary < 90)
    fatal("cluster sync in a kernel whose image predates sm_90: its cluster kernels are empty there and must never be launched");
  block_meet(s->cluster_bar_local, [&] {
    ClusterRun& c = *s->cluster;
    std::unique_lock<std::mutex> l(c.m);
    if (c.exited) cluster_deadlock(c);
    const uint64_t cg = c.gen;
    if (++c.count == c.size) {
      for (const RemoteStore& r : c.pending) std::memcpy(r.dst, r.bytes, r.n);  // every block has arrived
      c.pending.clear();
      c.count = 0;
      c.gen++;
      c.cv.notify_all();
    } else {
      c.cv.wait(l, [&] { return c.gen != cg || c.exited; });
      if (c.gen == cg) cluster_deadlock(c);
    }
  });
}
// SE_CLUSTER_STORE(local, rank, v): v for the address of `local` in block
// `rank`'s shared memory, landing at the cluster's next barrier.
template <typename A>
void cluster_store(A* local, unsigned rank, A v) {
  static_assert(sizeof(A) <= sizeof(RemoteStore::bytes), "a wider distributed shared-memory store");
  Slot* s = tl_slot;
  char msg[400];
  if (!s->cluster) fatal("distributed shared-memory store outside a cluster launch (cudaLaunchAttributeClusterDimension)");
  ClusterRun& c = *s->cluster;
  if (c.plan->d.binary < 90)
    fatal("distributed shared-memory store in a kernel whose image predates sm_90: it must never be launched");
  if (rank >= (unsigned)c.size) {
    snprintf(msg, sizeof msg, "distributed shared-memory store to rank %u of a cluster of %d blocks", rank, c.size);
    fatal(msg);
  }
  if ((uintptr_t)local % sizeof(A) != 0) {
    snprintf(msg, sizeof msg, "misaligned %zu-byte distributed shared-memory store at %p", sizeof(A), (void*)local);
    fatal(msg);
  }
  Slot& d = *c.blocks[rank];
  unsigned char* dst = nullptr;
  if (within(local, sizeof(A), s->arena, s->static_used)) {
    dst = (unsigned char*)d.arena + ((const char*)local - s->arena);
  } else if (within(local, sizeof(A), s->dyn.get(), s->dyn_bytes)) {
    dst = d.dyn.get() + ((const unsigned char*)local - s->dyn.get());
  } else {
    snprintf(msg, sizeof msg,
             "distributed shared-memory store at %p outside the block's shared memory (static: %zu bytes at %p, "
             "dynamic: %zu at %p): a GPU faults",
             (void*)local, s->static_used, (void*)s->arena, s->dyn_bytes, (void*)s->dyn.get());
    fatal(msg);
  }
  RemoteStore r{dst, {}, sizeof(A)};
  std::memcpy(r.bytes, &v, sizeof(A));
  std::lock_guard<std::mutex> l(c.m);
  c.pending.push_back(r);
  if (rank != (unsigned)s->cluster_rank) g_cluster_stores++;  // main.cpp's count: into another block
}

// A block of the cluster returned: blocks waiting at the cluster barrier never go on.
inline void cluster_block_exit(ClusterRun& c) {
  std::lock_guard<std::mutex> l(c.m);
  c.exited++;
  if (c.count) cluster_deadlock(c);
  c.cv.notify_all();
}

// Runs a checked cluster launch: min(clusters, clusters that fit at once)
// workers, each with a cluster's block slots, taking the cluster's device slots
// in one GPC for each cluster it runs (its blocks on OS threads of their own).
inline void run_cluster_launch(const LaunchPlan& p, const std::function<void()>& fn, uint64_t launch) {
  g_cluster_launches++;
  const int size = p.cluster;
  const int64_t clusters = p.grid / size;
  const int64_t fit = std::max(1, active_clusters(p.d, occupancy(p.d, p.ki, p.threads, p.smem), size));
  const int workers = (int)std::min(clusters, fit);
  std::atomic<int64_t> next{0};
  const char* cs = g_case;
  std::vector<std::thread> ws;
  for (int w = 0; w < workers; ++w)
    ws.emplace_back([&, cs] {
      g_case = cs;
      std::vector<std::unique_ptr<Slot>> slots(size);
      for (auto& s : slots) {
        s.reset(new Slot(p.threads, p.smem));
        prepare_slot(*s, p);
      }
      for (;;) {
        const std::vector<int> taken = acquire_slots(size, true);
        const int64_t id = next.fetch_add(1);
        if (id < clusters) {
          ClusterRun c{&p, id, size};
          for (auto& sl : slots) c.blocks.push_back(sl.get());
          std::vector<std::thread> bs;
          for (int r = 0; r < size; ++r)
            bs.emplace_back([&, r] {
              g_case = cs;
              Slot& s = *slots[r];
              s.cluster = &c;
              s.cluster_rank = r;
              g_blocks++;
              run_block(s, id * size + r, p.grid, fn, launch);
              cluster_block_exit(c);
              s.cluster = nullptr;
            });
          for (auto& t : bs) t.join();
          if (!c.pending.empty()) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "%zu distributed shared-memory store(s) in cluster %ld not followed by a cluster barrier",
                     c.pending.size(), (long)id);
            fatal(msg);
          }
        }
        release_slots(taken);
        if (id >= clusters) break;
      }
    });
  for (auto& t : ws) t.join();
}

// ------------------------------------------------------------- cp.async
// SE_CP_ASYNC16(dst, src): 16 bytes from global src to the block's shared dst,
// both 16-byte aligned, dst inside the block's static shared memory (the type
// SE_SHARED declared) or its dynamic shared memory (the launch's bytes).
inline void cp_async16(void* dst, const void* src) {
  Slot* s = tl_slot;
  check_align16(dst, "cp.async destination");
  check_align16(src, "cp.async source");
  char msg[400];
  if (!within(dst, 16, s->arena, s->static_used) && !within(dst, 16, s->dyn.get(), s->dyn_bytes)) {
    snprintf(msg, sizeof msg,
             "cp.async destination %p outside the block's shared memory (static: %zu bytes at %p, dynamic: %zu at %p): "
             "a GPU faults",
             dst, s->static_used, (void*)s->arena, s->dyn_bytes, (void*)s->dyn.get());
    fatal(msg);
  }
  if (within(src, 1, s->arena, kArenaBytes) || within(src, 1, s->dyn.get(), s->dyn_bytes)) {
    snprintf(msg, sizeof msg, "cp.async source %p in shared memory (it must be global memory)", src);
    fatal(msg);
  }
  unsigned char probe[16];  // the source read now, so that ASan names the issuing line
  std::memcpy(probe, src, 16);
  asm volatile("" : : "m"(probe));
  s->cp[s->cur].push_back(CpCopy{dst, src, s->cp_groups[s->cur]});
}
// SE_CP_ASYNC_COMMIT(): the copies issued since the last commit become a group (possibly empty).
inline void cp_async_commit() { tl_slot->cp_groups[tl_slot->cur]++; }
// SE_CP_ASYNC_WAIT(n): every committed group but the newest n lands now.
inline void cp_async_wait(int n) {
  Slot* s = tl_slot;
  const uint64_t committed = s->cp_groups[s->cur];
  std::vector<CpCopy>& q = s->cp[s->cur];
  size_t kept = 0;
  for (const CpCopy& c : q)
    if (c.group + (uint64_t)std::max(n, 0) < committed) std::memcpy(c.dst, c.src, 16);
    else q[kept++] = c;
  q.resize(kept);
}
// A thread that returns with copies pending (not committed, or not waited for).
inline void check_exit_cp_async(Slot& s, int t) {
  if (s.cp[t].empty()) return;
  size_t uncommitted = 0;
  for (const CpCopy& c : s.cp[t]) uncommitted += c.group == s.cp_groups[t];
  char msg[300];
  snprintf(msg, sizeof msg,
           "cp.async copies pending when thread %d returned: %zu not committed, %zu committed but not waited for "
           "(a wait completes committed groups only)",
           t, uncommitted, s.cp[t].size() - uncommitted);
  fatal(msg);
}

}  // namespace emu
