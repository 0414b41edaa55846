"""The docs: every relative link and anchor resolves, and the configuration reference is current."""
from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from common.config import DEFAULT_CONFIG, ROOT, SECTIONS
from common.config_doc import DOC_PATH, ConfigDocError, generate

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    dead = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target} (no heading #{anchor})")
    assert not dead, f"{page.relative_to(ROOT)}: dead links: {', '.join(dead)}"


def test_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_configuration_reference_is_generated_and_current():
    assert DOC_PATH.read_text() == generate(), "docs/configuration.md is out of date: run facetrack config-doc > docs/configuration.md"


def test_configuration_reference_names_every_key():
    page = DOC_PATH.read_text()
    missing = [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in msgspec.structs.fields(cls)
               if f"| `{section}.{f.name}` |" not in page]
    assert not missing, f"keys missing from docs/configuration.md: {missing}"


def test_a_key_without_a_description_stops_the_generator():
    text = DEFAULT_CONFIG.read_text()
    line = next(x for x in text.splitlines() if x.startswith("  every_n:"))
    with pytest.raises(ConfigDocError, match="detector.every_n has no description"):
        generate(text.replace(line, "  every_n: 3"))


def test_a_markdown_report_says_where_its_figures_came_from():
    from common.report import cpu_name, provenance, table

    line = provenance("facetrack bench detector", ["--variant", "full"])
    assert line.startswith("`facetrack bench detector --variant full` on ")
    assert cpu_name() in line and "load average" in line and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", line)
    assert table(["a", "b"], [("x", None)]).splitlines() == ["| a | b |", "|---|---:|", "| x | — |"]
