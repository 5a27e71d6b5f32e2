#!/usr/bin/env bash
# The GPU's bits against the emulator's: builds tests/cuda_emu/gpu_digest.cu
# with the kernels of csrc/cuda/ (nvcc, the extension's device flags:
# --fmad=false, -O3, the torch extension's -D__CUDA_NO_HALF*; the real
# csrc/cuda/se_sync.h), runs the quick cases on each path and compares each
# digest with tests/cuda_emu/digests/quick.txt (compare_digests.py).
#
#   bash tests/cuda_emu/gpu_digest.sh --build [BINARY]   # build only
#   bash tests/cuda_emu/gpu_digest.sh OUTDIR [BINARY]    # build if BINARY is missing, run, compare
#   bash tests/cuda_emu/gpu_digest.sh --object OBJ       # compile gpu_digest.cu alone (CPU test)
#
# BINARY defaults to build/gpu_digest/gpu_digest; the architectures come from
# TORCH_CUDA_ARCH_LIST (default 9.0: sm_90; "X.Y+PTX" adds PTX), the build's
# parallel jobs from MAX_JOBS (default: the CPU count), nvcc from NVCC,
# CUDA_HOME, PATH or /usr/local/cuda. A run writes OUTDIR/gpu_digests.txt
# (case, path requested:taken forward/backward, digest), OUTDIR/gpu_vs_emu.txt
# (per case and path: equal or DIFFER with both digests; MISSING, EXTRA) and
# ends with the line "gpu vs emulator: N equal, M differ (of K)"; exit status
# 0 iff M == 0. The driver's run is bounded by GPU_DIGEST_TIMEOUT (seconds,
# default 120); without a usable GPU it fails at once saying so.
set -u
ORIG="$PWD"
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$ORIG/$1" ;; esac; }
cd "$(dirname "$0")/../.." || exit 1
ROOT="$PWD"
PY="${PYTHON:-python3}"

usage() { sed -n '8,10p' "$0" | sed 's/^# *//' >&2; exit 64; }
[ $# -ge 1 ] || usage
case "$1" in
  --build) MODE=build ;;
  --object) MODE=object; [ $# -ge 2 ] || usage ;;
  -*) usage ;;
  *) MODE=run; OUTDIR="$(abspath "$1")" ;;
esac
BIN="$(abspath "${2:-$ROOT/build/gpu_digest/gpu_digest}")"

find_nvcc() {
  if [ -n "${NVCC:-}" ]; then echo "$NVCC"; return; fi
  if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then echo "$CUDA_HOME/bin/nvcc"; return; fi
  if command -v nvcc >/dev/null 2>&1; then command -v nvcc; return; fi
  [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc
}

build() {
  local nvcc; nvcc="$(find_nvcc)"
  if [ -z "$nvcc" ]; then echo "gpu_digest.sh: no nvcc (set NVCC or CUDA_HOME)" >&2; return 1; fi
  local gencode=() a num
  for a in $(echo "${TORCH_CUDA_ARCH_LIST:-9.0}" | tr ';,' '  '); do
    num="${a%+PTX}"
    if ! [[ "$num" =~ ^[0-9]+\.[0-9]+[a-z]?$ ]]; then
      echo "gpu_digest.sh: cannot read architecture '$a' of TORCH_CUDA_ARCH_LIST" >&2; return 1
    fi
    num="${num/./}"
    gencode+=(-gencode "arch=compute_${num%[a-z]},code=sm_$num")
    [ "$a" != "${a%+PTX}" ] && gencode+=(-gencode "arch=compute_${num%[a-z]},code=compute_${num%[a-z]}")
  done
  # setup.py's nvcc flags for the extension's device code, torch's CUDAExtension
  # defines, and no host-side contraction either (the host hashes the outputs).
  local flags=(-std=c++17 -O3 -lineinfo --expt-relaxed-constexpr --fmad=false
               -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__
               -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__
               -DSE_FUSED_WITH_CUDA=1 -I"$ROOT/csrc" -Xcompiler -ffp-contract=off "${gencode[@]}")
  if [ $MODE = object ]; then
    mkdir -p "$(dirname "$BIN")" && "$nvcc" "${flags[@]}" -c "$ROOT/tests/cuda_emu/gpu_digest.cu" -o "$BIN"
    return $?
  fi
  local obj; obj="$(dirname "$BIN")/obj"
  mkdir -p "$obj" || return 1
  local srcs=("$ROOT"/csrc/cuda/se_forward_{f32,f64,f16,bf16}.cu "$ROOT"/csrc/cuda/se_backward_{f32,f64,f16,bf16}.cu
              "$ROOT/tests/cuda_emu/gpu_digest.cu")
  local jobs="${MAX_JOBS:-$(nproc 2>/dev/null || echo 4)}" s pids=() objs=() rc=0
  echo "gpu_digest.sh: building $BIN (${gencode[*]}, $jobs jobs)" >&2
  for s in "${srcs[@]}"; do
    local o="$obj/$(basename "${s%.cu}").o"
    objs+=("$o")
    "$nvcc" "${flags[@]}" -c "$s" -o "$o" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}" || rc=1; pids=("${pids[@]:1}"); fi
  done
  for s in "${pids[@]}"; do wait "$s" || rc=1; done
  if [ $rc != 0 ]; then echo "gpu_digest.sh: compiling failed" >&2; return 1; fi
  "$nvcc" "${gencode[@]}" "${objs[@]}" -o "$BIN" || { echo "gpu_digest.sh: linking failed" >&2; return 1; }
}

if [ $MODE != run ]; then build; exit $?; fi
if [ ! -x "$BIN" ]; then build || exit 1; fi
mkdir -p "$OUTDIR" || exit 1
if command -v nvidia-smi >/dev/null 2>&1 && ! timeout 20 nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_digest.sh: nvidia-smi sees no GPU" >&2
fi
timeout -k 5 "${GPU_DIGEST_TIMEOUT:-120}" "$BIN" quick > "$OUTDIR/gpu_digests.txt" 2> "$OUTDIR/gpu_digest.err"
rc=$?
cat "$OUTDIR/gpu_digest.err" >&2
if [ $rc = 3 ]; then
  echo "gpu vs emulator: not compared (no usable CUDA device)"
  exit 3
fi
[ $rc = 124 ] || [ $rc = 137 ] && echo "gpu_digest.sh: the driver did not finish in ${GPU_DIGEST_TIMEOUT:-120} s" >&2
[ $rc != 0 ] && echo "gpu_digest.sh: the driver exited with status $rc (its missing cases count as differing)" >&2
summary="$("$PY" "$ROOT/tests/cuda_emu/compare_digests.py" gpu "$OUTDIR/gpu_digests.txt" \
  --out "$OUTDIR/gpu_vs_emu.txt")"
crc=$?
grep -v '^equal ' "$OUTDIR/gpu_vs_emu.txt" 2>/dev/null | head -60 >&2
echo "${summary:-gpu vs emulator: not compared (compare_digests.py failed, status $crc)}"
[ $crc = 0 ] && [ $rc = 0 ]
