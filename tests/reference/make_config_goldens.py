"""Writes the configuration goldens: a tiny config made by the reference, and the values the reference
resolves (defaults filled in) for each committed config.json, which test_config.cpp compares with ours.

Run: ~/.cache/pix2struct-ref/bin/python tests/reference/make_config_goldens.py
"""
import json
import pathlib

from transformers import Pix2StructConfig

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "configs"

VISION_KEYS = ["hidden_size", "patch_embed_hidden_size", "d_ff", "d_kv", "num_hidden_layers",
               "num_attention_heads", "seq_len", "layer_norm_eps", "dense_act_fn"]
TEXT_KEYS = ["vocab_size", "hidden_size", "d_kv", "d_ff", "num_layers", "num_heads",
             "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon",
             "dense_act_fn", "decoder_start_token_id", "pad_token_id", "eos_token_id"]


def main():
    tiny = Pix2StructConfig(
        text_config=dict(vocab_size=512, hidden_size=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
        vision_config=dict(hidden_size=64, d_kv=16, d_ff=128, num_hidden_layers=2, num_attention_heads=4,
                           seq_len=64),
    )
    tiny.to_json_file(DATA / "tiny.config.json")

    resolved = {}
    for name in ["ai2d-base", "ai2d-large", "tiny"]:
        c = Pix2StructConfig.from_json_file(DATA / f"{name}.config.json")
        resolved[name] = {
            "vision": {k: getattr(c.vision_config, k) for k in VISION_KEYS},
            "text": {k: getattr(c.text_config, k) for k in TEXT_KEYS},
            "is_vqa": c.is_vqa,
            "max_length": c.text_config.max_length,
        }
    (DATA / "resolved.json").write_text(json.dumps(resolved, indent=2) + "\n")


if __name__ == "__main__":
    main()
