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
// device without a kernel image (cudaErrorNoKernelImageForDevice).
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
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: return emu::fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

inline cudaError_t cudaDeviceSynchronize(void) { return emu::fail(emu::sticky()); }  // launches are synchronous
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu::fail(emu::sticky()); }

// cudaFuncAttributeMaxDynamicSharedMemorySize only (the others: accepted, no effect).
// Static shared memory is known once the kernel's first block has run (0 before).
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
  a->ptxVersion = 90;
  a->binaryVersion = 90;
  a->maxDynamicSharedSizeBytes = (int)emu::max_dynamic_smem(ki, emu::device_index(d));
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

// cudaLaunchKernelEx: the config's grid, block, dynamic shared memory and
// attributes (cudaLaunchAttributeCooperative; others ignored); the stream is
// ignored (launches run to completion before the call returns).
template <typename... ExpTypes, typename... ActTypes>
inline cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(ExpTypes...),
                                      ActTypes&&... args) {
  if (!config || !kernel) return emu::fail(cudaErrorInvalidValue);
  bool coop = false;
  for (unsigned i = 0; i < config->numAttrs; ++i)
    if (config->attrs[i].id == cudaLaunchAttributeCooperative) coop = config->attrs[i].val.cooperative != 0;
  // The kernel's parameters, copied at the launch as the driver does.
  auto params = std::tuple<std::decay_t<ExpTypes>...>(std::forward<ActTypes>(args)...);
  const std::function<void()> fn = [&] { std::apply(kernel, params); };
  return emu::launch_kernel(reinterpret_cast<const void*>(kernel), config->gridDim, config->blockDim,
                            config->dynamicSmemBytes, coop, fn);
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
