// The emulated CUDA runtime: found before the toolkit's cuda_runtime.h on the
// emulator's include path, so that csrc/cuda/se_sync.h compiles against it
// unchanged. The declarations (types, enums, the C API's prototypes) are the
// toolkit's cuda_runtime_api.h; this file defines the calls se_sync.h and the
// launch code make, on the device of emu.h, and the C++ templates of the real
// cuda_runtime.h that forward kernels to them. One translation unit per
// program (the C API functions are defined here, not inline).
//
// Modelled: the last error per host thread (cudaGetLastError clears it,
// cudaPeekAtLastError does not; a successful call leaves it), a sticky error
// (emu::set_sticky: every call returns it, nothing clears it), launch
// configuration (threads 0 or > 1024, a grid of 0: cudaErrorInvalidConfiguration),
// dynamic shared memory (above 48 KB less the static without
// cudaFuncAttributeMaxDynamicSharedMemorySize, or above the opt-in limit:
// cudaErrorInvalidValue), cooperative launches (cudaErrorNotSupported when the
// device has none, cudaErrorCooperativeLaunchTooLarge past occupancy x SMs),
// occupancy from the device's SMs, block slots, threads and shared memory, a
// device without a kernel image (cudaErrorNoKernelImageForDevice); cluster
// launches, their occupancy queries and attributes (emu_cluster.h has the rules).
#pragma once

#include "../emu.h"

#include <utility>

inline cudaError_t cudaGetLastError(void) {
  if (emu::sticky()) return emu::sticky();
  const cudaError_t e = emu::tl_last_error;
  emu::tl_last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError(void) {
  if (emu::sticky()) return emu::sticky();
  return emu::tl_last_error;
}
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoKernelImageForDevice: return "cudaErrorNoKernelImageForDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorCooperativeLaunchTooLarge: return "cudaErrorCooperativeLaunchTooLarge";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorInvalidClusterSize: return "cudaErrorInvalidClusterSize";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    default: return "cudaError (other)";
  }
}
inline const char* cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }

// The current device: the index of emu.h's device setting (each distinct one a device).
inline cudaError_t cudaGetDevice(int* device) {
  if (emu::sticky()) return emu::fail(emu::sticky());
  if (!device) return emu::fail(cudaErrorInvalidValue);
  *device = emu::device_index(emu::current_device());
  return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (emu::sticky()) return emu::fail(emu::sticky());
  emu::Device d;
  if (!value) return emu::fail(cudaErrorInvalidValue);
  if (!emu::device_of(device, &d)) return emu::fail(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = d.sms; break;
    case cudaDevAttrCooperativeLaunch: *value = d.coop ? 1 : 0; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = emu::kMaxThreadsPerBlock; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = d.threads_per_sm; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *value = d.blocks_per_sm; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)emu::kDefaultSmemPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)d.smem_optin; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)d.smem_per_sm; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrComputeCapabilityMajor: *value = d.cc / 10; break;
    case cudaDevAttrComputeCapabilityMinor: *value = d.cc % 10; break;
    case cudaDevAttrClusterLaunch: *value = d.cc >= 90 ? 1 : 0; break;
    default: return emu::fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

inline cudaError_t cudaDeviceSynchronize(void) { return emu::fail(emu::sticky()); }  // launches are synchronous
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu::fail(emu::sticky()); }

// cudaFuncAttributeMaxDynamicSharedMemorySize and
// cudaFuncAttributeNonPortableClusterSizeAllowed (0 or 1), per device; the
// others: accepted, no effect. Static shared memory is known once the kernel's
// first block has run (0 before).
inline cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (emu::sticky()) return emu::fail(emu::sticky());
  const emu::Device d = emu::current_device();
  if (!d.image) return emu::fail(cudaErrorNoKernelImageForDevice);
  if (!func) return emu::fail(cudaErrorInvalidDeviceFunction);
  emu::KernelInfo* ki = emu::kernel_info(func);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || ki->static_smem.load() + (size_t)value > d.smem_optin) return emu::fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> g(ki->m);
    ki->max_dyn[emu::device_index(d)] = value;
  } else if (attr == cudaFuncAttributeNonPortableClusterSizeAllowed) {
    if (value != 0 && value != 1) return emu::fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> g(ki->m);
    ki->nonportable[emu::device_index(d)] = value;
  }
  return cudaSuccess;
}

inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void* func) {
  if (emu::sticky()) return emu::fail(emu::sticky());
  const emu::Device d = emu::current_device();
  if (!d.image) return emu::fail(cudaErrorNoKernelImageForDevice);
  if (!a || !func) return emu::fail(cudaErrorInvalidValue);
  emu::KernelInfo* ki = emu::kernel_info(func);
  std::memset(a, 0, sizeof *a);
  a->sharedSizeBytes = ki->static_smem.load();
  a->maxThreadsPerBlock = emu::kMaxThreadsPerBlock;  // __launch_bounds__ is not seen here
  a->numRegs = 32;
  a->ptxVersion = d.binary;
  a->binaryVersion = d.binary;  // emu::g_binary_version
  a->maxDynamicSharedSizeBytes = (int)emu::max_dynamic_smem(ki, emu::device_index(d));
  a->nonPortableClusterSizeAllowed = emu::nonportable_cluster(ki, emu::device_index(d)) ? 1 : 0;
  return cudaSuccess;
}

inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num, const void* func, int threads,
                                                                 size_t smem) {
  if (emu::sticky()) return emu::fail(emu::sticky());
  const emu::Device d = emu::current_device();
  if (!d.image) return emu::fail(cudaErrorNoKernelImageForDevice);
  if (!num || !func || threads < 1) return emu::fail(cudaErrorInvalidValue);
  emu::KernelInfo* ki = emu::kernel_info(func);
  // A block the kernel may not launch with (above its dynamic shared memory
  // limit, or more than 1024 threads) fits 0 times.
  *num = smem > emu::max_dynamic_smem(ki, emu::device_index(d)) ? 0 : emu::occupancy(d, ki, threads, smem);
  return cudaSuccess;
}

// Cluster occupancy (sm_90+; cudaErrorNotSupported before): the config's
// threads and dynamic shared memory give the occupancy per SM (0 above the
// kernel's dynamic limit); a GPC holds that times its SMs.
// MaxPotentialClusterSize: the largest cluster, up to 8 (16 with the kernel's
// non-portable opt-in), of which one fits the largest GPC (0: none).
// MaxActiveClusters: clusters of the config's cluster dimension (an attribute
// it must have: else, or above what the kernel may launch,
// cudaErrorInvalidClusterSize) that fit at once over all GPCs.
inline cudaError_t emu_cluster_occupancy(const void* func, const cudaLaunchConfig_t* cfg, emu::Device* d,
                                         emu::KernelInfo** ki, int* occ) {
  if (emu::sticky()) return emu::fail(emu::sticky());
  *d = emu::current_device();
  if (!d->image) return emu::fail(cudaErrorNoKernelImageForDevice);
  if (!func || !cfg) return emu::fail(cudaErrorInvalidValue);
  if (d->cc < 90) return emu::fail(cudaErrorNotSupported);
  *ki = emu::kernel_info(func);
  const uint64_t threads = (uint64_t)cfg->blockDim.x * cfg->blockDim.y * cfg->blockDim.z;
  if (threads == 0 || threads > (uint64_t)emu::kMaxThreadsPerBlock) return emu::fail(cudaErrorInvalidValue);
  *occ = cfg->dynamicSmemBytes > emu::max_dynamic_smem(*ki, emu::device_index(*d))
             ? 0
             : emu::occupancy(*d, *ki, (int)threads, cfg->dynamicSmemBytes);
  return cudaSuccess;
}
inline cudaError_t cudaOccupancyMaxPotentialClusterSize(int* size, const void* func, const cudaLaunchConfig_t* cfg) {
  emu::Device d;
  emu::KernelInfo* ki;
  int occ = 0;
  if (!size) return emu::fail(cudaErrorInvalidValue);
  const cudaError_t e = emu_cluster_occupancy(func, cfg, &d, &ki, &occ);
  if (e != cudaSuccess) return e;
  *size = std::min(emu::cluster_limit(ki, emu::device_index(d)), emu::gpc_blocks(d, occ));
  return cudaSuccess;
}
inline cudaError_t cudaOccupancyMaxActiveClusters(int* num, const void* func, const cudaLaunchConfig_t* cfg) {
  emu::Device d;
  emu::KernelInfo* ki;
  int occ = 0;
  if (!num) return emu::fail(cudaErrorInvalidValue);
  const cudaError_t e = emu_cluster_occupancy(func, cfg, &d, &ki, &occ);
  if (e != cudaSuccess) return e;
  const cudaLaunchAttribute* cl = nullptr;
  for (unsigned i = 0; i < cfg->numAttrs; ++i)
    if (cfg->attrs[i].id == cudaLaunchAttributeClusterDimension) cl = &cfg->attrs[i];
  if (!cl) return emu::fail(cudaErrorInvalidClusterSize);
  const auto& c = cl->val.clusterDim;
  if (c.x == 0 || c.y != 1 || c.z != 1 || (int)c.x > emu::cluster_limit(ki, emu::device_index(d)))
    return emu::fail(cudaErrorInvalidClusterSize);
  *num = emu::active_clusters(d, occ, (int)c.x);
  return cudaSuccess;
}

