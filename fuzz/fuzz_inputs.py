"""Coverage-guided fuzzing of everything that reads untrusted bytes.

Targets (pick with --target, default all in turn per input):
  yaml        netcfg.spec.yaml_source.read_yaml on arbitrary text
  spec        the whole spec pipeline: read, expand, validate (no torch), and a meta build
  checkpoint  netcfg.io.safetensors_header.read_header on arbitrary bytes written to a file
  index       netcfg.io.shards.read_checkpoint on arbitrary bytes as a sharded checkpoint's index,
              beside a valid shard (s.safetensors) and one that is arbitrary bytes (x.safetensors)

Any exception other than NetcfgError is a finding (atheris reports it with the input).
Run (atheris: pip install atheris):
    python fuzz/fuzz_inputs.py -max_total_time=600 -rss_limit_mb=4096 fuzz/corpus
Without atheris, the same targets run under hypothesis over raw bytes:
    python fuzz/fuzz_inputs.py --hypothesis --examples 20000
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcfg.errors import NetcfgError  # noqa: E402

_SCRATCH = Path(tempfile.mkdtemp(prefix="netcfg-fuzz-"))


def target_yaml(data: bytes) -> None:
    from netcfg.spec.yaml_source import read_yaml

    with contextlib.suppress(NetcfgError):
        read_yaml(data.decode("utf-8", errors="replace"), "fuzz.yaml")


def target_spec(data: bytes) -> None:
    from netcfg.building.builder import build_spec
    from netcfg.spec.loader import load_spec

    path = _SCRATCH / "spec.yaml"
    path.write_bytes(data)
    with contextlib.suppress(NetcfgError):
        build_spec(load_spec(path), device="meta")


def target_checkpoint(data: bytes) -> None:
    from netcfg.io.safetensors_header import read_header

    path = _SCRATCH / "file.safetensors"
    path.write_bytes(data)
    with contextlib.suppress(NetcfgError):
        read_header(path)


_SHARD_HEADER = b'{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
SHARD = len(_SHARD_HEADER).to_bytes(8, "little") + _SHARD_HEADER + b"\x00\x00\x80?\x00\x00\x00@"
"""A valid safetensors file: one float32 tensor 'a' = [1, 2]."""
INDEX_SEED = b'{"metadata": {"total_size": 8}, "weight_map": {"a": "s.safetensors", "b": "x.safetensors"}}'


def target_index(data: bytes) -> None:
    from netcfg.io.shards import read_checkpoint

    (_SCRATCH / "s.safetensors").write_bytes(SHARD)
    half = len(data) // 2
    (_SCRATCH / "x.safetensors").write_bytes(data[half:])
    path = _SCRATCH / "fuzz.safetensors.index.json"
    path.write_bytes(data[:half])
    with contextlib.suppress(NetcfgError):
        read_checkpoint(path)


TARGETS = {"yaml": target_yaml, "spec": target_spec, "checkpoint": target_checkpoint, "index": target_index}


def one_input(data: bytes) -> None:
    """Route by the first byte so one fuzzing run exercises every target."""
    if not data:
        return
    names = list(TARGETS)
    TARGETS[names[data[0] % len(names)]](data[1:])


def seeds() -> list[bytes]:
    out = []
    for i, name in enumerate(TARGETS):
        if name == "index":
            out.append(bytes([i]) + INDEX_SEED + SHARD)
        elif name == "checkpoint":
            out += [bytes([i]) + p.read_bytes()[:4096] for p in sorted((ROOT / "configs").rglob("*.safetensors"))]
        else:
            out += [bytes([i]) + p.read_bytes() for p in sorted((ROOT / "configs").rglob("*.yaml"))[:12]]
    return out


def main_atheris() -> None:
    import atheris

    corpus = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus:
        os.makedirs(corpus, exist_ok=True)
        for i, seed in enumerate(seeds()):
            (Path(corpus) / f"seed-{i}").write_bytes(seed)
    with atheris.instrument_imports():
        import netcfg.io.safetensors_header  # noqa: F401
        import netcfg.io.shards  # noqa: F401
        import netcfg.spec.expand  # noqa: F401
        import netcfg.spec.loader  # noqa: F401
        import netcfg.spec.validate  # noqa: F401
        import netcfg.spec.yaml_source  # noqa: F401
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def main_hypothesis(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.one_of(st.sampled_from(seeds()), st.binary(max_size=4096)))
    def run(data: bytes) -> None:
        one_input(data)

    run()
    print(f"{examples} inputs, no finding")


if __name__ == "__main__":
    if "--hypothesis" in sys.argv:
        count = int(sys.argv[sys.argv.index("--examples") + 1]) if "--examples" in sys.argv else 5000
        main_hypothesis(count)
    else:
        main_atheris()
