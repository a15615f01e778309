"""Writes the front-end test inputs and goldens: what transformers' Pix2StructImageProcessor, Pillow and
torch compute, for tests/test_image_load.cpp, test_resample.cpp, test_header.cpp and test_patches.cpp.

Run (see tests/reference/README.md):
    ~/.cache/pix2struct-ref/bin/python tests/reference/make_frontend_goldens.py

Writes
  tests/data/images/*.{png,jpg}          small test inputs (valid) and malformed files (bad_*)
  tests/data/goldens/frontend.json       metadata: every case, its parameters and scalar results
  tests/data/goldens/frontend.safetensors  uint8 / float32 arrays named in frontend.json
  tests/data/goldens/header_*.png, composed_*.png   rendered headers / composed images (lossless, grey/RGB)
Quirk: the processor guesses the channel axis; an image 1 or 3 pixels high is taken as channels-first
(garbage). We pass input_data_format="channels_last", which changes nothing for every other image.
The reference calls the image processor with font_path = Liberation Sans (the processor of a VQA checkpoint
does the same through Pix2StructProcessor, which only forwards `text` as `header_text`).
"""
import io
import json
import pathlib
import struct
import textwrap
import zlib

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from safetensors.numpy import save_file
from transformers import Pix2StructImageProcessor
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import to_numpy_array
from transformers.models.pix2struct.image_processing_pix2struct import render_header, render_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "data" / "images"
GOLDENS = ROOT / "tests" / "data" / "goldens"
FONT = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"

QUESTIONS = {
    "short": "What is shown?",
    "ai2d": "What does the label 15 represent? (1) lava (2) core (3) tunnel (4) ash cloud",
    "long": "Which of the following statements about the food-web diagram is correct, given that the "
            "arrows point from prey to predator and the well-known decomposers (fungi, bacteria) are "
            "not shown in the picture?",
    "longword": "Is " + "supercalifragilistic" * 5 + " a word?",
    "tabs": "Which\tstage   comes\t\tafter  the larva?\n (A) pupa",
    "unicode": "Où est la légende? Ωμέγα αλφα — 什么是 naïve café?",
    "empty": "",
}

# Extra strings for the line breaker alone (no rendering): hyphens, em-dashes, leading blanks, NBSP, ...
WRAP_ONLY = [
    "state-of-the-art " * 6,
    "x" * 79 + " well-known-thing and-more " + "y-" * 50,
    "aaaa--bbbb " * 12,
    "   leading blanks are kept on the first line " + "word " * 20,
    "non\u00a0breaking\u00a0space " * 8,
    "A" * 200,
    "-" * 90 + " dashes",
    "12-34 ab-cd a-b-c-d-e-f-g 3-d x-1 " * 4,
    "line\nbreaks\r\nand\x0bvertical\x0cfeeds " * 5,
    "\u00e9t\u00e9-\u00e9l\u00e8ve \u03b1\u03b2-\u03b3\u03b4 " * 7,
    "trailing spaces      " * 6,
    "",
    "   ",
    "w" * 79 + " " + "a" * 85 + " end",  # a full line before a long word keeps its trailing blank
]


