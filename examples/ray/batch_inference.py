#!/usr/bin/env python3
"""A dataset of questions answered with Ray Data: one pix2struct_cpp.Pipeline per actor, on one machine or a cluster.

    pip install .[ray]    # pix2struct_cpp and ray[data]
    python examples/ray/batch_inference.py --model google/pix2struct-ai2d-base \\
        --input ai2d/test.jsonl --output answers/ --actors 2 --threads 1

--input is JSONL, one {"id", "image", "question"} a line (the format of pix2struct-run; other keys are kept out
of the output): a local file, or any path Ray Data reads (s3://, gs://, hdfs://, ...). An image is a path
relative to the input's folder, an absolute path, or a URI that pyarrow opens. --output is a folder of JSONL
(or --format parquet) files with {"id", "answer", "ids", "real_patches", "error"}: a record whose image cannot
be read or answered gets its error, the others their answers (every id once). Each actor holds one pipeline of
--threads CPU threads; size actors x threads to the cores (Ray schedules an actor on --threads CPUs), leaving a
core for reading and writing (a local run adds that slot itself).

On a cluster (ray start --head on one node, ray start --address=HEAD:6379 on the others) the same command with
--address auto, the model and the data where every node reads them:

    python examples/ray/batch_inference.py --address auto --model google/pix2struct-ai2d-base \\
        --input s3://bucket/ai2d/test.jsonl --output s3://bucket/ai2d/answers/ --actors 16 --threads 4
"""
import argparse
import os
import posixpath

import pyarrow as pa
import pyarrow.fs
import ray

import pix2struct_cpp as p2s


# The output's columns, typed (a batch with no error must not write a column of nulls that other files hold
# as strings: Parquet readers refuse such a folder).
SCHEMA = pa.schema([("id", pa.string()), ("answer", pa.string()), ("ids", pa.list_(pa.int64())),
                    ("real_patches", pa.int64()), ("error", pa.string())])


class Answerer:
    """One Pipeline per actor; answers a batch of records with one ask_batch (one encoder pass)."""

    def __init__(self, model, threads, base, dtype, max_new_tokens):
        self.pipe = p2s.Pipeline(model, threads=threads, dtype=dtype)
        self.base, self.max_new_tokens = base, max_new_tokens

    def image(self, name):
        if "://" not in name and not posixpath.isabs(name):
            name = posixpath.join(self.base, name)  # relative to the input's folder (a path or a URI)
        if "://" in name:  # a URI: its bytes through pyarrow's filesystems (s3, gcs, hdfs, ...)
            fs, path = pyarrow.fs.FileSystem.from_uri(name)
            with fs.open_input_stream(path) as f:
                return p2s.Image.decode(f.read(), name)
        return p2s.to_image(name)

    def __call__(self, batch):
        n = len(batch["id"])
        out = {"id": [str(i) for i in batch["id"]], "answer": [None] * n, "ids": [[] for _ in range(n)],
               "real_patches": [0] * n, "error": [None] * n}
        images, questions, rows = [], [], []
        for r in range(n):
            try:
                images.append(self.image(str(batch["image"][r])))
                questions.append(str(batch["question"][r]))
                rows.append(r)
            except p2s.Error as e:
                out["error"][r] = str(e)
        try:
            answers = self.pipe.ask_batch(images, questions, self.max_new_tokens) if rows else []
        except p2s.Error:  # a question the batch refuses (too long a header, ...): one by one, to name it
            answers = []
            for image, question, r in zip(images, questions, rows):
                try:
                    answers.append(self.pipe.ask(image, question, self.max_new_tokens))
                except p2s.Error as e:
                    answers.append(None)
                    out["error"][r] = str(e)
        for r, a in zip(rows, answers):
            if a is not None:
                out["answer"][r], out["ids"][r], out["real_patches"][r] = a.text, list(a.ids), a.real_patches
        return pa.table(out, schema=SCHEMA)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint folder or Hugging Face repo id (owner/name)")
    ap.add_argument("--input", required=True, help="JSONL of {id, image, question}: a path or URI")
    ap.add_argument("--output", required=True, help="output folder (path or URI)")
    ap.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    ap.add_argument("--actors", type=int, default=2, help="pipelines (Ray actors)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of each pipeline")
    ap.add_argument("--batch-size", type=int, default=4, help="records per ask_batch")
    ap.add_argument("--dtype", default="f32", choices=["f32", "int8", "bf16"])
    ap.add_argument("--max-new-tokens", type=int, default=0)
    ap.add_argument("--address", default=None, help="Ray cluster address (auto: the running cluster); default: local")
    args = ap.parse_args()

    if args.address:
        ray.init(address=args.address)
    else:
        # One CPU slot beside the actors' for reading the JSONL and writing the answers (light work): without it
        # the actors would hold every slot and the reads could never be scheduled.
        ray.init(num_cpus=args.actors * args.threads + 1, include_dashboard=False, log_to_driver=False)
    # Local paths made absolute: the actors need not share the driver's working directory.
    local = "://" not in args.input
    base = os.path.dirname(os.path.abspath(args.input)) if local else posixpath.dirname(args.input)
    model = os.path.abspath(args.model) if os.path.isdir(args.model) else args.model
    ds = ray.data.read_json(os.path.abspath(args.input) if local else args.input, lines=True)
    ds = ds.map_batches(Answerer, compute=ray.data.ActorPoolStrategy(size=args.actors), num_cpus=args.threads, batch_size=args.batch_size,
                        fn_constructor_kwargs=dict(model=model, threads=args.threads, base=base, dtype=args.dtype,
                                                   max_new_tokens=args.max_new_tokens))
    output = os.path.abspath(args.output) if "://" not in args.output else args.output
    (ds.write_parquet if args.format == "parquet" else ds.write_json)(output)
    print(f"answers written to {args.output}")


if __name__ == "__main__":
    main()
