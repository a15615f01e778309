#!/usr/bin/env python3
"""Random-weight Pix2Struct checkpoints in HF layout and the reference outputs the C++ tests compare to.

Run with the reference venv (transformers 4.57.6, torch, sentencepiece):
    ~/.cache/pix2struct-ref/bin/python tests/reference/make_model_goldens.py            # tiny, tiny-bf16
    ~/.cache/pix2struct-ref/bin/python tests/reference/make_model_goldens.py --big      # + large-widths, base (ignored out/)

What it writes
  tests/data/models/tiny/          config.json, model.safetensors (F32), preprocessor_config.json, spiece.model,
                                   tokenizer files (Pix2StructProcessor.save_pretrained layout)
  tests/data/models/tiny-bf16/     the same weights rounded to BF16 and stored as BF16
  tests/data/models/wide/          BF16, 1 + 1 layers of hidden 64 on the large model's vision widths (24
                                   heads of d_kv 64, d_ff 3968), max_patches 1152 (a random case of 1122 patches)
  tests/data/models/goldens/<name>.safetensors + <name>.json   reference outputs (see write_goldens)
  tests/data/models/tokenizer_goldens.json                      T5Tokenizer encode / decode cases
  tests/reference/out/large-widths-2layer/, tests/reference/out/base-random/  (--big; ignored by git)

Random init in HF gives near-uniform logits, so greedy decoding would hinge on 1e-6 differences. The weights
are re-initialised with unit-gain scales (see reinit) and the lm_head is scaled so logits spread by ~WIDTH;
every generation case records its smallest top-1 margin (top1 - top2 logit) in the JSON, and cases are only
kept when that margin is >= MIN_MARGIN.

Goldens for the BF16 checkpoint are computed by HF after loading the BF16 file as float32 (the weights are
the BF16 values; the arithmetic is fp32), which is what the C++ CPU backend computes.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from safetensors.torch import save_file
from transformers import (Pix2StructConfig, Pix2StructForConditionalGeneration, Pix2StructImageProcessor,
                          Pix2StructProcessor, T5Tokenizer)
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.set_grad_enabled(False)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "models"
OUT = ROOT / "tests" / "reference" / "out"
FONT = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"
MIN_MARGIN = 0.05
SPM_VOCAB = 400


# ---------------------------------------------------------------------------------------------------------
# Tokenizer: a small T5-style SentencePiece model (pad 0, eos 1, unk 2, no bos), trained on English text.
# ---------------------------------------------------------------------------------------------------------
def english_corpus() -> list[str]:
    lines = []
    for p in sorted(Path("/usr/share/common-licenses").glob("*")):
        if p.is_file():
            lines += [l.strip() for l in p.read_text(errors="ignore").splitlines() if len(l.strip()) > 20]
    lines += [
        "What is the name of the largest planet in the solar system?",
        "The diagram shows the life cycle of a butterfly: egg, larva, pupa and adult.",
        "Which stage comes after the larva? The answer is pupa.",
        "How many legs does an insect have? Six.",
        "The chart shows sales in 2019, 2020 and 2021 for three products.",
    ]
    return lines


def train_spiece(path: Path):
    import sentencepiece as spm
    corpus = english_corpus()
    with tempfile.TemporaryDirectory() as tmp:
        txt = Path(tmp) / "corpus.txt"
        txt.write_text("\n".join(corpus))
        spm.SentencePieceTrainer.train(
            input=str(txt), model_prefix=str(Path(tmp) / "sp"), vocab_size=SPM_VOCAB, model_type="unigram",
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
            character_coverage=1.0, normalization_rule_name="nmt_nfkc", num_threads=1, seed_sentencepiece_size=100000,
            input_sentence_size=0, shuffle_input_sentence=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "sp.model", path)


def load_tokenizer(spiece: Path) -> T5Tokenizer:
    return T5Tokenizer(str(spiece), legacy=True)


def tokenizer_goldens(tok: T5Tokenizer, path: Path):
    rng = np.random.default_rng(7)
    texts = ["Hello world", "What is the name of the largest planet?", "  leading and trailing spaces  ",
             "Numbers 2019, 2020 and 3.14!", "MIXED Case and punctuation; (yes) [no] {maybe}", "",
             "unicode: café naïve — “quotes”", "a  double  space", "new\nline and\ttab",
             "The diagram shows the life cycle of a butterfly."]
    encode = [{"text": t, "ids": tok.encode(t)} for t in texts]  # appends </s> like HF
    n = len(tok)
    decode = []
    id_lists = [[0, 1], [2, 3, 4, 1], [n - 1, 5, n - 100, 6, 1, 0, 0]]
    for t in texts:
        id_lists.append(tok.encode(t))
    for _ in range(30):
        L = int(rng.integers(1, 20))
        ids = [int(x) for x in rng.integers(0, n, size=L)]
        id_lists.append(ids)
    for ids in id_lists:
        decode.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=True),
                       "text_with_special": tok.decode(ids, skip_special_tokens=False)})
    path.write_text(json.dumps({"spiece_pieces": tok.sp_model.get_piece_size(), "vocab_size": n,
                                "encode": encode, "decode": decode}, indent=1, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------
def make_config(kind: str, vocab: int) -> Pix2StructConfig:
    if kind == "tiny":
        # Vision inner dim (heads*d_kv = 48) differs from hidden (64) on purpose: the reference allows it.
        vision = dict(hidden_size=64, patch_embed_hidden_size=768, d_ff=128, d_kv=24, num_hidden_layers=2,
                      num_attention_heads=2, seq_len=128)
        text = dict(vocab_size=vocab, hidden_size=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2)
    elif kind == "wide":
        # Committed and small (~3 MB BF16), yet on the large model's vision widths: 24 heads of d_kv 64
        # (inner 1536) and d_ff 3968 around a hidden size of 64 (HF's text attention ties heads x d_kv to
        # hidden: one head of 64 there); > 1024 patches.
        vision = dict(hidden_size=64, patch_embed_hidden_size=768, d_ff=3968, d_kv=64, num_hidden_layers=1,
                      num_attention_heads=24, seq_len=1152)
        text = dict(vocab_size=vocab, hidden_size=64, d_kv=64, d_ff=256, num_layers=1, num_heads=1)
    elif kind == "large-widths":
        vision = dict(hidden_size=1536, patch_embed_hidden_size=768, d_ff=3968, d_kv=64, num_hidden_layers=2,
                      num_attention_heads=24, seq_len=4096)
        text = dict(vocab_size=vocab, hidden_size=1536, d_kv=64, d_ff=3968, num_layers=2, num_heads=24)
    elif kind == "base":
        vision = dict(hidden_size=768, patch_embed_hidden_size=768, d_ff=2048, d_kv=64, num_hidden_layers=12,
                      num_attention_heads=12, seq_len=4096)
        text = dict(vocab_size=vocab, hidden_size=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)
    else:
        raise ValueError(kind)
    return Pix2StructConfig(vision_config=vision, text_config=text, is_vqa=True)


def reinit(model: Pix2StructForConditionalGeneration, seed: int, logit_scale: float = 6.0):
    """Unit-gain random weights: activations stay O(1), attention is peaked, logits spread by ~logit_scale."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        shape = p.shape
        if name.endswith("layer_norm.weight") or name.endswith("layernorm.weight"):
            v = 1.0 + 0.2 * torch.randn(shape, generator=g)
        elif "relative_attention_bias" in name or "embedder" in name or "embed_tokens" in name:
            v = torch.randn(shape, generator=g)
        elif name.endswith("patch_projection.bias"):
            v = 0.5 * torch.randn(shape, generator=g)
        elif name.endswith("lm_head.weight"):
            v = torch.randn(shape, generator=g) * (logit_scale / shape[1] ** 0.5)
        elif p.dim() == 2:
            fan_in = shape[1]
            gain = 0.35 if (name.endswith("query.weight") or name.endswith("key.weight")) else 1.0
            if "encoder_decoder_attention.attention.output" in name:
                gain = 3.0  # make the text depend strongly on the image
            v = torch.randn(shape, generator=g) * (gain / fan_in ** 0.5)
        else:
            raise RuntimeError(f"unexpected parameter {name}")
        p.copy_(v)