def random_wrap_cases(count=60, seed=5):
    """Random mixes of words, hyphens, dashes, blanks and non-ASCII for the line breaker."""
    import random
    rng = random.Random(seed)
    atoms = ["a", "word", "state-of-the-art", "x-1", "12-34", "--", "-", "---", " ", "  ", "\t", "\n", "é", "αβ",
             "中文", "don't", "U.S.A.", "e.g.,", "(1)", "?", "_", "x" * 30, "a-b-c", "naïve-café", "“q”", "3.14",
             "\u00a0", "\u2014", "ab--cd", "-lead", "trail-", "a" * 85, "b-" * 45]
    return ["".join(rng.choice(atoms) + rng.choice(["", " ", " ", "-"]) for _ in range(rng.randint(0, 40)))
            for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------
# Test inputs
# ---------------------------------------------------------------------------------------------------------
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png16_rgb(path, arr):
    """Pillow cannot write 16-bit RGB PNGs: write one by hand (colour type 2, bit depth 16)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    data += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    path.write_bytes(data)


def smooth_rgb(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), (x + y) * 127.0 / max(w + h, 1)], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def make_images():
    IMAGES.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_rgb(47, 61, 1)).save(IMAGES / "rgb.png")
    rgba = np.concatenate([smooth_rgb(40, 48, 2), np.zeros((40, 48, 1), np.uint8)], -1)
    rgba[..., 3] = np.linspace(0, 255, 48).astype(np.uint8)[None, :]
    rgba[:5, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(IMAGES / "rgba.png")
    la = np.stack([smooth_rgb(20, 30, 3)[..., 0], np.linspace(0, 255, 30).astype(np.uint8)[None, :].repeat(20, 0)], -1)
    Image.fromarray(la, "LA").save(IMAGES / "la.png")
    Image.fromarray(smooth_rgb(30, 40, 4)[..., 1], "L").save(IMAGES / "gray.png")
    pal = Image.fromarray(smooth_rgb(24, 32, 5)).quantize(colors=16, dither=Image.Dither.NONE)
    pal.save(IMAGES / "palette.png", transparency=3)
    g16 = (np.arange(12 * 40).reshape(12, 40) * 137 % 1024).astype(np.uint16)
    g16[0, :8] = [0, 1, 254, 255, 256, 300, 40000, 65535]
    Image.fromarray(g16).save(IMAGES / "gray16.png")
    rgb16 = (smooth_rgb(16, 24, 6).astype(np.uint16) * 257 + np.arange(24, dtype=np.uint16)[None, :, None] * 3)
    write_png16_rgb(IMAGES / "rgb16.png", rgb16)
    photo = Image.fromarray(smooth_rgb(48, 64, 7))
    photo.save(IMAGES / "baseline.jpg", quality=90)
    photo.save(IMAGES / "progressive.jpg", quality=85, progressive=True)
    Image.fromarray(np.array([[[200, 30, 90]]], np.uint8)).save(IMAGES / "one_pixel.png")
    Image.fromarray(smooth_rgb(6, 1500, 8)).save(IMAGES / "wide.png")
    Image.fromarray(smooth_rgb(1200, 5, 9)).save(IMAGES / "tall.png")
    Image.new("RGB", (4200, 4), (30, 120, 200)).save(IMAGES / "huge_flat.png")
    # A diagram-like picture: shapes, arrows and labels (AI2D style).
    d = Image.new("RGB", (240, 180), "white")
    draw = ImageDraw.Draw(d)
    small = ImageFont.truetype(FONT, size=14)
    draw.ellipse((20, 30, 110, 120), outline="black", fill=(250, 200, 60), width=2)
    draw.rectangle((140, 40, 220, 100), outline=(20, 60, 160), fill=(180, 210, 250), width=3)
    draw.line((110, 75, 140, 70), fill="black", width=2)
    draw.polygon([(60, 140), (90, 170), (30, 170)], fill=(120, 200, 120), outline="black")
    for xy, label in [((50, 8), "15"), ((150, 110), "core"), ((100, 150), "ash cloud"), ((165, 60), "7")]:
        draw.text(xy, label, fill="black", font=small)
    d.save(IMAGES / "diagram.png")

    # Malformed files.
    good = (IMAGES / "rgb.png").read_bytes()
    (IMAGES / "bad_truncated.png").write_bytes(good[: len(good) // 2])
    (IMAGES / "bad_magic.png").write_bytes(b"NOTANIMAGE" + good[10:200])
    (IMAGES / "bad_empty.png").write_bytes(b"")
    huge = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 200000, 200000, 8, 2, 0, 0, 0))
    huge += png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")
    (IMAGES / "bad_huge_dims.png").write_bytes(huge)
    jpg = (IMAGES / "baseline.jpg").read_bytes()
    (IMAGES / "bad_truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    (IMAGES / "bad_garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2)


VALID = ["rgb.png", "rgba.png", "la.png", "gray.png", "palette.png", "gray16.png", "rgb16.png", "baseline.jpg",
         "progressive.jpg", "one_pixel.png", "wide.png", "tall.png", "huge_flat.png", "diagram.png"]
MALFORMED = ["bad_truncated.png", "bad_magic.png", "bad_empty.png", "bad_huge_dims.png", "bad_truncated.jpg",
             "bad_garbage.jpg"]


def load_rgb(name):
    """What the processor sees: Image.open then transformers' convert_to_rgb (image.convert('RGB'))."""
    return convert_to_rgb(Image.open(IMAGES / name))


# ---------------------------------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------------------------------
def main():
    make_images()
    GOLDENS.mkdir(parents=True, exist_ok=True)
    tensors, meta = {}, {"font": FONT, "load": [], "resize": [], "aa": [], "wrap": [], "header": [],
                         "patches": [], "grid": []}

    # 1. Decoding + convert_to_rgb.
    for name in VALID:
        im = Image.open(IMAGES / name)
        mode = im.mode
        arr = np.asarray(load_rgb(name), dtype=np.uint8)
        key = f"load/{name}"
        tensors[key] = np.ascontiguousarray(arr)
        meta["load"].append({"file": name, "pillow_mode": mode, "width": arr.shape[1], "height": arr.shape[0],
                             "tensor": key})
    meta["malformed"] = MALFORMED

    # 2. Pillow resize with the default filter (bicubic for RGB), up, down, one axis, both orders of passes.
    resize_cases = [("rgb.png", 122, 94), ("rgb.png", 30, 23), ("rgb.png", 61, 20), ("rgb.png", 100, 47),
                    ("rgb.png", 200, 9), ("rgb.png", 13, 160), ("rgb.png", 61, 47), ("diagram.png", 97, 73),
                    ("diagram.png", 300, 226), ("gray16.png", 77, 31), ("one_pixel.png", 7, 5),
                    ("tall.png", 20, 2400), ("wide.png", 250, 1)]
    for name, w, h in resize_cases:
        out = np.asarray(load_rgb(name).resize((w, h)), dtype=np.uint8)
        key = f"resize/{name}/{w}x{h}"
        tensors[key] = np.ascontiguousarray(out)
        meta["resize"].append({"file": name, "width": w, "height": h, "tensor": key})

    # 3. torch interpolate(bilinear, align_corners=False, antialias=True) on float data.
    rng = np.random.default_rng(11)
    src = rng.normal(0, 1, (3, 37, 53)).astype(np.float32)
    tensors["aa/input"] = src
    for h, w in [(16, 32), (80, 112), (16, 96), (37, 53), (3, 5), (74, 20)]:
        out = torch.nn.functional.interpolate(torch.from_numpy(src)[None], size=(h, w), mode="bilinear",
                                              align_corners=False, antialias=True)[0].numpy()
        key = f"aa/{h}x{w}"
        tensors[key] = np.ascontiguousarray(out)
        meta["aa"].append({"input": "aa/input", "height": h, "width": w, "tensor": key})

    # 4. Line breaking alone.
    wrapper = textwrap.TextWrapper(width=80)
    for text in list(QUESTIONS.values()) + WRAP_ONLY + random_wrap_cases():
        meta["wrap"].append({"text": text, "lines": wrapper.wrap(text)})

    # 5. Header rendering: lines, textbbox, header size and pixels (black on white: one channel suffices).
    font = ImageFont.truetype(FONT, encoding="UTF-8", size=36)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1), "white"))
    for qname, text in QUESTIONS.items():
        lines = wrapper.wrap(text)
        wrapped = "\n".join(lines)
        bbox = draw.textbbox((0, 0), wrapped, font)
        header = render_text(text, font_path=FONT)
        arr = np.asarray(header)
        assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all()
        png = f"header_{qname}.png"
        Image.fromarray(arr[..., 0], "L").save(GOLDENS / png, optimize=True)
        per_line = [list(draw.textbbox((0, 0), line, font)) for line in lines]
        meta["header"].append({"name": qname, "text": text, "lines": lines, "bbox": list(bbox),
                               "line_bboxes": per_line, "width": header.width, "height": header.height,
                               "png": png})

    # 5b. Layout alone (textbbox of the wrapped text) for random mixes of kerning pairs, brackets, quotes and
    # scripts: HarfBuzz kerns within one script run only (raqm itemisation), and not in Thai/Lao/Khmer runs.
    import random
    rng = random.Random(23)
    vocab = ("What does the label represent lava core AV To Ty We Yo fi ff 1) (2) [3] {x} (中) [я] «AV» “To” "
             "‘Ty’ <T> \"quoted\" 'single' — – … ° % & é ë Å Ø œ Ω λ π Σ Ж д я 中 文 日本 한국 ๑ ก ລ ក ✓ → 123 "
             "jump gypsy Jq Tj LT ,. !? -- A. L' r, y. F. P, V; W: Y- (Ω) T. क あ ア ა").split()
    meta["layout"] = []
    for _ in range(60):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 40)))
        wrapped = "\n".join(wrapper.wrap(text))
        meta["layout"].append({"text": text, "bbox": list(draw.textbbox((0, 0), wrapped, font))})

    # 6. Full pipeline: flattened patches (small max_patches) and composed images.
    patch_cases = [("rgb.png", None, 64), ("diagram.png", "ai2d", 64), ("rgba.png", "short", 32),
                   ("gray16.png", None, 16), ("one_pixel.png", None, 16), ("wide.png", None, 32),
                   ("tall.png", "short", 32), ("palette.png", "empty", 16), ("baseline.jpg", None, 32),
                   ("huge_flat.png", "unicode", 24)]
    for name, qname, mp in patch_cases:
        is_vqa = qname is not None
        proc = Pix2StructImageProcessor(is_vqa=is_vqa, max_patches=mp)
        kwargs = {"header_text": QUESTIONS[qname], "font_path": FONT} if is_vqa else {}
        out = proc(Image.open(IMAGES / name), return_tensors="np", input_data_format="channels_last", **kwargs)
        fp = out["flattened_patches"][0].astype(np.float32)
        mask = out["attention_mask"][0].astype(np.float32)
        rows, cols = int(fp[:, 0].max()), int(fp[:, 1].max())
        n = rows * cols
        assert (fp[n:] == 0).all() and (mask[:n] == 1).all() and (mask[n:] == 0).all()
        key = f"patches/{name}/{qname or 'caption'}/{mp}"
        tensors[key] = np.ascontiguousarray(fp[:n])  # rows past the real patches are all zero (asserted above)
        case = {"file": name, "question": qname, "max_patches": mp, "rows": rows, "cols": cols, "tensor": key}
        img = to_numpy_array(load_rgb(name))
        if is_vqa:
            composed = render_header(img, QUESTIONS[qname], font_path=FONT, input_data_format="channels_last")
            case["composed_height"], case["composed_width"] = composed.shape[:2]
            if composed.size <= 6_000_000:
                png = f"composed_{pathlib.Path(name).stem}_{qname}.png"
                Image.fromarray(composed).save(GOLDENS / png, optimize=True)
                case["composed_png"] = png
        else:
            case["composed_height"], case["composed_width"] = img.shape[:2]
        meta["patches"].append(case)

    # 7. Patch grid and composed size at the checkpoints' max_patches (no arrays).
    for name in VALID:
        img = to_numpy_array(load_rgb(name))
        for qname in [None, "short", "ai2d", "long"]:
            if qname is None:
                h, w = img.shape[:2]
            else:
                h, w = render_header(img, QUESTIONS[qname], font_path=FONT,
                                     input_data_format="channels_last").shape[:2]
            for mp in [2048, 4096]:
                scale = np.sqrt(mp * (16 / h) * (16 / w))
                # Same formula as extract_flattened_patches (checked against the processor below for 2048).
                rows = max(min(int(np.floor(scale * h / 16)), mp), 1)
                cols = max(min(int(np.floor(scale * w / 16)), mp), 1)
                meta["grid"].append({"file": name, "question": qname, "max_patches": mp, "composed_height": h,
                                     "composed_width": w, "rows": rows, "cols": cols})
        if img.shape[0] in (1, 3):
            # render_header is not given input_data_format and guesses channels-first here: the reference
            # itself misreads such images; we implement the channels-last reading (the grid above).
            continue
        proc = Pix2StructImageProcessor(is_vqa=True, max_patches=2048)
        fp = proc(Image.open(IMAGES / name), header_text=QUESTIONS["ai2d"], font_path=FONT,
                  return_tensors="np", input_data_format="channels_last")["flattened_patches"][0]
        g = [c for c in meta["grid"] if c["file"] == name and c["question"] == "ai2d" and c["max_patches"] == 2048][0]
        assert (int(fp[:, 0].max()), int(fp[:, 1].max())) == (g["rows"], g["cols"]), name

    save_file(tensors, str(GOLDENS / "frontend.safetensors"))
    (GOLDENS / "frontend.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in GOLDENS.glob("*") if p.name.startswith(("frontend", "header_", "composed_")))
    total += sum(p.stat().st_size for p in IMAGES.glob("*"))
    print(f"wrote {len(tensors)} tensors; front-end data {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
