#!/usr/bin/env bash
# One device call (under 10 minutes) for a session that has a GPU: build with
# nvcc, the sanitizer script (large cases; both paths, compared bit for bit),
# the CUDA tests (no torch.compile cases, per-test timeouts, no -x), bench.py,
# and compute-sanitizer memcheck only after a 15-second probe shows it works.
# At most 8 files come back in $OUT:
#   summary.txt  env, GPU, each step's rc and seconds, the paths' digest check
#   build.log    pip/nvcc output with ptxas registers and spills per kernel
#   sanitize.log tests/cuda_sanitize.py --large (twopass), then cooperative, then onepass
#   tests.log    pytest of the CUDA tests
#   bench.log    benchmarks/bench.py --quick --no-compile
#   memcheck.log compute-sanitizer (probe, then memcheck on the quick cases)
#
# Usage on the device machine, from the repository root:
#   OUT=/some/dir bash benchmarks/gpu_check.sh
# On a clean machine (python3 3.12, torch 2.11.0+cu130, nvcc on PATH or in
# /usr/local/cuda), without network access: everything needed is torch,
# numpy, pytest and pytest-timeout; the script says which one is missing
# and stops (SE_FUSED_GPU_CHECK_PIP=1 lets it try `pip install` for them).
set -u
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" SE_FUSED_CUDA=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${CUDA_HOME:-}" ] && ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda PATH="/usr/local/cuda/bin:$PATH"
fi
S="$OUT/summary.txt"
: > "$S"
T0=$(date +%s)
step() {  # step NAME LOG SECONDS COMMAND...  (appends to LOG; never stops the script)
  local name=$1 log=$2 limit=$3; shift 3
  local t0=$(date +%s)
  echo "=== $name: $*" >> "$log"
  timeout -k 5 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  echo "$name: rc=$rc $(( $(date +%s) - t0 ))s (t=$(( $(date +%s) - T0 ))s)" | tee -a "$S"
  return $rc
}
{
  echo "date: $(date -u)"; echo "git: $(git rev-parse HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv 2>&1
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1
  command -v nvcc && nvcc --version | tail -1
} >> "$S"
missing=$("$PY" - <<'PYEOF'
import importlib.util as u
print(" ".join(m for m in ("torch", "numpy", "pytest", "pytest_timeout") if u.find_spec(m) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "missing python modules: $missing" | tee -a "$S"
  if [ "${SE_FUSED_GPU_CHECK_PIP:-0}" = 1 ]; then
    "$PY" -m pip install --quiet $(echo "$missing" | sed 's/pytest_timeout/pytest-timeout/; s/torch/torch==2.11.0/') >> "$S" 2>&1
  else
    exit 1
  fi
fi

# 1. Build (about 2 minutes at 16 jobs for one architecture).
step build "$OUT/build.log" 200 env SE_FUSED_PTXAS_VERBOSE=1 "$PY" setup.py build_ext --inplace ||
  { echo "build failed: see build.log" | tee -a "$S"; exit 1; }
grep -E "spill stores" "$OUT/build.log" | sort | uniq -c >> "$S"

# 2. The sanitizer script with its large cases on the default path, then the
#    cooperative path, then the one-pass path (where its tiles fit and the
#    call is one wave; else it runs as cooperative); their per-case digests
#    must agree (same bits).
step sanitize_twopass "$OUT/sanitize.log" 90 env SE_FUSED_CUDA_PATH=twopass \
  "$PY" tests/cuda_sanitize.py --large --digest "$OUT/.d_twopass"
for path in cooperative onepass; do
  step "sanitize_$path" "$OUT/sanitize.log" 90 env SE_FUSED_CUDA_PATH=$path \
    "$PY" tests/cuda_sanitize.py --large --digest "$OUT/.d_$path"
  if cmp -s "$OUT/.d_twopass" "$OUT/.d_$path"; then
    echo "paths: twopass and $path digests agree ($(wc -l < "$OUT/.d_twopass") cases)" | tee -a "$S"
  else
    echo "paths: twopass and $path DIGESTS DIFFER" | tee -a "$S"
    diff "$OUT/.d_twopass" "$OUT/.d_$path" >> "$OUT/sanitize.log" 2>&1
  fi
done
rm -f "$OUT/.d_twopass" "$OUT/.d_cooperative" "$OUT/.d_onepass"

# 3. The CUDA tests: no torch.compile cases, 60 s per test, all of them run.
step tests "$OUT/tests.log" 150 "$PY" -m pytest -q tests -k "cuda and not compile and not emulation" \
  --timeout 60 -p no:cacheprovider -rfE

# 4. The benchmark (batch-1 and 7x7 rows first is bench.py's business).
step bench "$OUT/bench.log" 120 "$PY" benchmarks/bench.py --quick --no-compile

# 5. compute-sanitizer: a 15-second probe first; memcheck only if it works.
if command -v compute-sanitizer >/dev/null 2>&1; then
  if step probe "$OUT/memcheck.log" 15 compute-sanitizer --tool memcheck --error-exitcode 1 \
       "$PY" -c "import torch; torch.ones(4, device='cuda').sum().item()"; then
    left=$(( 570 - ($(date +%s) - T0) ))
    if [ "$left" -gt 30 ]; then
      step memcheck "$OUT/memcheck.log" "$left" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
        compute-sanitizer --tool memcheck --error-exitcode 1 "$PY" tests/cuda_sanitize.py
    else
      echo "memcheck: skipped ($left s left)" | tee -a "$S"
    fi
  else
    echo "memcheck: skipped (probe failed)" | tee -a "$S"
  fi
else
  echo "memcheck: no compute-sanitizer on PATH" | tee -a "$S"
fi
echo "total: $(( $(date +%s) - T0 ))s" | tee -a "$S"
