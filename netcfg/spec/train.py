"""The `train:` section of a spec: a declared training run (data, loss, optimizer, schedule). No torch.

    train:
      data: digits.safetensors          # named tensors; relative to the spec file
      inputs: {input: images}           # model input -> tensor name (default: the same names)
      target: labels
      validation: {fraction: 0.2}       # or {file: val.safetensors}
      batch_size: 64
      epochs: 10                        # or steps: N
      loss: {kind: cross_entropy}
      optimizer: {kind: adamw, lr: 0.001, weight_decay: 0.01}
      schedule: {kind: cosine, warmup_steps: 20}
      metrics: [accuracy, top3]
      checkpoint: {every: 50, keep: 2}

Every choice is a closed list: a name that is not one of them is a located error.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_CONFIG = ConfigDict(
    extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True, defer_build=True, allow_inf_nan=False
)

TENSOR_NAME = r"^[^\x00-\x1f]{1,255}$"
Count = Annotated[int, Field(ge=1, le=2**31 - 1)]
Rate = Annotated[float, Field(gt=0, le=1e3)]


class _Part(BaseModel):
    model_config = _CONFIG


# ---------------------------------------------------------------- losses


class CrossEntropyLoss(_Part):
    """Classification: output [N, C] (or [N, C, ...]) scores, target class ids [N] (or [N, ...])."""

    kind: Literal["cross_entropy"]
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Mix of the one-hot target with the uniform distribution."""
    ignore_index: int = -100
    """Target value that contributes nothing (padding)."""


class NextTokenLoss(_Part):
    """Language models: output [N, T, V] scores; position t is scored against token t+1 of the target."""

    kind: Literal["next_token"]
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ignore_index: int = -100


class MSELoss(_Part):
    """Mean squared error; target of the output's shape."""

    kind: Literal["mse"]


class L1Loss(_Part):
    """Mean absolute error; target of the output's shape."""

    kind: Literal["l1"]


class BCEWithLogitsLoss(_Part):
    """Binary cross-entropy on logits; target probabilities of the output's shape."""

    kind: Literal["bce_with_logits"]
    pos_weight: Optional[float] = Field(None, gt=0)
    """Weight of the positive examples (a scalar)."""


Loss = Annotated[
    Union[CrossEntropyLoss, NextTokenLoss, MSELoss, L1Loss, BCEWithLogitsLoss], Field(discriminator="kind")
]
CLASSIFICATION = ("cross_entropy", "next_token")


# ---------------------------------------------------------------- optimizers


class _Optimizer(_Part):
    lr: Rate = 1e-3
    """Peak learning rate (the schedule scales it)."""
    weight_decay: float = Field(0.0, ge=0, le=10)
    decay_norms_and_biases: bool = True
    """false: norm layers' parameters and biases get no weight decay."""


class SGD(_Optimizer):
    """Stochastic gradient descent."""

    kind: Literal["sgd"]
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGD:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a momentum above 0")
        return self


class Adam(_Optimizer):
    """Adam (weight decay added to the gradient)."""

    kind: Literal["adam"]
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0, le=1)


class AdamW(Adam):
    """Adam with decoupled weight decay."""

    kind: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0, le=10)


Optimizer = Annotated[Union[SGD, Adam, AdamW], Field(discriminator="kind")]


# ---------------------------------------------------------------- schedules


class _Schedule(_Part):
    warmup_steps: int = Field(0, ge=0, le=2**31 - 1)
    """Steps of linear warm-up from lr/warmup_steps to lr (before the schedule proper)."""


class ConstantSchedule(_Schedule):
    """The same learning rate throughout (after the warm-up)."""

    kind: Literal["constant"]


class StepSchedule(_Schedule):
    """Multiply the learning rate by `gamma` every `every` steps."""

    kind: Literal["step"]
    every: Count
    gamma: float = Field(0.1, gt=0, le=1)


class CosineSchedule(_Schedule):
    """Cosine decay from lr to min_lr over the steps after the warm-up."""

    kind: Literal["cosine"]
    min_lr: float = Field(0.0, ge=0)


Schedule = Annotated[Union[ConstantSchedule, StepSchedule, CosineSchedule], Field(discriminator="kind")]


# ---------------------------------------------------------------- the rest


