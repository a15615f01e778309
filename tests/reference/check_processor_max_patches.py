#!/usr/bin/env python3
"""Which patch budget transformers' Pix2StructProcessor uses for a checkpoint whose preprocessor_config.json
says 4096 (the published large ones, e.g. google/pix2struct-ocrvqa-large).

    ~/.cache/pix2struct-ref/bin/python tests/reference/check_processor_max_patches.py

Loads that published preprocessor_config.json (tests/data/configs/published/) and the tiny checkpoint's
tokenizer, and cuts tests/data/models/images/diagram.png (no header) into patches twice: through the processor,
as users call it (`processor(images=…)`), and through its image processor alone. Prints both counts; with
transformers 4.57.6 the processor gives 2048 (its own call default overrides the file's) and the image
processor 4096. pix2struct.cpp uses the file's value unless --max-patches is given (README, published
checkpoints). Exit status 0 when the two differ as described.
"""
import sys
from pathlib import Path

import transformers
from PIL import Image
from transformers import Pix2StructImageProcessor, Pix2StructProcessor, T5Tokenizer

ROOT = Path(__file__).resolve().parents[2]


def main():
    image_processor = Pix2StructImageProcessor.from_pretrained(ROOT / "tests/data/configs/published/pix2struct-ocrvqa-large")
    image_processor.is_vqa = False  # no header: no font download, the same budget question
    tokenizer = T5Tokenizer(str(ROOT / "tests/data/models/tiny/spiece.model"), legacy=True)
    processor = Pix2StructProcessor(image_processor=image_processor, tokenizer=tokenizer)
    image = Image.open(ROOT / "tests/data/models/images/diagram.png")
    through_processor = processor(images=image, return_tensors="np")["flattened_patches"].shape[1]
    image_processor_alone = image_processor(image, return_tensors="np")["flattened_patches"].shape[1]
    print(f"transformers {transformers.__version__}: preprocessor_config.json max_patches {image_processor.max_patches}; "
          f"Pix2StructProcessor gives {through_processor} patches, Pix2StructImageProcessor {image_processor_alone}")
    return 0 if (through_processor, image_processor_alone) == (2048, 4096) else 1


if __name__ == "__main__":
    sys.exit(main())
