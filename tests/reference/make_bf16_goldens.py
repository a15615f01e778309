#!/usr/bin/env python3
"""Goldens of HF transformers running in bfloat16 (weights AND activations), for the GPU bf16 path.

    ~/.cache/pix2struct-ref/bin/python tests/reference/make_bf16_goldens.py
      → tests/data/models/goldens/tiny-bf16-act.{safetensors,json}         (tests/data/models/tiny-bf16)
      → tests/reference/out/tiny-d64/goldens-bf16-act.{safetensors,json}   (when make_gpu_goldens.py made it)

make_model_goldens.py's goldens are HF in float32 on the BF16 weights (what the fp32 paths compute). Here the
model is loaded with torch_dtype=torch.bfloat16, as a GPU user runs it, and the flattened patches are cast to
bfloat16 (round to nearest even) before the model sees them — what `model(**inputs.to(torch.bfloat16))` does.
Every matmul output, norm output and residual sum is then rounded to bf16, and the logits are bf16 values:
their spacing is 0.25 at the tiny models' magnitudes (|logit| < 64), so cases are kept only when every top-1
margin is at least MIN_MARGIN = 1.0 (four such steps), where a bf16 implementation that rounds at slightly
different points must still choose the same ids. Same case recipe and golden layout as make_model_goldens.py
(whose functions it reuses); run on the CPU here (torch's bf16 GEMMs accumulate in fp32, as cuBLAS does).
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import Pix2StructForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_goldens as mg  # noqa: E402

fp32_greedy, fp32_teacher_forced = mg.greedy, mg.teacher_forced


class Bf16Model:
    """Forwards to the bf16 model, casting flattened_patches to bfloat16 (HF does not cast them itself)."""

    def __init__(self, model):
        self.model, self.config = model, model.config

    def generate(self, flattened_patches, **kw):
        return self.model.generate(flattened_patches=flattened_patches.to(torch.bfloat16), **kw)

    def __call__(self, flattened_patches, **kw):
        return self.model(flattened_patches=flattened_patches.to(torch.bfloat16), **kw)


def main():
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    mg.MIN_MARGIN = 1.0
    sp = Path(tempfile.mkdtemp()) / "spiece.model"
    sp.write_bytes((mg.DATA / "tiny" / "spiece.model").read_bytes())
    tok = mg.load_tokenizer(sp)
    images = [mg.DATA / "images" / "diagram.png", mg.DATA / "images" / "tall.png"]
    jobs = [(mg.DATA / "tiny-bf16", mg.DATA / "goldens", "tiny-bf16-act", 42)]
    if (mg.OUT / "tiny-d64" / "model.safetensors").exists():
        jobs.append((mg.OUT / "tiny-d64", mg.OUT / "tiny-d64", "goldens-bf16-act", 7))
    for model_dir, out_dir, name, seed in jobs:
        m = Pix2StructForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.bfloat16).eval()
        rng = np.random.default_rng(seed)
        t, meta = mg.write_goldens(name, Bf16Model(m), tok, 64, rng, mg.pipeline_cases(images), n_random=3,
                                   prompted_cases=[{"image": str(images[0]), "prompt": "The diagram shows"}])
        meta["activations"] = "bfloat16"
        # the stored pipeline patches are the processor's fp32 output; the model saw them rounded to bf16,
        # which is what is stored (as BF16: exact)
        for key in [k for k in t if k.startswith("pipe_patches_")]:
            t[key] = t[key].bfloat16()
        mg.save_goldens(out_dir, name, t, meta)


if __name__ == "__main__":
    main()
