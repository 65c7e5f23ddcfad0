"""lstm, gru and rnn against plain PyTorch: given the same weights, each `output` choice equals the
matching tensor of torch.nn.LSTM / GRU / RNN; a torch module's state_dict loads as it is; the
initialization is PyTorch's; the FLOP rule is the matrix work of the step-by-step recurrence."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from netcfg.building.builder import build_spec
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec_data

TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def spec(model: dict, shape: list[int], seed: int = 0):
    return load_spec_data({"netcfg": 1, "seed": seed, "input": {"shape": shape}, "model": model}, "generated")


def twin(args: dict, features: int) -> nn.RNNBase:
    """The plain torch module of these arguments."""
    extra = {k: args[k] for k in ("proj_size", "nonlinearity") if k in args}
    return TORCH[args["type"]](
        features, args["hidden_size"], num_layers=args.get("num_layers", 1), bias=args.get("bias", True),
        batch_first=args.get("batch_first", True), bidirectional=args.get("bidirectional", False), **extra,
    )  # fmt: skip


def expected(args: dict, reference: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """The tensor `output` names, picked from torch's (output, h_n) by hand."""
    y, h_n = reference(x)
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n
    batch_first = args.get("batch_first", True)
    if args.get("output", "sequence") == "sequence":
        return y
    if args["output"] == "last":
        return y[:, -1] if batch_first else y[-1]
    if args.get("bidirectional"):  # the last layer's forward and backward final states
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)
    return h_n[-1]


CASES = [
    {"type": kind, "hidden_size": 6, "num_layers": layers, "bidirectional": bi, "batch_first": bf, "output": out}
    for kind, layers, bi, bf, out in itertools.product(
        TORCH, (1, 2), (False, True), (True, False), ("sequence", "last", "final")
    )
] + [
    {"type": "lstm", "hidden_size": 6, "proj_size": 3, "num_layers": 2, "bidirectional": True, "output": "final"},
    {"type": "lstm", "hidden_size": 6, "proj_size": 4, "batch_first": False, "output": "last", "bias": False},
    {"type": "rnn", "hidden_size": 5, "nonlinearity": "relu", "output": "final"},
    {"type": "gru", "hidden_size": 5, "bias": False, "bidirectional": True},
]


def _id(args: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in args.items() if k != "hidden_size")


@pytest.mark.parametrize("args", CASES, ids=_id)
def test_output_equals_torch_given_the_same_weights(args):
    n, t, f = 3, 5, 4
    shape = [n, t, f] if args.get("batch_first", True) else [t, n, f]
    model = build_spec(spec(args, shape), device="cpu").model.eval()
    reference = twin(args, f).eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    reference.load_state_dict(model.state_dict())  # and back: the same keys and shapes
    x = torch.randn(shape)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(y, expected(args, reference, x))
    width = (2 if args.get("bidirectional") else 1) * (args.get("proj_size") or args["hidden_size"])
    assert y.shape == ((*shape[:2], width) if args.get("output", "sequence") == "sequence" else (n, width))


def test_final_and_last_differ_only_in_the_backward_half_when_bidirectional():
    # 'last' is output[:, -1]: its backward half has read only the last step; 'final' (h_n) has the
    # backward direction after the whole sequence, which is output[:, 0]'s backward half.
    args = {"type": "gru", "hidden_size": 6, "bidirectional": True}
    built = {  # one seed: the same weights
        out: build_spec(spec({**args, "output": out}, [3, 5, 4]), device="cpu").model
        for out in ("sequence", "last", "final")
    }
    x = torch.randn(3, 5, 4)
    with torch.no_grad():
        sequence, last, final = (built[out](x) for out in ("sequence", "last", "final"))
    torch.testing.assert_close(last, sequence[:, -1])
    torch.testing.assert_close(final[:, :6], sequence[:, -1, :6])  # forward: the last step
    torch.testing.assert_close(final[:, 6:], sequence[:, 0, 6:])  # backward: it ends at step 0
    assert not torch.allclose(final[:, 6:], last[:, 6:])


