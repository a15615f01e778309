#!/usr/bin/env python3
"""Writes tests/data/configs/published/: the config.json and preprocessor_config.json of every published
Pix2Struct-architecture checkpoint, from their published values (no download: the values are public facts,
gathered from the Hub's file pages and mirrors; `evidence` in checkpoints.json says how firm each one is).

    python3 tests/reference/make_published_configs.py

Every published config.json has the same keys the model reads (those below; the published files add every
generic PretrainedConfig key, which nothing reads); they differ in size (base or large), in the preprocessor's
is_vqa (true: the question, or DePlot/MatCha's prompt, is drawn as a header) and max_patches. None publishes
a generation_config.json. Top-level "is_vqa" is false in every published config.json, VQA checkpoints
included: the preprocessor's flag is the one that draws the header. Python's standard library only.
"""
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "configs" / "published"

SIZES = {  # both towers
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, d_ff=2048),
    "large": dict(hidden_size=1536, num_layers=18, num_heads=24, d_ff=3968),
}

# name, size, preprocessor is_vqa (None: no preprocessor_config.json published), max_patches, evidence
CHECKPOINTS = [
    ("google/pix2struct-ai2d-base", "base", True, 2048, "config and preprocessor seen verbatim"),
    ("google/pix2struct-ai2d-large", "large", True, 4096, "preprocessor size says is_vqa true; max_patches 4096 as the conversion script sets for large"),
    ("google/pix2struct-docvqa-base", "base", True, 2048, "config seen verbatim; preprocessor matched by its sha256"),
    ("google/pix2struct-docvqa-large", "large", True, 4096, "config's sizes seen; max_patches from the conversion script"),
    ("google/pix2struct-chartqa-base", "base", True, 2048, "preprocessor size says is_vqa true; max_patches as the other base ones"),
    ("google/pix2struct-infographics-vqa-base", "base", True, 2048, "preprocessor size says is_vqa true"),
    ("google/pix2struct-infographics-vqa-large", "large", True, 4096, "preprocessor seen verbatim (Hub blame view, 249 B: is_vqa true, max_patches 4096)"),
    ("google/pix2struct-ocrvqa-base", "base", True, 2048, "config's sizes seen; preprocessor size says is_vqa true"),
    ("google/pix2struct-ocrvqa-large", "large", True, 4096, "preprocessor seen verbatim (Hub blame view, 249 B: is_vqa true, max_patches 4096)"),
    ("google/pix2struct-screen2words-base", "base", True, 2048, "preprocessor size says is_vqa true (a captioner whose flag is still set)"),
    ("google/pix2struct-screen2words-large", "large", True, 4096, "not seen: written as the base one, large sizes"),
    ("google/pix2struct-textcaps-base", "base", False, 2048, "config and preprocessor seen verbatim (an older config: see TEXTCAPS_BASE)"),
    ("google/pix2struct-textcaps-large", "large", False, 4096, "config's sizes seen; preprocessor size says no is_vqa key; max_patches from the conversion script"),
    ("google/pix2struct-widget-captioning-base", "base", True, 2048, "config and preprocessor seen verbatim (text is_decoder false)"),
    ("google/pix2struct-widget-captioning-large", "large", True, 4096, "preprocessor seen verbatim"),
    ("google/pix2struct-base", "base", False, 2048, "preprocessor seen verbatim (no is_vqa key)"),
    ("google/pix2struct-large", "large", True, 4096, "preprocessor size says is_vqa true; max_patches from the conversion script"),
    ("google/matcha-base", "base", True, 2048, "files not seen: preprocessor's size (249 B) says is_vqa true; config as its fine-tunes (which name it as their base)"),
    ("google/matcha-chartqa", "base", True, 2048, "preprocessor size says is_vqa true"),
    ("google/matcha-plotqa-v1", "base", True, 2048, "preprocessor size says is_vqa true"),
    ("google/matcha-plotqa-v2", "base", None, 0, "config seen; the repo publishes no preprocessor_config.json"),
    ("google/matcha-chart2text-statista", "base", True, 2048, "config seen verbatim; preprocessor's size (249 B) says is_vqa true; max_patches as every base one"),
    ("google/matcha-chart2text-pew", "base", True, 2048, "preprocessor's size (249 B) says is_vqa true; max_patches as every base one"),
    ("google/deplot", "base", True, 2048, "preprocessor matched by its sha256"),
]

