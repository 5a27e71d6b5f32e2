#!/usr/bin/env bash
# One device call (under 10 minutes) that tells the truth about a GPU at once:
# the build, `python -m se_fused` (self-check on the CPU and on every GPU, each
# CUDA path), the GPU's bits against the emulator's stored digests (same
# source, same arithmetic, --fmad=false), the sanitizer script on each forced
# path with the path every call took asserted, compute-sanitizer memcheck,
# racecheck and synccheck on each path (after a quick probe), then the CUDA
# tests and the benchmark while time is left. At most 8 files come back in $OUT:
#   summary.txt     env, GPU, each step's rc and seconds, the one-line verdicts
#   build.log       pip/nvcc output with ptxas registers and spills per kernel
#   selfcheck.log   python -m se_fused
#   digest.log      GPU vs emulator digests, case by case (tests/cuda_emu/gpu_digest.sh)
#   sanitize.log    tests/cuda_sanitize.py --large on twopass, cooperative, onepass
#   sanitizers.log  compute-sanitizer: probe, then memcheck, racecheck, synccheck per path
#   tests.log       pytest of the CUDA tests
#   bench.log       benchmarks/bench.py --quick --no-compile
#
# Usage on the device machine, from the repository root:
#   OUT=/some/dir bash benchmarks/gpu_check.sh
# GPU_CHECK_STEPS (default: all, in this order) picks steps by name:
#   build selfcheck digest sanitize sanitizers tests bench
# On a clean machine (python3 3.12, torch 2.11.0+cu130, nvcc on PATH or in
# /usr/local/cuda), without network access: everything needed is torch,
# numpy, pytest and pytest-timeout; the script says which one is missing
# and stops (SE_FUSED_GPU_CHECK_PIP=1 lets it try `pip install` for them).
set -u
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
STEPS=" ${GPU_CHECK_STEPS:-build selfcheck digest sanitize sanitizers tests bench} "
BUDGET="${GPU_CHECK_SECONDS:-570}"  # the whole script, seconds
export MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" SE_FUSED_CUDA=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${CUDA_HOME:-}" ] && ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda PATH="/usr/local/cuda/bin:$PATH"
fi
S="$OUT/summary.txt"
: > "$S"
T0=$(date +%s)
want() { [[ "$STEPS" == *" $1 "* ]]; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
step() {  # step NAME LOG SECONDS COMMAND...  (appends to LOG; never stops the script)
  local name=$1 log=$2 limit=$3; shift 3
  local room=$(( $(left) - 5 ))
  [ "$limit" -gt "$room" ] && limit=$room
  if [ "$limit" -lt 10 ]; then echo "$name: skipped (time)" | tee -a "$S"; return 124; fi
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
need="torch numpy"; want tests && need="$need pytest pytest_timeout"
missing=$("$PY" - $need <<'PYEOF'
import importlib.util as u, sys
print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))
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

# 1. Build (about 2 minutes at 16 jobs for one architecture); the GPU digest
#    driver (step 3) builds beside it.
DIGEST_BIN=build/gpu_digest/gpu_digest
if want digest; then
  timeout 300 bash tests/cuda_emu/gpu_digest.sh --build "$DIGEST_BIN" > "$OUT/.digest_build.log" 2>&1 &
  DIGEST_PID=$!
fi
if want build; then
  step build "$OUT/build.log" 240 env SE_FUSED_PTXAS_VERBOSE=1 "$PY" setup.py build_ext --inplace ||
    { echo "build failed: see build.log" | tee -a "$S"; exit 1; }
  grep -E "spill stores" "$OUT/build.log" | sort | uniq -c >> "$S"
fi

# 2. What a user runs first: versions, devices, Auto's picks, the self-check per path.
if want selfcheck; then
  step selfcheck "$OUT/selfcheck.log" 90 "$PY" -m se_fused
  grep -E "^(FAIL|self-check:)|NOT SUPPORTED" "$OUT/selfcheck.log" | head -20 >> "$S"
fi

# 3. The GPU's bits against the emulator's stored digests, case by case.
if want digest; then
  wait "$DIGEST_PID"; echo "digest driver build: rc=$?" | tee -a "$S"
  cat "$OUT/.digest_build.log" >> "$OUT/digest.log"; rm -f "$OUT/.digest_build.log"
  step digest "$OUT/digest.log" 90 bash tests/cuda_emu/gpu_digest.sh "$OUT/.digest" "$DIGEST_BIN"
  cat "$OUT/.digest/gpu_vs_emu.txt" >> "$OUT/digest.log" 2>/dev/null
  grep -E "^gpu vs emulator" "$OUT/digest.log" | tail -3 >> "$S"
  rm -rf "$OUT/.digest"
fi

# 4. The sanitizer script's large set on each forced path, asserting the path
#    each call took; the paths' per-case digests must agree (same bits).
if want sanitize; then
  for path in twopass cooperative onepass; do
    step "sanitize_$path" "$OUT/sanitize.log" 60 env SE_FUSED_CUDA_PATH=$path \
      "$PY" tests/cuda_sanitize.py --large --expect-path $path --digest "$OUT/.d_$path"
    grep -E "^paths:" "$OUT/sanitize.log" | tail -1 | sed "s/^/$path: /" >> "$S"
    [ $path = twopass ] && continue
    if cmp -s "$OUT/.d_twopass" "$OUT/.d_$path"; then
      echo "paths: twopass and $path digests agree ($(wc -l < "$OUT/.d_twopass") cases)" | tee -a "$S"
    else
      echo "paths: twopass and $path DIGESTS DIFFER (or a run failed)" | tee -a "$S"
      diff "$OUT/.d_twopass" "$OUT/.d_$path" >> "$OUT/sanitize.log" 2>&1
    fi
  done
  rm -f "$OUT"/.d_*
fi

# 5. compute-sanitizer on each path: a probe first (it refused some machines),
#    memcheck with every tensor and workspace region its own allocation, then
#    racecheck and synccheck on four cases.
if want sanitizers; then
  L="$OUT/sanitizers.log"
  if ! command -v compute-sanitizer >/dev/null 2>&1; then
    echo "sanitizers: no compute-sanitizer on PATH" | tee -a "$S"
  elif step probe "$L" 30 compute-sanitizer --tool memcheck --error-exitcode 1 \
         "$PY" -c "import torch; torch.ones(4, device='cuda').sum().item()"; then
    for path in twopass cooperative onepass; do
      step "memcheck_$path" "$L" 60 env SE_FUSED_CUDA_PATH=$path PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
        SE_FUSED_CUDA_SEPARATE_WORKSPACE=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
        "$PY" tests/cuda_sanitize.py --few --expect-path $path
    done
    for tool in racecheck synccheck; do
      for path in twopass cooperative onepass; do
        step "${tool}_$path" "$L" 45 env SE_FUSED_CUDA_PATH=$path compute-sanitizer --tool $tool \
          --error-exitcode 1 "$PY" tests/cuda_sanitize.py --few --expect-path $path
      done
    done
  else
    echo "sanitizers: skipped (the probe failed: see sanitizers.log)" | tee -a "$S"
  fi
fi

# 6. The CUDA tests: no torch.compile cases, 60 s per test, all of them run.
if want tests; then
  step tests "$OUT/tests.log" 150 "$PY" -m pytest -q tests -k "cuda and not compile and not emulation" \
    --timeout 60 -p no:cacheprovider -rfE
  tail -1 "$OUT/tests.log" >> "$S"
fi

# 7. The benchmark (batch-1 and 7x7 rows first is bench.py's business).
if want bench; then
  step bench "$OUT/bench.log" 150 "$PY" benchmarks/bench.py --quick --no-compile
fi
echo "total: $(( $(date +%s) - T0 ))s" | tee -a "$S"
