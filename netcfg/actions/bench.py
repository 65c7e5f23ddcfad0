"""Honest timing of a spec's forward (or training) step on a device. Returns data.

Method: build, warm up (excluded), then time rounds until the median is stable: each
round times a block of calls long enough to dwarf the clock's resolution; timing stops
when the interquartile range of the rounds is under `stable` of the median (after `min_time`
seconds and at least 10 rounds), as torch.utils.benchmark's adaptive mode does, or at
`max_time`. On CUDA every block is timed with CUDA events after a synchronization.
torch.compile's compile time is measured apart from the steady state. "Samples" are the
model's input samples only (samples/s = batch / median step time); the timed units are rounds.
A run records the threads, cores and load it saw and says when they (or the rounds' spread)
make its figures doubtful (netcfg/actions/bench_health.py).
"""

from __future__ import annotations

import contextlib
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from netcfg.actions import bench_health
from netcfg.actions.failures import TORCH_FAILURES, first_line, layer_failure, tracking
from netcfg.actions.model import build_model, shown_inputs
from netcfg.building import devices
from netcfg.building.builder import sample_inputs
from netcfg.errors import InputError, Loc, NetcfgError
from netcfg.numbers import (
    BATCH_MAX,
    MAX_SECONDS,
    THREADS_PER_CORE,
    max_threads,
    parse_int,
    parse_int_list,
    parse_real,
)
from netcfg.spec.model import Spec
from netcfg.text import quote

MIN_BLOCK_S = 0.002  # each sample covers at least this long
MAX_WARMUP_ITERATIONS = 3600


@dataclass(frozen=True)
class BenchConfig:
    device: str = "auto"
    batch: int | None = None
    dtype: str | None = None
    amp: bool = False
    compile: bool = False
    mode: str = "inference"
    warmup: float = 10
    """Iterations (an int) or seconds (a float given as e.g. '2s')."""
    warmup_is_seconds: bool = False
    min_time: float = 1.0
    max_time: float = 10.0
    stable: float = 0.05
    threads: int | None = None
    seed: int | None = None
    memory_check: bool = True
    """Refuse, before allocating, a model whose weights and forward pass do not fit in the device's
    free memory (in train mode the forward pass alone: a lower bound of what training needs)."""


