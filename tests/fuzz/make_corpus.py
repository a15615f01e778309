"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) and the regression inputs
(reg_*: every input that once crashed, hung or ran out of memory). Plain Python, no dependency:
    python3 tests/fuzz/make_corpus.py
"""
import json
import pathlib
import shutil
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h, depth=8, ctype=0, rows=None):
    raw = rows if rows is not None else b"".join(b"\0" + b"\x80" * (w * {0: 1, 2: 3, 4: 2, 6: 4}[ctype]) for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def safetensors(entries, data, metadata=None):
    header = dict(entries)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    # Images: small valid files of every format (the decoders' own test files), then the regressions.
    formats = ROOT / "tests" / "data" / "images" / "formats"
    for f in sorted(formats.iterdir()):
        if f.stat().st_size <= 4096:
            write("image", f.name, f.read_bytes())
    write("image", "reg_jpeg_dht_overflow.jpg", bytes.fromhex("ffd8ffc4001313") + b"\xff" * 16)
    write("image", "reg_png_4gx4g.png", b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
          + struct.pack(">II", 0xFFFFFFFF, 0xFFFFFFFF))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    write("image", "reg_png_idat_2gib.png", b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", 0x7FFFFFFF) + b"IDAT")
    write("image", "reg_png_1x100000.png", png(1, 100000))
    write("image", "reg_gif_screen_65535.gif", b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\0\0\0"
          + b"," + struct.pack("<HHHH", 0, 0, 65535, 65535) + b"\0\x02\x02\x4c\x01\0;")
    write("image", "reg_bmp_negative_width.bmp", b"BM" + struct.pack("<IHHI", 70, 0, 0, 54)
          + struct.pack("<IiiHHIIiiII", 40, -5, 3, 1, 24, 0, 0, 0, 0, 0, 0) + b"\0" * 16)

    # safetensors: valid files of each float dtype, then malformed ones.
    f32 = struct.pack("<4f", 1.0, -2.0, 3.5, 0.0)
    write("safetensors", "valid_f32.safetensors", safetensors({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, f32, {"format": "pt"}))
    write("safetensors", "valid_mixed.safetensors", safetensors({
        "a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
        "b": {"dtype": "F16", "shape": [1, 1], "data_offsets": [6, 8]},
        "c": {"dtype": "U8", "shape": [2], "data_offsets": [8, 10]}}, b"\x80\x3f\x00\x40\x00\xc0\x00\x3c\x01\x02"))
    write("safetensors", "bad_duplicate.safetensors", b"")  # replaced below (json.dumps cannot repeat a key)
    text = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    write("safetensors", "bad_duplicate.safetensors", struct.pack("<Q", len(text)) + text + f32[:4])
    write("safetensors", "bad_overlap.safetensors", safetensors({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32[:12]))
    write("safetensors", "bad_shape_overflow.safetensors", safetensors({
        "a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}}, f32))

    # JSON configs: the committed ones, then the regressions.
    for f in sorted((ROOT / "tests" / "data" / "models" / "tiny").glob("*.json")):
        write("config", f.name, f.read_bytes())
    for f in sorted((ROOT / "tests" / "data" / "configs").glob("*.json")):
        write("config", f.name, f.read_bytes())
    write("config", "reg_buckets_max_distance.json", json.dumps(
        {"text_config": {"relative_attention_num_buckets": 4, "relative_attention_max_distance": 1}}))
    write("config", "reg_many_layers.json", json.dumps({"text_config": {"num_layers": 1000000},
                                                        "vision_config": {"num_hidden_layers": 100000}}))
    write("config", "reg_inner_dim_overflow.json", json.dumps({"vision_config": {"num_attention_heads": 65536, "d_kv": 65536}}))

    # Token ids (int32 little-endian).
    write("tokenizer", "ids_small.bin", struct.pack("<8i", 0, 1, 2, 3, 50, 100, 200, 1))
    write("tokenizer", "ids_out_of_range.bin", struct.pack("<4i", -1, 2**31 - 1, -2**31, 50000))
    write("tokenizer", "ids_empty.bin", b"")

    # Question text.
    for i, q in enumerate(["What is shown?", "What does the label 15 represent? (1) lava (2) core (3) tunnel (4) ash cloud",
                           "Où est la légende? Ωμέγα αλφα — 什么是 naïve café?", "Which\tstage   comes\t\tafter?\n (A) pupa",
                           "", "x" * 300, "bad \xff utf-8".encode("latin-1").decode("latin-1")]):
        write("header", f"question_{i}.txt", q.encode("utf-8", "surrogateescape"))
    write("header", "bad_utf8.txt", b"bad \xff\xfe utf-8 \xc3")
    print("corpus written:", {d.name: len(list(d.iterdir())) for d in CORPUS.iterdir()})


if __name__ == "__main__":
    main()