def test_a_torch_models_state_dict_loads_under_the_layers_name():
    class Classifier(nn.Module):  # a hand-written model with published-style weights
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
            self.head = nn.Linear(12, 3)

        def forward(self, x):
            _, (h_n, _) = self.rnn(x)
            return self.head(torch.cat([h_n[-2], h_n[-1]], dim=-1))

    layers = [
        {"type": "lstm", "name": "rnn", "hidden_size": 6, "num_layers": 2, "bidirectional": True, "output": "final"},
        {"type": "linear", "name": "head", "out_features": 3},
    ]
    model = build_spec(spec({"type": "sequential", "layers": layers}, [2, 5, 4]), device="cpu").model.eval()
    torch.manual_seed(1)
    published = Classifier().eval()
    assert "rnn.weight_hh_l1_reverse" in model.state_dict()
    model.load_state_dict(published.state_dict())  # strict: the same keys
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), published(x))


@pytest.mark.parametrize("kind", TORCH)
def test_initialization_is_pytorchs_default(kind):
    args = {"type": kind, "hidden_size": 5, "num_layers": 2, "bidirectional": True}
    model = build_spec(spec(args, [2, 7, 8], seed=3), device="cpu").model
    torch.manual_seed(3)
    reference = twin(args, 8)
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name


def _cell_loop_flops(kind: str, n: int, t: int, f: int, h: int, layers: int, directions: int) -> int:
    """FlopCounterMode on the CPU over a hand-written loop of cells, layer by layer and direction by
    direction: the recurrence decomposed into its matrix products."""
    cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[kind]
    x = torch.randn(t, n, f)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        for _ in range(layers):
            outputs = []
            for _ in range(directions):
                step, state = cell(x.shape[-1], h), None
                outputs.append(torch.stack([_hidden(state := step(x_t, state)) for x_t in x]))
            x = torch.cat(outputs, dim=-1)
    return int(counter.get_total_flops())


def _hidden(state):
    return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize(("kind", "layers", "bidirectional"), [("lstm", 2, True), ("gru", 1, False), ("rnn", 2, False)])
def test_flops_are_the_matrix_work_of_the_recurrence(kind, layers, bidirectional):
    n, t, f, h = 3, 5, 4, 6
    args = {"type": kind, "hidden_size": h, "num_layers": layers, "bidirectional": bidirectional}
    visit = build_spec(spec(args, [n, t, f]), device="meta").visits[""]
    rule = visit.node.flops(visit.in_shapes, visit.out_shape)
    d, g = (2 if bidirectional else 1), GATES[kind]
    # 2 FLOPs per multiply-add: per sample, step, layer and direction x W_ih^T and h W_hh^T
    by_hand = sum(2 * n * t * d * (g * h * inputs + g * h * h) for inputs in [f] + [d * h] * (layers - 1))
    assert rule == by_hand == _cell_loop_flops(kind, n, t, f, h, layers, d)


def test_flops_with_a_projection_count_weight_hr():
    n, t, f, h, p = 3, 5, 4, 6, 2
    visit = build_spec(spec({"type": "lstm", "hidden_size": h, "proj_size": p}, [n, t, f]), device="meta").visits[""]
    assert visit.node.flops(visit.in_shapes, visit.out_shape) == 2 * n * t * (4 * h * f + 4 * h * p + p * h)


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        ({"type": "lstm", "hidden_size": 4}, [5, 8],
         "lstm expects a batch of sequences [N, T, F], got [5, 8] (an unbatched sequence [T, F] is not taken"),
        ({"type": "gru", "hidden_size": 4, "batch_first": False}, [2, 5, 3, 8],
         "gru expects a batch of sequences [T, N, F] (batch_first: false), got [2, 5, 3, 8]"),
        ({"type": "rnn", "hidden_size": 4, "dropout": 0.2}, [2, 5, 8], "dropout acts between stacked layers"),
        ({"type": "lstm", "hidden_size": 4, "proj_size": 4}, [2, 5, 8],
         "proj_size 4 must be smaller than hidden_size 4"),
    ],
)  # fmt: skip
def test_bad_inputs_and_arguments_are_build_errors(model, shape, message):
    with pytest.raises(BuildError) as err:
        build_spec(spec(model, shape), device="meta")
    assert message in str(err.value)


def test_token_ids_are_refused():
    data = {"netcfg": 1, "input": {"shape": [2, 5, 3], "dtype": "int64", "high": 9},
            "model": {"type": "lstm", "hidden_size": 4}}  # fmt: skip
    with pytest.raises(BuildError, match="lstm needs a floating-point input"):
        build_spec(load_spec_data(data, "generated"), device="meta")
