"""Compare two evaluation folders, from Python: the GAP and the CA run's metrics side by side, with paired
differences (bootstrap interval, sign-flip p-value) over the images both scored, as compare.html.

    python examples/compare_folders.py Evaluation/gap Evaluation/ca --out Evaluation/compare
"""
from __future__ import annotations

import argparse
from pathlib import Path

from utils.evaluation import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path, help="an objrecon_imagenet.py store folder (or evaluate()'s)")
    parser.add_argument("other", type=Path)
    parser.add_argument("--out", type=Path, default=Path("compare"))
    flags = parser.parse_args()

    comparison = compare([flags.baseline, flags.other], flags.out)
    for difference in comparison.differences:
        result = difference.result
        print(f"{difference.method:>10} {difference.metric:>22}  {difference.label} - {difference.baseline}: "
              f"{result.mean:+.2f} [{result.ci_low:+.2f}, {result.ci_high:+.2f}]  p={result.p_value:.3f}")
    print(f"-> {comparison.page}")


if __name__ == "__main__":
    main()
