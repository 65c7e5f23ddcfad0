"""The memory plan of a forward pass (netcfg/building/memplan.py): peaks worked out by hand on
small specs, and the plan against what PyTorch's CPU allocator holds, layer type by layer type
and on small shipped configs.

The hand-worked specs use float32 layers with no workspace (linear, relu, concat, a two-input
add): each value costs 4 bytes per element, and the peak is the largest sum of the values alive
at once, the input included."""

from __future__ import annotations

import pytest
import torch

from benchmarks.bench_activation_memory import allocator_peak
from netcfg.actions.inspection import inspect_spec
from netcfg.actions.model import build_model
from netcfg.building import memory, memplan
from netcfg.building.builder import build_spec, sample_input, sample_inputs
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec, load_spec_data
from tests.catalogue.test_declarations import CASES, FEEDS
from tests.catalogue.test_declarations import _spec as example_spec


def peak_of(model: dict, shape: list[int] = (1, 10), **top) -> memplan.Peak:
    spec = load_spec_data({"netcfg": 1, "input": {"shape": list(shape)}, "model": model, **top}, "generated")
    return memplan.plan(build_spec(spec, device="meta").visits, 4, spec.shared)


def linear(n: int, **extra) -> dict:
    return {"type": "linear", "out_features": n, **extra}


def test_sequential_lets_a_value_go_once_the_next_layer_ran():
    # x 10; linear 100 -> 110; relu 100 -> 210 (the linear's output goes now) -> 110; linear 5 -> 115
    peak = peak_of({"type": "sequential", "layers": [linear(100), {"type": "relu"}, linear(5)]})
    assert (peak.bytes, peak.path, peak.type) == (4 * 210, "1", "relu")


def test_residual_keeps_its_input_while_the_body_runs_and_the_body_output_until_the_sum():
    # x 10; A 1000; body: linear 10, relu 10, linear 1000 (10 + 1000 + 10 + 1000 while it runs); the
    # sum 1000 with A and the body's output alive: 10 + 1000 + 1000 + 1000 = 3010; then linear 1
    body = {"type": "sequential", "layers": [linear(10), {"type": "relu"}, linear(1000)]}
    model = {"type": "sequential", "layers": [linear(1000), {"type": "residual", "body": body}, linear(1)]}
    peak = peak_of(model)
    assert (peak.bytes, peak.path, peak.type) == (4 * 3010, "1", "residual")


def test_graph_values_live_until_their_last_reader():
    # x 10; a 100; b 200 (reads a); c 300 (reads a: its last reader, so a goes after c) -> 10+200+300;
    # d = concat(b, c) 500 -> 10 + 200 + 300 + 500 = 1010; e 1 on d. Keeping a until the end: 1110.
    nodes = {
        "a": linear(100),
        "b": linear(200),
        "c": linear(300, inputs="a"),
        "d": {"type": "concat", "inputs": ["b", "c"]},
        "e": linear(1),
    }
    peak = peak_of({"type": "graph", "nodes": nodes})
    assert (peak.bytes, peak.path, peak.type) == (4 * 1010, "d", "concat")


def test_the_graph_module_lets_values_go_as_planned():
    from netcfg.building.layers.composite import releases

    # steps read: a <- input, b <- a, c <- a, d <- b, c, e <- d; output e (5)
    steps = [[0], [1], [1], [2, 3], [4]]
    assert releases(steps, [5]) == [(0,), (), (1,), (2, 3), (4,)]
    # the input read by steps 0 and 1; step 1's value is the output (it stays), step 2's is never
    # read (it goes after its own step)
    assert releases([[0], [0], [1]], [2]) == [(), (0,), (1, 3)]


def test_parallel_keeps_every_branch_output_until_the_merge():
    # x 10; branches 100, 200, then [linear 50, relu] (50 + 50 at once): 10 + 300 + 100 = 410;
    # the concat 350 with the three outputs: 10 + 350 + 350 = 710
    branches = [linear(100), linear(200), {"type": "sequential", "layers": [linear(50), {"type": "relu"}]}]
    peak = peak_of({"type": "parallel", "branches": branches})
    assert (peak.bytes, peak.path, peak.type) == (4 * 710, "", "parallel")


