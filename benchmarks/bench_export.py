"""Export every shipped config with `netcfg export`'s code, to .pt2 and to ONNX, and check both.

    python benchmarks/bench_export.py                       # every config under configs/, table
    python benchmarks/bench_export.py configs/resnet18.yaml --format onnx --json

For each spec: build it on the CPU (the spec's seed), then `netcfg.actions.export.export` it
as the CLI does (batch dimension dynamic), once per format, to a temporary directory. Each
export is checked there: the artifact, from its bytes, runs the spec's sample input and a
batch one row larger (`torch.export.load(...).module()` for .pt2, onnxruntime's CPU provider
for ONNX), compared with the eager model. Columns: export seconds (tracing, conversion,
serialization; the check not included), file size, and the largest absolute difference over
both batches. A config that cannot export gets its one-line reason instead.

One untimed warm-up export of configs/mlp.yaml per format comes first (torch.export's first
call sets up the tracer). configs/llama2-70b.yaml (138 GB of bfloat16 weights) cannot be
built here: it runs shrunk to 2 layers of width 1024, named so in the table. A spec with
`# netcfg-test-args: --plugin FILE` gets that plugin loaded.

Target: every float32 config that exports has a max abs diff <= 1e-4 + 1e-4 x its largest
|output| in both formats (export's own check, which refuses more: such a row shows as a
failure, and the exit status is 1). The largest |output| is a column: randomly initialized
deep ResNets reach 3e4 (ResNet-101) and 6e7 (ResNet-152), where PyTorch's own float32 output
differs from its float64 output by 0.01 and 31.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `netcfg` importable from the checkout
    sys.path.insert(0, str(ROOT))

from netcfg.actions import export  # noqa: E402
from netcfg.actions.model import build_model  # noqa: E402
from netcfg.building import plugins  # noqa: E402
from netcfg.errors import NetcfgError  # noqa: E402
from netcfg.spec.loader import load_spec  # noqa: E402

TARGET = 1e-4
SHRUNK = {
    "configs/llama2-70b.yaml": [
        "vars.layers=2", "vars.width=1024", "vars.heads=16", "vars.kv_heads=2", "vars.ffn=3584", "vars.vocab=4096",
        "input.high=4096",
    ],
}  # fmt: skip


def shipped() -> list[str]:
    return [str(p.relative_to(ROOT)) for folder in ("configs", "configs/chapter", "configs/plugins")
            for p in sorted((ROOT / folder).glob("*.yaml"))]  # fmt: skip


def plugin_args(path: Path) -> list[str]:
    match = re.search(r"^# netcfg-test-args: --plugin (\S+)$", path.read_text(), re.MULTILINE)
    return [str(ROOT / match.group(1))] if match else []


def one(spec: str, formats: list[str], folder: Path) -> dict:
    """Build `spec` once and export it to each format: a row of figures or reasons."""
    path = ROOT / spec
    plugins.load(plugin_args(path))
    row = {"spec": spec + (" (shrunk)" if spec in SHRUNK else "")}
    try:
        built = build_model(load_spec(path, SHRUNK.get(spec, [])), device="cpu")
    except NetcfgError as exc:
        return {**row, "error": exc.diagnostics[0].message}
    row["parameters"] = sum(p.numel() for p in built.model.parameters())
    row["dtype"] = str(built.dtype).replace("torch.", "")
    for fmt in formats:
        if fmt == "onnx" and export.missing_onnx_packages():
            row[fmt] = {"error": f"needs {', '.join(export.missing_onnx_packages())}: {export.ONNX_EXTRA}"}
            continue
        try:
            done = export.export(built, folder / f"model.{fmt}", fmt, source=spec)
        except NetcfgError as exc:
            row[fmt] = {"error": str(exc.diagnostics[0])}
            continue
        row[fmt] = {
            "seconds": round(done.export_seconds, 3),
            "bytes": done.bytes,
            "max_abs_diff": max(c.max_abs_diff for c in done.checks),
            "output_scale": max(c.scale for c in done.checks),
            "batches": [c.batch for c in done.checks],
            "check_seconds": round(done.check_seconds, 3),
        }
        (folder / f"model.{fmt}").unlink()
    del built
    gc.collect()
    return row


def table(rows: list[dict], formats: list[str]) -> str:
    head = ["spec", "parameters", "max \\|output\\|"] + [f"{f} {c}" for f in formats for c in ("s", "MiB", "max diff")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for row in rows:
        scales = [row[f]["output_scale"] for f in formats if "output_scale" in row.get(f, {})]
        cells = [
            row["spec"],
            f"{row['parameters']:,}" if "parameters" in row else "-",
            f"{max(scales):.3g}" if scales else "-",
        ]
        for fmt in formats:
            result = row.get(fmt, {"error": row.get("error", "")})
            if "error" in result:
                cells += ["fails", "-", "-"]
                notes.append(f"- {row['spec']} ({fmt}): {result['error']}")
            else:
                cells += [f"{result['seconds']:.2f}", f"{result['bytes'] / 2**20:.1f}", f"{result['max_abs_diff']:.2g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ([""] + notes if notes else []))


def missed(rows: list[dict], formats: list[str]) -> list[str]:
    """float32 exports beyond 1e-4 + 1e-4 x the largest |output| (the check's own rule)."""
    return [f"{row['spec']} {fmt}: {row[fmt]['max_abs_diff']:.3g}" for row in rows for fmt in formats
            if row.get("dtype") == "float32" and "max_abs_diff" in row.get(fmt, {})
            and not row[fmt]["max_abs_diff"] <= TARGET * (1 + row[fmt]["output_scale"])]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", help="specs to export (default: every shipped config)")
    parser.add_argument("--format", choices=["pt2", "onnx", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    formats = ["pt2", "onnx"] if args.format == "both" else [args.format]
    specs = args.specs or shipped()
    rows = []
    with tempfile.TemporaryDirectory(prefix="netcfg-export-") as tmp:
        folder = Path(tmp)
        one("configs/mlp.yaml", formats, folder)  # warm-up, untimed
        for spec in specs:
            rows.append(one(spec, formats, folder))
            print(f"{spec}: done", file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=2) if args.json else table(rows, formats))
    bad = missed(rows, formats)
    for line in bad:
        print(f"target missed (max abs diff > {TARGET:g}): {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
