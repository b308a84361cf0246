"""The report as Markdown, and the same Markdown as one self-contained HTML page.

:func:`markdown` writes the whole report; figures are referenced by paths relative to the
report's folder. :func:`html` renders that Markdown with markdown-it-py (CommonMark and pipe
tables), gives every heading the anchor GitHub would give it (the table of contents links work
in both), inlines each figure as a base64 PNG ``data:`` URI, wraps tables so that only they scroll
on a narrow screen, and adds a small stylesheet: no external file, font, script or URL.
"""

from __future__ import annotations

import base64
import html as html_escape
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mlplab.errors import MlplabError
from mlplab.experiments.base import markdown_table
from mlplab.report.chapter import STATUSES, section_keys

if TYPE_CHECKING:
    from mlplab.report.core import Report, SectionOutput
    from mlplab.report.parts import Figure, PartOutput

MAX_ROWS = 40  # a longer table is left to its CSV (curves: one row per epoch), named in the page


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def merged(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` has a ``<m>_mean`` / ``<m>_ci`` pair (a summary over seeds)."""
    names = {str(c) for c in frame.columns}
    return any(n.endswith("_mean") and f"{n[:-5]}_ci" in names for n in names)


def table_text(frame: pd.DataFrame) -> str:
    """``frame`` as Markdown, each ``<m>_mean`` / ``<m>_ci`` pair merged into one ``m`` column "mean ± ci"."""
    columns: dict[str, object] = {}
    for col in frame.columns:
        name = str(col)
        if name.endswith("_ci") and f"{name[:-3]}_mean" in frame.columns:
            continue
        if name.endswith("_mean") and f"{name[:-5]}_ci" in frame.columns:
            means, cis = frame[col], frame[f"{name[:-5]}_ci"]
            columns[name[:-5]] = [_mean_ci(m, c) for m, c in zip(means, cis)]
        else:
            columns[name] = frame[col].tolist()
    return markdown_table(pd.DataFrame(columns))


def _mean_ci(mean: object, ci: object) -> str:
    from mlplab.experiments.base import format_value

    if pd.isna(mean):
        return ""
    return format_value(mean) if pd.isna(ci) else f"{format_value(mean)} ± {format_value(ci)}"


def _status(status: str) -> str:
    return f'<span class="verdict v{STATUSES.index(status)}">{status}</span>'


def _quote(text: str) -> str:
    return text.replace("\n", " ").strip()


def _part(part: PartOutput, figure_path: Callable[[Figure], str]) -> list[str]:
    lines = [f"### {part.title}", "", f"Rerun: `{part.command}` ({part.seconds:.1f} s here)", ""]
    if part.skipped:
        return [*lines, f"**Not run here:** {part.skipped}", ""]
    lines += [f"- {_quote(c.text)}" for c in part.conclusions]
    for figure in part.figures:
        lines += ["", f"![{figure.title}]({figure_path(figure)})"]
    lines += ["", *part.notes]
    shown, hidden = [], []
    for table in part.tables:
        rows = len(table.frame)
        if rows > MAX_ROWS:
            where = f" in `{table.csv}`" if table.csv else ""
            hidden.append(f"*Table {table.name}: {rows} rows{where} (the data behind a figure).*")
        elif not shown:
            over = " (mean ± 95% CI over seeds)" if merged(table.frame) else ""
            shown.append(f"Table **{table.name}**{over}:\n\n{table_text(table.frame)}")
        else:
            hidden.append(f"#### {table.name}\n\n{table_text(table.frame)}")
    lines += ["", *shown]
    if hidden:
        lines += ["", f"<details><summary>{len(hidden)} more table(s)</summary>", "", *[h + "\n" for h in hidden],
                  "</details>"]  # fmt: skip
    return [*lines, ""]


def heading(out: SectionOutput) -> str:
    """``4. Dropout: ...``: numbered by the section's place in the chapter (the same in a partial report)."""
    return f"{section_keys().index(out.section.key) + 1}. {out.section.title}"


def _section(out: SectionOutput, figure_path: Callable[[Figure], str], flags: str) -> list[str]:
    s = out.section
    lines = [f"## {heading(out)}", "", f"*{s.book} · {out.seconds:.1f} s · rerun: `mlplab report --sections {s.key}{flags}`*", ""]  # fmt: skip
    if s.intro:
        lines += [s.intro, ""]
    for question, verdict in out.verdicts:
        lines += [
            f"> **{question.label}.** {question.asked}  ",
            f"> *{question.english}*  ",
            f"> **The log:** {question.answer or '—'} (*{question.answer_english}*)",
            "",
            f"**Verdict:** {_status(verdict.status)} {_quote(verdict.text)}"
            if verdict
            else "**Verdict:** none: a finding it needs was not drawn (see the parts below)",
            "",
        ]
    for part in out.parts:
        lines += _part(part, figure_path)
    return lines


def verdict_counts(out: SectionOutput) -> str:
    """``2 supported, 1 wrong, 1 without a verdict``: the verdicts of a section, counted ("—" for none)."""
    counts = Counter(v.status for _, v in out.verdicts if v is not None)
    parts = [f"{counts[status]} {status}" for status in STATUSES if counts[status]]
    if missing := sum(v is None for _, v in out.verdicts):
        parts.append(f"{missing} without a verdict")
    return ", ".join(parts) or "—"


def markdown(report: Report, figure_path: Callable[[Figure], str]) -> str:
    """The whole report as Markdown; ``figure_path(figure)`` gives each figure's path relative to the report."""
    meta, flags = report.meta, report.config.flags()
    lines = [
        "# The Multilayer Perceptrons chapter, answered by data",
        "",
        f"mlplab {meta['mlplab']} · {meta['budget']} · {meta['date']}. Every number is a mean over seeds with its "
        '95% confidence interval, every "A beats B" a paired comparison over seeds, every verdict on the study '
        "log's answers computed from the runs.",
        "",
        "| this report | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in meta["table"].items()],
        "",
        "## Contents",
        "",
        "| section | book | the log's answers | wall s (this run) |",
        "|---|---|---|---|",
    ]
    for out in report.sections:
        title = heading(out)
        lines.append(f"| [{title}](#{slug(title)}) | {out.section.book} | {verdict_counts(out)} | {out.seconds:.1f} |")
    lines += ["", f"Rerun the whole report: `mlplab report{flags} --out {report.config.out}`", ""]
    for out in report.sections:
        lines += _section(out, figure_path, flags)
    return "\n".join(lines).rstrip() + "\n"


# ---- HTML ------------------------------------------------------------------------------------

STYLE = """
:root { color-scheme: light; --ink: #1d232a; --muted: #5a6570; --rule: #d9dee3; --accent: #2457a6; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 64rem; padding: 1rem; font: 16px/1.55 system-ui, -apple-system, "Segoe UI",
       Roboto, "Noto Sans", "Noto Sans CJK SC", sans-serif; color: var(--ink); overflow-wrap: break-word; }
h1 { font-size: 1.7rem; line-height: 1.25; } h2 { margin-top: 2.5rem; border-bottom: 1px solid var(--rule); }
h3 { margin-top: 1.8rem; } a { color: var(--accent); }
img { display: block; max-width: 100%; height: auto; margin: 0.8rem 0; }
code { font-size: 0.9em; background: #f2f4f6; padding: 0 0.2em; border-radius: 3px; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; }
blockquote { margin: 1rem 0; padding: 0.4rem 1rem; border-left: 4px solid var(--accent); background: #f5f8fc; }
.scroll { overflow-x: auto; margin: 0.8rem 0; }
table { border-collapse: collapse; font-size: 0.88rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--rule); padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f2f4f6; }
details { margin: 0.8rem 0; } summary { cursor: pointer; color: var(--muted); }
.verdict { display: inline-block; padding: 0 0.45em; border-radius: 0.7em; font-size: 0.85em; font-weight: 600; }
.v0 { background: #d8f0dc; color: #145c24; } .v1 { background: #fbeacc; color: #7a4b00; }
.v2 { background: #f8d7d7; color: #8a1c1c; } .v3 { background: #e8e2f6; color: #4b2f85; }
.v4 { background: #dcebf8; color: #1b4f80; }
"""


def html(text: str, base: Path, title: str = "mlplab report") -> str:
    """``text`` (the report's Markdown) as one self-contained HTML page; images are read from ``base``."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    tokens = md.parse(text)
    seen: Counter[str] = Counter()
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            anchor = slug(tokens[i + 1].content)
            token.attrSet("id", anchor if not seen[anchor] else f"{anchor}-{seen[anchor]}")
            seen[anchor] += 1
        for child in token.children or ():
            if child.type == "image":
                child.attrSet("src", _data_uri(base / str(child.attrGet("src"))))
    body = md.renderer.render(tokens, md.options, {})
    body = body.replace("<table>", '<div class="scroll"><table>').replace("</table>", "</table></div>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html_escape.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def _data_uri(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MlplabError(f"the report's figure {path} cannot be read ({error}). Fix: rerun mlplab report.") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise MlplabError(f"the report's figure {path} is not a PNG file. Fix: delete it and rerun mlplab report.")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
