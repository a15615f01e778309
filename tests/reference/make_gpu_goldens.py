#!/usr/bin/env python3
"""A small random Pix2Struct whose heads are 64 wide, with HF goldens, for the GPU model test.

    ~/.cache/pix2struct-ref/bin/python tests/reference/make_gpu_goldens.py     # → tests/reference/out/tiny-d64/

The committed tiny models have d_kv 24/32, so on the GPU they run the any-head-dim attention fallback; the
released checkpoints (and the fast kernels: fp32 flash attention, split-K decode) use d_kv 64. This model
(hidden 128, 2 heads of 64, d_ff 256, 2 + 2 layers, 64 patches, BF16 file, ~2 MB) exercises those paths at a
size that can travel to a GPU machine (carry tests/reference/out/tiny-d64), where the 552 MB base-shape
goldens cannot. Same recipe and golden layout as make_model_goldens.py (whose functions it reuses): unit-gain
random weights, eos made reachable, cases kept only with a clear top-1 margin; goldens computed by HF in
float32 on the BF16 weights. tests/gpu/test_model_gpu.cu reads them when present.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import Pix2StructConfig, Pix2StructForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_goldens as mg  # noqa: E402


def main():
    torch.manual_seed(0)
    sp = Path(tempfile.mkdtemp()) / "spiece.model"
    sp.write_bytes((mg.DATA / "tiny" / "spiece.model").read_bytes())
    tok = mg.load_tokenizer(sp)
    vision = dict(hidden_size=128, patch_embed_hidden_size=768, d_ff=256, d_kv=64, num_hidden_layers=2,
                  num_attention_heads=2, seq_len=128)
    text = dict(vocab_size=len(tok), hidden_size=128, d_kv=64, d_ff=256, num_layers=2, num_heads=2)
    cfg = Pix2StructConfig(vision_config=vision, text_config=text, is_vqa=True)
    model = Pix2StructForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        mg.reinit(model, seed=4321, logit_scale=12.0)
        mg.make_eos_reachable(model, 64)
    d = mg.OUT / "tiny-d64"
    mg.save_checkpoint(model, d, tok, max_patches=64, is_vqa=True, bf16=True)
    m = mg.load_fp32(d)
    images = [mg.DATA / "images" / "diagram.png", mg.DATA / "images" / "tall.png"]
    rng = np.random.default_rng(7)
    t, meta = mg.write_goldens("tiny-d64", m, tok, 64, rng, mg.pipeline_cases(images), n_random=3)
    mg.save_goldens(d, "goldens", t, meta)


if __name__ == "__main__":
    main()
