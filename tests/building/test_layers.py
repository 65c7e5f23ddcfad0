"""The layer catalogue against PyTorch: each layer's computed output shape equals the shape a real
forward pass gives, its counted bytes equal its real tensors, and its values equal plain torch."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netcfg.building.builder import build_spec
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec, load_spec_data
from tests.conftest import CONFIGS


def built(model: dict, shape: list[int], seed: int = 0):
    spec = load_spec_data({"netcfg": 1, "input": {"shape": shape}, "model": model}, "generated")
    return build_spec(spec, device="cpu", seed=seed)


def check_shape_and_size(model: dict, shape: list[int]) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Build, run on a random input; the recorded output shape and byte count must be the real ones."""
    result = built(model, shape)
    x = torch.randn(shape)
    with torch.no_grad():
        y = result.model(x)
    assert result.visits[""].out_shape == tuple(y.shape), model
    counted = result.visits[""].node.elements([tuple(shape)])
    real = sum(t.numel() for t in [*result.model.parameters(), *result.model.buffers()])
    assert counted == real, model
    return result.model, x, y


NEW_LAYERS = [
    ({"type": "conv_transpose2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1,
      "output_padding": 1}, [2, 4, 5, 7]),
    ({"type": "conv_transpose2d", "out_channels": 6, "kernel_size": [2, 3], "groups": 2, "dilation": 2,
      "bias": False}, [1, 4, 6, 6]),
    ({"type": "conv_transpose1d", "out_channels": 3, "kernel_size": 4, "stride": 3}, [2, 5, 9]),
    ({"type": "upsample", "scale_factor": 2}, [1, 3, 5, 7]),
    ({"type": "upsample", "scale_factor": [1.5, 2.5], "mode": "bilinear", "align_corners": True}, [1, 3, 5, 7]),
    ({"type": "upsample", "size": 11, "mode": "linear"}, [2, 3, 5]),
    ({"type": "upsample", "size": [4, 9], "mode": "bicubic"}, [1, 2, 5, 7]),
    ({"type": "permute", "dims": [0, 2, 3, 1]}, [2, 3, 4, 5]),
    ({"type": "permute", "dims": [0, -1, 1]}, [2, 3, 4]),
    ({"type": "select", "index": 0}, [2, 5, 8]),
    ({"type": "select", "index": -1, "dim": -1}, [2, 5, 8]),
    ({"type": "slice", "start": 1}, [2, 5, 8]),
    ({"type": "slice", "start": -6, "stop": -1, "step": 2, "dim": 2}, [2, 5, 8]),
    ({"type": "class_token"}, [2, 5, 8]),
    ({"type": "layer_scale", "value": 0.5}, [2, 5, 8]),
    ({"type": "layer_scale", "dim": 1}, [2, 5, 3, 3]),
    ({"type": "relu6"}, [2, 8]),
    ({"type": "hardtanh", "min_val": -2.0, "max_val": 0.5}, [2, 8]),
    ({"type": "hardswish"}, [2, 8]),
    ({"type": "hardsigmoid"}, [2, 8]),
    ({"type": "mish"}, [2, 8]),
    ({"type": "maxpool2d", "kernel_size": 3, "stride": 2, "ceil_mode": True}, [1, 2, 8, 9]),
    ({"type": "avgpool1d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
      "count_include_pad": False}, [1, 2, 10]),
]  # fmt: skip


@pytest.mark.parametrize("model, shape", NEW_LAYERS, ids=lambda v: v["type"] if isinstance(v, dict) else None)
def test_computed_shape_and_size_are_the_real_ones(model, shape):
    check_shape_and_size(model, shape)


