"""What SE costs in whole models, before and after se_fused.convert: torchvision's, and
MONAI's SEResNet50 with spatial_dims=3 (monai_seresnet50_3d).

Each model runs three ways:
  original   as torchvision or MONAI builds it (torchvision.ops.SqueezeExcitation, MONAI
             ChannelSELayer)
  converted  se_fused.convert(model): the SE modules run the fused operator
  no_se      every SE module replaced by a module returning x: the model without SE

and SE's share of the time is (t - t_no_se) / t, before (original) and after (converted).

Passes, random init; torchvision: channels_last, 224 x 224 images, 1000 classes;
monai_seresnet50_3d: 1-channel volumes of --volume^3 voxels (default 96; CPU --quick: 48,
since a 96^3 training step takes seconds on a 2-core CPU), contiguous NCDHW as MONAI
feeds them, 2 classes, batch 1 unless --batch / --train-batch say otherwise:
  infer   eval mode, torch.inference_mode, at each --batch (GPU default 1,64; CPU 1,8)
  train   one SGD step (forward, cross-entropy, backward, optimizer step) at --train-batch
          (GPU default 64, CPU 8)
On the GPU both run under torch.autocast(bfloat16); on the CPU in float32 (--amp: bf16
autocast there too).

Each measurement prints a progress line; the table comes last; the full results
(medians, p20, p80, reps) go to a JSON file. It reports and never asserts a time.

  python benchmarks/models.py --quick              # ~4 min on a 2-core CPU (3-D model at 48^3)
  python benchmarks/models.py                      # GPU when present, else CPU
  python benchmarks/models.py --models mobilenet_v3_large --batch 1,32 --train-batch 32
  python benchmarks/models.py --models monai_seresnet50_3d          # 1x1x96^3 (CPU: ~2.5 min)
  python benchmarks/models.py --models monai_seresnet50_3d --quick  # 1x1x48^3
"""
import argparse
import copy
import os
import sys
import time
from typing import Callable, Dict, List

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from anywhere against this checkout

import harness  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)
import se_fused  # noqa: E402

MONAI_3D = "monai_seresnet50_3d"
MODELS = ("mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf",
          MONAI_3D)
VARIANTS = ("original", "converted", "no_se")
VOLUME, VOLUME_QUICK_CPU = 96, 48  # monai_seresnet50_3d's input: 1 x 1 x V x V x V


