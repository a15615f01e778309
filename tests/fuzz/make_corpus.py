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


# --- TrueType fonts, built table by table (the structures stb_truetype reads, each in a few variants) ---

def sfnt(tables):
    tags = sorted(tables)
    out, body = bytearray(struct.pack(">IHHHH", 0x00010000, len(tags), 0, 0, 0)), bytearray()
    offset = 12 + 16 * len(tags)
    for tag in tags:
        data = tables[tag]
        out += tag.encode().ljust(4) + struct.pack(">III", 0, offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    return bytes(out + body)


def simple_glyph(contours):
    """contours: lists of (x, y, on_curve); flags packed with repeats, coordinates as bytes where they fit."""
    pts = [p for c in contours for p in c]
    ends, n = [], 0
    for c in contours:
        n += len(c)
        ends.append(n - 1)
    flags, xs, ys, px, py = [], b"", b"", 0, 0
    for x, y, on in pts:
        f = 1 if on else 0
        for d, short, same, axis in ((x - px, 2, 16, "x"), (y - py, 4, 32, "y")):
            if d == 0:
                f |= same
                enc = b""
            elif abs(d) < 256:
                f |= short | (same if d > 0 else 0)
                enc = bytes([abs(d)])
            else:
                enc = struct.pack(">h", d)
            if axis == "x":
                xs += enc
            else:
                ys += enc
        px, py = x, y
        flags.append(f)
    packed, i = b"", 0
    while i < len(flags):
        j = i
        while j + 1 < len(flags) and flags[j + 1] == flags[i] and j - i < 255:
            j += 1
        packed += bytes([flags[i] | 8, j - i]) if j > i else bytes([flags[i]])
        i = j + 1
    xs_all, ys_all = [p[0] for p in pts], [p[1] for p in pts]
    head = struct.pack(">hhhhh", len(contours), min(xs_all), min(ys_all), max(xs_all), max(ys_all))
    return head + struct.pack(f">{len(ends)}H", *ends) + struct.pack(">H", 0) + packed + xs + ys


def composite_glyph(components, bbox=(0, 0, 600, 700)):
    """components: (glyph, dx, dy, transform) with transform None, a scale, (sx, sy) or (a, b, c, d)."""
    out = struct.pack(">hhhhh", -1, *bbox)
    for i, (glyph, dx, dy, t) in enumerate(components):
        words = not (-128 <= dx < 128 and -128 <= dy < 128)
        flags = 2 | (1 if words else 0) | (32 if i + 1 < len(components) else 0)
        extra = b""
        if isinstance(t, float):
            flags |= 8
            extra = struct.pack(">h", int(t * 16384))
        elif t is not None and len(t) == 2:
            flags |= 64
            extra = struct.pack(">hh", *(int(v * 16384) for v in t))
        elif t is not None:
            flags |= 128
            extra = struct.pack(">hhhh", *(int(v * 16384) for v in t))
        out += struct.pack(">HH", flags, glyph) + struct.pack(">hh" if words else ">bb", dx, dy) + extra
    return out


def cmap_table(subtables):
    """subtables: (platform, encoding, subtable bytes)."""
    out = struct.pack(">HH", 0, len(subtables))
    offset = 4 + 8 * len(subtables)
    body = b""
    for platform, encoding, data in subtables:
        out += struct.pack(">HHI", platform, encoding, offset + len(body))
        body += data
    return out + body


def cmap4(search=None):
    # A..B by idDelta, C..D through glyphIdArray (idRangeOffset), then the 0xFFFF terminator.
    ends, starts, deltas, ranges = [0x42, 0x44, 0xFFFF], [0x41, 0x43, 0xFFFF], [1 - 0x41, 0, 1], [0, 4, 0]
    sr, es, rs = search or (4, 1, 2)
    body = (struct.pack(">HHH", 6, sr, es) + struct.pack(">H", rs) + struct.pack(">3H", *ends) + b"\0\0"
            + struct.pack(">3H", *starts) + struct.pack(">3h", *deltas) + struct.pack(">3H", *ranges)
            + struct.pack(">2H", 3, 4))
    return struct.pack(">HHH", 4, 6 + len(body), 0) + body


def cmap12():
    groups = [(0x41, 0x44, 1), (0x1F600, 0x1F600, 2)]
    body = b"".join(struct.pack(">III", *g) for g in groups)
    return struct.pack(">HHIII", 12, 0, 16 + len(body), 0, len(groups)) + body


def cmap6():
    return struct.pack(">HHHHH", 6, 18, 0, 0x41, 4) + struct.pack(">4H", 1, 2, 3, 4)


def cmap0():
    ids = bytearray(256)
    ids[0x41:0x45] = b"\x01\x02\x03\x04"
    return struct.pack(">HHH", 0, 262, 0) + bytes(ids)


def kern_table(pairs):
    body = b"".join(struct.pack(">HHh", *p) for p in pairs)
    sub = struct.pack(">HHHHHHH", 0, 14 + len(body), 1, len(pairs), 6, 0, 0) + body
    return struct.pack(">HH", 0, 1) + sub


def gpos_table():
    # Lookup 0: single adjustment (skipped by stb_truetype); lookup 1: pair adjustment format 1 (A,B -50);
    # lookup 2: pair adjustment format 2 (classes: A,B -> 1; C,D -> 1 as second glyph; -30).
    cov1 = struct.pack(">HHH", 1, 1, 1)
    pairset = struct.pack(">HHh", 1, 2, -50)
    pp1 = struct.pack(">HHHHHH", 1, 12, 4, 0, 1, 12 + len(cov1)) + cov1 + pairset
    cov2 = struct.pack(">HHHHH", 2, 1, 1, 4, 0)
    cd1 = struct.pack(">HHH4H", 1, 1, 4, 1, 1, 0, 0)
    cd2 = struct.pack(">HHHHH", 2, 1, 3, 4, 1)
    records = struct.pack(">4h", 0, 0, 0, -30)
    head_len = 16 + len(records)
    pp2 = (struct.pack(">HHHHHHHH", 2, head_len, 4, 0, head_len + len(cov2), head_len + len(cov2) + len(cd1), 2, 2)
           + records + cov2 + cd1 + cd2)
    lookups = [struct.pack(">HHH", 1, 0, 0), struct.pack(">HHHH", 2, 0, 1, 8) + pp1,
               struct.pack(">HHHH", 2, 0, 1, 8) + pp2]
    offsets, body = [], b""
    for lk in lookups:
        offsets.append(2 + 2 * len(lookups) + len(body))
        body += lk
    lookup_list = struct.pack(">H", len(lookups)) + struct.pack(f">{len(lookups)}H", *offsets) + body
    return struct.pack(">HHHHH", 1, 0, 10, 12, 14) + struct.pack(">HH", 0, 0) + lookup_list


def font(cmap, long_loca=False, kern=True, gpos=False, glyphs=None, long_metrics=3, **override):
    glyphs = glyphs if glyphs is not None else [
        b"",                                                                            # .notdef: empty
        simple_glyph([[(100, 0, 1), (500, 0, 1), (500, 700, 1), (100, 700, 1)]]),      # A: a square
        simple_glyph([[(0, 0, 1), (300, 600, 0), (600, 0, 1)],                          # B: curves, and a
                      [(200, 100, 0), (300, 300, 0), (400, 100, 0)]]),                  #    contour all off-curve
        composite_glyph([(1, 10, 400, None), (2, 5, -3, 0.5)]),                         # C: A + B/2
        composite_glyph([(3, 0, 0, (0.9, 0.1, -0.1, 0.9))]),                            # D: C rotated
    ]
    glyphs = [g + b"\0" * (len(g) % 2) for g in glyphs]
    offsets = [0]
    for g in glyphs:
        offsets.append(offsets[-1] + len(g))
    loca = (struct.pack(f">{len(offsets)}I", *offsets) if long_loca
            else struct.pack(f">{len(offsets)}H", *(o // 2 for o in offsets)))
    n = len(glyphs)
    head = struct.pack(">IIIIHHqqhhhhHHhhh", 0x00010000, 0x00010000, 0, 0x5F0F3CF5, 0, 1000, 0, 0,
                       0, -200, 600, 800, 0, 8, 2, 1 if long_loca else 0, 0)
    hhea = struct.pack(">Ihhh H hhh hhh 8x hH", 0x00010000, 800, -200, 0, 650, 0, 0, 600, 1, 0, 0, 0, long_metrics)
    hmtx = b"".join(struct.pack(">Hh", 600 + 10 * i, 0) for i in range(long_metrics)) + b"\0\0" * (n - long_metrics)
    maxp = struct.pack(">IH13H", 0x00010000, n, 64, 4, 64, 4, 2, 0, 0, 0, 0, 64, 0, 2, 2)
    tables = {"head": head, "hhea": hhea, "hmtx": hmtx, "maxp": maxp, "loca": loca, "glyf": b"".join(glyphs),
              "cmap": cmap, "name": struct.pack(">HHH", 0, 0, 6), "post": struct.pack(">IIhhIIIII", 0x00030000, 0, 0, 0, 0, 0, 0, 0, 0)}
    if kern:
        tables["kern"] = kern_table([(1, 2, -40), (2, 3, 25)])
    if gpos:
        tables["GPOS"] = gpos_table()
    tables.update(override)
    return sfnt({k: v for k, v in tables.items() if v is not None})


def write_fonts():
    write("font", "cmap4_kern.ttf", font(cmap_table([(3, 1, cmap4())])))
    write("font", "cmap12_gpos_longloca.ttf", font(cmap_table([(3, 10, cmap12())]), long_loca=True, kern=False, gpos=True))
    write("font", "cmap6_kern_gpos.ttf", font(cmap_table([(1, 0, cmap0()), (0, 3, cmap6())]), gpos=True))
    write("font", "cmap0_one_metric.ttf", font(cmap_table([(0, 3, cmap0())]), long_metrics=1))
    good = font(cmap_table([(3, 1, cmap4())]))
    # Regressions: each was read out of bounds, looped or asserted in stb_truetype before the check.
    write("font", "reg_table_past_end.ttf", struct.pack(">IHHHH", 0x00010000, 6, 0, 0, 0) + b"".join(
        tag + struct.pack(">III", 0, 0xFFFF0000, 64) for tag in (b"cmap", b"head", b"hhea", b"hmtx", b"loca", b"glyf"))[:96]
        + b"\0" * 12)
    for n in (40, 200, len(good) // 2, len(good) - 45):  # the last cut ends inside maxp
        write("font", f"reg_truncated_{n}.ttf", good[:n])
    write("font", "reg_cmap4_search_fields.ttf", font(cmap_table([(3, 1, cmap4((0x4000, 12, 0xFFFE)))])))
    write("font", "reg_composite_cycle.ttf", font(cmap_table([(3, 1, cmap4())]), glyphs=[
        b"", simple_glyph([[(0, 0, 1), (10, 0, 1), (0, 10, 1)]]), composite_glyph([(3, 0, 0, None)]),
        composite_glyph([(2, 0, 0, None)]), composite_glyph([(4, 1, 1, None)])]))
    write("font", "reg_single_offcurve_contour.ttf", font(cmap_table([(3, 1, cmap4())]), glyphs=[
        b"", simple_glyph([[(0, 0, 1), (10, 0, 1), (0, 10, 1)], [(5, 5, 0)]])] * 2 + [b""] * 3))
    write("font", "reg_no_hmetrics.ttf", font(cmap_table([(3, 1, cmap4())]), long_metrics=0))
    write("font", "reg_cmap_format2.ttf", font(cmap_table([(3, 1, struct.pack(">HHH", 2, 518, 0) + bytes(512))])))
    write("font", "reg_composite_overflow.ttf", font(cmap_table([(3, 1, cmap4())]), glyphs=[
        b"", simple_glyph([[(0, 0, 1), (30000, 0, 1), (0, 30000, 1)]]),
        composite_glyph([(1, 3000, 3000, 1.9)]), b"", b""]))
    bad_gpos = bytearray(gpos_table())
    struct.pack_into(">H", bad_gpos, 10 + 2 + 2 * 3 + 6 + 8 + 8, 60000)  # pair set count read past the table
    write("font", "reg_gpos_pairset_offset.ttf", font(cmap_table([(3, 1, cmap4())]), gpos=True,
                                                       GPOS=bytes(bad_gpos[:len(bad_gpos) - 6])))


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
    write_fonts()

    # Model folder files (fuzz_model): a selector byte, then the file.
    tiny = ROOT / "tests" / "data" / "models" / "tiny"
    for i, name in enumerate(["config.json", "preprocessor_config.json", "tokenizer_config.json"]):
        write("model", name, bytes([i]) + (tiny / name).read_bytes())
    st = (tiny / "model.safetensors").read_bytes()
    header = st[8:8 + struct.unpack("<Q", st[:8])[0]]
    write("model", "safetensors_header.json", bytes([3]) + header)
    shrunk = json.loads(header)
    shrunk["decoder.lm_head.weight"]["shape"] = [1, 1]
    write("model", "safetensors_wrong_shape.json", bytes([3]) + json.dumps(shrunk).encode())
    config = json.loads((tiny / "config.json").read_bytes())
    config["text_config"]["d_kv"] = config["text_config"]["d_kv"] * 2
    write("model", "config_wrong_d_kv.json", bytes([0]) + json.dumps(config).encode())
    print("corpus written:", {d.name: len(list(d.iterdir())) for d in CORPUS.iterdir()})


if __name__ == "__main__":
    main()
