#!/usr/bin/env python3
"""Times HF transformers and pix2struct.cpp on the same checkpoint, image and question, in the same run.

    ~/.cache/pix2struct-ref/bin/python bench/compare_hf.py --model tests/reference/out/base-random \
        --image tests/data/models/images/diagram.png --question "What is shown in the diagram?" \
        --bench build-model/bench_e2e --threads 2 --repeats 3 --tokens 20

HF runs in float32 on the CPU (the checkpoint's BF16 weights upcast: the same arithmetic as ours), with
torch.set_num_threads(threads). Stages, medians over repeats:
  preprocess  Pix2StructImageProcessor (header rendered with the same font file)
  encoder     model.encoder(flattened_patches, attention_mask)
  decode      model.generate(encoder_outputs=..., max_new_tokens=T, min_new_tokens=T) / T per token: includes
              the cross K/V projection and, as HF does, no early stop. Run with use_cache=True (HF's fast
              path) and with the checkpoint's own generation config (use_cache false in Pix2Struct configs).
pix2struct.cpp: bench_e2e --json with the same threads, repeats and tokens ((cross K/V + T·token) / T), once
per --dtypes entry (default f32,int8), each beside HF fp32, with each stage's rate beside the machine's
ceiling measured in the same run (peak FMA or int8 dot rate; memcpy bandwidth for decode's bytes) and the
generated ids against HF's (tokens equal up to HF's first eos).
--batch B (> 1) adds the same input B times as one batch: HF's encoder and generate on the stacked
[B, P, ·] inputs, ours bench_e2e --batch B (one encoder pass, decode steps of B sequences).
--python also times the Python package (pix2struct_cpp, installed in this venv: pip install .) in this process:
pipe.ask(path, question, max_new_tokens=T) beside HF's processor + generate(max_new_tokens=T, use_cache=True)
on the same file (both stop at eos), interleaved repeat by repeat; the binding's overhead is ask()'s wall time
less the C++ stages it reports (Answer.timings), which leaves the image file's decoding and the crossing into
C++; the HF/Python ratio sits beside the HF/C++ one of the rows above.
"""
import argparse
import json
import math
import statistics
import subprocess
import time

import torch
from PIL import Image
from transformers import Pix2StructForConditionalGeneration, Pix2StructImageProcessor
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
FONT = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"


