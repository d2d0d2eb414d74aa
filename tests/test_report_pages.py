"""The report's own pages: tables as HTML (the report shows only HTML inline) and the
landing page's verdict summary."""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

import pandas as pd
import pytest

from kdspectra import stages
from kdspectra.report.html import csv_to_html, markdown_to_html, table_page
from kdspectra.report.landing import verdict_summary
from kdspectra.report.provenance import Provenance
from kdspectra.report.render import to_markdown


class Cells(html.parser.HTMLParser):
    """The text of every table cell (th and td), row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def cells(text: str) -> list[list[str]]:
    parser = Cells()
    parser.feed(text)
    return parser.rows


FRAME = pd.DataFrame(
    {"model": ["Teacher-CLIP", "Student-S"], "effective_rank": [12.4, 3.12], "n": [360, 360]}
)


def test_a_rendered_markdown_table_keeps_every_cell_and_the_footer() -> None:
    """The page shows what the .md holds: the same cells, the notes and the provenance."""
    md = to_markdown(FRAME, title="Table I", provenance=Provenance("c0ffee1234", "abc"))
    page = markdown_to_html(md)
    rows = cells(page)
    header = next(line for line in md.splitlines() if line.startswith("|"))
    assert rows[0] == [c.strip() for c in header.strip("|").split("|")]
    assert [r[0] for r in rows[1:]] == ["Teacher-CLIP", "Student-S"]
    assert "c0ffee1234" in page and "<table>" in page


def test_markup_in_a_cell_is_escaped_and_pipes_survive() -> None:
    md = "| a | b |\n|---|---:|\n| <script>x</script> | one \\| two |\n"
    page = markdown_to_html(md)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert cells(page)[1] == ["<script>x</script>", "one | two"]


def test_numbers_are_right_aligned_words_are_not() -> None:
    page = csv_to_html("model,er,params\ncnn_s,3.12 ± 0.18,40.8K\n")
    assert '<td class="num">3.12 ± 0.18</td>' in page and "<td>cnn_s</td>" in page
    assert '<td class="num">40.8K</td>' in page


def test_prose_lists_headings_and_inline_markup() -> None:
    page = markdown_to_html(
        "# Claims\n\n> ⚠ **random-init** teacher\n\n"
        "A *rule* with `code`\nand **bold**.\n\n- one\n- two\n"
    )
    assert "<blockquote>⚠ <strong>random-init</strong> teacher</blockquote>" in page
    assert "<h1>Claims</h1>" in page
    assert "<p>A <em>rule</em> with <code>code</code> and <strong>bold</strong>.</p>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page


def test_the_stage_picks_markdown_or_csv_by_suffix(tmp_path: Path) -> None:
    source = tmp_path / "fig2.csv"
    FRAME.to_csv(source, index=False)
    out = tmp_path / "fig2.html"
    stages.table_html({"table": str(source)}, {"html": str(out)}, {"title": "Figure 2 data"})
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<title>Figure 2 data</title>" in text
    assert cells(text)[2] == ["Student-S", "3.12", "360"]
    with pytest.raises(ValueError, match=r"expected a \.md or \.csv"):
        table_page("x", "x.tex", "")


CLAIMS = pd.DataFrame(
    {
        "id": ["infonce_raises_er", "infonce_raises_er", "infonce_raises_er", "cosine_flat"],
        "claim": ["InfoNCE raises ER"] * 3 + ["cosine ER flat over S/M/L"],
        "measure": ["effective_rank", "effective_rank", "rankme", "effective_rank"],
        "primary": [True, True, False, True],
        "verdict": ["holds", "inconclusive", "fails", "fails"],
    }
)


def test_verdict_summary_counts_primary_rows_only() -> None:
    text = verdict_summary(CLAIMS, "results/x/tables/claims.md")
    assert "(primary rows): 1 holds, 1 inconclusive, 1 fails." in text
    assert "- ``infonce_raises_er`` (InfoNCE raises ER): 1 holds, 1 inconclusive" in text
    assert "- ``cosine_flat`` (cosine ER flat over S/M/L): 1 fails" in text
    assert "results/x/tables/claims.md" in text


def test_verdict_summary_reads_csv_booleans_and_names_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "claims.csv"
    CLAIMS.to_csv(path, index=False)
    out = tmp_path / "verdicts.rst"
    stages.verdict_summary({"claims": str(path)}, {"rst": str(out)}, {})
    assert "1 holds, 1 inconclusive, 1 fails" in out.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="missing \\['verdict'\\]"):
        verdict_summary(CLAIMS.drop(columns="verdict"), "claims.md")
    no_primary = CLAIMS.assign(primary=False)
    assert verdict_summary(no_primary, "c.md").startswith("No claim has a primary row")


def render_landing_page(config: dict, workdir: Path) -> str:
    """workflow/report/workflow.rst as ``snakemake --report`` renders it: Jinja with
    ``snakemake.config``, then docutils, from the workflow's working directory."""
    import os

    import jinja2
    from docutils.core import publish_parts

    class Snakemake:
        pass

    Snakemake.config = config
    source = (Path(__file__).parents[1] / "workflow" / "report" / "workflow.rst").read_text()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as Snakemake's
    rst = env.from_string(source).render(snakemake=Snakemake)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return publish_parts(rst, writer_name="html")["html_body"]
    finally:
        os.chdir(cwd)


# Snakemake renders the page with docutils' writer_name, which docutils deprecates.
@pytest.mark.filterwarnings("ignore:Argument .writer_name.:PendingDeprecationWarning")
def test_the_landing_page_states_the_run_and_its_verdicts(tmp_path: Path) -> None:
    import yaml

    config = yaml.safe_load((Path(__file__).parent / "data" / "tiny_config.yaml").read_text())
    config["seeds"] = [0, 1, 2]
    config["experiments"]["off"] = {"dataset": "x", "teacher": "other", "enabled": False}
    config["teachers"]["other"] = {"library": "timm", "model": "m", "pretrained": True}
    (tmp_path / "results" / "tiny" / "report").mkdir(parents=True)
    summary = verdict_summary(CLAIMS, "results/tiny/tables/claims.md")
    (tmp_path / "results" / "tiny" / "report" / "verdicts.rst").write_text(summary)
    page = render_landing_page(config, tmp_path)
    text = re.sub(r"<[^>]+>", "", " ".join(page.split()))
    assert "kdspectra: run tiny" in text and "Seeds: 0, 1, 2" in text
    assert "Experiment clip_digits: teacher clip_small on dataset digits" in text
    assert "Teacher clip_small: open_clip ViT-S-32, random init" in text
    assert "other" not in text  # the disabled experiment's teacher is not listed
    assert "1 holds, 1 inconclusive, 1 fails" in text and "tables/claims.md" in text
    assert "System Message" not in page  # every directive (the include) resolved
