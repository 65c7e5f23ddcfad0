"""A small training run shared by the train tests: data, spec, and running it to the end."""

from __future__ import annotations

from pathlib import Path

import torch

from netcfg.io.reading import load_tensors
from netcfg.io.tensor_files import save_tensors

SPEC = """\
netcfg: 1
input: {{shape: [8, 6]}}
model:
  type: sequential
  layers:
    - {{type: linear, out_features: 16}}
    - {{type: batchnorm1d}}
    - {{type: relu}}
    - {{type: dropout, p: 0.3}}
    - {{type: linear, out_features: 3}}
train:
  data: data.safetensors
  inputs: {{input: x}}
  target: y
  validation: {{fraction: 0.25}}
  batch_size: 8
  {length}
  accumulate: 2
  loss: {{kind: cross_entropy, label_smoothing: 0.1}}
  optimizer: {{kind: adamw, lr: 0.01, weight_decay: 0.1, decay_norms_and_biases: false}}
  schedule: {{kind: cosine, warmup_steps: 3}}
  clip_grad_norm: 0.5
  metrics: [loss, accuracy, top2]
  seed: 7
  log_every: {log_every}
  checkpoint: {{every: 4, keep: 2}}
"""


def make_data(folder: Path, samples: int = 96, seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # 3 classes a small MLP can learn
    path = folder / "data.safetensors"
    save_tensors({"x": x, "y": y}, path)
    return path


def make_spec(folder: Path, length: str = "epochs: 4", log_every: int = 3, **extra: str) -> Path:
    make_data(folder)
    text = SPEC.format(length=length, log_every=log_every)
    for key, value in extra.items():
        text += f"  {key}: {value}\n"
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def run_all(spec_path: Path, out: Path, resume: bool = False, stop=lambda: False) -> list:
    from netcfg.actions.train import train
    from netcfg.spec.loader import load_spec

    return list(train(load_spec(spec_path), str(out), resume=resume, stop=stop))


def final_state(out: Path) -> tuple[dict, str]:
    """The final model's tensors and the metrics text of a finished run."""
    return load_tensors(out / "model.safetensors"), (out / "metrics.jsonl").read_text()


def assert_same_run(a: Path, b: Path) -> None:
    tensors_a, metrics_a = final_state(a)
    tensors_b, metrics_b = final_state(b)
    assert metrics_a == metrics_b
    assert tensors_a.keys() == tensors_b.keys()
    for name in tensors_a:
        assert torch.equal(tensors_a[name], tensors_b[name]), name