@dataclass
class BenchResult:
    device: str
    device_name: str
    batch: int
    dtype: str
    mode: str
    amp: bool
    compiled: bool
    threads: int
    torch: str
    median: float
    mean: float
    min: float
    max: float
    p90: float
    p99: float
    iqr: float
    stddev: float
    rounds: int
    iterations: int
    samples_per_s: float
    peak_memory_bytes: int
    """CUDA: torch.cuda.max_memory_allocated during the run; CPU: growth of the process's peak RSS
    (a peak never comes down: in a sweep, rows after the largest understate)."""
    peak_reserved_bytes: int | None = None
    compile_time_s: float | None = None
    warmup_s: float = 0.0
    cores: int = 1
    """CPU cores the process could run on."""
    load_before: float | None = None
    """1-minute load average before the build; load_after: when the timing ended."""
    load_after: float | None = None
    others_busy: float | None = None
    """Cores' worth of CPU other processes used during the run (Linux; None elsewhere)."""
    warnings: list[str] = field(default_factory=list)
    """Why the figures may not be the model's: oversubscribed threads, a busy machine, unstable rounds."""

    @property
    def ops(self) -> float:
        """Calls per second (pytest-benchmark's name)."""
        return 1.0 / self.median

    def as_dict(self) -> dict:
        return {**asdict(self), "ops": self.ops}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_model() or platform.processor() or "cpu"
    return device.type


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def bench(spec: Spec, config: BenchConfig, progress: Callable[[float], None] | None = None) -> BenchResult:
    """Time one configuration (one device, one batch size)."""
    check_config(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    spec = with_batch(spec, config.batch)
    load_before, clock = bench_health.load_average(), bench_health.CpuClock()
    built = build_model(
        spec, device=config.device, seed=config.seed, dtype=config.dtype, memory_check=config.memory_check,
        forward_check=config.memory_check,
    )  # fmt: skip
    device = built.device
    if device.type == "meta":
        raise InputError("cannot time the meta device: it computes nothing", Loc("--device meta"))
    step = _step(built, config)
    rss_before = _peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        compile_time = _first_call(step, device) if config.compile else None
        warmup_s, warmup_per_call = _warm_up(step, device, config)
        times, iterations = _sample(step, device, config, progress)
    except TORCH_FAILURES as exc:  # one line naming the layer or the flag, not PyTorch's traceback
        raise _failure(built, config, exc) from exc
    result = _result(built, config, times, iterations, rss_before, compile_time, warmup_s)
    return _judged(result, config, times, (load_before, clock), warmup_per_call)


def _judged(result: BenchResult, config: BenchConfig, times: list[float], before, warmup_per_call) -> BenchResult:
    """The result with the conditions it ran under and the warnings they call for."""
    load_before, clock = before
    seen = bench_health.conditions(result.threads, 1, result.device.startswith("cpu"), load_before, clock)
    result.cores, result.load_before, result.load_after = seen.cores, seen.load_before, seen.load_after
    result.others_busy = seen.others
    unsettled = len(times) < 10 or not _stable(times, config)  # _sample stopped at max_time
    result.warnings = bench_health.health_warnings(seen, times, warmup_per_call, config.stable, unsettled)
    return result


def with_batch(spec: Spec, batch: int | None) -> Spec:
    """The spec with its sample inputs' first dimension set to `batch` (every input's)."""
    if batch is None:
        return spec
    from netcfg.actions.model import with_inputs

    return with_inputs(spec, {name: ([batch, *one.shape[1:]], None) for name, one in spec.head.inputs.items()})


def _step(built, config: BenchConfig) -> Callable[[], object]:
    """One forward pass (inference) or forward, backward and AdamW step (train)."""
    model = torch.compile(built.model) if config.compile else built.model
    xs = _inputs(built)
    autocast = _autocast(built.device, config)
    if config.mode == "inference":
        built.model.eval()

        def forward():
            with torch.inference_mode(), autocast():
                return model(*xs)

        return forward
    built.model.train()
    params = [p for p in built.model.parameters() if p.requires_grad]
    if not params:
        raise InputError("nothing to train: the model has no trainable parameters (every layer is frozen or has "
                         "none); time its forward pass with --mode inference", Loc("--mode train"))  # fmt: skip
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def train_step():
        with autocast():
            loss = loss_of(model(*xs))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return train_step


def _inputs(built) -> list[torch.Tensor]:
    xs = sample_inputs(built.spec, built.device, built.seed)
    return [x.to(built.dtype) if x.is_floating_point() else x for x in xs]


def loss_of(out) -> torch.Tensor:
    """A scalar to take the gradient of: the mean of the output (several: the sum of their means)."""
    if isinstance(out, torch.Tensor):
        return out.float().mean()
    outs = out.values() if isinstance(out, dict) else out
    return sum(t.float().mean() for t in outs)


def _failure(built, config: BenchConfig, exc: BaseException) -> NetcfgError:
    """What made a timed step fail, found by one eager pass under tracking: the layer that
    raises (where the spec defines it), else the flag (the backward pass is --mode train's,
    a pass that works eagerly failed in --compile)."""
    xs = _inputs(built)
    context = f"on {built.device} with the sample input {shown_inputs(built.spec, xs)}"
    context += " under --amp" if config.amp else ""
    grad = torch.inference_mode() if config.mode == "inference" else contextlib.nullcontext()
    tracker = None
    try:
        with grad, tracking(built.model) as tracker, _autocast(built.device, config)():
            output = built.model(*xs)
        if config.mode == "train":
            loss_of(output).backward()
    except TORCH_FAILURES as again:
        if tracker is not None and tracker.failed is not None:
            return layer_failure(built, tracker.failed, again, context)
        if config.mode == "train" and tracker is not None:
            return InputError(f"the training step failed {context}: {first_line(again)}", Loc("--mode train"))
        return InputError(f"the model could not run {context}: {first_line(again)}",
                          Loc("--amp" if config.amp else f"--device {config.device}"))  # fmt: skip
    if config.compile:
        return InputError(f"torch.compile failed {context}: {first_line(exc)}", Loc("--compile"))
    return InputError(f"timing failed {context}: {first_line(exc)}", Loc(f"--device {config.device}"))


def _autocast(device: torch.device, config: BenchConfig):
    if not config.amp:
        return contextlib.nullcontext
    dtype = torch.float16 if config.dtype == "float16" else torch.bfloat16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_call(step: Callable, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - start


def _warm_up(step: Callable, device: torch.device, config: BenchConfig) -> tuple[float, float | None]:
    """Seconds spent, and seconds per call over the warm-up's second half (its first calls pay
    one-time costs; None: too few calls to tell)."""
    start = time.perf_counter()
    ends = []
    if config.warmup_is_seconds:
        while time.perf_counter() - start < config.warmup:
            step()
            ends.append(time.perf_counter())
    else:
        for _ in range(int(config.warmup)):
            step()
            ends.append(time.perf_counter())
    _sync(device)
    spent = time.perf_counter() - start
    half = len(ends) // 2
    if half < 2 or device.type == "cuda":  # CUDA calls return before the work is done
        return spent, None
    return spent, (ends[-1] - ends[half - 1]) / (len(ends) - half)


def _time_block(step: Callable, device: torch.device, calls: int) -> float:
    """Seconds per call over `calls` back-to-back calls."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        begin.record()
        for _ in range(calls):
            step()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1000 / calls
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def _sample(step: Callable, device: torch.device, config: BenchConfig, progress) -> tuple[list[float], int]:
    one = _time_block(step, device, 1)
    calls = max(1, int(MIN_BLOCK_S / max(one, 1e-9)))
    times: list[float] = []
    start = time.perf_counter()
    while True:
        times.append(_time_block(step, device, calls))
        elapsed = time.perf_counter() - start
        if progress is not None:
            progress(min(elapsed / config.min_time, 1.0) if config.min_time > 0 else 1.0)
        if elapsed >= config.max_time or (elapsed >= config.min_time and len(times) >= 10 and _stable(times, config)):
            return times, len(times) * calls


def _stable(times: list[float], config: BenchConfig) -> bool:
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) <= config.stable * statistics.median(times)


def _percentile(sorted_times: list[float], q: float) -> float:
    index = min(len(sorted_times) - 1, max(0, round(q * (len(sorted_times) - 1))))
    return sorted_times[index]


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _result(built, config, times, iterations, rss_before, compile_time, warmup_s) -> BenchResult:
    ordered = sorted(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) >= 2 else (times[0],) * 3
    median = statistics.median(times)
    device = built.device
    if device.type == "cuda":
        peak, reserved = torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)
    else:
        peak, reserved = max(0, _peak_rss() - rss_before), None
    batch = int(next(iter(built.spec.head.inputs.values())).shape[0])  # --batch sets every input's
    return BenchResult(
        device=str(device), device_name=device_name(device), batch=batch,
        dtype=devices.dtype_name(built.dtype), mode=config.mode, amp=config.amp, compiled=config.compile,
        threads=torch.get_num_threads(), torch=torch.__version__, median=median, mean=statistics.fmean(times),
        min=ordered[0], max=ordered[-1], p90=_percentile(ordered, 0.9), p99=_percentile(ordered, 0.99),
        iqr=q3 - q1, stddev=statistics.pstdev(times), rounds=len(times), iterations=iterations,
        samples_per_s=batch / median, peak_memory_bytes=int(peak), peak_reserved_bytes=reserved,
        compile_time_s=compile_time, warmup_s=warmup_s,
    )  # fmt: skip


MAX_DEVICES = 16


def parse_devices(text: str) -> list[str]:
    """'cpu,cuda' -> ['cpu', 'cuda']; each must be present here."""
    where = Loc(f"--device {text}")
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise InputError("no device named: give one or several, e.g. cpu or cpu,cuda", where)
    if len(names) > MAX_DEVICES:
        raise InputError(f"at most {MAX_DEVICES} devices, got {len(names):,}", where)
    for name in names:
        devices.resolve(name, where)  # absent devices are errors up front
    return names


def parse_warmup(text: str) -> tuple[float, bool]:
    """'10' -> 10 iterations; '2s' or '0.5s' -> seconds (netcfg.numbers' rules: ASCII, finite)."""
    value = text.strip()
    where = Loc(f"--warmup {text}")
    if value.endswith("s"):
        return parse_real(value[:-1], where, 0.0, MAX_SECONDS, " seconds"), True
    if not value or not (value[0].isascii() and (value[0].isdigit() or value[0] in "+-")):
        raise InputError(f"expected a number of iterations (10) or seconds (2s), got {quote(text)}", where)
    return float(parse_int(value, where, 0, MAX_WARMUP_ITERATIONS, " iterations")), False


def parse_sweep(text: str) -> list[int]:
    key, sep, values = text.partition("=")
    where = Loc(f"--sweep {text}")
    if key.strip() != "batch" or not sep:
        raise InputError("only batch sizes can be swept: --sweep batch=1,8,64", where)
    return parse_int_list(values, where, 1, BATCH_MAX)


def check_config(config: BenchConfig) -> None:
    """The numbers of a configuration, checked before any of them reaches torch (the CLI's
    parsers check them too; this guards the Python API): torch.set_num_threads(100000)
    crashes the process, an infinite --min-time never ends."""
    if config.threads is not None and not 1 <= config.threads <= max_threads():
        raise InputError(f"must be between 1 and {max_threads()} ({THREADS_PER_CORE} per CPU core here), "
                         f"got {config.threads}", Loc(f"--threads {config.threads}"))  # fmt: skip
    limits = (
        ("--min-time", config.min_time, MAX_SECONDS),
        ("max_time", config.max_time, 10 * MAX_SECONDS),
        ("--warmup", config.warmup, MAX_SECONDS if config.warmup_is_seconds else MAX_WARMUP_ITERATIONS),
    )
    for flag, value, most in limits:
        if not (isinstance(value, (int, float)) and 0 <= value <= most):  # NaN fails this too
            raise InputError(f"must be between 0 and {most:g}, got {value}", Loc(f"{flag} {value}"))
