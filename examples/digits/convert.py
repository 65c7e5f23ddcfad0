"""Convert scikit-learn's 8x8 digits to examples/digits/digits.safetensors (for netcfg train).

    pip install scikit-learn          # only for this script; netcfg does not need it
    python examples/digits/convert.py [OUT]

The 1,797 images (UCI optical digits: 8x8 pixels, values 0..16, written by 43 people) become
`images` float32 [1797, 1, 8, 8] scaled to [0, 1], and their classes `labels` int64 [1797]
in 0..9, in the order scikit-learn ships them. The file is committed, so the example and the
tests run without scikit-learn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from netcfg.io.tensor_files import save_tensors


def main(out: str) -> None:
    from sklearn.datasets import load_digits  # the data ships inside the package: nothing is downloaded

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    save_tensors({"images": images, "labels": labels}, out)
    print(f"{out}: images {list(images.shape)} float32, labels {list(labels.shape)} int64")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("digits.safetensors")))
