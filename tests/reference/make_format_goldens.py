"""Writes the image-format goldens: files of every format and variant users send, each with the RGB pixels
the reference sees (Pillow's Image.open + transformers' convert_to_rgb) and the processor's flattened
patches (caption mode), or Pillow's error where Pillow refuses the file. Read by tests/test_formats.cpp.

Run (see tests/reference/README.md; uses cjpeg/jpegtran from Debian's libjpeg-turbo-progs for the restart-
marker, arithmetic-coded and 4:4:0 / 4:1:1 files, which Pillow cannot write):
    ~/.cache/pix2struct-ref/bin/python tests/reference/make_format_goldens.py

Writes tests/data/images/formats/*, tests/data/goldens/formats.{json,safetensors}.
"""
import io
import json
import pathlib
import struct
import subprocess
import zlib

import numpy as np
from PIL import Image, ImageDraw, features
from safetensors.numpy import save_file
from transformers import Pix2StructImageProcessor
from transformers.image_transforms import convert_to_rgb

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "images" / "formats"
GOLDENS = ROOT / "tests" / "data" / "goldens"
MAX_PATCHES = 16


def photo(w, h, seed):
    """Smooth colour gradients, noise and sharp coloured shapes: chroma edges show upsampling differences."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), 128 + 100 * np.sin((x + 2 * y) / 7.0)], -1)
    im = Image.fromarray(np.clip(base + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((w * 0.1, h * 0.1, w * 0.5, h * 0.6), fill=(230, 30, 40), outline=(0, 0, 0))
    d.rectangle((w * 0.55, h * 0.2, w * 0.9, h * 0.5), fill=(20, 200, 60))
    d.line((0, h - 1, w - 1, 0), fill=(40, 40, 230), width=3)
    return im


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(w, h, depth, ctype, raw_rows, plte=None, trns=None, interlaced=False):
    """A PNG from packed rows (bytes per row), filter 0; Adam7 when interlaced (rows given as a 2-D array of
    samples then: [h][w * channels] of ints, packed here)."""
    def pack(samples):
        if depth == 16:
            return np.asarray(samples, ">u2").tobytes()
        if depth == 8:
            return np.asarray(samples, np.uint8).tobytes()
        bits = np.unpackbits(np.asarray(samples, np.uint8)[:, None], axis=1)[:, 8 - depth:].reshape(-1)
        return np.packbits(bits).tobytes()
    if interlaced:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        arr = np.asarray(raw_rows)
        ch = arr.shape[1] // w
        data = b""
        for x0, y0, dx, dy in passes:
            if x0 >= w or y0 >= h:
                continue
            for yy in range(y0, h, dy):
                px = arr[yy].reshape(w, ch)[x0::dx].reshape(-1)
                data += b"\x00" + pack(px)
    else:
        data = b"".join(b"\x00" + pack(r) for r in raw_rows)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlaced)))
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(plte))
    if trns is not None:
        out += png_chunk(b"tRNS", bytes(trns))
    return out + png_chunk(b"IDAT", zlib.compress(data, 9)) + png_chunk(b"IEND", b"")


def gif_descriptor_offset(data):
    """Byte offset of the first image descriptor (',') in a GIF."""
    flags = data[10]
    at = 13 + ((3 << ((flags & 7) + 1)) if flags & 128 else 0)
    while data[at] != 0x2C:
        assert data[at] == 0x21, "unexpected GIF block"
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    return at


def bmp16(w, h, seed):
    """A 16-bit (5-5-5) BMP, which Pillow reads as BGR;15 and we refuse."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 1 << 15, (h, w), dtype=np.uint16)
    stride = (w * 2 + 3) & ~3
    rows = b"".join(px[y].astype("<u2").tobytes().ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    head = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 16, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(rows), 0, 0, 54) + head + rows


def cjpeg(im, *args):
    ppm = io.BytesIO()
    im.save(ppm, "PPM")
    return subprocess.run(["cjpeg", *args], input=ppm.getvalue(), capture_output=True, check=True).stdout


def jpegtran(data, *args):
    return subprocess.run(["jpegtran", *args], input=data, capture_output=True, check=True).stdout


def save(im, **kw):
    b = io.BytesIO()
    im.save(b, **kw)
    return b.getvalue()