// The C++ forms of the real cuda_runtime.h (a kernel pointer instead of const void*).
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, T* entry) {
  return cudaFuncGetAttributes(a, reinterpret_cast<const void*>(entry));
}
template <class T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num, T func, int threads, size_t smem) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(num, reinterpret_cast<const void*>(func), threads, smem);
}
template <class T>
inline cudaError_t cudaOccupancyMaxPotentialClusterSize(int* size, T func, const cudaLaunchConfig_t* cfg) {
  return cudaOccupancyMaxPotentialClusterSize(size, reinterpret_cast<const void*>(func), cfg);
}
template <class T>
inline cudaError_t cudaOccupancyMaxActiveClusters(int* num, T func, const cudaLaunchConfig_t* cfg) {
  return cudaOccupancyMaxActiveClusters(num, reinterpret_cast<const void*>(func), cfg);
}

// cudaLaunchKernelEx: the config's grid, block, dynamic shared memory and
// attributes (cudaLaunchAttributeCooperative, cudaLaunchAttributeClusterDimension;
// others ignored); the stream is ignored (launches run to completion before
// the call returns).
template <typename... ExpTypes, typename... ActTypes>
inline cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(ExpTypes...),
                                      ActTypes&&... args) {
  if (!config || !kernel) return emu::fail(cudaErrorInvalidValue);
  bool coop = false;
  dim3 cl;
  const dim3* cluster = nullptr;
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    const cudaLaunchAttribute& a = config->attrs[i];
    if (a.id == cudaLaunchAttributeCooperative) coop = a.val.cooperative != 0;
    if (a.id == cudaLaunchAttributeClusterDimension) {
      cl = dim3(a.val.clusterDim.x, a.val.clusterDim.y, a.val.clusterDim.z);
      cluster = &cl;
    }
  }
  // The kernel's parameters, copied at the launch as the driver does.
  auto params = std::tuple<std::decay_t<ExpTypes>...>(std::forward<ActTypes>(args)...);
  const std::function<void()> fn = [&] { std::apply(kernel, params); };
  return emu::launch_kernel(reinterpret_cast<const void*>(kernel), config->gridDim, config->blockDim,
                            config->dynamicSmemBytes, coop, fn, cluster);
}

namespace emu {
// kernel<<<grid, block, smem, stream>>>(args...): se_sync.h's SE_LAUNCH_CHEVRON
// in the emulated build (include/cuda/se_sync.h). The launch error is only
// recorded (cudaGetLastError / cudaPeekAtLastError), as <<<>>> returns nothing.
template <typename... ExpTypes>
struct Chevron {
  void (*kernel)(ExpTypes...);
  dim3 grid, block;
  size_t smem;
  template <typename... ActTypes>
  void operator()(ActTypes&&... args) const {
    auto params = std::tuple<std::decay_t<ExpTypes>...>(std::forward<ActTypes>(args)...);
    const std::function<void()> fn = [&] { std::apply(kernel, params); };
    (void)launch_kernel(reinterpret_cast<const void*>(kernel), grid, block, smem, false, fn);
  }
};
template <typename... ExpTypes>
Chevron<ExpTypes...> chevron(void (*kernel)(ExpTypes...), dim3 grid, dim3 block, size_t smem = 0,
                             cudaStream_t = nullptr) {
  return Chevron<ExpTypes...>{kernel, grid, block, smem};
}
}  // namespace emu
