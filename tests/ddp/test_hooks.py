"""The DDP communication hooks with real gloo processes, against DDP itself and sparsetrain's own
exchange computed independently in one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import sparsetrain.ddp
from sparsetrain.compressors import RegTopK, TopK
from sparsetrain.exchange import SparseExchange
from sparsetrain.layout import WorkerLayout
from tests.conftest import run_gloo

STEPS = 5


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 * rank + step)
    inputs = torch.randn(16, 8, generator=gen)
    return inputs, inputs.sum(dim=1, keepdim=True).sin()


def train(ddp: DistributedDataParallel, steps: int = STEPS, start: int = 1, optimizer=None) -> torch.optim.Optimizer:
    optimizer = optimizer or torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    for step in range(start, start + steps):
        inputs, targets = batch(dist.get_rank(), step)
        optimizer.zero_grad()
        nn.functional.mse_loss(ddp(inputs), targets).backward()
        optimizer.step()
    return optimizer


def flat(module: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy()


def _dense_and_topk_ratio_1(rank, nprocs, out_dir):
    plain = DistributedDataParallel(model())
    train(plain)
    hooked = DistributedDataParallel(model())
    state = sparsetrain.ddp.register(hooked, compressor="dense")
    train(hooked)
    full = DistributedDataParallel(model())
    sparsetrain.ddp.register(full, compressor="topk", ratio=1.0, min_compression_rate=0, exchange="allgather")
    train(full)
    np.save(f"{out_dir}/{rank}.npy", np.stack([flat(plain), flat(hooked), flat(full)]))
    if rank == 0:
        np.save(f"{out_dir}/stats.npy", np.array([state.stats()[k] for k in ("comm/bytes_sent", "comm/iteration")]))


def test_dense_hook_is_ddp_bit_for_bit_and_topk_at_ratio_1_is_dense(tmp_path):
    """Dividing by 2 is exact in float32, so with 2 workers Top-k at ratio 1 (send everything,
    sum, divide) equals DDP's divide-then-sum bit for bit too."""
    run_gloo(_dense_and_topk_ratio_1, 2, str(tmp_path))
    for rank in range(2):
        plain, hooked, full = np.load(tmp_path / f"{rank}.npy")
        assert np.array_equal(hooked, plain) and np.array_equal(full, plain)
    d = plain.size
    assert np.load(tmp_path / "stats.npy").tolist() == [2 * 1 / 2 * 4 * d, STEPS]  # one bucket, ring all-reduce


class Recording(TopK):
    """Top-k that keeps, per step, the gradient it got, its residual before and after, and its
    payload; every instance is kept in ``built``."""

    built: list[Recording] = []

    def __init__(self, dim, ratio, **kwargs):
        super().__init__(dim, ratio, **kwargs)
        self.log = []
        Recording.built.append(self)

    def compress(self, grad, step):
        before = self.residual.clone()
        payload = super().compress(grad, step)
        self.log.append((grad.clone(), before, self.residual.clone(), payload))
        return payload


def _one_bucket(rank, nprocs, name, out_dir):
    ddp = DistributedDataParallel(model(), bucket_cap_mb=100)  # the whole model in one bucket
    compressors = {"topk": Recording, "regtopk": RegTopK, "gaussiank": "gaussiank"}
    options = {"mu": 2.0} if name == "regtopk" else {}
    # start_iter=1: DDP settles its buckets' layout after the first iteration (see the next test)
    state = sparsetrain.ddp.SparseState(compressors[name], ratio=0.2, exchange="allgather", start_iter=1, **options)
    gradients, aggregates = [], []

    def capturing(state, bucket):  # unannotated: DDP checks annotations as objects
        gradients.append(bucket.buffer().clone())
        return sparsetrain.ddp.sparse_hook(state, bucket).then(lambda f: aggregates.append(f.value().clone()) or f.value())

    ddp.register_comm_hook(state, capturing)
    train(ddp)
    np.save(f"{out_dir}/{rank}.npy", np.stack([torch.stack(gradients).numpy(), torch.stack(aggregates).numpy()]))
    if name == "topk":  # s + e_new == g + e_old, exactly, every step
        (_, compressor), = state.compressors.values()
        for grad, before, after, payload in compressor.log:
            sent = torch.zeros_like(grad).index_put_((payload.indices,), payload.values)
            assert torch.equal(sent + after, grad + before)


