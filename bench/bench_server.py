#!/usr/bin/env python3
"""pix2struct-server under load: answers/s and latency p50/p99 with N concurrent clients, beside one request at a
time (N = 1), in the same run, on one server process (continuous batching, --sequences slots).

    ./build/pix2struct-make_random_checkpoint --preset base --dtype bf16 --out bench/out/base
    python3 bench/bench_server.py --model bench/out/base --build build --max-patches 512

The questions are bench_run.py's (8 images of tests/data/images × 8 questions), --questions of them, sent as
OpenAI chat completions (a base64 data URL) with max_tokens --max-tokens; each N runs the whole list with N
client threads, --repeats times (medians). Latency is from sending the request to the whole answer (preprocessing,
queueing, encoding, decoding). The answers at every N are compared with the one-at-a-time answers.
Python's standard library only.
"""
import argparse
import base64
import http.client
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

from bench_run import IMAGES, QUESTIONS

ROOT = Path(__file__).resolve().parent.parent


def start_server(args):
    cmd = [str(Path(args.build) / "pix2struct-server"), "--model", args.model, "--host", "127.0.0.1", "--port", "0",
           "--threads", str(args.threads), "--sequences", str(args.sequences)]
    if args.max_patches:
        cmd += ["--max-patches", str(args.max_patches)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on http://"):
        raise SystemExit(f"pix2struct-server did not start: {line!r}")
    port = int(line.rsplit(":", 1)[1])
    for _ in range(3000):  # the model loads (bounded: 300 s)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("pix2struct-server did not become ready")


def ask(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    seconds = time.perf_counter() - t0
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
    return json.loads(data)["choices"][0]["message"]["content"], seconds


def run_level(port, bodies, n):
    """All bodies with n client threads; (wall seconds, latencies, answers)."""
    answers, latencies = [None] * len(bodies), [0.0] * len(bodies)
    next_index = [0]
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(bodies):
                return
            answers[i], latencies[i] = ask(port, bodies[i])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, answers


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-patches", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--questions", type=int, default=32)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    bodies = []
    for i in range(args.questions):
        image = ROOT / "tests" / "data" / "images" / IMAGES[i % len(IMAGES)]
        mime = "image/jpeg" if image.suffix == ".jpg" else "image/png"
        url = f"data:{mime};base64," + base64.b64encode(image.read_bytes()).decode()
        content = [{"type": "text", "text": QUESTIONS[(i // len(IMAGES)) % len(QUESTIONS)]},
                   {"type": "image_url", "image_url": {"url": url}}]
        bodies.append(json.dumps({"model": "m", "max_tokens": args.max_tokens,
                                  "messages": [{"role": "user", "content": content}]}))

    proc, port = start_server(args)
    try:
        ask(port, bodies[0])  # warm-up
        levels = [int(n) for n in args.clients.split(",")]
        if 1 not in levels:
            levels.insert(0, 1)
        rows, reference = [], None
        for n in levels:
            walls, lats, answers = [], [], None
            for _ in range(args.repeats):
                wall, latencies, answers = run_level(port, bodies, n)
                walls.append(wall)
                lats += latencies
            if n == 1:
                reference = answers
            same = sum(a == b for a, b in zip(answers, reference))
            wall = statistics.median(walls)
            rows.append((n, len(bodies) / wall, percentile(lats, 50), percentile(lats, 99), same))
            print(f"clients {n:3d}: {len(bodies) / wall:6.2f} answers/s, latency p50 {percentile(lats, 50):6.2f} s "
                  f"p99 {percentile(lats, 99):6.2f} s, {same}/{len(bodies)} answers as one at a time", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=120)

    base = rows[0][1]
    print(f"\n{len(bodies)} questions, max_tokens {args.max_tokens}, max_patches {args.max_patches or 'checkpoint'}, "
          f"--sequences {args.sequences}, --threads {args.threads}, medians of {args.repeats}")
    print("| clients | answers/s | × one at a time | latency p50 | latency p99 | answers equal to one at a time |")
    print("|---|---|---|---|---|---|")
    for n, rate, p50, p99, same in rows:
        print(f"| {n} | {rate:.2f} | {rate / base:.2f}× | {p50:.2f} s | {p99:.2f} s | {same}/{len(bodies)} |")


if __name__ == "__main__":
    main()
