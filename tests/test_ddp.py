"""A converted SE-CNN trained under DistributedDataParallel on 2 CPU processes (gloo), each
on half the batch, ends with the same parameters as one process on the whole batch."""
import gc
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import se_fused
from se_fused import FusedSEBlock, SEBlock
from _reference import assert_close

WORLD = 2
BATCH = 8
STEPS = 4


def _model():
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
              SEBlock(16, 4, bias=True),
              nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.SiLU(),
              SEBlock(32, 8, activation="silu", gate="hardsigmoid")]
    try:  # a torchvision SE module too (a FusedSEAdapter once converted) when present
        from torchvision.ops import SqueezeExcitation
        layers += [nn.Conv2d(32, 32, 1), SqueezeExcitation(32, 8)]
    except ImportError:
        pass
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)]
    return se_fused.convert(nn.Sequential(*layers))


def _data():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, 12, 12, generator=gen)
    target = torch.randint(0, 10, (BATCH,), generator=gen)
    return x, target


def _train(model, x, target):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()  # mean over the samples
        opt.step()


def _worker(rank, init_file, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        model = _model()
        ddp = nn.parallel.DistributedDataParallel(model)
        x, target = _data()
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        _train(ddp, x[shard], target[shard])
        if rank == 0:
            torch.save(model.state_dict(), out_file)
        # Release DDP's reducer (it holds the process group) while the interpreter is whole,
        # and leave together. Left to interpreter exit, gloo's threads were sometimes still
        # joinable there: "terminate called without an active exception", SIGABRT, in about
        # 1 run in 20, with a plain model as with a converted one (torch 2.14.1, CPU).
        del ddp, model
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_matches_single_process(tmp_path):
    out_file = os.path.join(tmp_path, "ddp.pt")
    mp.spawn(_worker, args=(str(tmp_path / "init"), out_file), nprocs=WORLD, join=True)
    ddp_state = torch.load(out_file)

    model = _model()
    assert sum(isinstance(m, FusedSEBlock) for m in model.modules()) == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(model, *_data())
    finally:
        torch.set_num_threads(threads)

    initial = _model().state_dict()
    state = model.state_dict()
    assert list(state) == list(ddp_state)
    for name, value in state.items():
        assert not torch.equal(value, initial[name]), f"{name} did not train"
        # DDP averages the two half-batch mean gradients, (g0 + g1) / 2, where one process
        # takes the mean over the whole batch: the same value, rounded differently
        # (a few fp32 ULPs per step, carried through 4 momentum steps), hence 1e-5.
        assert_close(ddp_state[name], value, rtol=1e-5, atol=1e-6, what=name)
