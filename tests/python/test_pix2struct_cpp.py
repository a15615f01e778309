"""The Python package against the reference's goldens (the same files as the C++ tests): ids identical.

    pip install .[test] && pytest tests/python
"""

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pix2struct_cpp as p2s

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "data" / "models"
TINY = MODELS / "tiny"
TOKEN_LOGPROB_TOL = 1e-5  # tests/model_goldens.hpp (FreeType build): the same pixels in, float rounding only
BEAM_SCORE_REL_TOL = 1e-5


def goldens(name):
    return json.loads((MODELS / "goldens" / name).read_text())


def vqa_cases():
    return [c for c in goldens("tiny.json")["pipeline"] if c["is_vqa"]]


@pytest.fixture(scope="module")
def pipe():
    return p2s.Pipeline(TINY, threads=2)


@pytest.fixture(scope="module")
def captioning(tmp_path_factory):
    """The tiny checkpoint with is_vqa false (as the C++ tests make it)."""
    d = tmp_path_factory.mktemp("captioning")
    for f in TINY.iterdir():
        shutil.copy(f, d / f.name)
    pc = json.loads((d / "preprocessor_config.json").read_text())
    pc["is_vqa"] = False
    (d / "preprocessor_config.json").write_text(json.dumps(pc))
    return p2s.Pipeline(d, threads=2)


def test_vqa_answers_equal_the_reference_for_every_kind_of_image(pipe):
    cases = vqa_cases()
    assert len(cases) >= 3
    for c in cases:
        path = ROOT / c["image"]
        want = c["ids"][1:]  # without the decoder start token
        for image in (path, str(path), path.read_bytes(), Image.open(path), np.asarray(Image.open(path).convert("RGB"))):
            a = pipe.ask(image, c["question"])
            assert a.ids == want, (c["question"], type(image))
            assert a.text == c["text"]
            assert a.real_patches == c["num_real"]
            assert len(a.timings["token_ms"]) == len(a.ids)
            assert a.timings["encoder_ms"] > 0


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")  # Pillow's advice on png_palette_alpha.png
def test_pil_images_of_every_mode_and_arrays_give_the_reference_answers(pipe):
    cases = goldens("python.json")["cases"]
    modes = {c["mode"] for c in cases}
    assert {"RGBA", "LA", "P", "CMYK", "I;16", "1", "RGB"} <= modes
    assert any(c["input"] == "array" for c in cases)
    for c in cases:
        pil = Image.open(ROOT / c["image"])
        assert pil.mode == c["mode"]
        image = np.asarray(pil.convert("RGB")) if c["input"] == "array" else pil
        assert pipe.ask(image, c["question"]).ids == c["ids"][1:], (c["image"], c["input"])


def test_an_array_may_be_a_strided_view(pipe):
    c = vqa_cases()[0]
    rgb = np.asarray(Image.open(ROOT / c["image"]).convert("RGB"))
    padded = np.zeros((rgb.shape[0], rgb.shape[1] * 2, 4), np.uint8)
    padded[:, ::2, :3] = rgb
    view = padded[:, ::2, :3]
    assert not view.flags["C_CONTIGUOUS"]
    assert pipe.ask(view, c["question"]).ids == c["ids"][1:]


def test_ask_batch_gives_each_answer_ask_gives(pipe):
    cases = vqa_cases()
    answers = pipe.ask_batch([ROOT / c["image"] for c in cases], [c["question"] for c in cases])
    assert [a.ids for a in answers] == [c["ids"][1:] for c in cases]
    one_question = pipe.ask_batch([ROOT / cases[0]["image"]] * 2, cases[0]["question"])
    assert [a.ids for a in one_question] == [cases[0]["ids"][1:]] * 2


def test_stream_yields_pieces_that_make_the_answer(pipe):
    c = vqa_cases()[0]
    pieces = list(pipe.stream(ROOT / c["image"], c["question"]))
    assert len(pieces) > 1
    assert "".join(pieces) == c["text"]
    # leaving early stops the model; the pipeline is free again at once
    for _ in pipe.stream(ROOT / c["image"], c["question"]):
        break
    assert pipe.ask(ROOT / c["image"], c["question"]).ids == c["ids"][1:]


def test_a_callback_that_raises_stops_the_answer_and_raises(pipe):
    c = vqa_cases()[0]

    def on_text(piece):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        pipe._pipe.ask(p2s.to_image(ROOT / c["image"]), c["question"], 0, on_text)


def test_caption_takes_no_question_and_a_prompt_starts_the_caption(captioning):
    g = goldens("tiny.json")
    [plain] = [c for c in g["pipeline"] if not c["is_vqa"]]
    assert not captioning.is_vqa
    assert captioning.caption(ROOT / plain["image"]).ids == plain["ids"][1:]
    prompted = [c for c in g["prompted"] if c["min_margin"] >= g["min_margin_required"]]
    assert prompted
    for c in prompted:
        a = captioning.caption(ROOT / c["image"], prompt=c["prompt"])
        assert a.ids == c["ids"][1:]
        assert a.text == c["text"]


