#!/usr/bin/env python3
"""Times HF transformers (eager, fp32 and bf16) and pix2struct.cpp's CUDA backend on the same GPU, checkpoint
and patches, in the same run, and prints the ratios.

    python3 bench/gpu/compare_hf_gpu.py --model bench/out/base --bench build-gpu/gpu_bench_e2e_gpu \
        --patches bench/out/gpu/patches.safetensors --repeats 10 --tokens 20

Patches: read from --patches when the file exists (tensors flattened_patches [P, 770], attention_mask [P]);
otherwise made with HF's Pix2StructImageProcessor from --image and --question (header drawn with --font,
Liberation Sans as the C++ front end uses) and written there. The GPU machine may lack the font: make the
file on the development machine first with --make-patches-only (CPU only, no model weights needed).

Stages, medians over repeats, torch.cuda.synchronize() around each timed call:
  encoder   model.encoder(flattened_patches, attention_mask)
  decode    model.generate(encoder_outputs=..., max_new_tokens=T, min_new_tokens=T, use_cache=True): includes
            the cross K/V projection (HF computes it in the first step) and no early stop; ours is
            cross_kv_ms + T * token_ms from bench_e2e_gpu (asynchronous backend, argmax on the device, one
            fence per token).
--batch B (> 1) adds the same patches B times as one batch: HF's encoder and generate on [B, P, ·], ours
gpu_bench_e2e_gpu --batch B (one encoder pass over B·N rows, steps of B sequences, tokens on the device).
HF runs eager attention (Pix2Struct has no SDPA path) in float32 (the same arithmetic as ours; TF32 off) and
in bfloat16 (the checkpoint's dtype); ours runs gpu_bench_e2e_gpu --dtype f32 (CudaBackend) and --dtype bf16
(CudaBackendBf16), each beside HF in the same dtype.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FONT = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"


def make_patches(args):
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import Pix2StructImageProcessor

    if os.path.exists(os.path.join(args.model, "preprocessor_config.json")):
        ip = Pix2StructImageProcessor.from_pretrained(args.model)
    else:  # the base checkpoints' processor: 2048 patches of 16x16, VQA
        ip = Pix2StructImageProcessor(is_vqa=True, max_patches=2048, patch_size={"height": 16, "width": 16})
    kw = dict(images=Image.open(args.image), return_tensors="pt")
    if ip.is_vqa:
        if not os.path.exists(args.font):
            sys.exit(f"compare_hf_gpu.py: font {args.font} not found (the header needs it); make the patches on a "
                     "machine that has it with --make-patches-only and carry the file")
        kw.update(header_text=args.question, font_path=args.font)
    inputs = ip.preprocess(**kw)
    os.makedirs(os.path.dirname(os.path.abspath(args.patches)), exist_ok=True)
    save_file({"flattened_patches": inputs["flattened_patches"][0].float().contiguous(),
               "attention_mask": inputs["attention_mask"][0].float().contiguous()}, args.patches,
              metadata={"image": args.image, "question": args.question})
    print(f"wrote {args.patches}: {int(inputs['attention_mask'].sum())} real patches of "
          f"{inputs['attention_mask'].shape[1]}", file=sys.stderr)


def timed(f, repeats):
    import torch
    ts, out = [], None
    for i in range(repeats + 1):  # the first call warms up
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = f()
        torch.cuda.synchronize()
        if i:
            ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts), out


def hf_times(args, dtype, fp, mask):
    import torch
    from transformers import Pix2StructForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    model = Pix2StructForConditionalGeneration.from_pretrained(args.model, torch_dtype=dtype,
                                                               attn_implementation="eager").cuda().eval()
    fp = fp.to("cuda", dtype)
    mask = mask.to("cuda")
    enc_ms, enc = timed(lambda: model.encoder(flattened_patches=fp, attention_mask=mask), args.repeats)
    T = args.tokens

    def gen():
        return model.generate(encoder_outputs=enc, attention_mask=mask, max_new_tokens=T, min_new_tokens=T,
                              do_sample=False, num_beams=1, use_cache=True)

    dec_ms, ids = timed(gen, args.repeats)
    out = {"encoder_ms": enc_ms, "decode_ms": dec_ms, "ids": ids[0, 1:].tolist()}
    if args.batch > 1:
        B = args.batch
        fpb, maskb = fp.repeat(B, 1, 1), mask.repeat(B, 1)
        enc_b_ms, encb = timed(lambda: model.encoder(flattened_patches=fpb, attention_mask=maskb), args.repeats)
        dec_b_ms, _ = timed(lambda: model.generate(encoder_outputs=encb, attention_mask=maskb, max_new_tokens=T,
                                                   min_new_tokens=T, do_sample=False, num_beams=1, use_cache=True),
                            args.repeats)
        out["batch"] = {"size": B, "encoder_ms": enc_b_ms, "decode_ms": dec_b_ms}
    del model
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bench/out/base")
    ap.add_argument("--image", default="tests/data/models/images/diagram.png")
    ap.add_argument("--question", default="What is shown in the diagram?")
    ap.add_argument("--font", default=FONT)
    ap.add_argument("--patches", default="bench/out/gpu/patches.safetensors")
    ap.add_argument("--bench", default="build-gpu/gpu_bench_e2e_gpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1, help="also time B copies of the patches as one batch")
    ap.add_argument("--make-patches-only", action="store_true", help="write --patches and stop (CPU only)")
    args = ap.parse_args()

    if not os.path.exists(args.patches):
        make_patches(args)
    if args.make_patches_only:
        return

    import torch
    from safetensors.torch import load_file

    if not torch.cuda.is_available():
        sys.exit("compare_hf_gpu.py: torch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as our exact path
    torch.backends.cudnn.allow_tf32 = False
    torch.set_grad_enabled(False)

    def run_ours(dtype):
        cmd = [args.bench, "--model", args.model, "--patches", args.patches, "--repeats", str(args.repeats),
               "--tokens", str(args.tokens), "--batch", str(args.batch), "--dtype", dtype, "--json"]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    ours = {"fp32": run_ours("f32"), "bf16": run_ours("bf16")}
    p = load_file(args.patches)
    fp, mask = p["flattened_patches"][None], p["attention_mask"][None]
    hf = {"fp32": hf_times(args, torch.float32, fp, mask), "bf16": hf_times(args, torch.bfloat16, fp, mask)}

    T = args.tokens
    o0 = ours["fp32"]
    print(f"{torch.cuda.get_device_name()}: model {args.model}, {o0['real_patches']} real patches of "
          f"{o0['max_patches']}, {T} tokens, medians of {args.repeats} (ms); torch {torch.__version__}, "
          f"transformers {__import__('transformers').__version__}")
    print(f"{'stage':36s} {'HF fp32':>9s} {'ours fp32':>10s} {'HF/ours':>8s}   {'HF bf16':>9s} {'ours bf16':>10s} "
          f"{'HF/ours':>8s}")

    def rows(h, o):
        dec = o["cross_kv_ms"] + T * o["token_ms"]
        out = [("encoder", h["encoder_ms"], o["encoder_ms"]),
               (f"decode {T} tokens (incl. cross K/V)", h["decode_ms"], dec),
               ("per token", h["decode_ms"] / T, o["token_ms"]),
               ("end to end (encoder + decode)", h["encoder_ms"] + h["decode_ms"], o["encoder_ms"] + dec)]
        if o.get("token_graph_ms", 0) > 0:  # the decode step replayed as a CUDA graph
            g_dec = o["cross_kv_ms"] + T * o["token_graph_ms"]
            out += [("per token, ours as CUDA graphs", h["decode_ms"] / T, o["token_graph_ms"]),
                    ("end to end, ours with CUDA graphs", h["encoder_ms"] + h["decode_ms"], o["encoder_ms"] + g_dec)]
        if "batch" in o and "batch" in h:
            B, ob, hb = args.batch, o["batch"], h["batch"]
            ob_dec = ob["cross_kv_ms"] + T * ob["step_ms"]
            out += [(f"batch {B}: encoder", hb["encoder_ms"], ob["encoder_ms"]),
                    (f"batch {B}: decode {T} tokens each", hb["decode_ms"], ob_dec),
                    (f"batch {B}: end to end", hb["encoder_ms"] + hb["decode_ms"], ob["encoder_ms"] + ob_dec)]
        return out

    for (name, a, us), (_, b, us16) in zip(rows(hf["fp32"], ours["fp32"]), rows(hf["bf16"], ours["bf16"])):
        print(f"{name:36s} {a:9.2f} {us:10.2f} {a / us:8.2f}   {b:9.2f} {us16:10.2f} {b / us16:8.2f}")
    for dtype, o in ours.items():
        print(f"ours {dtype}: encoder {o['encoder_tflops']:.2f} TFLOP/s (cuBLAS {dtype} GEMM yardstick "
              f"{o['yardstick_gemm_tflops']:.2f}), decode {o['decode_gbs']:.0f} GB/s (D2D copy "
              f"{o['yardstick_copy_gbs']:.0f}), synchronous-backend decode {o['token_sync_ms']:.3f} ms/token"
              + (f"; CUDA graphs off: {o['graph_error']}" if o.get("graph_error") else ""))

    # HF's min_new_tokens forbids eos; ours runs on past it: compare the tokens before our first eos.
    for dtype, o in ours.items():
        k = o["first_ids"].index(1) if 1 in o["first_ids"] else T
        same = hf[dtype]["ids"][:k] == o["first_ids"][:k]
        print(f"greedy ids, HF {dtype} vs ours {dtype} (first {k}, before eos): {'same' if same else 'DIFFERENT'} "
              f"(random weights: near-ties may differ legitimately)")
    print(json.dumps({"hf": hf, "ours": ours}))


if __name__ == "__main__":
    main()
