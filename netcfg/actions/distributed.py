"""Run a spec on N processes: PyTorch's elastic launcher starts them (as torchrun does), each
joins the process group (gloo on CPU, NCCL on CUDA) and wraps the model (DDP or FSDP2,
netcfg/building/distributed.py). Under an outside torchrun, this process is one of the ranks
and nothing is launched. Returns data; rank 0's answer is the run's.

Failures. A rank that fails writes its error (a netcfg error's diagnostics, or the first line
of another exception) to a file and exits 2; the launcher then stops the other ranks, and the
earliest error is raised here as one NetcfgError. The workers' own output goes to log files,
so a failure is one line, not a traceback from every rank. Every collective runs under a
timeout (DEFAULT_TIMEOUT_S), so a rank waiting for a dead peer ends too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import statistics
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from netcfg import errors
from netcfg.actions import bench_health
from netcfg.actions.bench import BenchConfig, device_name, loss_of, with_batch
from netcfg.actions.failures import first_line
from netcfg.building import devices
from netcfg.building import distributed as d
from netcfg.building.builder import sample_inputs
from netcfg.errors import InputError, Loc, NetcfgError
from netcfg.spec.model import Spec

MAX_PROCESSES = 64
START_METHOD = "spawn"
"""How the launcher starts ranks: spawn is the safe one (CUDA needs it). The tests use forkserver (the
imports paid once); fork only for ranks that do no work: a child forked from a process that has run
OpenMP-parallel torch ops hangs in its first parallel region (GNU libgomp is not fork-safe)."""
MIN_BLOCK_S = 0.02  # a round covers at least this long: per-round collectives stay a small share


@dataclass(frozen=True)
class Job:
    """What every rank does: 'bench' (time steps), 'state' (the full state dict), 'step' (one
    training step on the global batch: the loss and every gradient)."""

    task: str
    spec: Spec
    strategy: str = "ddp"
    device: str = "cpu"
    seed: int | None = None
    bench: BenchConfig | None = None
    timeout_s: float = d.DEFAULT_TIMEOUT_S
    replicas: int | None = None
    """HSDP: copies of the model, each sharded over nproc // replicas ranks."""


@dataclass
class RankStats:
    rank: int
    median: float
    """This rank's median step time (seconds)."""
    peak_memory_bytes: int
    """CUDA: max_memory_allocated; CPU: growth of the rank's peak RSS from before the build."""
    state_bytes: int
    """Parameters, gradients and optimizer state this rank holds (its shards under FSDP)."""


@dataclass
class DistBenchResult:
    strategy: str
    nproc: int
    device: str
    device_name: str
    batch: int
    """Samples per rank per step; global_batch = batch x nproc."""
    global_batch: int
    dtype: str
    mode: str
    threads: int
    """torch threads per rank."""
    torch: str
    median: float
    """Step time: the slowest rank's median (a step ends when every rank's does)."""
    min: float
    iqr: float
    rounds: int
    iterations: int
    samples_per_s: float
    """Input samples per second over all ranks: global_batch / median."""
    units: int
    """FSDP units sharded apart from the root (0 under DDP)."""
    ranks: list[RankStats]
    efficiency: float | None = None
    """samples_per_s / (nproc x samples_per_s with one process), when that baseline was run."""
    cores: int = 1
    load_before: float | None = None
    load_after: float | None = None
    others_busy: float | None = None
    """Cores' worth of CPU other processes used during the run (Linux; None elsewhere)."""
    warnings: list[str] = field(default_factory=list)
    round_times: list[float] = field(default_factory=list, repr=False)
    """Rank 0's seconds per step in each round (judged for the warnings; not in the JSON)."""

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "round_times"}


def check_nproc(nproc: int, device: str) -> None:
    where = Loc(f"--nproc {nproc}")
    if not 1 <= nproc <= MAX_PROCESSES:
        raise InputError(f"must be between 1 and {MAX_PROCESSES}, got {nproc}", where)
    kind = devices.resolve(device, Loc(f"--device {device}"))[0].type
    if kind == "cuda" and nproc > torch.cuda.device_count():
        raise InputError(f"one GPU per process: {torch.cuda.device_count()} here", where)
    d.backend_for(kind, Loc(f"--device {device}"))  # an absent backend: before anything starts


