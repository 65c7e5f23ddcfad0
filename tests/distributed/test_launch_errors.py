"""Bad --nproc/--strategy input: one line, exit 2, nothing launched (fast: no process starts)."""

import pytest
from typer.testing import CliRunner

from netcfg.actions import distributed as dd
from netcfg.building import distributed as bd
from netcfg.cli.app import app
from tests.conftest import ROOT


def invoke(*args):
    return CliRunner().invoke(app, ["bench", str(ROOT / "configs/mlp.yaml"), "--device", "cpu", *args])


@pytest.mark.parametrize("value", ["0", "65", "two", "1,0"])
def test_nproc_out_of_range_is_one_line(value):
    result = invoke("--nproc", value)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith(f"--nproc {value}: error:")


def test_an_absent_backend_is_one_line_before_anything_starts(monkeypatch):
    monkeypatch.setattr(bd.dist, "is_backend_available", lambda name: False)
    monkeypatch.setattr(dd, "launch", lambda *a: pytest.fail("launched"))
    result = invoke("--nproc", "2")
    assert result.exit_code == 2
    assert result.output == "--device cpu: error: the gloo backend (cpu) is not available in this torch build\n"


def test_flags_a_distributed_run_ignores_are_refused():
    result = invoke("--nproc", "2", "--amp", "--compile")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "--compile: error: does not apply to --nproc/--strategy (one device type, the spec's batch per process)",
        "--amp: error: does not apply to --nproc/--strategy (one device type, the spec's batch per process)",
    ]


def test_a_rank_that_fails_ends_the_run_with_its_message(monkeypatch):
    monkeypatch.setattr(dd, "START_METHOD", "fork")

    def broken(job, world):
        if world.rank == 1:
            raise ValueError("rank one broke\nsecond line")
        world.mesh.get_group().barrier()  # rank 0 waits for rank 1, which never comes: ended, not hung

    monkeypatch.setitem(dd._TASKS, "broken", broken)
    from netcfg.spec.loader import load_spec

    with pytest.raises(dd.InputError, match=r"^--nproc: error: rank 1 failed: rank one broke$"):
        dd.launch(dd.Job("broken", load_spec(ROOT / "configs/mlp.yaml"), timeout_s=30), 2)


def test_the_launcher_quiets_torchs_warning_as_it_ends_the_other_ranks():
    # torch.multiprocessing.spawn logs "Terminating process N via signal SIGTERM" when a rank fails: a
    # second line before netcfg's one
    import logging

    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    import torch.distributed.elastic.agent.server.api  # noqa: F401  (its logger: set to WARNING on import)

    agent_log = logging.getLogger("torch.distributed.elastic.agent.server.api")
    assert agent_log.level == logging.WARNING  # its own level: quieting its parent does not quiet it
    for log in (spawn_log, agent_log):
        log.addHandler(handler)
    try:
        with dd._quiet_launcher():
            spawn_log.warning("Terminating process 1 via signal SIGTERM")
            agent_log.warning("Received 2 death signal, shutting down workers")
        assert seen == []
        spawn_log.warning("after")
        assert [r.getMessage() for r in seen] == ["after"]
    finally:
        for log in (spawn_log, agent_log):
            log.removeHandler(handler)


@pytest.mark.parametrize(
    ("number", "code", "said"), [(2, 130, "interrupted\n"), (15, 2, "--nproc: error: stopped by SIGTERM\n")]
)
def test_ctrl_c_while_the_ranks_run_is_one_line(monkeypatch, number, code, said):
    # the launcher turns SIGINT/SIGTERM into its SignalException (after ending the ranks): it came out as a
    # traceback, exit 1
    import signal

    import torch.distributed.launcher.api as launcher
    from torch.distributed.elastic.multiprocessing.api import SignalException

    def signalled(*args, **kwargs):
        def run(*a):
            raise SignalException(f"Process 1 got signal: {number}", sigval=signal.Signals(number))

        return run

    monkeypatch.setattr(launcher, "elastic_launch", signalled)
    result = CliRunner().invoke(app, ["run", str(ROOT / "configs/mlp.yaml"), "--nproc", "2"])
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", said)
