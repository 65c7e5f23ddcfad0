"""The reference chapter's device lessons, measured: transfers, logging, several GPUs.

* transfers: many small host-to-device copies against one copy of the same bytes;
* logging: reading each step's loss on the host (a synchronization per step) against
  keeping the losses on the device and copying them once at the end;
* two_gpus: the same work on two GPUs one after the other against both at once.
Each returns a ScenarioResult with the two timings and their ratio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from netcfg.errors import InputError, Loc

SCENARIOS = ("transfers", "logging", "two_gpus")


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    device: str
    slow_label: str
    slow_s: float
    fast_label: str
    fast_s: float

    @property
    def ratio(self) -> float:
        return self.slow_s / self.fast_s if self.fast_s else float("inf")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(fn, device: torch.device, repeats: int = 5, min_time: float = 0.0) -> float:
    """Best timing (the least disturbed run) of fn, synchronized, after one untimed run:
    at least `repeats` runs and at least `min_time` seconds of them (capped at 10x that + 10 s)."""
    fn()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < repeats or (spent < min_time and spent < 10 * min_time + 10):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


def transfers(device: torch.device, min_time: float = 0.0, total_mib: int = 64, pieces: int = 4096) -> ScenarioResult:
    pinned = device.type == "cuda"
    small = [torch.ones(total_mib * 2**18 // pieces, pin_memory=pinned) for _ in range(pieces)]
    large = torch.ones(total_mib * 2**18, pin_memory=pinned)
    target = torch.empty(total_mib * 2**18, device=device)
    chunks = list(target.split(total_mib * 2**18 // pieces))
    many = _best(lambda: [c.copy_(s) for c, s in zip(chunks, small, strict=True)], device, min_time=min_time)
    one = _best(lambda: target.copy_(large), device, min_time=min_time)
    return ScenarioResult("transfers", str(device), f"{pieces} copies of {total_mib * 1024 // pieces} KiB", many,
                          f"1 copy of {total_mib} MiB", one)  # fmt: skip


def logging(device: torch.device, min_time: float = 0.0, steps: int = 200, width: int = 256) -> ScenarioResult:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 1)).to(device)
    x = torch.randn(64, width, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> torch.Tensor:
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def each_step_to_host() -> None:
        log = []
        for _ in range(steps):
            log.append(step().item())  # waits for the device every step

    def on_device() -> None:
        log = torch.empty(steps, device=device)
        for i in range(steps):
            log[i] = step()
        log.cpu()  # one copy at the end

    slow, fast = _best(each_step_to_host, device, 3, min_time), _best(on_device, device, 3, min_time)
    return ScenarioResult("logging", str(device), f"{steps} steps, loss.item() each step", slow,
                          f"{steps} steps, losses kept on the device", fast)  # fmt: skip


def two_gpus(min_time: float = 0.0, size: int = 4096, rounds: int = 20) -> ScenarioResult:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        raise InputError(f"the two_gpus scenario needs two CUDA GPUs, this machine has {count}", Loc("--scenario"))
    gpus = [torch.device("cuda", i) for i in (0, 1)]
    mats = [torch.randn(size, size, device=g) for g in gpus]

    def work(m: torch.Tensor) -> None:
        for _ in range(rounds):
            m @ m

    def sequential() -> None:
        for g, m in zip(gpus, mats, strict=True):
            work(m)
            torch.cuda.synchronize(g)

    def together() -> None:
        for m in mats:
            work(m)  # both queues fill before either is waited on
        for g in gpus:
            torch.cuda.synchronize(g)

    slow, fast = _best(sequential, gpus[0], 3, min_time), _best(together, gpus[0], 3, min_time)
    return ScenarioResult("two_gpus", "cuda:0,cuda:1", "one GPU after the other", slow,
                          "both GPUs at once", fast)  # fmt: skip
