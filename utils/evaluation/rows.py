"""Which dataset rows an evaluation covers (one policy for both evaluation scripts; :mod:`.shards` cuts them into
shards and deals these to the processes)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from utils.data import check_indexes, subset_indices


def parse_indexes(values: Optional[Sequence[str]]) -> Optional[list[int]]:
    """``--indexes``: integers, or one path to a file of integers (separated by spaces, commas or lines;
    ``#`` starts a comment). Returns them sorted without duplicates, or None when not given."""
    if not values:
        return None
    values = [str(v) for v in values]
    if len(values) == 1 and not _is_int(values[0]):
        path = Path(values[0])
        if not path.is_file():
            raise ValueError(f"--indexes: '{values[0]}' is neither an integer nor a file of integers")
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        values = text.replace(",", " ").split()
        if not values:
            raise ValueError(f"--indexes: {path} lists no index")
        for value in values:
            if not _is_int(value):
                raise ValueError(f"--indexes: {path} holds '{value}', not an integer")
    bad = [v for v in values if not _is_int(v)]
    if bad:
        raise ValueError(f"--indexes: '{bad[0]}' is not an integer")
    return sorted({int(v) for v in values})


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def evaluated_indices(n: int, fraction: float, seed: int, indexes: Optional[Sequence[int]] = None) -> list[int]:
    """Dataset rows to evaluate, in dataset order: ``indexes`` (else every row), then a seeded ``fraction``."""
    if indexes is not None:
        check_indexes(indexes, n)
        candidates = sorted(set(int(i) for i in indexes))
    else:
        candidates = list(range(n))
    if not candidates:
        raise ValueError("the evaluated set is empty (the list file has no image)")
    return [candidates[i] for i in subset_indices(len(candidates), fraction, seed)]