@pytest.mark.parametrize("name", ["topk", "regtopk", "gaussiank"])
def test_one_bucket_gives_sparsetrains_own_exchange(tmp_path, name):
    """Replay steps 2.. of both ranks' bucket gradients through sparsetrain's compressors and
    exchange in one process (two logical workers): the hook's aggregates are the same, bit for bit."""
    run_gloo(_one_bucket, 2, name, str(tmp_path))
    runs = [np.load(tmp_path / f"{rank}.npy") for rank in range(2)]
    gradients = [torch.from_numpy(run[0]) for run in runs]
    dim = gradients[0].shape[1]
    cls = {"topk": TopK, "regtopk": RegTopK, "gaussiank": sparsetrain.ddp.state.resolve_compressor("gaussiank")}[name]
    options = {"mu": 2.0} if name == "regtopk" else {}
    workers = [cls(dim=dim, ratio=0.2, worker=w, num_workers=2, **options) for w in range(2)]
    for step in range(1, STEPS):
        exchange = SparseExchange(dim, workers[0].k, WorkerLayout.create(0, 1, 2), torch.device("cpu"),
                                  fixed_count=cls.fixed_count, mode="allgather")
        for worker, grads in zip(workers, gradients):
            exchange.put(worker.compress(grads[step].clone(), step + 1))
        gbar = torch.empty(dim)
        exchange.reduce(gbar)
        for worker in workers:
            worker.observe(gbar)
        for run in runs:
            assert np.array_equal(run[1][step], gbar.numpy()), (name, step)


def _rebuilt(rank, nprocs, out_dir):
    Recording.built.clear()
    ddp = DistributedDataParallel(model(), bucket_cap_mb=100)
    names = {id(p): name for name, p in ddp.module.named_parameters()}
    layouts = []

    def naming(state, bucket):  # unannotated: DDP checks annotations as objects
        layouts.append([(names[id(p)], p.numel()) for p in bucket.parameters()])
        return sparsetrain.ddp.sparse_hook(state, bucket)

    ddp.register_comm_hook(sparsetrain.ddp.SparseState(Recording, ratio=0.2, model=ddp), naming)
    train(ddp, steps=2)
    (compressor,) = Recording.built  # the same compressor, relocated
    residuals = {}
    for which, layout, residual in (("after0", layouts[0], compressor.log[0][2]),
                                    ("before1", layouts[1], compressor.log[1][1])):
        parts = residual.split([n for _, n in layout])
        residuals.update({f"{which}/{name}": part.numpy() for (name, _), part in zip(layout, parts)})
    np.savez(f"{out_dir}/{rank}.npz", **residuals)
    assert layouts[0] != layouts[1]  # DDP did reorder


def test_a_rebuilt_bucket_keeps_each_parameters_residual(tmp_path):
    """DDP rebuilds its buckets after the first iteration, reordering the parameters: the
    compressor's residual follows each parameter to where it now lies."""
    run_gloo(_rebuilt, 2, str(tmp_path))
    residuals = np.load(tmp_path / "0.npz")
    names = [key.removeprefix("after0/") for key in residuals if key.startswith("after0/")]
    assert len(names) == 6 and any(residuals[f"after0/{n}"].any() for n in names)
    for name in names:
        assert np.array_equal(residuals[f"before1/{name}"], residuals[f"after0/{name}"]), name


def _regrouped(rank, nprocs, out_dir):
    a, b, c = (nn.Parameter(torch.zeros(n)) for n in (3, 4, 5))
    holder = nn.ParameterDict({"a": a, "b": b, "c": c})
    state = sparsetrain.ddp.SparseState(RegTopK, ratio=0.29, model=holder)  # k = 2 of 7
    first = state.compressor_for(0, [a, b], torch.device("cpu"))
    first.compress(torch.arange(1.0, 8.0), 1)  # a = 1 2 3, b = 4 5 6 7: sends 6 and 7
    moved = state.compressor_for(0, [b, a], torch.device("cpu"))  # the same parameters reordered
    assert moved is first and moved.residual.tolist() == [4.0, 5.0, 0.0, 0.0, 1.0, 2.0, 3.0]
    assert moved.prev_indices.sort().values.tolist() == [2, 3]  # the sent entries moved with b
    regrouped = state.compressor_for(0, [b, c], torch.device("cpu"))  # b joins c: a new compressor
    assert regrouped is not first and regrouped.residual.tolist() == [4.0, 5.0, 0, 0, 0, 0, 0, 0, 0]
    split_off = state.compressor_for(1, [a], torch.device("cpu"))  # a's last owner is the first compressor
    assert split_off.residual.tolist() == [1.0, 2.0, 3.0]
    assert {id(c) for c in state.live_compressors()} == {id(regrouped), id(split_off)}
    assert sorted(bucket["names"] for bucket in state.state_dict()["buckets"]) == [["a"], ["b", "c"]]


def test_a_regrouped_bucket_takes_over_each_parameters_residual(tmp_path):
    """A merge and a split: each parameter's residual comes from the compressor that last held it."""
    run_gloo(_regrouped, 1, str(tmp_path))