def test_score_equals_the_reference_log_likelihoods(pipe):
    g = goldens("decoding.json")
    texts = [c["text"] for c in g["scoring"]]
    choices = pipe.score(MODELS / "images" / g["image"], g["question"], texts)
    assert [ch.text for ch in choices] == texts
    for ch, want in zip(choices, g["scoring"]):
        assert ch.ids == want["ids"]
        assert abs(ch.logprob - sum(want["logprobs"])) <= TOKEN_LOGPROB_TOL * len(want["logprobs"])
    assert abs(sum(ch.prob for ch in choices) - 1) < 1e-9


def test_beam_search_equals_generate_with_num_beams(pipe):
    g = goldens("decoding.json")
    image = MODELS / "images" / g["image"]
    for c in g["beams"]:
        a = pipe.ask(image, g["question"], **c["kwargs"])
        assert [s.ids for s in a.sequences] == [s["ids"] for s in c["sequences"]], c["kwargs"]
        for got, want in zip(a.sequences, c["sequences"]):
            assert abs(got.score - want["score"]) <= BEAM_SCORE_REL_TOL * (1 + abs(want["score"]))
        assert a.ids == a.sequences[0].ids


def test_generation_is_the_checkpoint_s(pipe):
    g = pipe.generation
    assert g["num_beams"] == 1 and g["max_length"] == 20 and g["eos_token_id"] == 1
    assert "tiny" in repr(pipe) and "threads" in repr(pipe)


def test_dtypes_load_and_answer(pipe):
    c = vqa_cases()[0]
    for dtype in ("int8", "bf16"):
        other = p2s.Pipeline(TINY, threads=2, dtype=dtype)
        assert dtype in other.describe()
        assert len(other.ask(ROOT / c["image"], c["question"]).ids) > 0
    with pytest.raises(p2s.Error, match="unknown dtype 'f16'"):
        p2s.Pipeline(TINY, dtype="f16")


def test_the_gil_is_released_while_the_model_runs(pipe):
    """Python code runs in another thread during ask(): while the call is inside C++, the main thread ticks."""
    c = vqa_cases()[0]
    image = p2s.to_image(ROOT / c["image"])
    inside = []

    def work():
        t0 = time.perf_counter()
        pipe.ask(image, c["question"], max_new_tokens=60)
        inside.append((t0, time.perf_counter()))

    ticks = []
    worker = threading.Thread(target=work)
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    (t0, t1), = inside
    assert sum(t0 < t < t1 for t in ticks) > 100


def test_two_pipelines_in_two_threads_give_the_reference_answers():
    cases = vqa_cases()
    pipes = [p2s.Pipeline(TINY, threads=1) for _ in range(2)]
    got = [[], []]

    def work(i):
        for _ in range(3):
            got[i].extend(pipes[i].ask(ROOT / c["image"], c["question"]).ids for c in cases)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0] == got[1] == [c["ids"][1:] for c in cases] * 3


def test_errors_are_python_exceptions_naming_the_input(pipe, tmp_path):
    c = vqa_cases()[0]
    with pytest.raises(p2s.Error, match="no such folder"):
        p2s.Pipeline(tmp_path / "missing")
    with pytest.raises(p2s.Error, match="a question is required"):
        pipe.ask(ROOT / c["image"])
    with pytest.raises(p2s.Error, match="caption"):
        pipe.caption(ROOT / c["image"])
    bad = ROOT / "tests" / "data" / "images" / "bad_truncated.png"
    with pytest.raises(p2s.Error, match="bad_truncated.png"):
        pipe.ask(bad, "q")
    with pytest.raises(p2s.Error, match="<bytes>"):
        pipe.ask(b"not an image", "q")
    with pytest.raises(p2s.Error, match="height x width x 3"):
        pipe.ask(np.zeros((4, 4), np.uint8), "q")
    with pytest.raises(p2s.Error, match="uint8"):
        pipe.ask(np.zeros((4, 4, 3), np.float32), "q")
    with pytest.raises(TypeError, match="not int"):
        pipe.ask(3, "q")
    with pytest.raises(p2s.Error, match="num_return_sequences"):
        pipe.ask(ROOT / c["image"], c["question"], num_beams=2, num_return_sequences=3)
    with pytest.raises(p2s.Error, match="early_stopping"):
        pipe.ask(ROOT / c["image"], c["question"], num_beams=2, early_stopping="sometimes")
    with pytest.raises(p2s.Error, match="unknown decoding option 'num_beam'"):
        pipe.ask(ROOT / c["image"], c["question"], num_beam=2)
    assert issubclass(p2s.Error, RuntimeError)


def test_version_is_the_library_s():
    header = (ROOT / "include" / "pix2struct" / "version.hpp").read_text()
    assert f'#define PIX2STRUCT_VERSION "{p2s.__version__}"' in header
