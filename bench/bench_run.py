#!/usr/bin/env python3
"""Answers per second over a dataset: pix2struct-run at several batch budgets, beside the same questions asked
with one pix2struct-vqa call each and beside transformers' batched generate, in the same run.

    ./build/pix2struct-make_random_checkpoint --preset base --dtype bf16 --out bench/out/base
    ~/.cache/pix2struct-ref/bin/python bench/bench_run.py --model bench/out/base --build build --max-patches 512

64 questions (8 images of tests/data/images × 8 questions) written to bench/out/run/questions.jsonl.
  pix2struct-run   wall time of the whole command (model load included) for --batch-patches k·max_patches,
                   k in --batches, a fresh output each time
  pix2struct-vqa   one process per question (each loads the model), as a script calling it would; once (the
                   sum over 64 processes)
  transformers     Pix2StructImageProcessor + generate(max_new_tokens=T) on batches of B questions in float32,
                   torch.set_num_threads(threads); the model loaded once, before the clock starts
The others run --repeats times; medians. The answers of every pix2struct-run budget are compared with transformers'
(token ids, up to the first eos).
"""
import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

# Ordinary shapes: tests/data/images/tall.png (5×1200) widens under a question header to 1204×288960 pixels, which
# transformers' processor holds in float32 several times over (a batch of 8 of it took 24 GB).
IMAGES = ["diagram.png", "rgba.png", "wide.png", "rgb.png", "gray.png", "palette.png", "baseline.jpg", "progressive.jpg"]
QUESTIONS = [
    "What is shown in the picture?",
    "Which stage comes after the larva? (1) egg (2) pupa (3) adult (4) nymph",
    "What does the label 15 represent? (1) lava (2) core (3) tunnel (4) ash cloud",
    "How many parts are labelled?",
    "What colour is the largest region?",
    "Which organism is a producer? (1) grass (2) hawk (3) snake (4) frog",
    "What is the title of this figure?",
    "Which arrow points to the roots?",
]
FONT = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bench/out/base")
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-patches", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=20, help="max_new_tokens")
    ap.add_argument("--batches", default="1,2,4,8", help="pix2struct-run batch budgets, in images of max_patches")
    ap.add_argument("--hf-batches", default="1,8", help="transformers' batch sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()

    out = Path("bench/out/run")
    out.mkdir(parents=True, exist_ok=True)
    records = [{"id": f"q{i * len(QUESTIONS) + j}", "image": str(Path("tests/data/images", im).resolve()), "question": q}
               for i, im in enumerate(IMAGES) for j, q in enumerate(QUESTIONS)]
    questions = out / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in records))
    n = len(records)
    common = ["--model", args.model, "--threads", str(args.threads), "--max-patches", str(args.max_patches),
              "--max-new-tokens", str(args.tokens)]
    print(f"{n} questions, model {args.model}, max_patches {args.max_patches}, {args.tokens} new tokens at most, "
          f"{args.threads} threads, medians of {args.repeats}", flush=True)

    # pix2struct-vqa, one process per question
    vqa = [os.path.join(args.build, "pix2struct-vqa")] + common
    per_call = sum(timed(vqa + ["--image", r["image"], "--question", r["question"]]) for r in records)
    rows = []

    def row(name, rate):
        rows.append((name, rate))
        print(f"{name:44s} {rate:10.2f} answers/s", flush=True)

    row("pix2struct-vqa, one call per question", n / per_call)

    # pix2struct-run at each batch budget
    run = [os.path.join(args.build, "pix2struct-run"), "--input", str(questions), "--quiet"] + common
    answers = {}
    for k in [int(b) for b in args.batches.split(",")]:
        result = out / f"answers-{k}.jsonl"

        def once():
            result.unlink(missing_ok=True)
            return timed(run + ["--output", str(result), "--batch-patches", str(k * args.max_patches)])

        seconds = statistics.median(once() for _ in range(args.repeats))
        row(f"pix2struct-run, batches of {k} image{'s' if k > 1 else ''}", n / seconds)
        answers[k] = {j["id"]: j["ids"] for j in map(json.loads, result.read_text().splitlines())}

    hf_ids = {}
    if not args.skip_hf:
        import torch
        from PIL import Image
        from transformers import Pix2StructForConditionalGeneration, Pix2StructImageProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        torch.set_num_threads(args.threads)
        torch.set_grad_enabled(False)
        model = Pix2StructForConditionalGeneration.from_pretrained(args.model, torch_dtype=torch.float32).eval()
        processor = Pix2StructImageProcessor.from_pretrained(args.model)
        for b in [int(x) for x in args.hf_batches.split(",")]:
            def once():
                t = time.perf_counter()
                for s in range(0, n, b):
                    chunk = records[s:s + b]
                    inputs = processor.preprocess(images=[Image.open(r["image"]) for r in chunk],
                                                  header_text=[r["question"] for r in chunk], font_path=FONT,
                                                  max_patches=args.max_patches, return_tensors="pt")
                    ids = model.generate(**inputs, max_new_tokens=args.tokens, do_sample=False, num_beams=1)
                    for r, row in zip(chunk, ids.tolist()):
                        hf_ids[r["id"]] = row[1:]
                return time.perf_counter() - t

            seconds = statistics.median(once() for _ in range(args.repeats))
            row(f"transformers generate, batches of {b}", n / seconds)

    base = rows[0][1]
    print(f"{'':44s} {'answers/s':>10s} {'× per call':>11s}")
    for name, rate in rows:
        print(f"{name:44s} {rate:10.2f} {rate / base:11.2f}")
    hf_rates = [rate for name, rate in rows if name.startswith("transformers")]
    if hf_rates:
        best_hf = max(hf_rates)
        best_ours = max(rate for name, rate in rows if name.startswith("pix2struct-run"))
        print(f"best pix2struct-run / best transformers: {best_ours / best_hf:.2f}")

        def upto_eos(ids):
            return ids[:ids.index(1) + 1] if 1 in ids else ids

        for k, got in answers.items():
            same = sum(upto_eos(got[i]) == upto_eos(hf_ids[i]) for i in got)
            print(f"batches of {k}: {same} of {len(got)} answers with transformers' token ids")


if __name__ == "__main__":
    main()
