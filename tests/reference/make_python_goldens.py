#!/usr/bin/env python3
"""Goldens for the Python package (tests/python): what transformers answers when it is handed a PIL image of
each mode, or a numpy array, rather than a file the C++ decoder reads.

    ~/.cache/pix2struct-ref/bin/python tests/reference/make_python_goldens.py
      → tests/data/models/goldens/python.json

For each image of tests/data/images/formats below, `Image.open(path)` as it is (RGBA, LA, P with transparency,
CMYK, I;16, ...) goes to Pix2StructImageProcessor, whose convert_to_rgb converts it, with the question drawn in
Liberation Sans, then greedy generate() on the tiny checkpoint (tests/data/models/tiny). The same image as an
HxWx3 uint8 array (np.asarray of its RGB conversion) is one more case. A case is kept only when every top-1
margin is at least make_model_goldens.MIN_MARGIN, the first question of QUESTIONS for which that holds.
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import Pix2StructImageProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_goldens as mg  # noqa: E402

IMAGES = ["png_rgba.png", "png_gray_alpha.png", "png_palette_alpha.png", "gif_transparent.gif", "jpeg_cmyk.jpg",
          "png_gray16_trns.png", "png_gray1.png", "jpeg_420_q75.jpg"]
QUESTIONS = ["What is shown?", "Which stage comes after the larva?", "What color is the egg?", "Is this a diagram?",
             "Where does the cycle start?", "Name the last stage."]


def main():
    model_dir = mg.DATA / "tiny"
    model = mg.load_fp32(model_dir)
    tok = mg.load_tokenizer(model_dir / "spiece.model")
    max_patches = json.loads((model_dir / "preprocessor_config.json").read_text())["max_patches"]
    ip = Pix2StructImageProcessor(max_patches=max_patches, is_vqa=True)

    def answer(image, question):
        inputs = ip.preprocess(images=image, header_text=question, font_path=mg.FONT, return_tensors="pt",
                               max_patches=max_patches)
        fp = inputs["flattened_patches"][0].numpy()
        mask = inputs["attention_mask"][0].numpy().astype(np.float32)
        return mg.greedy(model, fp, mask)

    cases = []
    for name in IMAGES:
        path = mg.ROOT / "tests" / "data" / "images" / "formats" / name
        pil = Image.open(path)
        inputs = [("pil", pil), ("array", np.asarray(pil.convert("RGB")))] if pil.mode == "RGB" else [("pil", pil)]
        for kind, image in inputs:
            for q in QUESTIONS:
                ids, margins = answer(image, q)
                if min(margins) >= mg.MIN_MARGIN:
                    break
            else:
                sys.exit(f"{name} ({kind}): no question with every margin >= {mg.MIN_MARGIN}")
            cases.append(dict(image=str(path.relative_to(mg.ROOT)), mode=pil.mode, input=kind, question=q, ids=ids,
                              text=mg.safe_decode(tok, ids), min_margin=min(margins)))
            print(f"{name:24} {pil.mode:5} {kind:6} margin {min(margins):.3f}  {q}")
    out = mg.DATA / "goldens" / "python.json"
    out.write_text(json.dumps({"model": "tests/data/models/tiny", "cases": cases}, indent=1) + "\n")
    print(f"wrote {out} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