def med(f, repeats):
    ts = []
    out = None
    for i in range(repeats + 1):
        t = time.perf_counter()
        out = f()
        if i:
            ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tests/reference/out/base-random")
    ap.add_argument("--image", default="tests/data/models/images/diagram.png")
    ap.add_argument("--question", default="What is shown in the diagram?")
    ap.add_argument("--bench", default="build-model/bench_e2e")
    ap.add_argument("--dtypes", default="f32,int8", help="our arithmetic modes to time, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1, help="also time B copies of the input as one batch")
    ap.add_argument("--skip-no-cache", action="store_true", help="skip HF's use_cache=False run (slow)")
    ap.add_argument("--python", action="store_true", help="also time pix2struct_cpp's Pipeline.ask in this process")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    dtypes = args.dtypes.split(",")
    runs = {d: json.loads(subprocess.run([args.bench, "--model", args.model, "--image", args.image, "--question",
                                          args.question, "--threads", str(args.threads), "--repeats",
                                          str(args.repeats), "--tokens", str(args.tokens), "--batch", str(args.batch),
                                          "--dtype", d, "--json"],
                                         check=True, capture_output=True, text=True).stdout) for d in dtypes}

    model = Pix2StructForConditionalGeneration.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    ip = Pix2StructImageProcessor.from_pretrained(args.model)
    img = Image.open(args.image)
    kw = dict(images=img, return_tensors="pt")
    if ip.is_vqa:
        kw.update(header_text=args.question, font_path=FONT)
    pre_ms, inputs = med(lambda: ip.preprocess(**kw), args.repeats)
    fp, mask = inputs["flattened_patches"], inputs["attention_mask"]
    enc_ms, enc = med(lambda: model.encoder(flattened_patches=fp, attention_mask=mask), args.repeats)
    T = args.tokens

    def gen(use_cache, enc=enc, mask=mask):
        return model.generate(encoder_outputs=enc, attention_mask=mask, max_new_tokens=T, min_new_tokens=T,
                              do_sample=False, num_beams=1, use_cache=use_cache)

    dec_cache_ms, hf_ids = med(lambda: gen(True), args.repeats)
    hf_ids = hf_ids[0, 1:].tolist()  # without the start token
    dec_nocache_ms = None
    if not args.skip_no_cache:
        dec_nocache_ms, _ = med(lambda: gen(False), max(1, args.repeats // 2))

    def dec(o):
        return o["cross_kv_ms"] + T * o["token_ms"]

    def end_to_end(o):
        return o["preprocess_ms"] + o["encoder_ms"] + dec(o)

    rows = [("preprocess", pre_ms, lambda o: o["preprocess_ms"]), ("encoder", enc_ms, lambda o: o["encoder_ms"]),
            (f"decode {T} tok (cache)", dec_cache_ms, dec)]
    if dec_nocache_ms is not None:
        rows.append((f"decode {T} tok (HF default, no cache)", dec_nocache_ms, dec))
    rows.append(("end to end (HF with cache)", pre_ms + enc_ms + dec_cache_ms, end_to_end))
    print(f"model {args.model}, {int(mask.sum())} real patches of {mask.shape[1]}, threads {args.threads}, "
          f"repeats {args.repeats} (medians, ms); HF in fp32")
    print(f"{'stage':38s} {'HF':>10s}" + "".join(f" {d:>10s} {'HF/' + d:>8s}" for d in dtypes))
    for name, hf, ours in rows:
        print(f"{name:38s} {hf:10.1f}" + "".join(f" {ours(runs[d]):10.1f} {hf / max(ours(runs[d]), 1e-9):8.2f}"
                                                  for d in dtypes))
    # accuracy: our greedy ids against HF's, up to HF's first eos (HF's min_new_tokens hides eos after it); where
    # they part, HF's own top-1 margin at that step (teacher-forced on its ids) and the bf16 spacing of its top logit
    n = hf_ids.index(1) + 1 if 1 in hf_ids else len(hf_ids)
    logits = model(encoder_outputs=enc, attention_mask=mask, decoder_input_ids=torch.tensor([[0] + hf_ids[:-1]])).logits[0]
    top2 = logits.topk(2, dim=-1).values
    for d in dtypes:
        o = runs[d]
        same = next((i for i in range(n) if i >= len(o["ids"]) or o["ids"][i] != hf_ids[i]), n)
        ceiling = (f"peak int8 dot {o['peak_int8_gops']:.0f} GOP/s" if d == "int8"
                   else f"peak bf16 dot {o['peak_bf16_gflops']:.0f} GFLOP/s" if o.get("peak_bf16_gflops")
                   else f"peak FMA {o['peak_fma_gflops']:.0f} GFLOP/s")
        parted = ""
        if same < n:
            top = float(top2[same, 0])
            ulp = 2.0 ** (math.floor(math.log2(max(abs(top), 1e-30))) - 7)
            parted = (f" (step {same}: HF's top-1 margin {float(top2[same, 0] - top2[same, 1]):.4f}, "
                      f"bf16 spacing of its top logit {ulp:.4f})")
        print(f"{d}: ids equal to HF fp32's for {same} of {n} tokens{parted}; encoder {o['encoder_gflops']:.0f} GFLOP/s "
              f"({ceiling}); decode {o['decode_gbs']:.1f} GB/s of memcpy {o['yardstick_copy_gbs']:.1f} GB/s "
              f"({o['decode_gbs'] / o['yardstick_copy_gbs']:.0%})")
    hf = {"preprocess_ms": pre_ms, "encoder_ms": enc_ms, "decode_cache_ms": dec_cache_ms,
          "decode_nocache_ms": dec_nocache_ms, "ids": hf_ids}
    if args.batch > 1:
        B = args.batch
        fpb, maskb = fp.repeat(B, 1, 1), mask.repeat(B, 1)
        b_enc_ms, encb = med(lambda: model.encoder(flattened_patches=fpb, attention_mask=maskb), args.repeats)
        b_dec_ms, _ = med(lambda: gen(True, encb, maskb), args.repeats)
        for d in dtypes:
            ob = runs[d]["batch"]
            ob_dec = ob["cross_kv_ms"] + T * ob["step_ms"]
            for name, h, us in [(f"batch {B}, {d}: encoder", b_enc_ms, ob["encoder_ms"]),
                                (f"batch {B}, {d}: decode {T} tok (cache)", b_dec_ms, ob_dec),
                                (f"batch {B}, {d}: encoder + decode", b_enc_ms + b_dec_ms, ob["encoder_ms"] + ob_dec)]:
                print(f"{name:38s} {h:10.1f} {us:10.1f} {h / max(us, 1e-9):8.2f}")
        hf["batch"] = {"size": B, "encoder_ms": b_enc_ms, "decode_cache_ms": b_dec_ms}
    if args.python:
        hf["python"] = python_rows(args, dtypes, runs, model, ip, kw, pre_ms + enc_ms + dec_cache_ms, end_to_end)
    print(json.dumps({"hf": hf, "ours": runs}))


def python_rows(args, dtypes, runs, model, ip, kw, hf_stages_ms, end_to_end):
    """pix2struct_cpp's ask() beside HF's processor + generate, interleaved; the binding's overhead."""
    import pix2struct_cpp as p2s

    T = args.tokens
    out = {}
    for d in dtypes:
        pipe = p2s.Pipeline(args.model, threads=args.threads, dtype=d)
        hf_ms, ours_ms, inside_ms, answer, hf_ids = [], [], [], None, None
        for i in range(args.repeats + 1):
            t = time.perf_counter()
            hf_ids = model.generate(**ip.preprocess(**kw), max_new_tokens=T, do_sample=False, num_beams=1,
                                    use_cache=True)[0, 1:].tolist()
            t_hf = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            answer = pipe.ask(args.image, args.question if ip.is_vqa else "", max_new_tokens=T)
            t_ours = (time.perf_counter() - t) * 1e3
            if i:
                hf_ms.append(t_hf)
                ours_ms.append(t_ours)
                tm = answer.timings
                inside_ms.append(tm["preprocess_ms"] + tm["encoder_ms"] + tm["cross_kv_ms"] + tm["decode_ms"])
        hf_med, ours_med = statistics.median(hf_ms), statistics.median(ours_ms)
        overhead = statistics.median(o - c for o, c in zip(ours_ms, inside_ms))
        cpp_e2e = end_to_end(runs[d])
        print(f"python {d}: pipe.ask {ours_med:.1f} ms, bench_e2e above {cpp_e2e:.1f} ms (python/C++ "
              f"{ours_med / cpp_e2e:.2f}); HF/python {hf_stages_ms / ours_med:.2f} with HF's stages above (HF/C++ "
              f"{hf_stages_ms / cpp_e2e:.2f}); HF's processor+generate in one call, interleaved with ask: "
              f"{hf_med:.1f} ms (HF/python {hf_med / ours_med:.2f}); {len(answer.ids)} tokens, ids "
              f"{'equal to' if answer.ids == hf_ids else 'DIFFERENT from'} HF's; binding overhead {overhead:.2f} ms a "
              f"call (image file decoded, call into C++ and back)")
        out[d] = {"hf_ms": hf_med, "ask_ms": ours_med, "overhead_ms": overhead, "ids_equal": answer.ids == hf_ids}
    return out


if __name__ == "__main__":
    main()
