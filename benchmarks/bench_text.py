"""Throughput and memory of the text pipeline on a generated CSV (default 50 MB).

Run from the repository root (with gradscope importable, e.g. installed or PYTHONPATH=.):

    python benchmarks/bench_text.py [--size-mb 50] [--seq-len 100]

The reviews are IMDB-sized (~1.3 KB) and made of sentences from the built-in corpus plus rare
words drawn from a Zipf law over 200,000 made-up words, so the vocabulary grows as it would on
real text. Each phase is timed without tracemalloc (which slows every allocation); the full load
is then repeated under tracemalloc for its peak.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import resource
import tempfile
import time
import tracemalloc
from importlib import resources
from pathlib import Path

from gradscope.text import TextOptions, load_text_dataset, open_examples, tokenize

MB = 1024 * 1024


def write_corpus(path: Path, size_bytes: int, seed: int = 0) -> int:
    """Write a text,label CSV of about ``size_bytes``; returns the number of reviews."""
    raw = resources.files("gradscope.text").joinpath("data/reviews.csv").read_text("utf-8")
    sentences = {label: [] for label in ("pos", "neg")}
    for row in csv.DictReader(io.StringIO(raw)):
        sentences[row["label"]].extend(s.strip() + "." for s in row["text"].split(".") if s.strip())
    rng = random.Random(seed)
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        while fh.tell() < size_bytes:
            label = "pos" if rows % 2 else "neg"
            parts = []
            while sum(map(len, parts)) < 1300:
                parts.append(rng.choice(sentences[label]))
                parts.append(f"w{int(rng.paretovariate(0.5)) % 200_000}")
            writer.writerow([" ".join(parts), label])
            rows += 1
    return rows


def timed(what: str, size: int, run) -> object:
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    print(f"{what:<38} {seconds:7.2f} s  {size / MB / seconds:7.1f} MB/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--seq-len", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reviews.csv"
        rows = write_corpus(path, int(args.size_mb * MB))
        size = path.stat().st_size
        print(f"file: {size / MB:.1f} MB, {rows:,} reviews")
        options = TextOptions(path=str(path), seq_len=args.seq_len, max_vocab=20_000)

        timed("read (csv + labels)", size, lambda: sum(1 for _ in open_examples(path)))
        timed("read + tokenise", size,
              lambda: sum(len(tokenize(e.text)) for e in open_examples(path)))
        data = timed("load (2 passes: vocab, encode)", size, lambda: load_text_dataset(options, 0))
        print(f"N={len(data):,} T={data.seq_len} vocab={len(data.vocab):,} "
              f"truncated={data.num_truncated:,}")

        tracemalloc.start()
        data = load_text_dataset(options, 0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        arrays = data.ids.nbytes + data.mask.nbytes + data.labels.nbytes
        print(f"tracemalloc peak during load: {peak / MB:.1f} MB "
              f"({peak / size:.0%} of the file; ids+mask+labels {arrays / MB:.1f} MB)")
        max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"max RSS of the process: {max_rss:.1f} MB")


if __name__ == "__main__":
    main()