def test_values_equal_plain_torch():
    m, x, y = check_shape_and_size(NEW_LAYERS[0][0], NEW_LAYERS[0][1])
    torch.testing.assert_close(y, F.conv_transpose2d(x, m.weight, m.bias, stride=2, padding=1, output_padding=1))
    m, x, y = check_shape_and_size({"type": "permute", "dims": [0, 2, 3, 1]}, [2, 3, 4, 5])
    assert torch.equal(y, x.permute(0, 2, 3, 1))
    m, x, y = check_shape_and_size({"type": "select", "index": 0}, [2, 5, 8])
    assert torch.equal(y, x[:, 0])
    m, x, y = check_shape_and_size({"type": "slice", "start": 1}, [2, 5, 8])
    assert torch.equal(y, x[:, 1:])
    m, x, y = check_shape_and_size({"type": "class_token"}, [2, 5, 8])
    assert list(dict(m.named_parameters())) == ["token"] and m.token.shape == (1, 1, 8)
    assert torch.equal(y, torch.cat([torch.zeros(2, 1, 8), x], dim=1))
    m, x, y = check_shape_and_size({"type": "layer_scale", "dim": 1, "value": 0.25}, [2, 5, 3, 3])
    assert torch.equal(y, x * 0.25) and m.gamma.shape == (5,)
    m, x, y = check_shape_and_size({"type": "hardtanh", "min_val": -2.0, "max_val": 0.5}, [2, 8])
    assert torch.equal(y, x.clamp(-2.0, 0.5))
    m, x, y = check_shape_and_size({"type": "upsample", "scale_factor": 2}, [1, 3, 5, 7])
    assert torch.equal(y, x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def test_roll_equals_torch_roll():
    m, x, y = check_shape_and_size({"type": "roll", "shifts": [-3, 2], "dims": [1, -2]}, [2, 5, 6, 4])
    assert torch.equal(y, torch.roll(x, (-3, 2), (1, 2)))
    m, x, y = check_shape_and_size({"type": "roll", "shifts": 3, "dims": 1}, [2, 5])  # wraps around
    assert torch.equal(y, torch.cat([x[:, 2:], x[:, :2]], dim=1))


def test_layernorm2d_normalizes_channels_and_loads_a_layernorm_state_dict():
    # torchvision's ConvNeXt LayerNorm2d subclasses nn.LayerNorm: its state_dict is nn.LayerNorm's.
    m, x, y = check_shape_and_size({"type": "layernorm2d"}, [2, 6, 3, 4])
    reference = nn.LayerNorm(6, eps=1e-6)
    with torch.no_grad():
        reference.weight.normal_(), reference.bias.normal_()
    m.load_state_dict(reference.state_dict())
    expected = reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), expected)
    m, x, y = check_shape_and_size({"type": "layernorm2d", "elementwise_affine": False}, [2, 6, 3, 4])
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 3, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 3, 4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_drops_whole_samples_at_rate_p_in_training_and_is_the_identity_in_eval(scale_by_keep):
    p, n = 0.25, 20_000
    model = built({"type": "drop_path", "p": p, "scale_by_keep": scale_by_keep}, [n, 3, 2]).model
    x = torch.rand(n, 3, 2) + 0.5  # no zeros: a zero in the output is a dropped sample
    torch.manual_seed(0)
    y = model.train()(x)
    zeros = (y == 0).flatten(1)
    dropped = zeros.all(dim=1)
    assert torch.equal(zeros.any(dim=1), dropped)  # a sample is dropped whole or not at all
    assert abs(dropped.float().mean().item() - p) < 0.02  # the binomial's sd is 0.003
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p) if scale_by_keep else x[~dropped])
    assert torch.equal(model.eval()(x), x)


def test_drop_path_rate_grows_linearly_with_depth_in_the_example_config():
    spec = load_spec(CONFIGS / "stochastic_depth.yaml", ["vars.depth=6", "vars.max_drop=0.2"])
    rates = [m.p for m in build_spec(spec, device="meta").model.modules() if type(m).__name__ == "DropPath"]
    assert rates == pytest.approx([0.2 * i / 5 for i in range(6)])