def _resume(rank, nprocs, out_dir):
    whole = DistributedDataParallel(model())
    sparsetrain.ddp.register(whole, compressor="regtopk", ratio=0.1, start_iter=1)
    train(whole, steps=6)
    first = DistributedDataParallel(model())
    state = sparsetrain.ddp.register(first, compressor="regtopk", ratio=0.1, start_iter=1)
    optimizer = train(first, steps=3)
    saved = {"model": first.module.state_dict(), "optimizer": optimizer.state_dict(), "hook": state.state_dict()}
    torch.save(saved, f"{out_dir}/checkpoint{rank}.pt")
    resumed = DistributedDataParallel(model())
    restored = sparsetrain.ddp.register(resumed, compressor="regtopk", ratio=0.1, start_iter=1)
    loaded = torch.load(f"{out_dir}/checkpoint{rank}.pt", weights_only=True)
    resumed.module.load_state_dict(loaded["model"])
    restored.load_state_dict(loaded["hook"])
    optimizer = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    optimizer.load_state_dict(loaded["optimizer"])
    train(resumed, steps=3, start=4, optimizer=optimizer)
    np.save(f"{out_dir}/{rank}.npy", np.stack([flat(whole), flat(resumed)]))


def test_resuming_from_a_saved_state_matches_an_uninterrupted_run(tmp_path):
    run_gloo(_resume, 2, str(tmp_path))
    for rank in range(2):
        whole, resumed = np.load(tmp_path / f"{rank}.npy")
        assert np.array_equal(resumed, whole)


def _empty(rank, nprocs, out_dir):
    ddp = DistributedDataParallel(model())
    state = sparsetrain.ddp.register(ddp, compressor="gaussiank", ratio=0.1)
    for step in range(1, 4):
        inputs, _ = batch(rank, step)
        output = ddp(inputs)
        # rank 0's gradient is zero at step 1: Gaussian-k's threshold (0) passes nothing there
        scale = 0.0 if (rank == 0 and step == 1) or step == 2 else 1.0
        (scale * output.square().mean()).backward()
    np.save(f"{out_dir}/{rank}.npy", np.array([state.iteration, state.totals["payload_bytes"]]))


def test_a_gaussiank_bucket_that_selects_nothing_does_not_hang(tmp_path):
    """Step 1: rank 0 sends nothing; step 2: nobody does. The counts travel first, so no rank
    waits for a payload that never comes."""
    run_gloo(_empty, 2, str(tmp_path))
    assert [np.load(tmp_path / f"{rank}.npy")[0] for rank in range(2)] == [3, 3]


def _half(rank, nprocs, out_dir):
    half = DistributedDataParallel(model().to(torch.bfloat16))
    state = sparsetrain.ddp.register(half, compressor="topk", ratio=0.2)
    inputs, targets = batch(rank, 1)
    nn.functional.mse_loss(half(inputs.bfloat16()), targets.bfloat16()).backward()
    grads = [p.grad for p in half.parameters()]
    (_, compressor), = state.compressors.values()
    priced = [sparsetrain.ddp.SparseState("topk", 0.4, min_compression_rate=1.5, value_dtype=dtype).compressed(100)
              for dtype in ("float32", "float16")]
    np.save(f"{out_dir}/{rank}.npy", np.array([all(g.dtype == torch.bfloat16 for g in grads),
                                               compressor.residual.dtype == torch.float32, *priced]))


def test_half_precision_buckets_keep_their_dtype_and_a_float32_residual(tmp_path):
    """And a bucket's wire bytes are priced with its values' width: of 100 entries, k = 40. Each
    of 2 workers sends 400 bytes all-reducing it, or all-gathers a 320-byte row at 8 bytes per
    entry (compression 1.25, under min_compression_rate=1.5: all-reduced as it is) or a 240-byte
    row at 6 (compression 1.67: compressed)."""
    run_gloo(_half, 2, str(tmp_path))
    assert np.load(tmp_path / "0.npy").tolist() == [True, True, False, True]


def _bad_input(rank, nprocs, out_dir):
    ddp = DistributedDataParallel(model())
    with pytest.raises(ValueError, match=r"compressor='nope' is neither one of dense, topk"):
        sparsetrain.ddp.register(ddp, compressor="nope")
    with pytest.raises(ValueError, match=r"ratio=1.5 is not allowed: use a number > 0 and <= 1"):
        sparsetrain.ddp.register(ddp, compressor="topk", ratio=1.5)
    with pytest.raises(ValueError, match=r"RegTopK takes no option 'muu' \(did you mean mu\?\)"):
        sparsetrain.ddp.register(ddp, compressor="regtopk", muu=3)
    with pytest.raises(ValueError, match=r"value_dtype='float8' is not allowed: use one of float32, float16, bfloat16"):
        sparsetrain.ddp.register(ddp, compressor="topk", value_dtype="float8")
    with pytest.raises(ValueError, match=r"compressor.mu=0 is not allowed"):
        sparsetrain.ddp.register(ddp, compressor="regtopk", mu=0)
    with pytest.raises(TypeError, match=r"ddp_model is a Sequential, not a DistributedDataParallel"):
        sparsetrain.ddp.register(model(), compressor="topk")


def test_bad_input_raises_an_error_naming_the_argument(tmp_path):
    run_gloo(_bad_input, 2, str(tmp_path))
