"""MkDocs hook: links from a page to repository files outside ``docs/``.

A page may link to a file of the repository, e.g. ``../bench/README.md``:
that link works where the Markdown is read in the repository (GitHub, an
editor), but the site only contains ``docs/``, so MkDocs would report it as
broken and ``--strict`` would fail. For a target that exists in the
repository, this hook points the link at the file in ``repo_url`` when the
site has one, and otherwise shows the link's text (and the file's path) as
plain text. A target that does not exist is left alone, so MkDocs still
reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def _outside_docs(target: str, page_uri: str, docs_dir: Path, root: Path) -> str | None:
    """The repository path of ``target`` if it leaves docs/ and exists, else None."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), target))
    if not joined.startswith("../"):
        return None
    path = (docs_dir / joined).resolve()
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None  # outside the repository too: let MkDocs report it
    return relative.as_posix() if path.exists() else None


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    repo_url = (config.get("repo_url") or "").rstrip("/")

    def replace(match: re.Match) -> str:
        relative = _outside_docs(match["target"], page.file.src_uri, docs_dir, root)
        if relative is None:
            return match[0]
        if repo_url:
            return f"[{match['text']}]({repo_url}/blob/main/{relative}{match['anchor'] or ''})"
        text = match["text"]
        return text if relative in text else f"{text} (`{relative}` in the repository)"

    # Leave fenced code blocks alone: every other chunk is prose.
    chunks = re.split(r"(^(?:```|~~~).*?^(?:```|~~~)[^\n]*$)", markdown, flags=re.MULTILINE | re.DOTALL)
    return "".join(chunk if i % 2 else LINK.sub(replace, chunk) for i, chunk in enumerate(chunks))