def make_files():
    """name -> bytes, with a short description of each."""
    p = photo(97, 83, 1)
    files = {}

    def add(name, data, what):
        files[name] = (data, what)

    # JPEG
    for q in (50, 75, 95):
        add(f"jpeg_420_q{q}.jpg", save(p, format="JPEG", quality=q, subsampling=2), f"baseline 4:2:0, quality {q}")
    add("jpeg_422_q75.jpg", save(p, format="JPEG", quality=75, subsampling=1), "baseline 4:2:2")
    add("jpeg_444_q90.jpg", save(p, format="JPEG", quality=90, subsampling=0), "baseline 4:4:4")
    add("jpeg_440.jpg", cjpeg(p, "-quality", "80", "-sample", "1x2"), "4:4:0 (cjpeg)")
    add("jpeg_411.jpg", cjpeg(p, "-quality", "80", "-sample", "4x1"), "4:1:1 (cjpeg)")
    prog = save(p, format="JPEG", quality=85, progressive=True)
    add("jpeg_progressive.jpg", prog, "progressive 4:2:0")
    base = files["jpeg_420_q75.jpg"][0]
    add("jpeg_restart.jpg", jpegtran(base, "-restart", "1"), "restart markers every MCU row (jpegtran)")
    add("jpeg_arithmetic.jpg", jpegtran(base, "-arithmetic"), "arithmetic-coded (jpegtran)")
    add("jpeg_arith_progressive.jpg", jpegtran(prog, "-arithmetic", "-progressive"), "arithmetic progressive")
    add("jpeg_gray.jpg", save(p.convert("L"), format="JPEG", quality=80), "grayscale")
    add("jpeg_cmyk.jpg", save(p.convert("CMYK"), format="JPEG", quality=85), "CMYK (Adobe marker)")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display; the reference ignores it
    add("jpeg_exif_rotated.jpg", save(p, format="JPEG", quality=80, exif=exif), "EXIF orientation 6 (not applied)")
    add("jpeg_1x1.jpg", save(photo(1, 1, 2), format="JPEG", quality=90), "1x1")
    add("jpeg_19x7.jpg", save(photo(19, 7, 3), format="JPEG", quality=90), "19x7 (partial MCUs)")
    add("jpeg_4000x1.jpg", save(photo(4000, 1, 4), format="JPEG", quality=90), "4000x1")
    add("jpeg_truncated.jpg", base[: len(base) * 2 // 3], "cut at 2/3 of its bytes")

    # PNG
    rgba = p.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[..., 3] = np.linspace(0, 255, a.shape[1]).astype(np.uint8)[None, :]
    rgba = Image.fromarray(a, "RGBA")
    add("png_rgba.png", save(rgba, format="PNG"), "RGBA (alpha dropped)")
    add("png_palette_alpha.png", save(rgba.quantize(colors=24), format="PNG"), "palette with a tRNS alpha table")
    add("png_gray_alpha.png", save(rgba.convert("LA"), format="PNG"), "grey + alpha")
    g16 = (np.asarray(p.convert("L"), np.uint16) * 257)
    la16 = np.stack([g16, np.asarray(rgba)[..., 3].astype(np.uint16) * 257], -1).reshape(g16.shape[0], -1)
    add("png_gray_alpha16.png", png_bytes(97, 83, 16, 4, la16), "16-bit grey + alpha")
    rgba16 = (np.asarray(rgba).astype(np.uint16) * 257 + 11).reshape(83, -1)
    add("png_rgba16.png", png_bytes(97, 83, 16, 6, rgba16), "16-bit RGBA")
    for depth in (1, 2, 4):
        v = (np.asarray(p.convert("L")) >> (8 - depth)).astype(np.uint8)
        add(f"png_gray{depth}.png", png_bytes(97, 83, depth, 0, v), f"{depth}-bit grey")
    add("png_palette4.png", save(p.quantize(colors=16), format="PNG", bits=4), "4-bit palette")
    idx = (np.arange(16 * 9).reshape(9, 16) % 4).astype(np.uint8)
    add("png_palette_short.png", png_bytes(16, 9, 2, 3, idx, plte=[200, 10, 10, 10, 200, 10]),
        "2-entry palette, indices up to 3")
    rgb = np.asarray(p).reshape(83, -1)
    add("png_interlaced.png", png_bytes(97, 83, 8, 2, rgb, interlaced=True), "Adam7 interlaced RGB")
    gray = np.asarray(p.convert("L")).astype(np.uint16)
    add("png_gray16_trns.png", png_bytes(97, 83, 16, 0, gray * 300, trns=struct.pack(">H", 600)),
        "16-bit grey with tRNS (clipped at 255)")

    # GIF
    pal = p.quantize(colors=64)
    add("gif_interlaced.gif", save(pal, format="GIF"), "static, interlaced (Pillow's default)")
    add("gif_plain.gif", save(pal, format="GIF", interlace=False), "static, not interlaced")
    add("gif_transparent.gif", save(pal, format="GIF", transparency=5), "transparent index 5 (not applied)")
    frames = [photo(97, 83, s).quantize(colors=32) for s in (5, 6, 7)]
    add("gif_animated.gif", save(frames[0], format="GIF", save_all=True, append_images=frames[1:], duration=100,
                                 loop=0), "animated: the first frame")
    add("gif_gray_ramp.gif", save(p.convert("L"), format="GIF"), "grey-ramp palette (Pillow mode L)")
    small = save(photo(40, 30, 8).quantize(colors=16), format="GIF", interlace=False)
    for name, transparent in (("gif_offset.gif", None), ("gif_offset_transparent.gif", 3)):
        data = bytearray(small)
        at = gif_descriptor_offset(data)
        data[6:10] = struct.pack("<HH", 70, 50)          # logical screen larger than the frame
        data[at + 1:at + 5] = struct.pack("<HH", 20, 12)  # frame at (20, 12)
        if transparent is not None:
            data[at:at] = bytes([0x21, 0xF9, 4, 1, 0, 0, transparent, 0])
        add(name, bytes(data), "first frame smaller than the screen" + (", transparent index 3" if transparent else ""))
    data = bytearray(small)
    at = gif_descriptor_offset(data)
    data[at + 1:at + 5] = struct.pack("<HH", 10, 10)  # frame reaching past the screen: the canvas grows
    add("gif_past_screen.gif", bytes(data), "frame reaching past the logical screen")
    four = Image.fromarray((np.arange(16 * 9).reshape(9, 16) % 4).astype(np.uint8), "P")
    four.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200, 250, 250, 0])
    data = bytearray(save(four, format="GIF", interlace=False, optimize=False))
    assert data[10] & 128 and (data[10] & 7) == 1, "expected a 4-entry global palette"
    data[10] = (data[10] & ~7) | 0
    del data[13 + 6:13 + 12]
    add("gif_palette_short.gif", bytes(data), "2-entry palette, indices up to 3")
    add("gif_truncated.gif", save(pal, format="GIF")[:700], "cut inside the image data")

    # WebP
    add("webp_lossy.webp", save(p, format="WEBP", quality=80), "lossy")
    add("webp_lossless.webp", save(p, format="WEBP", lossless=True), "lossless")
    add("webp_lossy_alpha.webp", save(rgba, format="WEBP", quality=80), "lossy with alpha")
    add("webp_lossless_alpha.webp", save(rgba, format="WEBP", lossless=True), "lossless with alpha")
    add("webp_animated.webp", save(frames[0].convert("RGB"), format="WEBP", save_all=True,
                                   append_images=[f.convert("RGB") for f in frames[1:]], duration=100, quality=80),
        "animated: the first frame")
    add("webp_19x7.webp", save(photo(19, 7, 9), format="WEBP", quality=80), "19x7 lossy (odd size)")

    # BMP
    add("bmp_rgb24.bmp", save(p, format="BMP"), "24-bit")
    add("bmp_rgba32.bmp", save(rgba, format="BMP"), "32-bit with alpha")
    add("bmp_palette8.bmp", save(p.quantize(colors=200), format="BMP"), "8-bit palette")
    add("bmp_gray8.bmp", save(p.convert("L"), format="BMP"), "8-bit grey")
    add("bmp_1bit.bmp", save(p.convert("1"), format="BMP"), "1-bit")
    add("bmp_16bit.bmp", bmp16(33, 21, 10), "16-bit 5-5-5 (refused: Pillow's scaling differs from stb_image's)")

    # Formats Pillow opens and we do not.
    add("other_tiff.tif", save(p, format="TIFF"), "TIFF (not supported)")
    add("other_ppm.ppm", save(p, format="PPM"), "PPM (not supported)")
    return files


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    files = make_files()
    proc = Pix2StructImageProcessor(is_vqa=False, max_patches=MAX_PATCHES)
    tensors, cases = {}, []
    for name, (data, what) in files.items():
        (OUT / name).write_bytes(data)
        case = {"file": name, "what": what, "bytes": len(data)}
        try:
            im = Image.open(OUT / name)
            case["pillow_mode"] = im.mode
            case["pillow_format"] = im.format
            rgb = np.asarray(convert_to_rgb(im), dtype=np.uint8)
        except Exception as e:  # what the reference does with the file: fail
            case["pillow_error"] = f"{type(e).__name__}: {e}"
            cases.append(case)
            continue
        tensors[f"rgb/{name}"] = np.ascontiguousarray(rgb)
        case["rgb"] = f"rgb/{name}"
        if min(rgb.shape[:2]) not in (1, 3):  # the processor misreads 1- and 3-pixel-high images (see README)
            out = proc(Image.open(OUT / name), return_tensors="np", input_data_format="channels_last")
            fp = out["flattened_patches"][0].astype(np.float32)
            n = int(fp[:, 0].max()) * int(fp[:, 1].max())
            tensors[f"patches/{name}"] = np.ascontiguousarray(fp[:n])
            case["patches"] = f"patches/{name}"
        cases.append(case)
    meta = {"max_patches": MAX_PATCHES, "pillow": Image.__version__,
            "libjpeg_turbo": features.version("libjpeg_turbo"), "webp": features.version("webp"), "cases": cases}
    save_file(tensors, str(GOLDENS / "formats.safetensors"))
    (GOLDENS / "formats.json").write_text(json.dumps(meta, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.glob("*")) + (GOLDENS / "formats.safetensors").stat().st_size
    print(f"{len(cases)} files, {len(tensors)} tensors, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