def make_eos_reachable(model, max_patches, step=4):
    """Random weights never pick eos. Copy (x1.05) into eos's lm_head row the row of the token that the first
    random golden case (same seed and shape as in write_goldens) generates at `step`, so that case stops early
    (tests the stopping rule) while others run to max_length unless they meet that token."""
    rng = np.random.default_rng(42)
    fp, mask = random_patches(rng, max_patches, 5, 7)
    ids, _ = greedy(model, fp, mask)
    step = next(i for i in range(step, len(ids)) if ids[i] not in ids[:i])  # a token not generated before
    w = model.decoder.lm_head.weight
    w[1] = 1.05 * w[ids[step]]
    return ids[step]


def save_checkpoint(model, out_dir: Path, tok: T5Tokenizer, max_patches: int, is_vqa: bool, bf16: bool):
    out_dir.mkdir(parents=True, exist_ok=True)
    m = model
    if bf16:
        m = Pix2StructForConditionalGeneration(model.config)
        m.load_state_dict(model.state_dict())
        m = m.to(torch.bfloat16)
    m.save_pretrained(out_dir, safe_serialization=True)
    ip = Pix2StructImageProcessor(max_patches=max_patches, is_vqa=is_vqa)
    Pix2StructProcessor(ip, tok).save_pretrained(out_dir)
    # save_pretrained writes generation_config.json with the defaults; keep it (real checkpoints have one).


