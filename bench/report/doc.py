"""A tiny document model for the benchmark report, rendered as Markdown or as HTML.

Markdown shows its images by relative path, each a link to its PNG; HTML
embeds them as base64 data URIs, so the ``.html`` file is self-contained (it
can be mailed or attached), and links each PNG file beside it too.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Doc:
    """Blocks in order: ``(kind, payload)`` with kind h1|h2|p|ul|links|table|img."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def section(self, heading: str) -> None:
        self.blocks.append(("h2", heading))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def links(self, paths: list[Path]) -> None:
        """A list of files linked by their path relative to the report (the raw data beside it)."""
        self.blocks.append(("links", [Path(p) for p in paths]))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", (Path(path), caption)))


def render(doc: Doc, fmt: str, base: Path) -> str:
    """The document as ``md`` or ``html`` text; image paths are made relative to ``base``."""
    return _markdown(doc, base) if fmt == "md" else _html(doc, base)


def _markdown(doc: Doc, base: Path) -> str:
    out = [f"# {doc.title}", ""]
    for kind, payload in doc.blocks:
        if kind == "h2":
            out += [f"## {payload}", ""]
        elif kind == "p":
            out += [str(payload), ""]
        elif kind == "ul":
            out += [f"- {item}" for item in payload] + [""]  # type: ignore[union-attr]
        elif kind == "links":
            rel = [os.path.relpath(Path(p).absolute(), Path(base).absolute()) for p in payload]  # type: ignore[union-attr]
            out += [f"- [{r}]({r})" for r in rel] + [""]
        elif kind == "table":
            header, rows = payload  # type: ignore[misc]
            out += [_md_row(header), _md_row(["---"] * len(header)), *(_md_row(r) for r in rows), ""]
        elif kind == "img":
            path, caption = payload  # type: ignore[misc]
            rel = os.path.relpath(path, base)
            out += [f"[![{caption}]({rel})]({rel})", f"*{caption}*", ""]  # the image links its PNG file
    return "\n".join(out)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}img{max-width:100%}")


def _html(doc: Doc, base: Path) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(doc.title)}</title>",
           f"<style>{_STYLE}</style></head><body><h1>{e(doc.title)}</h1>"]
    for kind, payload in doc.blocks:
        if kind == "h2":
            out.append(f"<h2>{e(str(payload))}</h2>")
        elif kind == "p":
            out.append(f"<p>{e(str(payload))}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in payload) + "</ul>")  # type: ignore[union-attr]
        elif kind == "links":
            rel = [os.path.relpath(Path(p).absolute(), Path(base).absolute()) for p in payload]  # type: ignore[union-attr]
            out.append("<ul>" + "".join(f"<li><a href='{e(r)}'>{e(r)}</a></li>" for r in rel) + "</ul>")
        elif kind == "table":
            header, rows = payload  # type: ignore[misc]
            head = "".join(f"<th>{e(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            path, caption = payload  # type: ignore[misc]
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            rel = os.path.relpath(Path(path).absolute(), Path(base).absolute())
            out.append(f"<figure><a href='{e(rel)}'><img src='data:image/png;base64,{data}' alt='{e(caption)}'></a>"
                       f"<figcaption>{e(caption)} (<a href='{e(rel)}'>{e(rel)}</a>)</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)
