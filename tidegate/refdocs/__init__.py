"""Reference pages generated from the code: the configuration and metrics references.

``generate(root)`` returns every generated page as ``{relative path: text}``;
``write`` puts them in place, ``stale`` lists the ones whose committed text
differs. ``tidegate docs generate [--check]`` and scripts/gen_docs.py are thin
wrappers, and tests/test_docs_generated.py calls ``stale`` so the committed pages
can never fall behind the schema or the metric catalogue.
"""

from __future__ import annotations

from pathlib import Path

from tidegate.atomic import atomic_write_text

CONFIG_DOC = "docs/configuration.md"
METRICS_DOC = "docs/metrics.md"


def generate(root: Path) -> dict[str, str]:
    from tidegate.refdocs import config_reference, metrics_reference

    return {CONFIG_DOC: config_reference.render(root / "config" / "app.yml"),
            METRICS_DOC: metrics_reference.render(root)}


def stale(root: Path) -> list[str]:
    """Generated pages whose file under ``root`` is missing or differs from the generator's output."""
    out = []
    for rel, text in generate(root).items():
        path = root / rel
        if not path.is_file() or path.read_text() != text:
            out.append(rel)
    return out


def write(root: Path) -> list[str]:
    """Write every page that changed; return the paths written."""
    changed = stale(root)
    pages = generate(root)
    for rel in changed:
        atomic_write_text(root / rel, pages[rel])
    return changed