class Validation(_Part):
    """Held-out data: a fraction of the training file (drawn with the seed), or another file."""

    fraction: Optional[float] = Field(None, gt=0, lt=1)
    file: Optional[str] = Field(None, min_length=1)
    """A safetensors file with the same tensor names, relative to the spec file."""

    @model_validator(mode="after")
    def _one_source(self) -> Validation:
        if (self.fraction is None) == (self.file is None):
            raise ValueError("give `fraction` (of the training data) or `file`, one of them")
        return self


class CheckpointPolicy(_Part):
    """Resumable checkpoints in OUT/checkpoints/."""

    every: Count = 100
    """Steps between checkpoints (one is also written at the end and on Ctrl-C)."""
    keep: Count = 2
    """How many of the latest checkpoints stay on disk."""


METRIC = re.compile(r"loss|accuracy|top([1-9][0-9]{0,3})")


def _known_metric(name: str) -> str:
    if not METRIC.fullmatch(name):
        raise ValueError(f"unknown metric '{name}' (one of: loss, accuracy, topK such as top5)")
    return name


Metric = Annotated[str, AfterValidator(_known_metric)]


class TrainSpec(_Part):
    """A training run on a safetensors file of named tensors (`netcfg train`)."""

    data: str = Field(min_length=1)
    """A safetensors file of named tensors, relative to the spec file (--data overrides it)."""
    inputs: dict[str, Annotated[str, Field(pattern=TENSOR_NAME)]] = Field(default_factory=dict)
    """Model input name -> tensor name in the file; inputs not listed read the tensor of their own name."""
    target: Optional[Annotated[str, Field(pattern=TENSOR_NAME)]] = None
    """The tensor the loss compares the output with (next_token: default the model's one input)."""
    output: Optional[str] = None
    """Which of the model's outputs is trained (a model with several outputs must say)."""
    validation: Optional[Validation] = None
    batch_size: Count = 32
    epochs: Optional[Count] = None
    steps: Optional[Count] = None
    """Optimizer steps in all (instead of `epochs`): the data is gone through as often as it takes."""
    shuffle: bool = True
    drop_last: bool = False
    """Leave out each epoch's last, partial batch (batchnorm cannot train on a batch of one)."""
    loss: Loss
    optimizer: Optimizer = Field(default_factory=lambda: AdamW(kind="adamw"))
    schedule: Schedule = Field(default_factory=lambda: ConstantSchedule(kind="constant"))
    clip_grad_norm: Optional[float] = Field(None, gt=0)
    """Scale the gradients down to this total L2 norm when above it."""
    accumulate: Annotated[int, Field(ge=1, le=65536)] = 1
    """Batches whose gradients add up to one optimizer step."""
    precision: Literal["float32", "bf16"] = "float32"
    """bf16: the forward pass under bfloat16 autocast (the weights stay in the spec's dtype)."""
    metrics: list[Metric] = Field(default_factory=lambda: ["loss"], max_length=16)
    """loss, accuracy, topK (e.g. top5): logged for training and validation."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """Seed of the data order, the validation split and dropout."""
    log_every: Count = 10
    """Steps between lines of OUT/metrics.jsonl."""
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    workers: Annotated[int, Field(ge=0, le=256)] = 0
    """Data-loader worker processes reading the batches ahead of the step (0: the training process
    reads them). The data order and the results are the same for any number."""
    stream: Union[bool, Literal["auto"]] = "auto"
    """true: read each batch's samples from the file as it is needed (a file larger than memory
    trains); false: read the data whole first; auto: stream data over 1 GiB or over half the free memory."""

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give `epochs` or `steps`, not both")
        if self.epochs is None and self.steps is None:
            raise ValueError("give `epochs` or `steps`: how long to train")
        scored = [m for m in self.metrics if m != "loss"]
        if scored and self.loss.kind not in CLASSIFICATION:
            raise ValueError(f"metric '{scored[0]}' needs a classification loss (cross_entropy or next_token), "
                             f"not {self.loss.kind}")  # fmt: skip
        if self.target is None and self.loss.kind != "next_token":
            raise ValueError(f"the {self.loss.kind} loss needs `target`: the tensor it compares the output with")
        return self

    def scored(self) -> dict[str, int]:
        """Each metric but the loss -> its k (accuracy is top1)."""
        return {name: 1 if name == "accuracy" else int(name[3:]) for name in self.metrics if name != "loss"}