def load_fp32(out_dir: Path):
    m = Pix2StructForConditionalGeneration.from_pretrained(out_dir, torch_dtype=torch.float32)
    m.eval()
    return m


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------
def random_patches(rng, max_patches, rows, cols, patch_dim=768):
    """Flattened patches like the processor's: [max_patches, 2 + patch_dim], 1-based row/col ids, zero padding."""
    n = rows * cols
    fp = np.zeros((max_patches, 2 + patch_dim), np.float32)
    r, c = np.divmod(np.arange(n), cols)
    fp[:n, 0] = r + 1
    fp[:n, 1] = c + 1
    # bf16-representable values so the goldens can store the inputs as BF16 without changing them
    fp[:n, 2:] = torch.from_numpy(rng.standard_normal((n, patch_dim)).astype(np.float32)).bfloat16().float().numpy()
    mask = np.zeros(max_patches, np.float32)
    mask[:n] = 1
    return fp, mask


def greedy(model, fp, mask, **kw):
    out = model.generate(flattened_patches=torch.from_numpy(fp)[None], attention_mask=torch.from_numpy(mask)[None],
                         output_scores=True, return_dict_in_generate=True, do_sample=False, num_beams=1, **kw)
    ids = out.sequences[0].tolist()
    margins = []
    for s in out.scores:
        top = torch.topk(s[0].float(), 2).values
        margins.append(float(top[0] - top[1]))
    return ids, margins


def teacher_forced(model, fp, mask, dec_ids):
    out = model(flattened_patches=torch.from_numpy(fp)[None], attention_mask=torch.from_numpy(mask)[None],
                decoder_input_ids=torch.tensor([dec_ids]))
    return out.logits[0].float().numpy(), out.encoder_last_hidden_state[0].float().numpy()


