#!/usr/bin/env bash
# One device run for a session that has a GPU (see DEVELOPERS.md / the device tool):
# build with nvcc, run the tests on CUDA, the compute-sanitizer script, and bench.py,
# logging each step to $OUT. The step limits add up to under 10 minutes (one call); each has
# its own time limit so a hang in one (e.g. a spin-wait under racecheck) does not
# eat the whole call. Usage on the device machine:
#   OUT=/some/dir bash benchmarks/gpu_check.sh
set -u
OUT="${OUT:-/tmp/se_fused_gpu}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" SE_FUSED_CUDA=1
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc $(( $(date +%s) - t0 ))s" | tee -a "$OUT/summary.txt"
  tail -n 3 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
step build 180 env SE_FUSED_PTXAS_VERBOSE=1 python3 -m pip install --no-build-isolation --no-deps -v -e .
step tests 100 python3 -m pytest -q -x tests -k "cuda and not emulation" -p no:cacheprovider
step sanitize_quick 40 python3 tests/cuda_sanitize.py
if command -v compute-sanitizer >/dev/null 2>&1; then
  step memcheck 60 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 python3 tests/cuda_sanitize.py
  step racecheck 60 compute-sanitizer --tool racecheck --error-exitcode 1 python3 tests/cuda_sanitize.py
fi
step bench 150 python3 benchmarks/bench.py --quick --graphs --out "$OUT/bench.json"