def launch(job: Job, nproc: int):
    """Run `job` on `nproc` processes and return rank 0's answer."""
    placed = d.launched_world()
    if placed is not None:  # an outside torchrun started this process as one rank
        if placed[1] != nproc:
            raise InputError(f"torchrun started {placed[1]} processes", Loc(f"--nproc {nproc}"))
        return _run(job)
    check_nproc(nproc, job.device)
    if START_METHOD == "fork":  # forked ranks inherit these modules: seconds of imports each, paid once
        import torch.distributed.checkpoint.state_dict  # noqa: F401
        import torch.distributed.fsdp  # noqa: F401
    if START_METHOD == "forkserver":  # the server imports these once; each rank forks from it
        import multiprocessing

        multiprocessing.set_forkserver_preload(["torch", "torch.distributed.fsdp", "netcfg.actions.distributed"])
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="netcfg-ranks-") as scratch:
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"netcfg-{uuid.uuid4().hex[:12]}",
            rdzv_backend="c10d", rdzv_endpoint="localhost:0", rdzv_configs={"join_timeout": job.timeout_s},
            max_restarts=0, monitor_interval=0.05, start_method=START_METHOD,
            logs_specs=DefaultLogsSpecs(log_dir=os.path.join(scratch, "logs"), redirects=Std.ALL),
        )  # fmt: skip
        try:
            with _quiet_launcher():
                answers = elastic_launch(config, _entry)(job, scratch)
        except ChildFailedError as exc:
            raise _first_error(scratch, exc) from None
        except SignalException as exc:  # the launcher's handler of Ctrl-C (or a kill); it has ended the ranks
            raise _stopped(exc.sigval) from None
    return answers[0]


def _stopped(number: int) -> BaseException:
    """Ctrl-C: KeyboardInterrupt, which the CLI reports in one line (exit 130); another signal: one line."""
    import signal

    if number == signal.SIGINT:
        return KeyboardInterrupt()
    name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
    return InputError(f"stopped by {name}", Loc("--nproc"))


@contextlib.contextmanager
def _quiet_launcher():
    """The launcher logs each start and stop; netcfg reports a failure itself, once.

    Each of its loggers: several set their own level (WARNING), so quieting their parent is not
    enough (the agent's "Received 2 death signal" on Ctrl-C, torch.multiprocessing.spawn's
    "Terminating process N" when a rank fails: lines before netcfg's one)."""
    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(prefixes)]
    loggers = [logging.getLogger(name) for name in {*names, *prefixes}]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


PEER_GRACE_S = 1.0
"""How long a rank that failed on something other than a netcfg error waits before it exits."""


def _entry(job: Job, scratch: str):
    try:
        return _run(job)
    except BaseException as exc:  # noqa: BLE001  (every failure is reported, as one line)
        _record(exc, scratch)
        if not isinstance(exc, NetcfgError):
            # Most likely a consequence (a peer killed: "connection reset by peer"). The launcher reports
            # the first exit it sees; waiting lets it see the peer's death by a signal, the cause, first.
            time.sleep(PEER_GRACE_S)
        raise SystemExit(2) from None