def make_diagram(path: Path, size=(220, 160), seed=0):
    """A small synthetic diagram: boxes, arrows and labels (the model input for full-pipeline cases)."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, 14)
    labels = ["egg", "larva", "pupa", "adult"]
    w, h = size
    pts = [(int(w * 0.2), int(h * 0.25)), (int(w * 0.75), int(h * 0.25)), (int(w * 0.75), int(h * 0.75)),
           (int(w * 0.2), int(h * 0.75))]
    for i, (x, y) in enumerate(pts):
        col = tuple(int(v) for v in rng.integers(60, 230, 3))
        d.ellipse([x - 18, y - 14, x + 18, y + 14], fill=col, outline="black")
        d.text((x - 16, y + 15), labels[i], fill="black", font=font)
        nx, ny = pts[(i + 1) % 4]
        d.line([x, y, nx, ny], fill="black", width=2)
    d.text((5, 2), "Life cycle", fill=(200, 0, 0), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


# ---------------------------------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------------------------------
def write_goldens(name, model, tok, max_patches, rng, pipeline_cases, n_random=2, tf_len=7, gen_kw_list=None,
                  store_pipeline_inputs=True, relax_pipeline_margin=False, prompted_cases=(),
                  shapes=((5, 7), (8, 8), (3, 11), (6, 4), (7, 9), (2, 5))):
    """<name>.safetensors (inputs store only the n real rows: pad with zero rows to max_patches, mask = row < n):
    per random case k: patches_k [n, 770] (BF16, exact), encoder_k [n, H] (real rows of the encoder output),
    tf_ids_k [T] (int64, starts with 0), logits_k [T, V]; per pipeline case j: pipe_patches_j [n, 770] (F32,
    the HF processor's output, when store_pipeline_inputs)
    <name>.json: ids, decoded text and margins of every generate() call, plus the pipeline case parameters."""
    tensors, meta = {}, {"name": name, "max_patches": max_patches, "random": [], "pipeline": [],
                         "min_margin_required": MIN_MARGIN}
    V = model.config.text_config.vocab_size
    k = 0
    for attempt in range(40):
        if k >= n_random:
            break
        rows, cols = shapes[attempt % len(shapes)]
        while rows * cols > max_patches:
            rows, cols = max(1, rows // 2), max(1, cols // 2)
        fp, mask = random_patches(rng, max_patches, rows, cols)
        gens = []
        ok = True
        for kw in (gen_kw_list or [{}, {"max_new_tokens": 6}]):
            ids, margins = greedy(model, fp, mask, **kw)
            if min(margins) < MIN_MARGIN:
                ok = False
                break
            gens.append({"kwargs": kw, "ids": ids, "text": safe_decode(tok, ids),
                         "min_margin": min(margins), "margins": margins})
        if not ok:
            continue
        dec = [0] + [int(x) for x in rng.integers(2, V, size=tf_len - 1)]
        logits, enc = teacher_forced(model, fp, mask, dec)
        n = rows * cols
        tensors[f"patches_{k}"] = torch.from_numpy(fp[:n].copy()).bfloat16()  # exact: values are bf16
        tensors[f"encoder_{k}"] = torch.from_numpy(enc[:n].copy())
        tensors[f"tf_ids_{k}"] = torch.tensor(dec, dtype=torch.int64)
        tensors[f"logits_{k}"] = torch.from_numpy(logits.copy())
        meta["random"].append({"index": k, "rows": rows, "cols": cols, "generate": gens,
                               "encoder_abs_max": float(np.abs(enc[: rows * cols]).max()),
                               "logits_abs_max": float(np.abs(logits).max())})
        k += 1
    if k < n_random:
        print(f"{name}: only {k} random cases reached margin {MIN_MARGIN}", file=sys.stderr)

    j = 0
    want_vqa, want_caption = 3, 1
    for case in pipeline_cases:
        if (case["is_vqa"] and want_vqa == 0) or (not case["is_vqa"] and want_caption == 0):
            continue
        # The image processor is called directly: Pix2StructProcessor drops font_path from its kwargs, and
        # for VQA the processor only forwards the question as header_text anyway.
        ip = Pix2StructImageProcessor(max_patches=max_patches, is_vqa=case["is_vqa"])
        img = Image.open(case["image"])
        kw = dict(images=img, return_tensors="pt", max_patches=max_patches)
        if case["is_vqa"]:
            kw.update(header_text=case["question"], font_path=FONT)
        inputs = ip.preprocess(**kw)
        fp = inputs["flattened_patches"][0].numpy()
        mask = inputs["attention_mask"][0].numpy().astype(np.float32)
        ids, margins = greedy(model, fp, mask)
        if min(margins) < MIN_MARGIN and not relax_pipeline_margin:
            continue
        entry = dict(case, image=str(Path(case["image"]).relative_to(ROOT)), index=j, ids=ids,
                     text=safe_decode(tok, ids), min_margin=min(margins), margins=margins,
                     num_real=int(mask.sum()))
        meta["pipeline"].append(entry)
        if store_pipeline_inputs and j < 2:  # the processor's output for two cases (size budget)
            tensors[f"pipe_patches_{j}"] = torch.from_numpy(fp[: entry["num_real"]].copy())
        j += 1
        if case["is_vqa"]:
            want_vqa -= 1
        else:
            want_caption -= 1

    # Captioning with a text prompt (conditional captioning): Pix2StructProcessor tokenizes the text
    # without special tokens into decoder_input_ids; generate() prepends decoder_start_token_id and
    # continues after the prompt (the returned sequence holds start + prompt + new tokens).
    meta["prompted"] = []
    for case in prompted_cases:
        ip = Pix2StructImageProcessor(max_patches=max_patches, is_vqa=False)
        proc = Pix2StructProcessor(ip, tok)
        inputs = proc(images=Image.open(case["image"]), text=case["prompt"], return_tensors="pt",
                      max_patches=max_patches)
        fp = inputs["flattened_patches"][0].numpy()
        mask = inputs["attention_mask"][0].numpy().astype(np.float32)
        prompt_ids = inputs["decoder_input_ids"][0].tolist()
        ids, margins = greedy(model, fp, mask, decoder_input_ids=inputs["decoder_input_ids"])
        meta["prompted"].append(dict(case, image=str(Path(case["image"]).relative_to(ROOT)), prompt_ids=prompt_ids,
                                     ids=ids, text=safe_decode(tok, ids), min_margin=min(margins), margins=margins))
    return tensors, meta


def safe_decode(tok, ids):
    """Decoded text, or None where the ids fall outside the tokenizer (the base-shape checkpoint's 50244 vocab)."""
    if max(ids) >= len(tok):
        return None
    return tok.decode(ids, skip_special_tokens=True)


def save_goldens(dir_: Path, name: str, tensors, meta):
    dir_.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(dir_ / f"{name}.safetensors"))
    (dir_ / f"{name}.json").write_text(json.dumps(meta, indent=1))
    for r in meta["random"]:
        for g in r["generate"]:
            print(f"  {name} random {r['index']} {g['kwargs']}: ids {g['ids']} margin {g['min_margin']:.3f}")
    for p in meta["pipeline"]:
        print(f"  {name} pipeline {p['index']}: ids {p['ids']} margin {p['min_margin']:.3f} real {p['num_real']}")


def pipeline_cases(images):
    """Candidates in a fixed order; write_goldens keeps the first 3 VQA and 1 captioning case with clear margins."""
    qs = ["What is shown?", "Which stage comes after the larva?", "How many legs does an insect have? " * 3,
          "What color is the egg?", "Where does the cycle start?", "Is this a diagram?", "Name the last stage.",
          "What does the arrow from pupa point to?"]
    cases = []
    for i, q in enumerate(qs):
        for im in images:
            cases.append({"image": str(im), "question": q, "is_vqa": True})
    for im in images:
        cases.append({"image": str(im), "question": "", "is_vqa": False})
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", action="store_true", help="also the large-widths 2-layer and base-shape checkpoints")
    ap.add_argument("--retrain-tokenizer", action="store_true")
    ap.add_argument("--skip-tiny", action="store_true")
    ap.add_argument("--skip-wide", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)

    spiece = DATA / "tiny" / "spiece.model"
    if args.retrain_tokenizer or not spiece.exists():
        train_spiece(spiece)
    # keep a copy: save_pretrained below rewrites the model dir
    sp_bytes = spiece.read_bytes()
    tmp_sp = Path(tempfile.mkdtemp()) / "spiece.model"
    tmp_sp.write_bytes(sp_bytes)
    tok = load_tokenizer(tmp_sp)
    vocab = len(tok)
    tokenizer_goldens(tok, DATA / "tokenizer_goldens.json")

    images = [DATA / "images" / "diagram.png", DATA / "images" / "tall.png"]
    make_diagram(images[0], (220, 160), seed=0)
    make_diagram(images[1], (90, 200), seed=1)
    extra = []  # only our own images: the front end may regenerate tests/data/images/
    cases = pipeline_cases(images + extra)

    goldens = DATA / "goldens"
    if not args.skip_tiny:
        cfg = make_config("tiny", vocab)
        model = Pix2StructForConditionalGeneration(cfg).eval()
        reinit(model, seed=1234, logit_scale=12.0)
        make_eos_reachable(model, 64)
        for name, bf16 in (("tiny", False), ("tiny-bf16", True)):
            d = DATA / name
            save_checkpoint(model, d, tok, max_patches=64, is_vqa=True, bf16=bf16)
            m = load_fp32(d)
            rng = np.random.default_rng(42)
            prompted = [{"image": str(images[0]), "prompt": "The diagram shows"},
                        {"image": str(images[1]), "prompt": "A picture of"}]
            t, meta = write_goldens(name, m, tok, 64, rng, cases, n_random=3, store_pipeline_inputs=(name == "tiny"),
                                    prompted_cases=prompted)
            save_goldens(goldens, name, t, meta)

    if not args.skip_wide:
        # d_kv 64, 24 heads, d_ff 3968 and 1122 patches, small enough to commit: CI runs these paths.
        cfg = make_config("wide", vocab)
        model = Pix2StructForConditionalGeneration(cfg).eval()
        reinit(model, seed=4321, logit_scale=12.0)
        d = DATA / "wide"
        save_checkpoint(model, d, tok, max_patches=1152, is_vqa=True, bf16=True)
        del model
        m = load_fp32(d)
        rng = np.random.default_rng(7)
        t, meta = write_goldens("wide", m, tok, 1152, rng, cases, n_random=1, store_pipeline_inputs=False,
                                shapes=((33, 34), (32, 35), (34, 33)))
        save_goldens(goldens, "wide", t, meta)
        del m

    if args.big:
        for name, kind, vocab_big, mp, n_layers_note in (("large-widths-2layer", "large-widths", vocab, 256, 2),
                                                        ("base-random", "base", 50244, 2048, 12)):
            cfg = make_config(kind, vocab_big)
            model = Pix2StructForConditionalGeneration(cfg).eval()
            reinit(model, seed=99)
            d = OUT / name
            save_checkpoint(model, d, tok, max_patches=mp, is_vqa=True, bf16=True)
            del model
            m = load_fp32(d)
            rng = np.random.default_rng(5)
            t, meta = write_goldens(name, m, tok, mp, rng, cases[:2] if kind == "base" else cases,
                                    n_random=1, gen_kw_list=[{"max_new_tokens": 8}], relax_pipeline_margin=True)
            save_goldens(d, "goldens", t, meta)
            del m


if __name__ == "__main__":
    main()
