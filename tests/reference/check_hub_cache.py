#!/usr/bin/env python3
"""transformers reads the Hugging Face cache that pix2struct.cpp wrote (hub.hpp), offline.

    ctest --test-dir build -R test_hub        # leaves build/hub-cache: test/tiny downloaded from the test's hub
    ~/.cache/pix2struct-ref/bin/python tests/reference/check_hub_cache.py --cache build/hub-cache

With HF_HUB_OFFLINE=1, Pix2StructProcessor and Pix2StructForConditionalGeneration.from_pretrained("test/tiny",
cache_dir=…) load from that cache (refs/main → snapshots/<commit> → blobs), and generate() on the tiny goldens'
first VQA case gives the goldens' ids. Exit status 0 when it does.
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="the cache folder test_hub wrote (build/hub-cache)")
    ap.add_argument("--repo", default="test/tiny")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    import torch
    from PIL import Image
    from transformers import Pix2StructForConditionalGeneration, Pix2StructProcessor

    processor = Pix2StructProcessor.from_pretrained(args.repo, cache_dir=args.cache, use_fast=False)  # T5Tokenizer: spiece.model
    model = Pix2StructForConditionalGeneration.from_pretrained(args.repo, cache_dir=args.cache).eval()
    goldens = json.loads((ROOT / "tests/data/models/goldens/tiny.json").read_text())
    case = next(c for c in goldens["pipeline"] if c["is_vqa"])
    # as the goldens were made: the image processor called with the header font (the processor drops font_path)
    inputs = processor.image_processor.preprocess(
        images=Image.open(ROOT / case["image"]), header_text=case["question"], return_tensors="pt",
        max_patches=goldens["max_patches"], font_path="/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf")
    with torch.no_grad():
        ids = model.generate(**inputs).tolist()[0]
    print("transformers, from the cache pix2struct.cpp wrote:", ids)
    print("goldens:                                        ", case["ids"])
    if ids != case["ids"]:
        sys.exit("different ids")
    print("OK: transformers loaded the cache offline and answers as the goldens")


if __name__ == "__main__":
    main()