def _record(exc: BaseException, scratch: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    if isinstance(exc, NetcfgError):
        found = {"kind": type(exc).__name__,
                 "diagnostics": [[asdict(x.loc) if x.loc else None, x.message] for x in exc.diagnostics]}  # fmt: skip
    else:
        found = {"kind": None, "message": f"rank {rank} failed: {first_line(exc)}"}
    found["time"] = time.time()
    Path(scratch, f"error-{rank}.json").write_text(json.dumps(found))


_ERRORS = {cls.__name__: cls for cls in (errors.SpecError, errors.BuildError, errors.DeviceError,
                                         errors.CheckpointError, errors.InputError, errors.PluginError,
                                         errors.TrainError)}  # fmt: skip


def _first_error(scratch: str, exc) -> NetcfgError:
    killed = _killed(scratch, exc)
    if killed is not None:
        return killed
    found = [json.loads(p.read_text()) for p in Path(scratch).glob("error-*.json")]
    if not found:
        rank, failure = exc.get_first_failure()
        return InputError(f"rank {rank} ended with exit code {failure.exitcode}{_last_log_line(scratch, rank)}",
                          Loc("--nproc"))  # fmt: skip
    first = min(found, key=lambda e: e["time"])
    if first["kind"] in _ERRORS:
        diagnostics = [errors.Diagnostic(Loc(**loc) if loc else None, message) for loc, message in first["diagnostics"]]
        return _ERRORS[first["kind"]](diagnostics)
    return InputError(first["message"], Loc("--nproc"))


def _killed(scratch: str, exc) -> NetcfgError | None:
    """A rank killed by a signal other than the launcher's SIGTERM (SIGKILL: the OOM killer, a user):
    the cause, said first; the errors of the others are its consequences (a peer gone)."""
    import signal

    for rank, failure in sorted(exc.failures.items()):
        code = failure.exitcode
        if code < 0 and -code != signal.SIGTERM and not Path(scratch, f"error-{rank}.json").exists():
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return InputError(f"rank {rank} was killed by {name}{_last_log_line(scratch, rank)}", Loc("--nproc"))
    return None


def _last_log_line(scratch: str, rank: int) -> str:
    for log in Path(scratch, "logs").rglob(f"{rank}/stderr.log"):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return f": {lines[-1].strip()[:300]}"
    return ""


# -- what each rank runs


def _run(job: Job):
    threads = job.bench.threads if job.bench and job.bench.threads else None
    torch.set_num_threads(threads or max(1, bench_health.cpu_cores() // int(os.environ["WORLD_SIZE"])))
    world = d.join(job.device, job.timeout_s)
    try:
        return _TASKS[job.task](job, world)
    finally:
        d.leave()


def _wrapped(job: Job, world: d.World, spec: Spec):
    """The model on this rank: DDP (whole, same seed on every rank) or FSDP2/HSDP shards; with its
    unit count. No memory check here: the launcher checked each rank's share (dist_model.check_memory)."""
    if job.strategy in ("fsdp", "hsdp"):
        built, units = build_sharded(spec, world, job.seed, job.replicas if job.strategy == "hsdp" else None)
        return built, built.model, len(units)
    from netcfg.actions.model import build_model

    built = build_model(spec, device=str(world.device), seed=job.seed, memory_check=False)
    return built, d.data_parallel(built, world), 0


def build_sharded(spec: Spec, world: d.World, seed: int | None = None, replicas: int | None = None):
    """The FSDP2 (HSDP with `replicas`) model, initialized as one process initializes it: the init
    rules, then the spec's `pretrained:` checkpoints. (built, units)."""
    built, units = d.build_sharded(spec, world, seed, replicas)
    if spec.head.pretrained:
        _load_pretrained(built, seed)
    return built, units


def _load_pretrained(built, seed: int | None) -> None:
    """The spec's `pretrained:` checkpoints into the shards, after the init rules, as in one process."""
    from netcfg.actions import pretrained
    from netcfg.building.builder import build_spec

    meta = build_spec(built.spec, device="meta", seed=seed, memory_check=False)
    built.pretrained = pretrained.apply_sharded(built, meta, d._put)
    built.warnings += pretrained.overridden_rule_warnings(built)


def _state(job: Job, world: d.World):
    _, model, _ = _wrapped(job, world, job.spec)
    state = d.full_state(model.module if job.strategy == "ddp" else model)
    return state if world.rank == 0 else None


def _global_slice(spec: Spec, world: d.World, seed: int | None) -> list[torch.Tensor]:
    """This rank's equal part of the spec's sample inputs (the global batch)."""
    batch = next(iter(spec.head.inputs.values())).shape[0]
    if batch % world.size:
        raise InputError(f"the batch ({batch}) must split evenly over {world.size} processes", Loc("--nproc"))
    return [x.chunk(world.size)[world.rank] for x in sample_inputs(spec, world.device, seed)]


def _step(job: Job, world: d.World):
    """One training step on the global batch: the loss, and every full gradient (on rank 0)."""
    import torch.distributed as dist

    built, model, _ = _wrapped(job, world, job.spec)
    xs = _global_slice(job.spec, world, job.seed)
    loss = loss_of(model(*[x.to(built.dtype) if x.is_floating_point() else x for x in xs]))
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    grads = {name: _full(p.grad) for name, p in (model.module if job.strategy == "ddp" else model).named_parameters()}
    return {"loss": total.item() / world.size, "grads": grads} if world.rank == 0 else None


def _full(t: torch.Tensor | None) -> torch.Tensor | None:
    from torch.distributed.tensor import DTensor

    if t is None:
        return None
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu()


_TASKS = {"state": _state, "step": _step}


def full_state(
    spec: Spec, nproc: int, strategy: str = "fsdp", seed: int | None = None, replicas: int | None = None
) -> dict[str, torch.Tensor]:
    """The whole state dict of the model as `strategy` builds it on `nproc` CPU processes."""
    return launch(Job("state", spec, strategy, "cpu", seed, replicas=replicas), nproc)


def train_step(spec: Spec, nproc: int, strategy: str, seed: int | None = None, replicas: int | None = None) -> dict:
    """{'loss': float, 'grads': {name: tensor}} after one step on the spec's sample input split over `nproc`."""
    return launch(Job("step", spec, strategy, "cpu", seed, replicas=replicas), nproc)


# -- bench


def bench(
    spec: Spec, config: BenchConfig, nproc: int, strategy: str, replicas: int | None = None
) -> DistBenchResult | None:
    """Time the step on `nproc` processes (each with the spec's batch, or --batch: weak scaling).
    None on the ranks other than 0 under an outside torchrun."""
    load_before, clock = bench_health.load_average(), bench_health.CpuClock()
    job = Job("bench", with_batch(spec, config.batch), strategy, config.device, config.seed, config, replicas=replicas)
    result = launch(job, nproc)
    if result is None:
        return None
    seen = bench_health.conditions(result.threads, nproc, result.device.startswith("cpu"), load_before, clock)
    result.cores, result.load_before, result.load_after = seen.cores, seen.load_before, seen.load_after
    result.others_busy = seen.others
    result.warnings = bench_health.health_warnings(seen, result.round_times, None, config.stable, False)
    return result


def _bench(job: Job, world: d.World):
    import torch.distributed as dist

    config = job.bench
    rss_before = _peak_rss()
    if world.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(world.device)
    built, model, units = _wrapped(job, world, job.spec)
    xs = _rank_input(job.spec, world, built)
    step, optimizer = _make_step(model, xs, config.mode, job.strategy)
    for _ in range(max(1, int(config.warmup)) if not config.warmup_is_seconds else 3):
        step()
    times, calls = _rounds(step, world, config)
    ordered = sorted(times)
    mine = RankStats(world.rank, statistics.median(times), _peak(world, rss_before), _state_bytes(model, optimizer))
    stats: list = [None] * world.size
    dist.all_gather_object(stats, mine)
    if world.rank != 0:
        return None
    batch = int(next(iter(job.spec.head.inputs.values())).shape[0])  # named inputs: a dict
    median = max(s.median for s in stats)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) >= 2 else (times[0],) * 3
    result = DistBenchResult(
        strategy=job.strategy, nproc=world.size, device=str(world.device), device_name=device_name(world.device),
        batch=batch, global_batch=batch * world.size, dtype=devices.dtype_name(built.dtype), mode=config.mode,
        threads=torch.get_num_threads(), torch=torch.__version__, median=median, min=ordered[0], iqr=q3 - q1,
        rounds=len(times), iterations=len(times) * calls, samples_per_s=batch * world.size / median, units=units,
        ranks=stats, round_times=times,
    )  # fmt: skip
    return result


def _rank_input(spec: Spec, world: d.World, built) -> list[torch.Tensor]:
    """Each rank its own batch (data parallelism): the sample inputs drawn from seed + rank."""
    seed = (built.seed + world.rank) % 2**63
    xs = sample_inputs(spec, world.device, seed)
    return [x.to(built.dtype) if x.is_floating_point() and built.dtype not in d.LOW_PRECISION else x for x in xs]


def _make_step(model, xs: list[torch.Tensor], mode: str, strategy: str):
    if mode == "inference":
        model.eval()

        def forward():
            with torch.no_grad():
                return model(*xs)

        return forward, None
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("nothing to train: the model has no trainable parameters", Loc("--mode train"))
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def train_step():
        loss = loss_of(model(*xs))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # kept: the gradients count in the rank's state
        return loss

    return train_step, optimizer


def _rounds(step, world: d.World, config: BenchConfig) -> tuple[list[float], int]:
    """Rounds of `calls` steps until rank 0 sees the median settle (or max_time); rank 0 decides
    for all (ranks that stopped apart would wait on each other's collectives)."""
    import torch.distributed as dist

    start = time.perf_counter()
    step()
    decision = torch.tensor([max(1, int(MIN_BLOCK_S / max(time.perf_counter() - start, 1e-9))), 0])
    dist.broadcast(decision, 0)
    calls, times = int(decision[0]), []
    start = time.perf_counter()
    while True:
        began = time.perf_counter()
        for _ in range(calls):
            step()
        if world.device.type == "cuda":
            torch.cuda.synchronize(world.device)
        times.append((time.perf_counter() - began) / calls)
        elapsed = time.perf_counter() - start
        settled = elapsed >= config.min_time and len(times) >= 10 and _settled(times, config.stable)
        decision[1] = int(elapsed >= config.max_time or settled)
        dist.broadcast(decision, 0)
        if decision[1]:
            return times, calls


def _settled(times: list[float], stable: float) -> bool:
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) <= stable * statistics.median(times)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak(world: d.World, rss_before: int) -> int:
    if world.device.type == "cuda":
        return torch.cuda.max_memory_allocated(world.device)
    return max(0, _peak_rss() - rss_before)


def _state_bytes(model, optimizer) -> int:
    """Bytes of this rank's parameters, gradients and optimizer state (its local shards)."""
    from torch.distributed.tensor import DTensor

    def local(t) -> int:
        if not isinstance(t, torch.Tensor):
            return 0
        return (t.to_local() if isinstance(t, DTensor) else t).nbytes

    total = sum(local(p) + local(p.grad) for p in model.parameters())
    if optimizer is not None:
        total += sum(local(v) for state in optimizer.state.values() for v in state.values())
    return total


_TASKS["bench"] = _bench


def with_efficiency(results: list[DistBenchResult]) -> list[DistBenchResult]:
    """Each result's scaling efficiency against the one-process result of the same strategy."""
    base = {r.strategy: r for r in results if r.nproc == 1}
    return [
        replace(r, efficiency=r.samples_per_s / (r.nproc * base[r.strategy].samples_per_s))
        if r.strategy in base else r
        for r in results
    ]  # fmt: skip
