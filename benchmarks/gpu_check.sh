#!/usr/bin/env bash
# One device call (under 10 minutes) that tells the truth about a GPU at once:
# the build, `python -m se_fused` (self-check on the CPU and on every GPU, each
# CUDA path), the GPU's bits against the emulator's stored digests (same
# source, same arithmetic, --fmad=false), the sanitizer script on each forced
# path with the path every call took asserted, compute-sanitizer memcheck,
# racecheck and synccheck on each path (after a quick probe), then the CUDA
# tests and the benchmark while time is left. The paths: twopass, onepass,
# and cluster where the build records it (se_fused._cuda.cuda_path_counts
# names it; GPU_CHECK_PATHS overrides the list). Each path runs in a process of
# its own (the path is read once per process), the paths of one step at once
# (GPU_CHECK_PARALLEL=0: one after another), so a step costs about one path's
# time. At most 8 files come back in $OUT:
#   summary.txt     env, GPU, each step's rc and seconds, the one-line verdicts
#   build.log       pip/nvcc output with ptxas registers and spills per kernel
#   selfcheck.log   python -m se_fused
#   digest.log      GPU vs emulator digests, case by case (tests/cuda_emu/gpu_digest.sh)
#   sanitize.log    tests/cuda_sanitize.py --large on each path
#   sanitizers.log  compute-sanitizer: probe, then memcheck, racecheck, synccheck per path
#   tests.log       pytest of the CUDA tests
#   bench.log       benchmarks/bench.py --quick --paths twopass,cluster,onepass: fused per
#                   path, eager and compile, each in a process of its own, the model's
#                   prediction beside each time, the rule Auto should adopt
#
# Time: one device call may run 10 minutes and a session has about 15 in all
# (the machine's start included), so the whole script stops at GPU_CHECK_SECONDS
# (570): every step's limit is cut to what is left, and a step with under 10 s
# left is skipped ("skipped (time)" in summary.txt). The limits below add up to
# more than that on purpose; the order is the priority. For the cluster path
# alone: GPU_CHECK_STEPS="build sanitize sanitizers bench".
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
PARALLEL="${GPU_CHECK_PARALLEL:-1}"
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
# pstep NAME LOG SECONDS COMMAND...: COMMAND once per path of $PATHS with
# SE_FUSED_CUDA_PATH set (@P@ in COMMAND becomes the path), all at once under one
# limit, a summary line per path, the logs appended in path order; with
# PARALLEL=0 one after another (step NAME_path each). Returns how many failed.
pstep() {
  local name=$1 log=$2 limit=$3; shift 3
  local p bad=0
  if [ "$PARALLEL" = 0 ]; then
    for p in $PATHS; do
      step "${name}_$p" "$log" "$limit" env SE_FUSED_CUDA_PATH="$p" "${@//@P@/$p}" || bad=$((bad + 1))
    done
    return $bad
  fi
  local room=$(( $(left) - 5 ))
  [ "$limit" -gt "$room" ] && limit=$room
  if [ "$limit" -lt 10 ]; then echo "$name: skipped (time)" | tee -a "$S"; return 124; fi
  local t0=$(date +%s) pids=() rc
  for p in $PATHS; do
    { echo "=== ${name}_$p: SE_FUSED_CUDA_PATH=$p ${*//@P@/$p}"
      timeout -k 5 "$limit" env SE_FUSED_CUDA_PATH="$p" OMP_NUM_THREADS=4 "${@//@P@/$p}"; } \
      > "$OUT/.p_$p.log" 2>&1 &
    pids+=($!)
  done
  set -- $PATHS
  for pid in "${pids[@]}"; do
    wait "$pid"; rc=$?
    echo "${name}_$1: rc=$rc" | tee -a "$S"
    [ "$rc" = 0 ] || bad=$((bad + 1))
    shift
  done
  for p in $PATHS; do cat "$OUT/.p_$p.log" >> "$log"; rm -f "$OUT/.p_$p.log"; done
  echo "$name: $bad failed, $(( $(date +%s) - t0 ))s (t=$(( $(date +%s) - T0 ))s)" | tee -a "$S"
  return $bad
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

# The CUDA paths this build records (cluster only once its kernels are in).
PATHS="${GPU_CHECK_PATHS:-}"
if [ -z "$PATHS" ]; then
  PATHS="twopass onepass"
  known=$("$PY" -c "import se_fused._cuda as c; print(' '.join(c.cuda_path_counts()['forward']))" 2>/dev/null)
  if [[ " $known " == *" cluster "* ]]; then
    PATHS="$PATHS cluster"
  else
    echo "cluster: this build records no cluster path (paths: ${known:-unknown}); its steps are left out" | tee -a "$S"
  fi
fi
echo "paths: $PATHS" >> "$S"

# 2. What a user runs first: versions, devices, Auto's picks, the self-check per path
#    (python -m se_fused checks the paths it lists; a path it does not list yet, here).
if want selfcheck; then
  step selfcheck "$OUT/selfcheck.log" 90 "$PY" -m se_fused
  listed=$("$PY" -c "from se_fused import _diagnose as d; print(' '.join(d.CUDA_PATHS))" 2>/dev/null)
  for path in $PATHS; do
    [[ " $listed " == *" $path "* ]] || step "selfcheck_$path" "$OUT/selfcheck.log" 60 \
      env SE_FUSED_CUDA_PATH=$path "$PY" -m se_fused --check cuda
  done
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
  pstep sanitize "$OUT/sanitize.log" 90 "$PY" tests/cuda_sanitize.py --large --expect-path @P@ \
    --digest "$OUT/.d_@P@"
  for path in $PATHS; do
    grep -E "^(paths:|=== sanitize_)" "$OUT/sanitize.log" | grep -A1 "=== sanitize_$path:" | \
      grep "^paths:" | sed "s/^/$path: /" >> "$S"
    [ $path = twopass ] && continue
    if [ ! -s "$OUT/.d_twopass" ] && [ ! -s "$OUT/.d_$path" ]; then
      echo "paths: no digests of twopass and $path (no GPU, or both runs failed)" | tee -a "$S"
    elif cmp -s "$OUT/.d_twopass" "$OUT/.d_$path"; then
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
  san_par=skip
  if ! command -v compute-sanitizer >/dev/null 2>&1; then
    echo "sanitizers: no compute-sanitizer on PATH" | tee -a "$S"
  else
    # Two probes at once: whether the sanitizer runs beside itself (else one path at a time).
    probe='compute-sanitizer --tool memcheck --error-exitcode 1 "$0" -c "import torch; torch.ones(4, device=\"cuda\").sum().item()"'
    san_par=0
    if [ "$PARALLEL" != 0 ] && step probe "$L" 45 bash -c "$probe & p=\$!; $probe; r=\$?; wait \$p || r=1; exit \$r" "$PY"; then
      san_par=1
    elif step probe_one "$L" 30 bash -c "$probe" "$PY"; then
      echo "sanitizers: one path at a time" | tee -a "$S"
    else
      san_par=skip
    fi
  fi
  if [ "$san_par" != skip ]; then
    PARALLEL=$san_par pstep memcheck "$L" 75 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      SE_FUSED_CUDA_SEPARATE_WORKSPACE=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$PY" tests/cuda_sanitize.py --few --expect-path @P@
    for tool in racecheck synccheck; do
      PARALLEL=$san_par pstep $tool "$L" 60 compute-sanitizer --tool $tool --error-exitcode 1 \
        "$PY" tests/cuda_sanitize.py --few --expect-path @P@
    done
  elif command -v compute-sanitizer >/dev/null 2>&1; then
    echo "sanitizers: skipped (the probe failed: see sanitizers.log)" | tee -a "$S"
  fi
fi

# 6. The CUDA tests: no torch.compile cases, 60 s per test, all of them run.
if want tests; then
  step tests "$OUT/tests.log" 150 "$PY" -m pytest -q tests -k "cuda and not compile and not emulation" \
    --timeout 60 -p no:cacheprovider -rfE
  tail -1 "$OUT/tests.log" >> "$S"
fi

# 7. The benchmark: each path's fused block in a process of its own beside eager and
#    compile (bench.py --paths: twopass with eager, cluster, compile, onepass, in that
#    order; the batch-1 and 7x7 rows first), the model's prediction beside each time,
#    the paths side by side and the rule Auto should adopt; a cut run still prints them.
if want bench; then
  bpaths=twopass
  for path in cluster onepass; do [[ " $PATHS " == *" $path "* ]] && bpaths="$bpaths,$path"; done
  step bench "$OUT/bench.log" 240 "$PY" benchmarks/bench.py --quick --paths "$bpaths"
fi
echo "total: $(( $(date +%s) - T0 ))s" | tee -a "$S"