class NoSE(nn.Module):
    """Stands in for an SE module: returns x (the model's cost without SE)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _se_classes(name: str) -> tuple:
    if name == MONAI_3D:
        from monai.networks.blocks import ChannelSELayer
        return (ChannelSELayer,)
    from torchvision.ops import SqueezeExcitation
    return (SqueezeExcitation,)


def without_se(model: nn.Module, se_classes: tuple) -> nn.Module:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, se_classes):
                setattr(parent, name, NoSE())
    return model


def build(name: str, variant: str, device) -> nn.Module:
    torch.manual_seed(0)
    if name == MONAI_3D:
        from monai.networks.nets import SEResNet50
        model = SEResNet50(spatial_dims=3, in_channels=1, num_classes=2)
    else:
        import torchvision
        model = getattr(torchvision.models, name)(weights=None)
    if variant == "converted":
        model = se_fused.convert(model)
    elif variant == "no_se":
        model = without_se(model, _se_classes(name))
    return model.to(device).to(memory_format=memory_format(name))


def memory_format(name: str):
    return torch.contiguous_format if name == MONAI_3D else torch.channels_last


def num_classes(name: str) -> int:
    return 2 if name == MONAI_3D else 1000


def input_shape(name: str, batch: int, volume: int) -> tuple:
    return (batch, 1, volume, volume, volume) if name == MONAI_3D else (batch, 3, 224, 224)


# --------------------------------------------------------------------------- timing
def measure(fns: Dict[str, Callable], device, quick: bool) -> Dict[str, dict]:
    """Milliseconds per call of each fn after warm-up, the fns interleaved call by call
    (harness.time_calls: a change in the machine's load hits them alike): as many rounds as
    fit a time budget, within [min_reps, max_reps]."""
    budget_s, min_reps, max_reps = (4.0, 3, 30) if quick else (10.0, 10, 100)
    return harness.time_calls(fns, device, budget_s=budget_s, min_reps=min_reps,
                              max_reps=max_reps, warmup=2 if device.type == "cpu" else 10,
                              unit="ms")


def infer_fn(model: nn.Module, name: str, shape: tuple, device, amp) -> Callable:
    model.eval()
    x = torch.randn(*shape, device=device).to(memory_format=memory_format(name))

    def run():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=amp):
            model(x)
    return run


def train_fn(model: nn.Module, name: str, shape: tuple, device, amp) -> Callable:
    model.train()
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(*shape, generator=gen).to(device)
    x = x.to(memory_format=memory_format(name))
    target = torch.randint(0, num_classes(name), (shape[0],), generator=gen).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
    return step


# --------------------------------------------------------------------------- report
def print_table(records: List[dict]) -> None:
    rows: Dict[tuple, Dict[str, dict]] = {}
    for r in records:
        rows.setdefault((r["model"], r["pass"], r["batch"]), {})[r["variant"]] = r
    head = (f"{'model':<20} {'pass':<6} {'batch':>5} {'original_ms':>12} {'converted_ms':>13} "
            f"{'no_se_ms':>9} {'SE share before':>16} {'after':>6} {'orig/conv':>10}")
    print()
    print(head)
    print("-" * len(head))
    for (model, pass_, batch), recs in rows.items():
        t = {v: recs[v]["median_ms"] if v in recs and "median_ms" in recs[v] else None
             for v in VARIANTS}

        def ms(v):
            return f"{t[v]:.2f}" if t[v] is not None else "ERR"

        def share(v):
            if t[v] is None or t["no_se"] is None:
                return "-"
            return f"{100 * (t[v] - t['no_se']) / t[v]:.0f}%"

        speedup = (f"{t['original'] / t['converted']:.2f}"
                   if t["original"] is not None and t["converted"] is not None else "-")
        print(f"{model:<20} {pass_:<6} {batch:>5} {ms('original'):>12} {ms('converted'):>13} "
              f"{ms('no_se'):>9} {share('original'):>16} {share('converted'):>6} {speedup:>10}")
    print("medians in ms; SE share = (t - t_no_se) / t for the original (before) and the "
          "converted model (after); orig/conv > 1: the converted model is faster. "
          "no_se is the model with every SE module returning x.", flush=True)


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions (CPU: ~4 min for the default models and batches; "
                         "the 3-D model at 48^3)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    ap.add_argument("--batch", default=None,
                    help="inference batch sizes, comma-separated (GPU 1,64; CPU 1,8)")
    ap.add_argument("--train-batch", type=int, default=None,
                    help="training-step batch size (GPU 64; CPU 8); 0 skips training")
    ap.add_argument("--volume", type=int, default=None,
                    help=f"monai_seresnet50_3d's volume side (default {VOLUME}; CPU --quick "
                         f"{VOLUME_QUICK_CPU})")
    ap.add_argument("--amp", action="store_true",
                    help="CPU: run under bf16 autocast too (always on for the GPU)")
    ap.add_argument("--threads", type=int, default=None, help="CPU: torch.set_num_threads(N)")
    ap.add_argument("--out", default=None,
                    help="JSON results file (default benchmarks/results-models-<device>.json)")
    args = ap.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        ap.error(f"--models: unknown {bad}; choose from {list(MODELS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cudnn.benchmark = True
    batches = _ints(args.batch) if args.batch else ([1, 64] if gpu else [1, 8])
    train_batch = args.train_batch if args.train_batch is not None else (64 if gpu else 8)
    amp = gpu or args.amp
    volume = args.volume or (VOLUME_QUICK_CPU if args.quick and not gpu else VOLUME)

    info = harness.describe(device)
    images = [m for m in args.models if m != MONAI_3D]
    print(harness.device_line(info) + f"  models {','.join(args.models)}  "
          f"{'bf16 autocast' if amp else 'float32'}"
          + (f"; images: infer batches {batches}, train batch {train_batch}, channels_last, "
             f"224x224" if images else "")
          + (f"; {MONAI_3D}: 1x{volume}^3 volumes, batch 1 unless given, contiguous"
             if MONAI_3D in args.models else ""))
    warning = harness.load_warning(device)
    if warning:
        print(warning)
    out = args.out or harness.results_path("results-models", device)
    meta = {**info, "amp_bf16": amp, "batches": batches, "train_batch": train_batch,
            "volume": volume, "quick": args.quick, "argv": sys.argv[1:]}

    records: List[dict] = []
    t_start = time.perf_counter()
    try:
        for model_name in args.models:
            volumetric = model_name == MONAI_3D
            infer_b = _ints(args.batch) if args.batch or not volumetric else [1]
            train_b = train_batch if args.train_batch is not None or not volumetric else 1
            jobs = [("infer", b) for b in infer_b] + ([("train", train_b)] if train_b else [])
            try:
                models = {v: build(model_name, v, device) for v in VARIANTS}
            except Exception as e:  # e.g. MONAI not installed: report it, go on
                print(f"{model_name}: not built ({type(e).__name__}: {e})", flush=True)
                continue
            for pass_, batch in jobs:
                shape = input_shape(model_name, batch, volume)
                make = infer_fn if pass_ == "infer" else train_fn
                fns: Dict[str, Callable] = {}
                try:
                    # a training step changes the weights: time copies
                    fns = {v: make(m if pass_ == "infer" else copy.deepcopy(m), model_name,
                                   shape, device, amp)
                           for v, m in models.items()}
                    results = measure(fns, device, args.quick)
                except Exception as e:  # report it, go on with the others
                    results = {v: {"error": f"{type(e).__name__}: {e}"[:300]} for v in VARIANTS}
                fns.clear()  # frees the training copies before the next job
                for variant, res in results.items():
                    rec = {"model": model_name, "variant": variant, "pass": pass_,
                           "batch": batch, "input": "x".join(map(str, shape)), **res}
                    records.append(rec)
                    what = (f"{res['median_ms']:9.2f} ms (p20 {res['p20_ms']:.2f}, "
                            f"p80 {res['p80_ms']:.2f}, {res['reps']} reps)"
                            if "error" not in res else f"ERROR {res['error']}")
                    print(f"[{time.perf_counter() - t_start:5.0f}s] {model_name:<19} "
                          f"{variant:<9} {pass_:<5} batch {batch:<3} {what}", flush=True)
                if gpu:
                    torch.cuda.empty_cache()
            del models
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what was measured")
    wall = time.perf_counter() - t_start
    harness.write_json(out, meta, wall_s=wall, results=records)
    print(f"\nwall time {wall:.0f}s; results: {out}")
    print_table(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