def test_a_repeat_side_by_side_plans_as_its_parallel_expansion():
    # three copies added: x 10, 3 x 100, then (a + b) + c: the sum and the partial sum, 100 each
    peak = peak_of({"type": "repeat", "times": 3, "merge": "add", "body": linear(100)})
    assert peak.bytes == 4 * (10 + 300 + 100 + 100)


def test_a_later_use_of_a_shared_module_is_planned_for_its_own_input():
    # s = [linear 100, relu], first on x [1, 10] (10 + 100 + 100), then on [1, 4, 10]: linear 40
    # and a reshape (a view) make it; its relu runs with x, the view's 40, 400 and 400: 850
    shared = {"s": {"type": "sequential", "layers": [linear(100), {"type": "relu"}]}}
    model = {
        "type": "sequential",
        "layers": [
            {"type": "shared", "ref": "s"},
            linear(40),
            {"type": "reshape", "shape": [4, 10]},
            {"type": "shared", "ref": "s"},
        ],
    }
    peak = peak_of(model, shared=shared)
    assert (peak.bytes, peak.path, peak.type) == (4 * 850, "3.1", "relu")


def test_a_view_keeps_its_base_alive():
    # linear 1000 (A), then a [1, 1] slice of it (a view: A stays), then linear 1000: 10 + 1000 + 1000
    model = {"type": "sequential", "layers": [linear(1000), {"type": "slice", "stop": 1}, linear(1000)]}
    peak = peak_of(model)
    assert (peak.bytes, peak.path) == (4 * 2010, "2")


def test_inspect_reports_the_planned_peak_of_a_spec_without_parameters(write_spec):
    report = inspect_spec(load_spec(write_spec(HUGE)))
    assert report.parameters == 0
    # x [64, 8]; reshape: a view; upsample to [64, 1, 1024, 8192]; upsample to [64, 1, 8192, 65536]
    # with its workspace (its input and output in another layout), then [64, 1, 8192, 4194304]
    # while the second upsample's output is alive: the third upsample's peak
    x, up1, up2, up3 = 64 * 8, 64 * 1024 * 8192, 64 * 8192 * 65536, 64 * 8192 * 4194304
    assert report.memory.activations == 4 * (x + up2 + up3 + (up2 + up3)) + 64
    assert report.memory.activations_at == "3 (upsample)"
    assert up1 < up2  # (the first upsample's output is gone by then)


HUGE = """\
netcfg: 1
input: {shape: [64, 8]}
model:
  type: sequential
  layers:
    - {type: reshape, shape: [1, 1, 8]}
    - {type: upsample, scale_factor: 1024}
    - {type: upsample, scale_factor: [8, 8]}
    - {type: upsample, scale_factor: [1, 64]}
"""


def test_the_build_refuses_a_forward_pass_that_does_not_fit(write_spec):
    with pytest.raises(BuildError) as err:
        build_spec(load_spec(write_spec(HUGE)), device="cpu", forward_check=True)
    message = str(err.value)
    assert (
        ": error: running this model needs about 16.3 TiB (weights 0 B, activations 16.3 TiB at batch 64, at "
        in message
    )
    assert "their peak in layer '3' (upsample)), " in message and "--no-memory-check" in message
    build_spec(load_spec(write_spec(HUGE)), device="cpu", forward_check=True, memory_check=False)  # not checked


def test_large_weights_and_activations_are_refused_having_allocated_little(write_spec, monkeypatch):
    # 30 linear layers of 4 MB each fit in 1 GB, their 30 x [100000, 1000] outputs do not: the
    # look-ahead (after 5 MB) plans the forward pass on meta and refuses before the third layer
    from netcfg.building import builder

    monkeypatch.setattr(memory, "available", lambda device: 1_000_000_000)
    monkeypatch.setattr(builder, "LOOK_AHEAD_BYTES", 5_000_000)
    text = "model: {type: repeat, times: 30, body: {type: linear, out_features: 1000}}\n"
    spec = load_spec(write_spec("netcfg: 1\ninput: {shape: [100000, 1000]}\n" + text))
    with pytest.raises(BuildError) as err:
        build_spec(spec, device="cpu", forward_check=True)
    # weights 30 x (1000 x 1000 + 1000) x 4 B; activations: x, a layer's input and its output, 400 MB each
    message = str(err.value)
    assert "running this model needs about 1.2 GiB (weights 114.6 MiB, activations 1.1 GiB at batch 100000" in message
    assert "953.7 MiB are available on cpu" in message
    assert err.value.partial.allocated == 2 * 4_004_000  # the real build stopped before its third layer
    assert build_spec(spec, device="meta", forward_check=True).model is not None  # nothing to check on meta


