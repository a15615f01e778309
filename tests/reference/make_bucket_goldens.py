#!/usr/bin/env python3
"""The reference's relative-position buckets (transformers Pix2StructTextAttention._relative_position_bucket,
torch's float32 log) for relative positions -4096..4096 and several (num_buckets, max_distance), both
directions. Written run-length encoded: for each setting, [first relative position, bucket] at every change.
    ~/.cache/pix2struct-ref/bin/python tests/reference/make_bucket_goldens.py   # → tests/data/position_buckets.json
"""
import json
from pathlib import Path

import torch
from transformers.models.pix2struct.modeling_pix2struct import Pix2StructTextAttention

OUT = Path(__file__).resolve().parents[1] / "data" / "position_buckets.json"
SETTINGS = [(32, 128), (32, 64), (16, 32), (64, 256), (8, 20), (128, 1024), (6, 7), (32, 4096)]
R = 4096


def main():
    rel = torch.arange(-R, R + 1, dtype=torch.long)
    cases = []
    for buckets, max_distance in SETTINGS:
        for bidirectional in (False, True):
            b = Pix2StructTextAttention._relative_position_bucket(rel, bidirectional=bidirectional,
                                                                  num_buckets=buckets, max_distance=max_distance)
            runs, prev = [], None
            for r, v in zip(rel.tolist(), b.tolist()):
                if v != prev:
                    runs.append([r, v])
                    prev = v
            cases.append({"num_buckets": buckets, "max_distance": max_distance, "bidirectional": bidirectional,
                          "first": -R, "last": R, "runs": runs})
    OUT.write_text(json.dumps({"source": "transformers Pix2StructTextAttention._relative_position_bucket",
                               "cases": cases}, separators=(",", ":")))
    print(f"{OUT}: {len(cases)} settings")


if __name__ == "__main__":
    main()
