"""Report files: JSON (reloadable), Markdown in the study's layout, confusion-matrix PNGs.

The numbers come from :mod:`napari_crystal.evaluation`; this module only writes them.
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_crystal._atomic import atomic_path
from napari_crystal.evaluation import STUDY_CLASSES, Comparison, Report

# ---------------------------------------------------------------- writers


def _listify(reports: Report | Sequence[Report]) -> list[Report]:
    return [reports] if isinstance(reports, Report) else list(reports)


def write_report_json(
    reports: Report | Sequence[Report],
    path: str | os.PathLike,
    comparisons: Sequence[Comparison] = (),
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write reports (and comparisons) as JSON: ``{"reports": [...], "comparisons": [...]}``."""
    doc = {
        "reports": [r.to_dict() for r in _listify(reports)],
        "comparisons": [c.to_dict() for c in comparisons],
        "meta": meta or {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


def read_report_json(path: str | os.PathLike) -> tuple[list[Report], list[dict[str, Any]]]:
    """Reports (as `Report`) and comparisons (as dicts) from `write_report_json`'s file."""
    doc = json.loads(Path(path).read_text())
    return [Report.from_dict(r) for r in doc["reports"]], list(doc.get("comparisons", []))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _who(r: Report) -> str:
    return r.name or "model"


def report_markdown(
    reports: Report | Sequence[Report],
    comparisons: Sequence[Comparison] = (),
    title: str = "Evaluation",
) -> str:
    """Markdown laid out like the study's tables."""
    reports = _listify(reports)
    out = [f"# {title}", ""]
    out += [
        "## Overall",
        "",
        "| model | test set | patches | correct | incorrect | accuracy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in reports:
        out.append(
            f"| {_who(r)} | {r.test_set} | {r.n} | {r.correct} | {r.incorrect} | {_pct(r.accuracy)} |"
        )
    out += [
        "",
        "## Per-class accuracy",
        "",
        "Share of each class's patches predicted as that class (= recall); n = support.",
        "",
        "| model | test set | " + " | ".join(STUDY_CLASSES) + " |",
        "|---|---|" + "---:|" * len(STUDY_CLASSES),
    ]
    for r in reports:
        cells = []
        for label in STUDY_CLASSES:
            s = r.per_class.get(label)
            cells.append(
                "-" if s is None or s.support == 0 else f"{_pct(s.accuracy)} (n={s.support})"
            )
        out.append(f"| {_who(r)} | {r.test_set} | " + " | ".join(cells) + " |")
    out += ["", "## Per-class precision, recall, F1", ""]
    for r in reports:
        out += [
            f"### {_who(r)}" + (f" on {r.test_set}" if r.test_set else ""),
            "",
            "| class | support | predicted | precision | recall | F1 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label in r.classes:
            s = r.per_class[label]
            out.append(
                f"| {label} | {s.support} | {s.predicted} | {s.precision:.3f} | "
                f"{s.recall:.3f} | {s.f1:.3f} |"
            )
        out.append(
            f"| macro (support > 0) | | | {r.macro['precision']:.3f} | "
            f"{r.macro['recall']:.3f} | {r.macro['f1']:.3f} |"
        )
        out += ["", "Confusion matrix (rows: truth, columns: prediction):", ""]
        out.append("| truth \\ predicted | " + " | ".join(r.classes) + " |")
        out.append("|---|" + "---:|" * len(r.classes))
        for label, row in zip(r.classes, r.confusion, strict=True):
            out.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
        out.append("")
    if comparisons:
        level = comparisons[0].level
        out += [
            "## Model comparison",
            "",
            f"Difference = accuracy A - accuracy B; {100 * level:g}% intervals: Wald for two "
            "independent proportions (the study's convention) and paired (discordant counts). "
            "b = A right & B wrong, c = A wrong & B right.",
            "",
            "| test set | A | B | accuracy A | accuracy B | difference | Wald CI | paired CI "
            "| b | c | McNemar | p | test |",
            "|---|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|",
        ]
        for c in comparisons:
            f = comparison_cells(c)
            out.append(
                f"| {c.test_set} | {c.name_a} | {c.name_b} | {f['accuracy_a']} | "
                f"{f['accuracy_b']} | {f['difference']} | {f['wald_ci']} | {f['paired_ci']} | "
                f"{c.b} | {c.c} | {f['statistic']} | {f['p']} | {c.mcnemar_method} |"
            )
        out.append("")
    return "\n".join(out)


def comparison_cells(c: Comparison) -> dict[str, str]:
    """A comparison's numbers as text (percentages, points, intervals, p), formatted once for
    the Markdown table, `comparison_text`, the CLI and the widgets."""
    return {
        "accuracy_a": _pct(c.correct_a / c.n),
        "accuracy_b": _pct(c.correct_b / c.n),
        "difference": f"{100 * c.difference:+.1f} pp",
        "level": f"{100 * c.level:g}%",
        "wald_ci": f"[{100 * c.wald_ci[0]:+.1f}, {100 * c.wald_ci[1]:+.1f}]",
        "paired_ci": f"[{100 * c.paired_ci[0]:+.1f}, {100 * c.paired_ci[1]:+.1f}]",
        "statistic": f"{c.mcnemar_statistic:.3f}",
        "p": "< 0.0001" if c.mcnemar_p < 1e-4 else f"{c.mcnemar_p:.4f}",
    }


def comparison_text(c: Comparison | None) -> str:
    """A comparison in two lines, as the CLI prints it and the widgets show it ("" for None)."""
    if c is None:
        return ""
    f = comparison_cells(c)
    on = f"{c.test_set}: " if c.test_set else ""
    p = f["p"] if f["p"].startswith("<") else f"= {f['p']}"
    return (
        f"{on}{c.name_a} {f['accuracy_a']} vs {c.name_b} {f['accuracy_b']} (n = {c.n}): "
        f"difference {f['difference']}, {f['level']} CI Wald {f['wald_ci']}, "
        f"paired {f['paired_ci']}\n"
        f"  McNemar p {p} ({c.mcnemar_method}; b = {c.b}, c = {c.c})"
    )


def write_report_markdown(
    reports: Report | Sequence[Report],
    path: str | os.PathLike,
    comparisons: Sequence[Comparison] = (),
    title: str = "Evaluation",
) -> Path:
    """Write `report_markdown` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(report_markdown(reports, comparisons, title))
    return path


def plot_confusion(report: Report, ax: Any = None, dark: bool = False) -> Any:
    """Confusion matrix as a matplotlib Figure (no pyplot, so a Qt canvas can host it).

    Cells are coloured by row share (recall) so small classes stay visible, and annotated with
    counts. Draws on ``ax`` when given; returns the Figure.
    """
    from matplotlib.figure import Figure

    cm = report.confusion_array()
    k = len(report.classes)
    if ax is None:
        side = max(4.0, 0.55 * k + 2.0)
        fig = Figure(figsize=(side + 1.0, side), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    fg, bg = ("#e6e6e6", "#262930") if dark else ("#111111", "#ffffff")
    fig.set_facecolor(bg)
    ax.set_facecolor(bg)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    image = ax.imshow(share, cmap="magma" if dark else "Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            light = share[i, j] > 0.5 if not dark else share[i, j] < 0.6
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", fontsize=9,
                color="white" if light else "black",
            )  # fmt: skip
    ax.set_xticks(range(k), report.classes, rotation=45, ha="right", color=fg)
    ax.set_yticks(range(k), report.classes, color=fg)
    ax.set_xlabel("predicted", color=fg)
    ax.set_ylabel("truth", color=fg)
    title = " - ".join(x for x in (report.name, report.test_set) if x)
    ax.set_title(
        f"{title}{': ' if title else ''}accuracy {_pct(report.accuracy)} (n={report.n})",
        color=fg, fontsize=10,
    )  # fmt: skip
    for spine in ax.spines.values():
        spine.set_color(fg)
    ax.tick_params(colors=fg)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class", color=fg)
    bar.ax.tick_params(colors=fg)
    return fig


def save_confusion_png(
    report: Report, path: str | os.PathLike, dark: bool = False, dpi: int = 150
) -> Path:
    """Save `plot_confusion` as a PNG atomically (Agg, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_confusion(report, dark=dark)
    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return path


def feature_sets_markdown(
    summary: Sequence[dict[str, Any]],
    reports: Sequence[Report],
    comparisons: Sequence[Comparison] = (),
) -> str:
    """The feature-set section of an experiment report: accuracy of every set with and without
    crystals, its paired comparison with the ``mask`` baseline, skipped patches, importances."""
    by_name = {(r.name, r.test_set): r for r in reports}
    vs_mask = {
        (c.name_a, c.test_set): c
        for c in comparisons
        if c.name_b.startswith("mask ") and not c.name_a.startswith("mask ")
    }
    tests = list(dict.fromkeys(r.test_set for r in reports))
    out = [
        "## Feature sets against the mask baseline",
        "",
        "Each set's models against the `mask` model with the same crystal setting, paired on "
        "the patches the set could measure (n); difference = set - mask, paired "
        "(discordant-count) 95% interval and McNemar's p.",
        "",
        "| feature set | crystals | test set | n | accuracy | mask accuracy | difference "
        "| paired CI | McNemar p |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for item in summary:
        fs = item["feature_set"]
        for crystal in ("with crystals", "without crystals"):
            for test in tests:
                r = by_name.get((f"{fs} {crystal}", test))
                if r is None:
                    continue
                c = vs_mask.get((f"{fs} {crystal}", test))
                if c is None:
                    out.append(
                        f"| {fs} | {crystal} | {test} | {r.n} | {_pct(r.accuracy)} | "
                        "(baseline) | | | |"
                    )
                    continue
                f = comparison_cells(c)
                out.append(
                    f"| {fs} | {crystal} | {test} | {c.n} | {f['accuracy_a']} | "
                    f"{f['accuracy_b']} | {f['difference']} | {f['paired_ci']} | {f['p']} |"
                )
    out += ["", "### Settings, skipped patches and feature importance", ""]
    for item in summary:
        fs = item["feature_set"]
        settings = item.get("settings") or {}
        line = f"- **{fs}**: {item['n_features']} features"
        if settings:
            stain = (settings.get("stain") or {}).get("method") or "none"
            line += f", {settings.get('mpp')} um/px, max side {settings.get('max_side')}, stain {stain}"
        skipped = {k: v for k, v in (item.get("skipped") or {}).items() if v and sum(v.values())}
        if skipped:
            parts = [
                f"{split} {sum(v.values())} ({', '.join(f'{k} {n}' for k, n in v.items() if n) or 'none'})"
                for split, v in skipped.items()
            ]
            line += "; skipped: " + "; ".join(parts)
        out.append(line)
        for crystal, top in (item.get("importance") or {}).items():
            names = ", ".join(f"{name} {value:.3f}" for name, value in top)
            out.append(f"  - top features ({crystal}): {names}")
    out.append("")
    return "\n".join(out)
