"""pix2struct.cpp from Python: Pix2Struct, MatCha and DePlot checkpoints answered by the C++ library, with
transformers' answers and no torch.

    import pix2struct_cpp as p2s
    pipe = p2s.Pipeline("google/pix2struct-ai2d-base", threads=2)   # a folder, or a Hugging Face repo id
    a = pipe.ask("diagram.png", "What does the label 15 represent? (1) lava (2) core (3) tunnel (4) ash cloud")
    a.text, a.ids, a.timings

An image is a path (str or os.PathLike), the file's bytes, a PIL.Image.Image or an HxWx3 uint8 array. Files
and bytes are decoded as Pillow's ``Image.open(...).convert("RGB")``; a PIL image goes through transformers'
``convert_to_rgb`` (``image.convert("RGB")`` unless it is RGB already), so the pixels are the reference's.
Errors are ``pix2struct_cpp.Error`` (a RuntimeError) carrying the library's message, which names the input.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from typing import Any, Iterable, Iterator, Sequence

from ._core import Answer, Choice, Error, Image, __version__
from ._core import Pipeline as _CorePipeline
from ._core import Sequence as Beam

__all__ = ["Pipeline", "Answer", "Choice", "Beam", "Image", "Error", "to_image", "__version__"]


def to_image(image: Any) -> Image:
    """The pixels the reference would see for `image` (see the module's docstring)."""
    if isinstance(image, Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        return Image.load(os.fspath(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Image.decode(bytes(image))
    if hasattr(image, "mode") and hasattr(image, "convert") and hasattr(image, "tobytes"):  # a PIL image
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # transformers' convert_to_rgb
        width, height = rgb.size
        return Image.from_array(memoryview(rgb.tobytes()).cast("B", (height, width, 3)))
    try:
        return Image.from_array(image)
    except TypeError:
        raise TypeError(
            f"an image is a path, bytes, a PIL.Image.Image or an HxWx3 uint8 array, not {type(image).__name__}"
        ) from None


class Pipeline:
    """A checkpoint loaded once: ask it about images.

    model: a folder in the Hugging Face layout or a repo id (``owner/name[@revision]``, read from and
    downloaded into the Hugging Face cache; ``offline=True`` never touches the network). threads: CPU
    threads (0: all cores). dtype: ``"f32"`` (transformers' arithmetic, the default), ``"int8"`` or
    ``"bf16"``. max_patches: 0 for the checkpoint's preprocessor_config.json. font: the question header's
    font file (default: Liberation Sans). max_memory_bytes: refuse a question whose activations would
    need more (0: physical memory).
    """

    def __init__(self, model: str | os.PathLike, threads: int = 0, dtype: str = "f32", max_patches: int = 0,
                 font: str | os.PathLike = "", mmap: bool = True, max_memory_bytes: int = 0, offline: bool = False):
        self._model = os.fspath(model)
        self._pipe = _CorePipeline(self._model, threads=threads, dtype=dtype, max_patches=max_patches,
                                   font=os.fspath(font), mmap=mmap, max_memory_bytes=max_memory_bytes, offline=offline)

    def __repr__(self) -> str:
        return f"pix2struct_cpp.Pipeline({self._model!r}; {self.describe()})"

    @property
    def generation(self) -> dict:
        """How ask() decodes unless told otherwise: the checkpoint's generation config, as generation_config.json."""
        return json.loads(self._pipe.generation_json)

    @property
    def is_vqa(self) -> bool:
        """Whether questions are drawn on the image (VQA checkpoints) rather than starting a caption."""
        return self._pipe.is_vqa

    @property
    def max_patches(self) -> int:
        return self._pipe.max_patches

    def describe(self) -> str:
        """The backend and the kernels this CPU chose."""
        return self._pipe.describe()

    def ask(self, image: Any, question: str = "", max_new_tokens: int = 0, **generation: Any) -> Answer:
        """Answers `question` about `image` (transformers: processor(images=..., text=...) + generate).

        generation: generate()'s decoding keywords (num_beams, length_penalty, early_stopping: True, False or
        "never", no_repeat_ngram_size, num_return_sequences, eos_token_id, max_length), over the checkpoint's
        generation config; beams come back in Answer.sequences, best first. max_new_tokens: 0 for the
        generation config's rule.
        """
        return self._pipe.ask(to_image(image), question, max_new_tokens, **generation)

    def ask_batch(self, images: Iterable[Any], questions: str | Sequence[str], max_new_tokens: int = 0) -> list[Answer]:
        """Answers several images at once (one encoder pass, decode steps shared): the answers ask() gives one
        by one, in order. `questions`: one per image, or one string for all."""
        questions = [questions] if isinstance(questions, str) else list(questions)
        return self._pipe.ask_batch([to_image(i) for i in images], questions, max_new_tokens)

    def caption(self, image: Any, prompt: str | None = None, max_new_tokens: int = 0) -> Answer:
        """A captioning checkpoint's caption of `image`; a prompt starts the caption (conditional captioning)."""
        if self.is_vqa:
            raise Error("caption(): this is a VQA checkpoint (is_vqa in preprocessor_config.json); use ask(image, question)")
        return self._pipe.ask(to_image(image), prompt or "", max_new_tokens)

    def score(self, image: Any, question: str, candidates: Sequence[str], with_eos: bool = True) -> list[Choice]:
        """Each candidate answer's log-likelihood (one encoder pass, one batched decoder pass) and its
        probability normalised over the candidates; with_eos scores a candidate as the whole answer."""
        return self._pipe.score(to_image(image), question, list(candidates), with_eos)

    def stream(self, image: Any, question: str = "", max_new_tokens: int = 0) -> Iterator[str]:
        """The answer's text as it is generated, piece by piece (greedy decoding). Leaving the loop early
        stops the model at its next token."""
        pieces: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()
        img = to_image(image)

        def on_text(piece: str) -> bool:
            pieces.put(piece)
            return not stop.is_set()

        def run():
            try:
                self._pipe.ask(img, question, max_new_tokens, on_text)
                pieces.put(done)
            except BaseException as e:  # handed to the iterating thread
                pieces.put(e)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            while (item := pieces.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()
