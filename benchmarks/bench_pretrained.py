"""`pretrained:` through the shipped key maps at full size: time and peak memory.

    python benchmarks/bench_pretrained.py [--dir DIR] [--json]

Cases, each in a fresh child process of a parent that allocates nothing (Linux keeps a
parent's peak RSS across fork and exec); times leave out the imports:

* `gpt2 build`: configs/gpt2.yaml built on the CPU (124M parameters), no checkpoint;
* `gpt2 build + hf_gpt2`: the same, loading a Hugging Face GPT2Model-layout file (Conv1D
  weights [in, out], causal-mask buffers, 498 MB) through the `hf_gpt2` key map: every tensor
  planned from the header, then read and copied one at a time (transposed where Conv1D);
* `gpt2 load-map`: the dry run over that file (the header only, the model on the meta device);
* `llama2-70b load-map`: the dry run of configs/llama2-70b.yaml over a Llama-2-70B-layout file
  (723 bfloat16 tensors, 138 GB): a header and a sparse file, no data on disk.

The GPT-2 file is written from the hand-written reference layout (tests/actions/
reference_layouts.py) with random weights; before timing, the loaded model's output must equal
the reference's within 1e-5 of the largest logit. Target: the load's peak RSS stays under the build's plus the
largest tensor plus 25%: tensors are read one at a time, never the whole file at once.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
case, file = sys.argv[1], sys.argv[2]
import netcfg
from netcfg.actions.pretrained import load_map
from netcfg.spec.loader import load_spec
start = time.perf_counter()  # imports (torch) left out
if case == "write":
    from benchmarks.bench_pretrained import write_gpt2
    print(json.dumps({{"largest": write_gpt2(file)}}))
    sys.exit(0)
if case == "build":
    netcfg.build("configs/gpt2.yaml", device="cpu")
elif case == "load":
    entry = "pretrained=[{{file: '" + file + "', keymap: hf_gpt2, strict: true}}]"
    netcfg.build(load_spec("configs/gpt2.yaml", [entry]), device="cpu")
else:
    config = "configs/gpt2.yaml" if case == "map-gpt2" else "configs/llama2-70b.yaml"
    keymap = "hf_gpt2" if case == "map-gpt2" else "hf_llama"
    found = load_map(load_spec(config, ["pretrained=[{{file: '" + file + "', keymap: " + keymap + ", strict: true}}]"]))
    assert not found.refusals and not found.warnings, found.refusals or found.warnings
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def write_gpt2(path: str) -> int:
    """A full-size GPT2Model-layout file (checked); returns the largest tensor's bytes. Run in a child."""
    import torch
    from safetensors.torch import save_file

    from tests.actions import reference_layouts as ref

    torch.manual_seed(0)
    reference = ref.GPT2Model(vocab=50257, context=1024, width=768, layers=12, heads=12)
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, path)
    check_gpt2(reference, path)
    return max(t.numel() * t.element_size() for t in state.values())


def check_gpt2(reference, path: str) -> None:
    import torch

    import netcfg
    from netcfg.spec.loader import load_spec

    entry = f"pretrained=[{{file: '{path}', keymap: hf_gpt2, strict: true}}]"
    model = netcfg.build(load_spec(ROOT / "configs/gpt2.yaml", [entry, "input.shape=[1,16]"]), device="cpu").eval()
    ids = torch.randint(0, 50257, (1, 16))
    with torch.no_grad():
        expected = reference(ids) @ reference.wte.weight.t()
        difference = ((model(ids) - expected).abs().max() / expected.abs().max()).item()
    if difference > 1e-5:  # relative: the logits of random weights reach tens, float32 rounding scales with them
        raise SystemExit(f"loaded GPT-2 differs from the reference by {difference:.3g} (relative)")


def write_llama_70b(path: Path) -> None:
    """The header of a Llama-2-70B model.safetensors (one file), its data a hole."""
    width, ffn, vocab, kv = 8192, 28672, 32000, 1024
    shapes = {"model.embed_tokens.weight": [vocab, width], "model.norm.weight": [width]}
    shapes["lm_head.weight"] = [vocab, width]
    for i in range(80):
        p = f"model.layers.{i}."
        shapes |= {p + "input_layernorm.weight": [width], p + "post_attention_layernorm.weight": [width],
                   p + "self_attn.q_proj.weight": [width, width], p + "self_attn.k_proj.weight": [kv, width],
                   p + "self_attn.v_proj.weight": [kv, width], p + "self_attn.o_proj.weight": [width, width],
                   p + "mlp.gate_proj.weight": [ffn, width], p + "mlp.up_proj.weight": [ffn, width],
                   p + "mlp.down_proj.weight": [width, ffn]}  # fmt: skip
    header, offset = {}, 0
    for name in sorted(shapes):
        size = 2
        for d in shapes[name]:
            size *= d
        header[name] = {"dtype": "BF16", "shape": shapes[name], "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)  # sparse: no block is written


def run(case: str, file: Path) -> dict:
    code = CHILD.format(root=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, case, str(file)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{case} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="Folder for the files (default: the system temp dir).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        gpt2, llama = Path(folder) / "gpt2.safetensors", Path(folder) / "llama.safetensors"
        largest = run("write", gpt2)["largest"]
        write_llama_70b(llama)
        results = {
            "gpt2 build": run("build", gpt2),
            "gpt2 build + hf_gpt2": run("load", gpt2),
            "gpt2 load-map": run("map-gpt2", gpt2),
            "llama2-70b load-map": run("map-llama", llama),
        }
        sizes = {"gpt2 file": os.path.getsize(gpt2), "llama file": os.path.getsize(llama), "largest": largest}
    limit = results["gpt2 build"]["peak_rss"] + 1.25 * largest
    ok = results["gpt2 build + hf_gpt2"]["peak_rss"] <= limit
    if args.json:
        print(json.dumps({"results": results, "sizes": sizes, "ok": ok}, indent=2))
    else:
        print(f"GPT-2 file {sizes['gpt2 file']:,} bytes (largest tensor {largest:,}); "
              f"Llama-2-70B file {sizes['llama file']:,} bytes (sparse)")  # fmt: skip
        for name, r in results.items():
            print(f"{name:24} {r['seconds']:7.2f} s   peak RSS {r['peak_rss'] / 2**20:8.0f} MiB")
        print(f"target: load peak <= build peak + 1.25 x largest tensor ({limit / 2**20:.0f} MiB): "
              f"{'met' if ok else 'MISSED'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
