"""Output shapes the builder computes (instead of running layers on meta) equal real forward shapes."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcfg.building.builder import build_spec
from netcfg.catalogue.shapes import ShapeError, broadcast
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec_data


def check(layer: dict, shape: list[int]) -> None:
    """Computed shape == shape of a real forward pass; or both refuse the input."""
    spec = load_spec_data({"netcfg": 1, "input": {"shape": shape}, "model": layer}, "generated")
    try:
        built = build_spec(spec, device="cpu")
    except BuildError:
        model = _torch_twin(layer, shape)
        if model is not None:
            with pytest.raises(RuntimeError):
                model(torch.rand(shape))
        return
    out = built.model(torch.rand(shape))
    assert tuple(out.shape) == built.visits[""].out_shape


def _torch_twin(layer: dict, shape: list[int]):
    kinds = {"conv1d": torch.nn.Conv1d, "conv2d": torch.nn.Conv2d}
    if layer["type"] not in kinds:
        return None
    args = {k: v for k, v in layer.items() if k not in ("type", "out_channels", "kernel_size")}
    try:
        return kinds[layer["type"]](shape[1], layer["out_channels"], layer["kernel_size"], **args)
    except (ValueError, RuntimeError):
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rank=st.sampled_from([1, 2]),
    size=st.integers(1, 12),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 2),
)
def test_conv_shapes(rank, size, kernel, stride, padding, dilation):
    layer = {"type": f"conv{rank}d", "out_channels": 3, "kernel_size": kernel, "stride": stride,
             "padding": padding, "dilation": dilation}  # fmt: skip
    check(layer, [2, 2] + [size] * rank)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"]),
    size=st.integers(1, 12),
    kernel=st.integers(1, 4),
    stride=st.one_of(st.none(), st.integers(1, 3)),
    padding=st.integers(0, 2),
)
def test_pool_shapes(kind, size, kernel, stride, padding):
    rank = int(kind[-2])
    check({"type": kind, "kernel_size": kernel, "stride": stride, "padding": padding}, [2, 3] + [size] * rank)


@pytest.mark.parametrize(
    "layer, shape",
    [
        ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": "same"}, [1, 2, 7, 5]),
        ({"type": "conv1d", "out_channels": 4, "kernel_size": 3, "padding": "valid"}, [1, 2, 7]),
        ({"type": "conv2d", "out_channels": 4, "kernel_size": [3, 1], "stride": [2, 1]}, [1, 2, 7, 5]),
        ({"type": "adaptive_avgpool2d", "output_size": [2, 3]}, [1, 2, 7, 5]),
        ({"type": "adaptive_maxpool2d", "output_size": 1}, [1, 2, 7, 5]),
        ({"type": "adaptive_avgpool1d", "output_size": 4}, [1, 2, 7]),
        ({"type": "flatten"}, [2, 3, 4, 5]),
        ({"type": "flatten", "start_dim": 2}, [2, 3, 4, 5]),
        ({"type": "flatten", "start_dim": 0, "end_dim": 1}, [2, 3, 4, 5]),
        ({"type": "reshape", "shape": [-1, 2]}, [2, 3, 4]),
        ({"type": "linear", "out_features": 7}, [2, 3, 4]),
        ({"type": "fourier", "output": "real_imag"}, [2, 9]),
        ({"type": "tensor_reduction", "out_features": 2}, [2, 3, 4]),
        ({"type": "parallel", "merge": "stack", "dim": 1,
          "branches": [{"type": "linear", "out_features": 3}, {"type": "linear", "out_features": 3}]}, [2, 4]),
        ({"type": "parallel", "merge": "mul",
          "branches": [{"type": "linear", "out_features": 1}, {"type": "linear", "out_features": 3}]}, [2, 4]),
    ],
)  # fmt: skip
def test_other_shapes(layer, shape):
    check(layer, shape)


def test_broadcast_matches_torch():
    assert broadcast((2, 1, 3), (4, 1)) == tuple(torch.broadcast_shapes((2, 1, 3), (4, 1)))
    with pytest.raises(ShapeError):
        broadcast((2, 3), (4,))
