#!/usr/bin/env python3
"""Rewrite csrc/cuda/se_block.cu into plain C++ that runs on the CPU under emu.h.

    python tests/cuda_emu/gen.py OUT_DIR [--mutate OLD NEW]...

writes OUT_DIR/se_block_emu.cpp (never into the repository). Each rewrite
below must match the kernel source the expected number of times; when an edit
of se_block.cu makes one stop matching, gen.py exits 1 naming the rewrite and
its pattern, so the emulator is fixed instead of silently testing something
else. Replacements keep the line count of what they replace and the output
starts with a #line directive, so compiler errors, sanitizer reports and
asserts point at the real lines of se_block.cu.

--mutate OLD NEW (repeatable) replaces the first occurrence of the literal
string OLD by NEW after the rewrites (fails if OLD is absent): a way to inject
a bug by hand and check that main.cpp catches it (see README.md).
"""
import argparse
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(REPO, "csrc", "cuda", "se_block.cu")

# (what, pattern, replacement, expected matches or None for "at least one", flags)
REWRITES = [
    ("the CUDA runtime header becomes the emulator",
     r"#include <cuda_runtime\.h>\n", '#include "emu.h"\n', 1, 0),
    ("ld.acquire.gpu inline asm -> std::atomic_ref acquire load",
     r"__device__ __forceinline__ unsigned ld_acquire_gpu\(const unsigned\* p\) \{.*?\n\}\n",
     "__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) { "
     "return std::atomic_ref<const unsigned>(*p).load(std::memory_order_acquire); }\n", 1, re.S),
    ("st.release.gpu inline asm -> std::atomic_ref release store",
     r"__device__ __forceinline__ void st_release_gpu\(unsigned\* p, unsigned v\) \{.*?\n\}\n",
     "__device__ __forceinline__ void st_release_gpu(unsigned* p, unsigned v) { "
     "std::atomic_ref<unsigned>(*p).store(v, std::memory_order_release); }\n", 1, re.S),
    ("se_block_kernel's __shared__ Smem -> per-block arena 0",
     r"__shared__ Smem<A> sm;", "Smem<A>& sm = emu::shared<Smem<A>>(0);", 1, 0),
    ("se_weight_grad_kernel's __shared__ sx -> per-block arena 1",
     r"__shared__ A sx\[kTileN\]\[kTile\];", "auto& sx = emu::shared<A[kTileN][kTile]>(1);", 1, 0),
    ("se_weight_grad_kernel's __shared__ sy -> per-block arena 2",
     r"__shared__ A sy\[kTileN\]\[kTile\];", "auto& sy = emu::shared<A[kTileN][kTile]>(2);", 1, 0),
    # The weight-gradient kernel is grid-stride (vb += gridDim.x), so any grid
    # is valid; 4 blocks keep the emulator's thread count small.
    ("se_weight_grad_kernel<<<grid, kThreads>>> -> emu::launch (at most 4 blocks)",
     r"se_weight_grad_kernel<T><<<static_cast<unsigned>\(grid\), kThreads, 0, stream>>>\(w\);",
     "emu::launch(grid < 4 ? grid : 4, kThreads, [&] { se_weight_grad_kernel<T>(w); });", 1, 0),
    ("se_block_kernel<<<grid, kThreads>>> -> emu::launch (tiles and grid noted for the report)",
     r"se_block_kernel<T, kBwd, kNHWC><<<static_cast<unsigned>\(grid\), kThreads, 0, stream>>>\(p\);",
     "emu::note_main_launch(p.tiles, grid); "
     "emu::launch(grid, kThreads, [&] { se_block_kernel<T, kBwd, kNHWC>(p); });", 1, 0),
    ("#pragma unroll (not for g++)", r"#pragma unroll\n", "\n", None, 0),
    # Plain 16-byte loads get the emulator's alignment check too.
    ("ld16's plain uint4 load -> __ldcg (alignment-checked)",
     r"return \*reinterpret_cast<const uint4\*>\(p\);",
     "return __ldcg(reinterpret_cast<const uint4*>(p));", 1, 0),
]


# Left in the rewritten code (comments aside), these would compile on the host
# but mean something else there (a __shared__ array per thread, say): each one
# needs a rewrite above and, where needed, support in emu.h.
FORBIDDEN = [
    (r"\b__shared__\b", "__shared__ memory"),
    (r"\b__constant__\b", "__constant__ memory"),
    (r"<<<", "a kernel launch"),
    (r"\basm\b", "inline PTX"),
]


def strip_comments(code):
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", code, flags=re.S)


def fail(msg):
    sys.exit(f"gen.py: {msg}")


def apply(src, src_name, what, pattern, rep, expected, flags):
    def keep_lines(m):
        out = m.expand(rep)
        return out + "\n" * max(0, m.group(0).count("\n") - out.count("\n"))

    out, n = re.subn(pattern, keep_lines, src, flags=flags)
    if n == 0 or (expected is not None and n != expected):
        want = "at least 1" if expected is None else str(expected)
        fail(f"{src_name} no longer matches the emulator rewrite '{what}': the pattern\n    {pattern}\n"
             f"matched {n} time(s), expected {want}. "
             f"Update tests/cuda_emu/gen.py (and emu.h) for the kernel change.")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", help="build/temp directory for se_block_emu.cpp")
    ap.add_argument("--src", default=SRC, help="kernel source (default: the repo's csrc/cuda/se_block.cu)")
    ap.add_argument("--mutate", nargs=2, action="append", default=[], metavar=("OLD", "NEW"),
                    help="after the rewrites, replace the first OLD by NEW (bug injection)")
    args = ap.parse_args()

    src_path = os.path.abspath(args.src)
    out_dir = os.path.abspath(args.out_dir)
    if out_dir == REPO or out_dir.startswith(REPO + os.sep) and not out_dir.startswith(
            os.path.join(REPO, "build") + os.sep):
        fail(f"refusing to write into the repository ({out_dir}); give a build or temp directory")
    try:
        with open(src_path) as f:
            s = f.read()
    except OSError as e:
        fail(f"cannot read the kernel source: {e}")

    src_name = os.path.relpath(src_path, REPO) if src_path.startswith(REPO + os.sep) else src_path
    for what, pattern, rep, expected, flags in REWRITES:
        s = apply(s, src_name, what, pattern, rep, expected, flags)
    code = strip_comments(s)
    for pattern, what in FORBIDDEN:
        m = re.search(pattern, code)
        if m:
            line = code[m.start():].split("\n", 1)[0]
            fail(f"{src_name} uses {what} that no emulator rewrite handles: {line.strip()!r}. "
                 f"Add a rewrite to tests/cuda_emu/gen.py (and support in emu.h).")
    for old, new in args.mutate:
        if old not in s:
            fail(f"--mutate: {old!r} not found in the rewritten source")
        s = s.replace(old, new, 1)

    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "se_block_emu.cpp")
    header = ("// Generated by tests/cuda_emu/gen.py from csrc/cuda/se_block.cu: do not edit.\n"
              f'#line 1 "{src_path}"\n')
    with open(out, "w") as f:
        f.write(header + s)
    print(out)


if __name__ == "__main__":
    main()
