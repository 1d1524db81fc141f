"""Saliency files are read a batch at a time: an uncompressed file (as recognition_imagenet.py writes it) is
memory-mapped, so scoring its maps never holds all of them; a compressed one (np.savez_compressed) is read whole."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from utils.evaluation.saved_maps import read_source
from utils.runtime.layout import EvaluationFolder

NUM_MAPS, SIZE = 2048, 32  # 8 MiB of float32 maps


def _peak_bytes_of_reading(path) -> tuple[int, dict]:
    tracemalloc.start()  # numpy reports its allocations to tracemalloc; a memory map's pages are not allocations
    try:
        loaded = EvaluationFolder.load_maps(path)
        return tracemalloc.get_traced_memory()[1], loaded
    finally:
        tracemalloc.stop()


def test_saliency_files_are_memory_mapped_not_read_whole(tmp_path):
    maps = torch.rand(NUM_MAPS, SIZE, SIZE)
    rows = list(range(NUM_MAPS))
    path = EvaluationFolder(tmp_path).save_maps("gradcam", maps, rows, [r % 6 for r in rows], "gt")
    peak, loaded = _peak_bytes_of_reading(path)
    assert torch.equal(loaded["maps"], maps) and loaded["indices"] == rows
    assert peak < maps.numel() * 4 / 8, peak  # far below the maps' 8 MiB

    compressed = tmp_path / "compressed" / path.name
    compressed.parent.mkdir()
    with np.load(path) as data:
        np.savez_compressed(compressed, **{name: data[name] for name in data.files})
    peak, loaded = _peak_bytes_of_reading(compressed)
    assert torch.equal(loaded["maps"], maps)
    assert peak >= maps.numel() * 4  # read whole: what the memory map avoids

    source = read_source("gradcam", path)  # the finiteness check and the batches read through the map
    assert torch.equal(source.batch_maps([(5, 5), (2047, 2047 % 6)]), maps[[5, 2047]])


def test_a_map_holding_nan_is_found_in_any_chunk(tmp_path):
    maps = torch.rand(NUM_MAPS, 4, 4)
    maps[1500, 2, 3] = float("nan")
    rows = list(range(NUM_MAPS))
    path = EvaluationFolder(tmp_path).save_maps("gradcam", maps, rows, [0] * NUM_MAPS, "gt")
    with pytest.raises(ValueError, match=r"1 map\(s\) contain NaN or inf \(first: file row 1500, dataset row 1500\)"):
        read_source("gradcam", path)