@pytest.mark.parametrize("kind", ["maxpool1d", "avgpool1d"])
def test_pool_output_sizes_equal_torch_for_every_small_case(kind):
    # Exhaustive over small sizes: the ceil_mode rounding has an edge case (a last window that
    # would start in the padding is dropped).
    cls = nn.MaxPool1d if kind == "maxpool1d" else nn.AvgPool1d
    for n, k, s, p, ceil in itertools.product(range(1, 9), range(1, 5), range(1, 4), range(0, 3), (False, True)):
        if 2 * p > k or n + 2 * p < k:
            continue
        model = {"type": kind, "kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
        expected = cls(k, s, p, ceil_mode=ceil)(torch.zeros(1, 1, n)).shape
        assert built(model, [1, 1, n]).visits[""].out_shape == tuple(expected), model


@pytest.mark.parametrize(
    "model, shape, message",
    [
        ({"type": "permute", "dims": [0, 1]}, [2, 3, 4], "dims [0, 1] is not a permutation of the 3 dimensions"),
        ({"type": "permute", "dims": [0, 1, 1]}, [2, 3, 4], "is not a permutation"),
        ({"type": "select", "index": 5}, [2, 5, 8], "index 5 is out of range for dim 1 of input [2, 5, 8]"),
        ({"type": "select", "index": 0, "dim": 0}, [2, 5], "that is the batch dimension"),
        ({"type": "slice", "start": 9}, [2, 5, 8], "9:None:1 keeps nothing of dim 1"),
        ({"type": "upsample"}, [1, 2, 4, 4], "give one of scale_factor and size"),
        ({"type": "upsample", "scale_factor": 2, "mode": "linear"}, [1, 2, 4, 4], "needs a 3-dimensional input"),
        ({"type": "upsample", "scale_factor": 2, "align_corners": True}, [1, 2, 4, 4], "align_corners only"),
        ({"type": "roll", "shifts": [1, 2], "dims": 1}, [2, 5, 8], "shifts has 2, dims has 1"),
        ({"type": "roll", "shifts": [1, 1], "dims": [2, 0]}, [2, 5, 8], "roll over dim 0: that is the batch dimension"),
        ({"type": "layernorm2d"}, [2, 8, 5], "layernorm2d expects an input with 4 dimensions, got [2, 8, 5]"),
        ({"type": "class_token"}, [2, 8], "class_token needs a sequence [N, T, dim], got [2, 8]"),
        ({"type": "class_token", "dim": 4}, [2, 3, 8], "expected input [2, 3, 4] (dim=4), got [2, 3, 8]"),
        ({"type": "hardtanh", "min_val": 1.0, "max_val": 1.0}, [2, 8], "min_val 1.0 must be below max_val 1.0"),
        ({"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "output_padding": 2},
         [1, 2, 4, 4], "output_padding must be smaller than stride or dilation"),
    ],
)  # fmt: skip
def test_bad_arguments_are_build_errors(model, shape, message):
    with pytest.raises(BuildError) as err:
        built(model, shape)
    assert message in str(err.value)


@pytest.mark.parametrize("output", ["abs", "complex", "real_imag"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_fourier_shape_and_dtype_by_formula_are_the_real_ones(output, dtype):
    inp = {"shape": [3, 2, 7], "dtype": dtype, **({"high": 5} if dtype == "int64" else {})}
    model_dtype = {"dtype": dtype} if dtype == "float64" else {}
    spec = load_spec_data(
        {"netcfg": 1, "input": inp, "model": {"type": "fourier", "output": output}, **model_dtype}, "generated"
    )
    result = build_spec(spec, device="cpu")
    x = torch.randint(0, 5, (3, 2, 7)) if dtype == "int64" else torch.randn(3, 2, 7, dtype=getattr(torch, dtype))
    y = result.model(x)
    meta = build_spec(spec, device="meta")
    assert meta.visits[""].out_shape == tuple(y.shape)
    probe = load_spec_data(
        {
            "netcfg": 1,
            "input": inp,
            "model": {
                "type": "graph",
                "nodes": {"f": {"type": "fourier", "output": output}, "i": {"type": "identity"}},
            },
            **model_dtype,
        },
        "generated",
    )
    assert build_spec(probe, device="meta").visits["i"].in_dtypes == [y.dtype]


def test_a_graph_of_5_000_nodes_reading_unknown_inputs_is_checked_in_linear_time():
    """Each node read an unknown name: a list search of the earlier nodes and a did-you-mean per
    node over all of them (a minute). Now a dict, 20 did-you-means, and a count of the rest."""
    import time

    nodes = {f"n{i}": {"type": "relu", "inputs": ["input" if i == 0 else f"n{i - 1}", f"m{i}"]} for i in range(5_000)}
    data = {"netcfg": 1, "input": {"shape": [2, 20]}, "model": {"type": "graph", "nodes": nodes}}
    spec = load_spec_data(data, "spec")
    start = time.perf_counter()
    with pytest.raises(BuildError) as err:
        build_spec(spec, device="meta")
    assert time.perf_counter() - start < 5
    lines = [d.message for d in err.value.diagnostics]
    assert lines[0] == "unknown input 'm0'"
    assert lines[-1] == "... and 4,980 more inputs that are not earlier nodes"
    assert len(lines) == 21
