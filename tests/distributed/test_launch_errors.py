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
    spawn_log.addHandler(handler)
    try:
        with dd._quiet_launcher():
            spawn_log.warning("Terminating process 1 via signal SIGTERM")
        assert seen == []
        spawn_log.warning("after")
        assert [r.getMessage() for r in seen] == ["after"]
    finally:
        spawn_log.removeHandler(handler)