# google/pix2struct-textcaps-base's config.json predates the others: other dropouts, T5's feed-forward keys,
# no patch_embed_hidden_size (768 by default).
TEXTCAPS_BASE = dict(text=dict(dropout_rate=0.05, feed_forward_proj="gated-gelu", is_gated_act=True),
                     vision=dict(dropout_rate=0.06, attention_dropout=0.05, hidden_dropout_prob=0.05, image_size=384,
                                 qkv_bias=False, mlp_bias=False),
                     drop_vision=["patch_embed_hidden_size"])


def config(name, size):
    s = SIZES[size]
    text = dict(d_ff=s["d_ff"], d_kv=64, dense_act_fn="gelu_new", dropout_rate=0.1, encoder_hidden_size=s["hidden_size"],
                eos_token_id=1, hidden_size=s["hidden_size"], is_decoder=True, layer_norm_epsilon=1e-06, max_length=20,
                model_type="pix2struct_text_model", num_heads=s["num_heads"], num_layers=s["num_layers"], pad_token_id=0,
                relative_attention_max_distance=128, relative_attention_num_buckets=32, tie_word_embeddings=False,
                use_cache=False, vocab_size=50244, decoder_start_token_id=0)
    vision = dict(attention_dropout=0.0, d_ff=s["d_ff"], d_kv=64, dense_act_fn="gelu_new", dropout_rate=0.0,
                  hidden_size=s["hidden_size"], layer_norm_bias=False, layer_norm_eps=1e-06,
                  model_type="pix2struct_vision_model", num_attention_heads=s["num_heads"], num_channels=3,
                  num_hidden_layers=s["num_layers"], patch_embed_hidden_size=768, patch_size=16, projection_dim=768,
                  relative_attention_max_distance=128, relative_attention_num_buckets=32, seq_len=4096)
    if name == "google/pix2struct-textcaps-base":
        text.update(TEXTCAPS_BASE["text"])
        vision.update(TEXTCAPS_BASE["vision"])
        for k in TEXTCAPS_BASE["drop_vision"]:
            del vision[k]
    if name == "google/pix2struct-widget-captioning-base":
        text["is_decoder"] = False
    return {"_name_or_path": name, "architectures": ["Pix2StructForConditionalGeneration"], "decoder_start_token_id": 0,
            "initializer_factor": 1.0, "initializer_range": 0.02, "is_vqa": False, "model_type": "pix2struct",
            "pad_token_id": 0, "text_config": dict(sorted(text.items())), "tie_word_embeddings": False,
            "torch_dtype": "bfloat16" if size == "base" else "float32", "vision_config": dict(sorted(vision.items()))}


def preprocessor(is_vqa, max_patches):
    p = {"do_convert_rgb": True, "do_normalize": True, "image_processor_type": "Pix2StructImageProcessor",
         "max_patches": max_patches, "patch_size": {"height": 16, "width": 16}, "processor_class": "Pix2StructProcessor"}
    if is_vqa:
        p["is_vqa"] = True
    return dict(sorted(p.items()))


def main():
    index = []
    for name, size, is_vqa, max_patches, evidence in CHECKPOINTS:
        folder = OUT / name.split("/")[1]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config(name, size), indent=2) + "\n")
        if is_vqa is not None:
            (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor(is_vqa, max_patches), indent=2) + "\n")
        index.append({"repo": name, "folder": folder.name, "size": size, "is_vqa": is_vqa, "max_patches": max_patches,
                      "evidence": evidence})
    (OUT / "checkpoints.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(index)} checkpoints to {OUT}")


if __name__ == "__main__":
    main()