# ---------------------------------------------------------------- against PyTorch's allocator


def measured(built, *xs: torch.Tensor) -> int:
    """The inputs' bytes plus the peak PyTorch's CPU allocator holds for tensors made by a
    forward pass (the second: the first one's one-off allocations left out, as they equal)."""
    model = built.model.eval()

    def forward():
        with torch.no_grad():
            return model(*xs)

    forward()
    return sum(x.numel() * x.element_size() for x in xs) + allocator_peak(forward)


# Layers whose 16-bit kernels widen to float32 on the CPU (their rules say so), checked in bfloat16 too.
WIDENED = {"linear", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "rmsnorm", "centered", "attention",
           "adaptive_avgpool1d", "adaptive_avgpool2d", "dense_relu", "fixed_matmul", "tensor_reduction"}  # fmt: skip
LAYER_CASES = [(*c, "float32") for c in CASES] + [(*c, "bfloat16") for c in CASES if c[0] in WIDENED]


@pytest.mark.parametrize(
    ("kind", "args", "shape", "extra", "dtype"), LAYER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LAYER_CASES)]
)
def test_every_layer_needs_at_most_its_plan(kind, args, shape, extra, dtype):
    big = [s * (4 if i else 8) for i, s in enumerate(shape)] if kind != "pos_embedding" else [16, 16, 3]
    if kind == "reshape":
        big = [16, 3, 8]
    if FEEDS in args or kind == "window_mask":  # the feeding nodes' sizes are fixed: only the batch grows
        big = [shape[0] * 8, *shape[1:]]
    spec = example_spec(kind, args, big, extra)
    built = build_spec(spec, device="cpu", seed=0, dtype=dtype)
    x = sample_input(spec, "cpu", seed=0)
    x = x.to(built.dtype) if x.is_floating_point() else x
    # (a merge's example is a graph feeding it two values: planned and measured whole)
    planned = memplan.plan(built.visits, built.dtype.itemsize, spec.shared).bytes
    assert planned >= measured(built, x)


SMALL_CONFIGS = [
    ("configs/mlp.yaml", []),
    ("configs/chapter/parallel.yaml", []),
    ("configs/chapter/nested.yaml", []),
    ("configs/chapter/shared_layer.yaml", []),
    ("configs/chapter/factory_side_by_side.yaml", []),
    ("configs/chapter/fourier.yaml", []),
    ("configs/resnet18.yaml", ["input.shape=[2, 3, 64, 64]"]),
    ("configs/gpt2.yaml", ["vars.layers=2"]),
    ("configs/vit_b_16.yaml", ["vars.layers=2"]),
    ("configs/swin_t.yaml", ["vars.embed=24", "vars.depth3=2"]),
    ("configs/bert_base.yaml", ["vars.layers=2", "vars.length=64"]),
    ("configs/transformer_seq2seq.yaml", ["input.src.shape=[8, 64]", "input.tgt.shape=[8, 48]"]),
]


@pytest.mark.parametrize(("path", "overrides"), SMALL_CONFIGS, ids=[p for p, _ in SMALL_CONFIGS])
def test_shipped_configs_need_at_most_their_plan_and_not_much_less(path, overrides):
    built = build_model(load_spec(path, overrides), device="cpu", memory_check=False)
    xs = sample_inputs(built.spec, "cpu", built.seed)
    estimate = inspect_spec(built.spec).memory.activations
    actual = measured(built, *xs)
    assert actual <= estimate
    if actual > 1 << 20:  # below, scalars and statistics tensors weigh as much as the activations
        assert estimate <= 3 * actual
