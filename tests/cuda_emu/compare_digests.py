"""Compare per-case digests of the CUDA kernels' outputs (tests/cuda_emu/cases.h
digest_of) with the stored ones, tests/cuda_emu/digests/quick.txt.

    # the emulator's digests (its output under EMU_DIGEST=1; - for stdin):
    python tests/cuda_emu/compare_digests.py emu OUTPUT [--stored FILE] [--update]
    # a GPU's (gpu_digest's output: "<case> <path> <digest>" per case and path):
    python tests/cuda_emu/compare_digests.py gpu GPU_DIGESTS [--stored FILE] [--out FILE]

emu: exit 0 iff every stored case has the same digest and no case is missing or
extra; --update rewrites the stored file from OUTPUT instead (refused unless
the run passed). gpu: writes one line per case and path to --out (equal or
DIFFER with both digests and the path; MISSING, EXTRA), prints
"gpu vs emulator: N equal, M differ (of K)" (a case is equal when the GPU gave
it on each path, two-pass, one-pass and cluster (and cluster in rounds of 3
samples), every digest the stored
one) and exits 0 iff M == 0. Python 3 standard library only (no torch).
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STORED = os.path.join(HERE, "digests", "quick.txt")
REGENERATE = ("SE_FUSED_EMU_UPDATE_DIGESTS=1 python -m pytest -q tests/test_cuda_emulation.py -k on_cpu_emulator\n"
              "  (or: EMU_DIGEST=1 build/emu quick | python tests/cuda_emu/compare_digests.py emu - --update)")
HEADER = """\
# Digests of the CUDA kernels' outputs on the emulator's `quick` cases: FNV-1a
# (tests/cuda_emu/cases.h digest_of) over y, dx, dw1, db1, dw2, db2, pooled, z1
# and z2 of one forward + backward on the two-pass path (the other paths give
# the same bits: main.cpp checks them), every NaN hashed alike; the concurrent
# case: its four problems' serial runs, chained. One line per case:
# <case name> <16-hex digest>. tests/test_cuda_emulation.py compares the
# emulator's with these; tests/cuda_emu/gpu_digest.sh compares a GPU's.
# Regenerate from the repository root with
#   SE_FUSED_EMU_UPDATE_DIGESTS=1 python -m pytest -q tests/test_cuda_emulation.py -k on_cpu_emulator
# A commit that changes a digest must say why (which change moves which results).
"""
_EMU_LINE = re.compile(r"^(ok  |FAIL) (.+?) +K=-?\d+ P=\d+/\d+ [0-9.]+s digest=([0-9a-f]{16})$")
_DIGEST = re.compile(r"^[0-9a-f]{16}$")


def parse_emu_output(text):
    """{case: digest} from the emulator's output, and whether the run passed."""
    got = {}
    for line in text.splitlines():
        m = _EMU_LINE.match(line.rstrip())
        if m:
            got[m.group(2)] = m.group(3)
    lines = text.strip().splitlines()
    passed = bool(lines) and re.match(r"^\d+ passed, 0 failed$", lines[-1]) is not None
    return got, passed


def read_stored(path=STORED):
    """{case: digest} of a stored file (insertion order = file order)."""
    stored = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            name, _, digest = line.rpartition(" ")
            if not name or not _DIGEST.match(digest):
                raise ValueError(f"{path}:{n}: not '<case name> <16-hex digest>': {line!r}")
            if name in stored:
                raise ValueError(f"{path}:{n}: case {name!r} twice")
            stored[name] = digest
    return stored


def write_stored(digests, path=STORED):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(HEADER)
        for name, digest in digests.items():
            f.write(f"{name} {digest}\n")


def compare(stored, got):
    """(problems, text): a missing, extra or differing case each named."""
    lines = [f"missing (stored, not produced): {name}" for name in stored if name not in got]
    lines += [f"extra (produced, not stored): {name} {got[name]}" for name in got if name not in stored]
    lines += [f"DIFFER: {name}: stored {stored[name]}, now {got[name]}"
              for name in stored if name in got and got[name] != stored[name]]
    return len(lines), "\n".join(lines)


def parse_gpu_digests(text):
    """[(case, path, digest)] from gpu_digest's output ('<case> <path> <digest>' lines)."""
    rows = []
    for line in text.splitlines():
        parts = line.rstrip("\n").rsplit(" ", 2)
        if len(parts) == 3 and _DIGEST.match(parts[2]) and parts[0] and not line.startswith("#"):
            rows.append(tuple(parts))
    return rows


PATHS = ("twopass", "onepass", "cluster", "cluster-s3")  # cluster-s3: rounds of 3 samples (gpu_digest.cu)


def compare_gpu(stored, rows, paths=PATHS):
    """(equal, differ, total, report lines) per case of the union of stored and GPU cases.
    A case is equal when the GPU gave it on every one of `paths` (the requested path:
    the path field up to ':'), each with the stored digest."""
    by_case = {}
    for name, path, digest in rows:
        by_case.setdefault(name, []).append((path, digest))
    out, equal, differ = [], 0, 0
    for name in list(stored) + [n for n in by_case if n not in stored]:
        want = stored.get(name)
        runs = by_case.get(name, [])
        if want is None:
            out += [f"EXTRA  {name} {path} gpu={d} (no stored digest)" for path, d in runs]
        else:
            out += [f"{'equal ' if d == want else 'DIFFER'} {name} {path} gpu={d} emu={want}" for path, d in runs]
        missing = [p for p in paths if p not in {path.split(":")[0] for path, _ in runs}]
        if want is not None and missing:
            out.append(f"MISSING {name} {','.join(missing)} (no GPU digest) emu={want}")
        ok = want is not None and not missing and all(d == want for _, d in runs)
        equal, differ = equal + bool(ok), differ + (not ok)
    return equal, differ, equal + differ, out


def _read(path):
    return sys.stdin.read() if path == "-" else open(path).read()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["emu", "gpu"])
    ap.add_argument("input", help="the emulator's output (emu) or gpu_digest's (gpu); - for stdin")
    ap.add_argument("--stored", default=STORED)
    ap.add_argument("--update", action="store_true", help="emu: rewrite the stored file from INPUT")
    ap.add_argument("--out", help="gpu: write the per-case comparison here")
    a = ap.parse_args(argv)
    text = _read(a.input)
    if a.what == "emu":
        got, passed = parse_emu_output(text)
        if not got:
            print("no digests in the emulator's output (was EMU_DIGEST=1 set?)")
            return 2
        if a.update:
            if not passed:
                print("the emulator's run did not pass: digests not stored")
                return 1
            old = read_stored(a.stored) if os.path.exists(a.stored) else {}
            write_stored(got, a.stored)
            n, text = compare(old, got)
            print(f"wrote {len(got)} digests to {a.stored} ({n} changed, added or removed)")
            if text:
                print(text)
            return 0
        n, text = compare(read_stored(a.stored), got)
        print(text if n else f"{len(got)} digests equal to {a.stored}")
        if n:
            print(f"{n} digest problem(s); regenerate (saying why in the commit):\n  {REGENERATE}")
        return 1 if n else 0
    equal, differ, total, lines = compare_gpu(read_stored(a.stored), parse_gpu_digests(text))
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    print(f"gpu vs emulator: {equal} equal, {differ} differ (of {total})")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
