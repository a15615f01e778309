"""examples/ray/batch_inference.py on a local Ray instance with two actors and the tiny checkpoint: every answer
equals pix2struct-run's (the CLI) on the same JSONL, every id once, none lost or duplicated.

    PIX2STRUCT_RUN=build/pix2struct-run pytest tests/python/test_ray_example.py   # needs pip install .[ray]
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "models" / "tiny"
EXAMPLE = ROOT / "examples" / "ray" / "batch_inference.py"


def records():
    """Questions about images of several formats, one unreadable image, ids of mixed shapes."""
    images = ["models/images/diagram.png", "images/rgb.png", "images/baseline.jpg", "images/palette.png",
              "images/formats/webp_lossy.webp", "images/formats/gif_plain.gif", "images/tall.png", "images/wide.png"]
    questions = ["What is shown?", "Which stage comes after the larva?", "What color is the egg?"]
    out = [{"id": f"q{i}", "image": f"data/{images[i % len(images)]}", "question": questions[i % len(questions)]}
           for i in range(22)]
    out.append({"id": "broken", "image": "data/images/bad_truncated.png", "question": "What is shown?"})
    return out


def read_output(folder, fmt):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(folder).to_pylist()
    rows = []
    for f in sorted(Path(folder).iterdir()):
        if f.suffix in (".json", ".jsonl"):
            rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    (d / "data").symlink_to(ROOT / "tests" / "data")  # image paths relative to the JSONL's folder
    jsonl = d / "questions.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records()))
    run = os.environ.get("PIX2STRUCT_RUN")
    if not run:
        pytest.skip("PIX2STRUCT_RUN (the pix2struct-run program to compare with) is not set")
    subprocess.run([run, "--model", str(TINY), "--input", str(jsonl), "--output", str(d / "cli.jsonl"), "--quiet",
                    "--threads", "2"], check=True, timeout=300)
    cli = {r["id"]: r for r in map(json.loads, (d / "cli.jsonl").read_text().splitlines())}
    assert len(cli) == len(records())
    return d, jsonl, cli


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_ray_answers_equal_the_cli_s_each_id_once(dataset, fmt):
    pytest.importorskip("ray")
    d, jsonl, cli = dataset
    out = d / f"answers-{fmt}"
    subprocess.run([sys.executable, str(EXAMPLE), "--model", str(TINY), "--input", str(jsonl), "--output", str(out),
                    "--format", fmt, "--actors", "2", "--threads", "1", "--batch-size", "3"], check=True, timeout=600)
    rows = read_output(out, fmt)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "an id was answered twice"
    assert set(ids) == set(cli), "ids lost or invented"
    for r in rows:
        want = cli[r["id"]]
        if "error" in want:
            assert r["error"] and "bad_truncated.png" in r["error"], r
            assert r["answer"] is None
        else:
            assert r["error"] is None, r
            assert (r["answer"], list(r["ids"])) == (want["answer"], want["ids"]), r["id"]
