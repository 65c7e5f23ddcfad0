"""netcfg train against hand-written PyTorch: the same weights as a plain training loop, the
learning rates of torch's own schedulers, the metrics of torch.topk on the final model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from netcfg.actions import train as actions
from netcfg.actions.checkpoint import load
from netcfg.cli.app import app
from netcfg.io.reading import load_tensors
from netcfg.spec.loader import load_spec
from tests.train.helpers import make_spec, run_all


def _twin_data(folder, fraction_seed: int = 7):
    """The training and validation samples as the spec's documented split draws them."""
    data = load_tensors(folder / "data.safetensors")
    order = torch.randperm(96, generator=torch.Generator().manual_seed(fraction_seed))
    return (data["x"][order[24:]], data["y"][order[24:]]), (data["x"][order[:24]], data["y"][order[:24]])


def _twin_loop(twin, opt, sched, loss_fn, train, epochs: int, seed: int, accumulate: int, clip: float | None):
    x, y = train
    torch.manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        batches = [order[i : i + 8] for i in range(0, len(x), 8)]
        for k in range(0, len(batches), accumulate):
            group = batches[k : k + accumulate]
            samples = sum(len(b) for b in group)
            opt.zero_grad()
            for b in group:
                (loss_fn(twin(x[b]), y[b]) * (len(b) / samples)).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(twin.parameters(), clip)
            opt.step()
            sched.step()


def _twin(spec_path):
    """A hand-written nn.Sequential with the netcfg model's initial weights."""
    twin = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    twin.load_state_dict(actions.build_model(load_spec(spec_path)).model.state_dict())
    return twin


def _assert_close(model_file, twin):
    trained = load_tensors(model_file)
    for name, tensor in twin.state_dict().items():
        torch.testing.assert_close(trained[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_adamw_cosine_accumulation_clipping_match_a_plain_pytorch_loop(tmp_path):
    spec = make_spec(tmp_path)  # AdamW, decay off for norms and biases, cosine after 3 warm-up steps, ...
    events = run_all(spec, tmp_path / "out")
    twin = _twin(spec)
    decay = [p for n, p in twin.named_parameters() if not (n.endswith("bias") or n.startswith("1."))]
    plain = [p for n, p in twin.named_parameters() if n.endswith("bias") or n.startswith("1.")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": plain, "weight_decay": 0.0}], lr=0.01)
    total = 4 * math.ceil(9 / 2)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 3, end_factor=1.0, total_iters=2)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - 3)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[3])
    train, validation = _twin_data(tmp_path)
    loss = lambda out, y: F.cross_entropy(out, y, label_smoothing=0.1)  # noqa: E731
    _twin_loop(twin, opt, sched, loss, train, 4, 7, accumulate=2, clip=0.5)
    assert events[0].total_steps == total
    _assert_close(tmp_path / "out" / "model.safetensors", twin)
    twin.eval()
    with torch.no_grad():
        scores = twin(validation[0])
    top2 = (scores.topk(2, dim=1).indices == validation[1][:, None]).any(dim=1).float().mean().item()
    final = events[-1].validation
    assert final["accuracy"] == pytest.approx((scores.argmax(1) == validation[1]).float().mean().item())
    assert final["top2"] == pytest.approx(top2)
    assert final["loss"] == pytest.approx(F.cross_entropy(scores, validation[1], label_smoothing=0.1).item(), rel=1e-5)


def test_sgd_nesterov_mse_step_schedule_match_a_plain_pytorch_loop(tmp_path):
    spec = make_spec(tmp_path)
    text = spec.read_text().replace("cross_entropy, label_smoothing: 0.1", "mse")
    text = text.replace("{kind: adamw, lr: 0.01, weight_decay: 0.1, decay_norms_and_biases: false}",
                        "{kind: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.001}")  # fmt: skip
    text = text.replace("{kind: cosine, warmup_steps: 3}", "{kind: step, every: 4, gamma: 0.5}")
    text = text.replace("metrics: [loss, accuracy, top2]", "metrics: [loss]").replace("accumulate: 2", "accumulate: 1")
    text = text.replace("target: y", "target: t").replace("  clip_grad_norm: 0.5\n", "")
    spec.write_text(text)
    data = load_tensors(tmp_path / "data.safetensors")
    targets = torch.stack([data["x"][:, 0] - data["x"][:, 2], data["x"][:, 1], data["x"][:, 3] * 2], dim=1)
    from netcfg.io.tensor_files import save_tensors

    save_tensors({**data, "t": targets}, tmp_path / "data.safetensors")
    run_all(spec, tmp_path / "out")
    twin = _twin(spec)
    opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    (x, _), _ = _twin_data(tmp_path)
    order = torch.randperm(96, generator=torch.Generator().manual_seed(7))
    _twin_loop(twin, opt, sched, F.mse_loss, (x, targets[order[24:]]), 4, 7, accumulate=1, clip=None)
    _assert_close(tmp_path / "out" / "model.safetensors", twin)


@pytest.mark.parametrize(
    ("schedule", "reference"),
    [
        ("{kind: constant, warmup_steps: 5}", lambda opt: torch.optim.lr_scheduler.LinearLR(opt, 0.2, 1.0, 4)),
        ("{kind: step, every: 7, gamma: 0.3}", lambda opt: torch.optim.lr_scheduler.StepLR(opt, 7, 0.3)),
        ("{kind: cosine, min_lr: 0.001}", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 40, 0.001)),
    ],
)
def test_learning_rates_are_torch_schedulers(tmp_path, schedule, reference):
    spec = load_spec(make_spec(tmp_path), [f"train.schedule={schedule}"])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = reference(opt)
    for step in range(40):
        assert actions._lr(spec.head.train, step, 40) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_the_final_model_is_a_netcfg_checkpoint_that_run_and_inspect_read(tmp_path):
    spec = make_spec(tmp_path, length="steps: 3")
    result = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.stdout
    model = tmp_path / "out" / "model.safetensors"
    assert load(model).built.spec.head.train.steps == 3
    for command in (["run", str(model)], ["inspect", str(model)], ["load", str(model)]):
        assert CliRunner().invoke(app, command).exit_code == 0, command


def test_metrics_lines_are_one_per_logged_step_and_per_validation(tmp_path):
    spec = make_spec(tmp_path)  # 5 steps an epoch, 4 epochs, a line every 3 steps
    run_all(spec, tmp_path / "out")
    import json

    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    logged = [line["step"] for line in lines if "split" not in line]
    validated = [line["step"] for line in lines if line.get("split") == "validation"]
    assert logged == [3, 6, 9, 12, 15, 18, 20]
    assert validated == [5, 10, 15, 20]
    assert set(lines[0]) == {"step", "epoch", "lr", "loss", "accuracy", "top2"}


def test_weight_decay_skips_norms_and_biases_when_asked(tmp_path):
    spec = load_spec(make_spec(tmp_path))
    built = actions.build_model(spec)
    groups = actions.make_optimizer(built.model, spec.head.train).param_groups
    names = {id(p): n for n, p in built.model.named_parameters()}
    assert [sorted(names[id(p)] for p in g["params"]) for g in groups] == [
        ["0.weight", "4.weight"],
        ["0.bias", "1.bias", "1.weight", "4.bias"],
    ]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
