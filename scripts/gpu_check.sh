#!/usr/bin/env bash
# Run on a machine with a CUDA GPU, in a few minutes: the GPU-marked tests, then netcfg bench
# of GPT-2 and ResNet-50 on cuda in float32 and bfloat16, eager and compiled, a bf16 matmul
# sanity figure, and the chapter's device scenarios. Prints the card's name first.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check -e ".[dev]" >/dev/null 2>&1 || python -m pip install -q -e ".[dev]"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
python -m pytest -q -m gpu tests/gpu
netcfg devices
for spec in configs/gpt2.yaml configs/resnet50.yaml; do
  for dtype in float32 bfloat16; do
    netcfg bench "$spec" --device cuda --dtype "$dtype" --min-time 2 --warmup 10
    netcfg bench "$spec" --device cuda --dtype "$dtype" --min-time 2 --warmup 5 --compile
  done
done
netcfg bench configs/gpt2.yaml --device cpu,cuda --min-time 2 --sweep batch=1,8
python benchmarks/bench_matmul_peak.py
for scenario in transfers logging two_gpus; do netcfg bench --scenario "$scenario" --device cuda || true; done
