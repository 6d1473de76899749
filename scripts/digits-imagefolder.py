#!/usr/bin/env python3
"""Issue 19: a small real image folder for the gradient-check sweep (scripts/gradcheck-sweep.sh).

scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), upscaled to 32x32 with
bilinear filtering and written as RGB PNGs in torchvision ImageFolder layout:

    OUT/train/<digit>/<n>.png   (the first 80 % of each class)
    OUT/val/<digit>/<n>.png     (the rest)

Usage: scripts/digits-imagefolder.py OUT
Needs numpy, Pillow and scikit-learn (the PyTorch venv: benches/torch/.venv, plus
`pip install scikit-learn`).
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    digits = load_digits()
    written = 0
    for label in range(10):
        images = digits.images[digits.target == label]
        cut = int(0.8 * len(images))
        for n, pixels in enumerate(images):
            split = "train" if n < cut else "val"
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            gray = (pixels / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(gray, mode="L").resize((32, 32), Image.BILINEAR)
            img.convert("RGB").save(folder / f"{n}.png")
            written += 1
    print(f"wrote {written} images of 10 classes to {out}")


if __name__ == "__main__":
    main()
