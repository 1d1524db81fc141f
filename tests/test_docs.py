"""The README and the docs: every relative link and image points at a file of the repository, and the Python API
page's code blocks run as written."""
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_targets(page: Path) -> list[str]:
    """Link and image targets that are files of the repository (not web addresses or anchors), without anchors."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # code blocks hold no links
    return [target.split("#")[0] for target in LINK.findall(text)
            if not re.match(r"^(https?:|mailto:|#)", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_image_exists(page):
    targets = relative_targets(page)
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_the_readme_is_short_and_links_every_docs_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    linked = {(REPO / target).resolve() for target in relative_targets(REPO / "README.md")}
    assert set(PAGES[1:]) <= linked


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) ![gone](missing.png) [web](https://example.org) [anchor](#top)\n"
                    "```\n[in code](nowhere.md)\n```\n")
    assert relative_targets(page) == ["page.md", "missing.png"]


def test_the_api_page_runs_as_written():
    torch.manual_seed(0)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), flags=re.DOTALL)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - the page's own examples
