#!/usr/bin/env bash
# Run on a machine with a CUDA GPU (a few minutes): the GPU-marked tests, then the big
# configs built and run on cuda. Prints the card's name first.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>/dev/null || python -m pip install -q -e ".[dev]"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
python -m pytest -q -m gpu tests/gpu
for spec in configs/gpt2.yaml configs/resnet50.yaml; do
  /usr/bin/time -f "%e s wall, %M KiB peak RSS: netcfg run $spec --device cuda" netcfg run "$spec" --device cuda | tail -4
done
