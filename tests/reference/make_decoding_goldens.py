#!/usr/bin/env python3
"""Reference outputs for the decoding features on the tiny checkpoint (tests/data/models/tiny): choice scoring,
beam search, generation_config.json, a long greedy answer. Run after make_model_goldens.py, with the reference venv:

    ~/.cache/pix2struct-ref/bin/python tests/reference/make_decoding_goldens.py

Writes tests/data/models/goldens/decoding.json. Every case starts from the HF processor's input for an image of
tests/data/models/images and a question (drawn as the header: the tiny checkpoint is a VQA one), as the C++
Pipeline does:
  scoring   per candidate text: its tokens (T5 tokenizer, with the trailing </s>) and the log-probability of each
            under teacher forcing (log_softmax of forward(decoder_input_ids=[0] + tokens[:-1]).logits)
  beams     generate(num_beams=…, …) for several settings: the returned sequences (without the start token and
            without the padding: each one's length from beam_indices), sequences_scores
  from_file generate() with no arguments on a copy of the checkpoint holding a generation_config.json
  long      greedy generate(max_new_tokens=320) that runs ≥ 300 tokens (past the decoder's relative-position
            range of 128), with its smallest top-1 margin
"""
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import Pix2StructForConditionalGeneration, Pix2StructImageProcessor, T5Tokenizer
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.set_grad_enabled(False)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "data" / "models"
TINY = MODELS / "tiny"
FONT = "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf"


def inputs(image, question, max_patches):
    ip = Pix2StructImageProcessor(max_patches=max_patches, is_vqa=True)
    out = ip.preprocess(images=Image.open(image), header_text=question, font_path=FONT, return_tensors="pt",
                        max_patches=max_patches)
    return out["flattened_patches"], out["attention_mask"]


def margins_of(scores):
    return [float(torch.topk(s[0].float(), 2).values[0] - torch.topk(s[0].float(), 2).values[1]) for s in scores]


def main():
    model = Pix2StructForConditionalGeneration.from_pretrained(TINY, torch_dtype=torch.float32).eval()
    tok = T5Tokenizer.from_pretrained(TINY)
    max_patches = json.loads((TINY / "preprocessor_config.json").read_text())["max_patches"]
    image = "diagram.png"
    question = "Which stage comes after the larva? (1) egg (2) pupa (3) adult (4) the larva (again)"
    fp, mask = inputs(MODELS / "images" / image, question, max_patches)
    out = {"image": image, "question": question}

    # --- scoring -------------------------------------------------------------------------------------------
    cands = ["egg", "pupa", "adult", "the larva (again)", "a much longer answer with 12 words in it"]
    scoring = []
    for c in cands:
        ids = tok(c).input_ids  # ends with </s>
        logits = model(flattened_patches=fp, attention_mask=mask, decoder_input_ids=torch.tensor([[0] + ids[:-1]])).logits
        lp = torch.log_softmax(logits[0].double(), dim=-1)
        scoring.append({"text": c, "ids": ids, "logprobs": [float(lp[t, i]) for t, i in enumerate(ids)]})
    out["scoring"] = scoring

    # --- beams ---------------------------------------------------------------------------------------------
    greedy = model.generate(flattened_patches=fp, attention_mask=mask, max_new_tokens=12)[0].tolist()
    frequent = max(set(greedy[1:]), key=greedy[1:].count)  # an "eos" the beams reach at different steps
    settings = [
        {"num_beams": 3, "max_new_tokens": 12},
        {"num_beams": 4, "max_new_tokens": 10, "length_penalty": 0.6, "early_stopping": True, "num_return_sequences": 2},
        {"num_beams": 2, "max_new_tokens": 10, "no_repeat_ngram_size": 2, "early_stopping": "never"},
        {"num_beams": 5, "max_new_tokens": 14, "length_penalty": 2.0, "num_return_sequences": 3, "eos_token_id": frequent},
        {"num_beams": 3, "max_new_tokens": 14, "length_penalty": -0.5, "early_stopping": "never", "eos_token_id": frequent,
         "no_repeat_ngram_size": 3},
        {"num_beams": 4, "max_new_tokens": 16, "eos_token_id": frequent, "num_return_sequences": 4},
    ]
    beams = []
    for kw in settings:
        g = model.generate(flattened_patches=fp, attention_mask=mask, output_scores=True, return_dict_in_generate=True,
                           do_sample=False, **kw)
        seqs = []
        for i in range(g.sequences.shape[0]):
            n = int((g.beam_indices[i] != -1).sum())
            seqs.append({"ids": g.sequences[i, 1:1 + n].tolist(), "score": float(g.sequences_scores[i])})
        beams.append({"kwargs": kw, "sequences": seqs})
        print("beams", kw, [(len(s["ids"]), round(s["score"], 4)) for s in seqs])
    out["beams"] = beams

    # --- generation_config.json -------------------------------------------------------------------------------
    gen_config = {"decoder_start_token_id": 0, "eos_token_id": frequent, "pad_token_id": 0, "num_beams": 3,
                  "max_length": 11, "length_penalty": 1.5, "no_repeat_ngram_size": 2}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "m"
        shutil.copytree(TINY, d)
        (d / "generation_config.json").write_text(json.dumps(gen_config))
        m2 = Pix2StructForConditionalGeneration.from_pretrained(d, torch_dtype=torch.float32).eval()
        ids = m2.generate(flattened_patches=fp, attention_mask=mask)[0].tolist()
    # generate() pads with eos; the greedy-vs-beam result is one sequence, so its padding is none
    out["from_file"] = {"generation_config": gen_config, "ids": ids[1:]}
    print("from_file", ids)

    # --- a long greedy answer ------------------------------------------------------------------------------
    long_cases = []
    for q in ["Describe the diagram in detail.", "List every stage.", "What is shown?", "Tell a long story."]:
        f2, m2_ = inputs(MODELS / "images" / image, q, max_patches)
        g = model.generate(flattened_patches=f2, attention_mask=m2_, max_new_tokens=320, output_scores=True,
                           return_dict_in_generate=True)
        ids = g.sequences[0, 1:].tolist()
        margin = min(margins_of(g.scores))
        print("long", q, len(ids), round(margin, 4))
        if len(ids) >= 300 and margin >= 0.005:  # fp32 C++ vs HF logits differ by ~1e-5 on tiny
            long_cases.append({"question": q, "max_new_tokens": 320, "ids": ids, "min_margin": margin})
            break
    assert long_cases, "no long case reached 300 tokens with a clear margin"
    out["long"] = long_cases[0]

    path = MODELS / "goldens" / "decoding.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
