"""Streaming: reading a large file costs far less memory than the file's size."""

from __future__ import annotations

import tracemalloc

from gradscope.text import TextOptions, load_text_dataset, open_examples

# long words: tracemalloc slows every allocation, and each token is one, so fewer tokens per MB
# keep the test fast without changing what it measures
WORDS = ("disappointing cinematography performances extraordinary unforgettable screenplay "
         "characterisation overlong soundtrack masterpiece unconvincing breathtaking "
         "forgettable atmospheric melodramatic").split()


def write_large_csv(path, target_bytes: int) -> int:
    """A CSV of ~1 KB reviews up to ``target_bytes``; returns the number of rows."""
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("text,label\n")
        while fh.tell() < target_bytes:
            text = " ".join(WORDS[(rows * 7 + i * 3) % len(WORDS)] for i in range(80))
            fh.write(f'"{text}",{"pos" if rows % 2 else "neg"}\n')
            rows += 1
    return rows


def test_loading_a_20_mb_csv_streams(tmp_path):
    path = tmp_path / "big.csv"
    rows = write_large_csv(path, 20 * 1024 * 1024)
    size = path.stat().st_size

    tracemalloc.start()
    try:
        count = sum(1 for _ in open_examples(path))
        _, read_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        data = load_text_dataset(TextOptions(path=str(path), seq_len=50), seed=0)
        _, load_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == len(data) == rows
    assert read_peak < 1024 * 1024  # one record at a time
    # what remains is ids (N, 50) int32 + mask + labels: about a quarter of this file's size
    ids_bytes = data.ids.nbytes + data.mask.nbytes + data.labels.nbytes
    assert load_peak < ids_bytes + 2 * 1024 * 1024
    assert load_peak < size / 3
