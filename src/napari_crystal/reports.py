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


def _pp(x: float) -> str:
    """A difference in percentage points, two decimals (the study's precision)."""
    return f"{100 * x:+.2f}"


def _format_p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _ci(ci) -> str:
    return "-" if ci is None else f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"


def _who(r: Report) -> str:
    return r.name or "model"


def _evaluation_methods_markdown(methods: dict[str, Any]) -> list[str]:
    """The Methods section of an evaluation of saved models (`EvaluationRun.methods`)."""
    out = ["## Methods", "", f"- Data: `{methods.get('data')}`."]
    for name, m in (methods.get("models") or {}).items():
        out.append(
            f"- Model {name} (`{m.get('file')}`): {m.get('features')}, crystal labels "
            f"{m.get('crystals')}; training data: {m.get('training')}."
        )
    scoring = methods.get("scoring") or {}
    if scoring:
        out.append("- Scoring: " + "; ".join(f"{n}: {how}" for n, how in scoring.items()) + ".")
    versions = methods.get("versions") or {}
    out.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    out.append(f"- Date: {methods.get('date')}.")
    out += [f"- **Warning**: {w}." for w in methods.get("warnings") or []]
    return [*out, ""]


def _methods_markdown(methods: dict[str, Any]) -> list[str]:
    """The Methods section, generated from the run's own record (`study.methods_record`)."""
    if methods.get("kind") == "evaluation":
        return _evaluation_methods_markdown(methods)
    out = ["## Methods", ""]
    syn = methods.get("synthetic")
    if syn:
        kind = (
            f"synthetic (preset `{syn.get('preset')}`, corpus seed {syn.get('seed')}, effect "
            f"{syn.get('effect')}, train annotation protocol `{syn.get('protocol')}`; "
            "see docs/synthetic.md)"
        )
    else:
        kind = "real (not synthetic)"
    out.append(f"- Corpus: `{methods.get('corpus')}`, {kind}.")
    m = methods.get("masks") or {}
    out.append(
        f"- Masks: {m.get('method')} masks, channel `{m.get('channel')}`, resized to "
        f"{m.get('size')} x {m.get('size')} and flattened. Level: {m.get('level_rule')}. "
        f"Resize: {m.get('resize_rule')}. Threshold: {m.get('threshold_rule')}."
    )
    forest = methods.get("forest") or {}
    settings = ", ".join(f"{k}={v}" for k, v in forest.items())
    out.append(f"- Classifier: imbalanced-learn BalancedRandomForestClassifier({settings}).")
    seeds = methods.get("seeds") or {}
    out.append(
        f"- Seeds: forest {seeds.get('forest')}, patient bootstrap {seeds.get('bootstrap')}, "
        f"corpus {seeds.get('corpus') if seeds.get('corpus') is not None else 'n/a'}."
    )
    crystals = methods.get("crystals") or {}
    counts = methods.get("training_counts") or {}
    if counts:
        names = list(counts)
        labels = [lab for lab in palette_order(counts)]
        out += ["", "Training patches per class (crystal labels as each model used them):", ""]
        out.append("| class | " + " | ".join(f"{n} ({crystals.get(n, '')})" for n in names) + " |")
        out.append("|---|" + "---:|" * len(names))
        for lab in labels:
            out.append(
                f"| {lab} | " + " | ".join(str(counts[n].get(lab, 0)) for n in names) + " |"
            )
        out.append("| total | " + " | ".join(str(sum(counts[n].values())) for n in names) + " |")
        out.append("")
    matched = methods.get("matched")
    if matched:
        added = ", ".join(f"{k} +{v}" for k, v in matched.get("added", {}).items())
        src = matched.get("source")
        how = {
            "pool": "fresh plain parents from the corpus's matched/ pool",
            "resample": "plain parents of train resampled with replacement (duplicates: more "
            "draws, no new information)",
            "both": "the matched/ pool, topped up by resampling train's plain parents",
        }.get(src, src)
        out.append(
            f"- Matched-data control: trained without crystals plus as many plain-parent "
            f"patches as the crystals added ({added}), taken from {how}."
        )
    for fs, item in (methods.get("feature_sets") or {}).items():
        if fs == "mask":
            continue
        st = item.get("settings") or {}
        stain = (st.get("stain") or {}).get("method") or "none"
        rec = item.get("matched") or {}
        added = ", ".join(f"{k} +{v}" for k, v in (rec.get("added") or {}).items())
        out.append(
            f"- Feature set `{fs}`: {st.get('mpp')} um/px, max side {st.get('max_side')}, "
            f"stain {stain}; matched-data control from its own measured rows"
            + (f" ({added}, {rec.get('source')})." if rec else ": none.")
        )
    scoring = methods.get("scoring") or {}
    if scoring:
        out.append(
            "- Scoring: " + "; ".join(f"{name}: {how}" for name, how in scoring.items()) + "."
        )
    boot = methods.get("bootstrap") or {}
    out.append(
        "- Statistics: accuracy difference with the Wald interval for two independent "
        "proportions (the study's convention), the paired interval from discordant counts, "
        f"a patient-level cluster bootstrap ({boot.get('resamples')} resamples of whole "
        "patients, percentile interval) and McNemar's test (exact below 25 discordant pairs). "
        "Calibration: multiclass Brier score (mean of sum_k (p_k - y_k)^2, 0 best, 2 worst) "
        "and expected calibration error (top-class confidence, 10 equal bins)."
    )
    versions = methods.get("versions") or {}
    out.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    out.append(f"- Date: {methods.get('date')}.")
    for w in methods.get("warnings") or []:
        out.append(f"- **Warning**: {w}.")
    out.append("")
    return out


def methods_summary(methods: dict[str, Any]) -> list[str]:
    """A few lines of the Methods record for a terminal (CLI and ``make demo``)."""
    syn = methods.get("synthetic")
    corpus = methods.get("corpus")
    kind = (
        f"synthetic {syn.get('preset')} (seed {syn.get('seed')}, effect {syn.get('effect')}, "
        f"protocol {syn.get('protocol')})"
        if syn
        else "real"
    )
    m = methods.get("masks") or {}
    f = methods.get("forest") or {}
    counts = methods.get("training_counts") or {}
    lines = [
        f"corpus: {corpus} ({kind})",
        f"masks: {m.get('method')} on {m.get('channel')}, {m.get('size')}x{m.get('size')}, "
        "level: coarsest with the shorter side >= size",
        f"forest: {f.get('n_estimators')} trees, max_features={f.get('max_features')}, "
        f"sampling_strategy={f.get('sampling_strategy')}, replacement={f.get('replacement')}, "
        f"seed {f.get('random_state')}",
        "training patches: "
        + "; ".join(f"{name} {sum(c.values())}" for name, c in counts.items()),
    ]
    matched = methods.get("matched")
    if matched:
        lines.append(
            f"matched-data control: +{sum(matched.get('added', {}).values())} plain parents "
            f"({matched.get('source')})"
        )
    scoring = sorted(set((methods.get("scoring") or {}).values()))
    if scoring:
        lines.append("scoring: " + "; ".join(scoring))
    v = methods.get("versions") or {}
    lines.append("versions: " + ", ".join(f"{k} {x}" for k, x in v.items()))
    lines.append(f"date: {methods.get('date')}")
    return lines


def palette_order(counts: dict[str, dict[str, int]]) -> list[str]:
    """Every class of several count tables, in palette order."""
    from napari_crystal.evaluation import label_order

    return label_order({lab for c in counts.values() for lab in c})


def _test_tables(
    reports: list[Report], comparisons: Sequence[Comparison], counts: dict | None
) -> list[str]:
    """One table per test set with the models as columns (the study's layout)."""
    out: list[str] = []
    tests = list(dict.fromkeys(r.test_set for r in reports))
    for test in tests:
        rs = [r for r in reports if r.test_set == test]
        n = rs[0].n
        out += [f"## Test set: {test or 'test'} ({n} patches)", ""]
        out.append("| | " + " | ".join(_who(r) for r in rs) + " |")
        out.append("|---|" + "---:|" * len(rs))
        rows: list[tuple[str, list[str]]] = []
        if counts:
            rows.append(
                (
                    "training patches",
                    [str(sum(counts.get(r.name, {}).values()) or "-") for r in rs],
                )
            )
        rows += [
            ("correct", [str(r.correct) for r in rs]),
            ("incorrect", [str(r.incorrect) for r in rs]),
            ("accuracy", [_pct(r.accuracy) for r in rs]),
        ]
        for label in STUDY_CLASSES:
            cells = []
            support = 0
            for r in rs:
                sc = r.per_class.get(label)
                support = max(support, sc.support if sc else 0)
                cells.append("-" if sc is None or sc.support == 0 else _pct(sc.accuracy))
            rows.append((f"{label} accuracy (n={support})", cells))
        rows.append(("macro F1", [f"{r.macro['f1']:.3f}" for r in rs]))
        cal = [r.meta.get("calibration") for r in rs]
        if any(cal):
            rows.append(("Brier score", [f"{c['brier']:.3f}" if c else "-" for c in cal]))
            rows.append(("ECE", [f"{c['ece']:.3f}" if c else "-" for c in cal]))
        for label, cells in rows:
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
        scorings = {r.meta.get("scoring") for r in rs} - {None}
        if scorings:
            out += ["Scoring: " + "; ".join(sorted(scorings)) + ".", ""]
        cs = [c for c in comparisons if c.test_set == test]
        if cs:
            level = cs[0].level
            out += [
                f"Differences A - B in percentage points, {100 * level:g}% intervals: Wald "
                "(independent proportions, the study's convention), paired (discordant "
                "counts), patient bootstrap (whole patients resampled). b = A right & B wrong, "
                "c = A wrong & B right.",
                "",
                "| A - B | difference | Wald CI | paired CI | patient bootstrap CI | b | c "
                "| McNemar | p | test |",
                "|---|---:|---|---|---|---:|---:|---:|---:|---|",
            ]
            for c in cs:
                boot = _ci(c.cluster_ci) + (f" ({c.clusters} patients)" if c.clusters else "")
                out.append(
                    f"| {c.name_a} - {c.name_b} | {_pp(c.difference)} | {_ci(c.wald_ci)} | "
                    f"{_ci(c.paired_ci)} | {boot} | {c.b} | {c.c} | "
                    f"{c.mcnemar_statistic:.3f} | {_format_p(c.mcnemar_p)} | {c.mcnemar_method} |"
                )
            out.append("")
            few = min((c.clusters for c in cs if c.clusters), default=0)
            if few and few < 10:
                out += [
                    f"Only {few} patients: a bootstrap over so few clusters understates the "
                    "spread; read the Wald and paired intervals, or repeat over seeds.",
                    "",
                ]
            if any(c.per_class for c in cs):
                out += [
                    "Per-class accuracy differences (on that class's patches):",
                    "",
                    "| A - B | class | n | accuracy A | accuracy B | difference | Wald CI "
                    "| paired CI |",
                    "|---|---|---:|---:|---:|---:|---|---|",
                ]
                for c in cs:
                    for label, d in c.per_class.items():
                        d = d if not isinstance(d, dict) else _Obj(d)
                        out.append(
                            f"| {c.name_a} - {c.name_b} | {label} | {d.support} | "
                            f"{_pct(d.accuracy_a)} | {_pct(d.accuracy_b)} | {_pp(d.difference)} "
                            f"| {_ci(d.wald_ci)} | {_ci(d.paired_ci)} |"
                        )
                out.append("")
    return out


class _Obj:
    def __init__(self, d: dict) -> None:
        self.__dict__.update(d)


def report_markdown(
    reports: Report | Sequence[Report],
    comparisons: Sequence[Comparison] = (),
    title: str = "Evaluation",
    meta: dict[str, Any] | None = None,
) -> str:
    """Markdown laid out like the study's tables: a Methods section (when ``meta`` holds the
    run's ``methods``), one table per test set with the models as columns, the differences
    with their intervals, then per-class scores and confusion matrices."""
    reports = _listify(reports)
    methods = (meta or {}).get("methods")
    out = [f"# {title}", ""]
    if methods:
        out += _methods_markdown(methods)
    out += _test_tables(reports, comparisons, (methods or {}).get("training_counts"))
    out += ["## Per-class precision, recall, F1", ""]
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
    return "\n".join(out)


def comparison_cells(c: Comparison) -> dict[str, str]:
    """A comparison's numbers as text (percentages, points, intervals, p), formatted once for
    the Markdown table, `comparison_text`, the CLI and the widgets."""
    return {
        "accuracy_a": _pct(c.correct_a / c.n),
        "accuracy_b": _pct(c.correct_b / c.n),
        "difference": f"{_pp(c.difference)} pp",
        "level": f"{100 * c.level:g}%",
        "wald_ci": _ci(c.wald_ci),
        "paired_ci": _ci(c.paired_ci),
        "cluster_ci": _ci(getattr(c, "cluster_ci", None)),
        "statistic": f"{c.mcnemar_statistic:.3f}",
        "p": _format_p(c.mcnemar_p),
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
        f"paired {f['paired_ci']}"
        + (f", patient bootstrap {f['cluster_ci']}" if getattr(c, "cluster_ci", None) else "")
        + "\n"
        f"  McNemar p {p} ({c.mcnemar_method}; b = {c.b}, c = {c.c})"
    )


def write_report_markdown(
    reports: Report | Sequence[Report],
    path: str | os.PathLike,
    comparisons: Sequence[Comparison] = (),
    title: str = "Evaluation",
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write `report_markdown` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(report_markdown(reports, comparisons, title, meta))
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
    volume = {(c.name_a, c.name_b, c.test_set): c for c in comparisons}
    rows = []
    for item in summary:
        fs = item["feature_set"]
        for test in tests:
            cells = []
            for a, b in (("with crystals", "without crystals"), ("with crystals", "matched data"),
                         ("matched data", "without crystals")):  # fmt: skip
                c = volume.get((f"{fs} {a}", f"{fs} {b}", test))
                f = comparison_cells(c) if c is not None else None
                cells.append(f"{f['difference']} {f['paired_ci']}" if f else "-")
            if any(cell != "-" for cell in cells[1:]):
                rows.append(f"| {fs} | {test} | " + " | ".join(cells) + " |")
    if rows:
        out += [
            "",
            "### Crystals against data volume",
            "",
            "Within each set: the crystal model gains more parent-class patches as well as the "
            "crystal annotations; the matched-data model has the same number of extra plain "
            "parents, so *with - matched* is what the crystals add beyond data volume. "
            "Difference (pp) and paired 95% interval.",
            "",
            "| feature set | test set | with - without | with - matched | matched - without |",
            "|---|---|---|---|---|",
            *rows,
        ]
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


def plot_reliability(report: Report, ax: Any = None) -> Any:
    """Reliability diagram of a report's calibration bins: accuracy against confidence."""
    from matplotlib.figure import Figure

    cal = report.meta.get("calibration")
    if not cal:
        raise ValueError("the report has no calibration (made without probabilities)")
    if ax is None:
        fig = Figure(figsize=(4.6, 4.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    bins = [b for b in cal["bins"] if b["n"]]
    width = bins[0]["hi"] - bins[0]["lo"] if bins else 0.1
    ax.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="perfect")
    ax.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
           edgecolor="#1f4e79", color="#6fa8dc", label="accuracy")  # fmt: skip
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="#c00000",
            markersize=4, label="mean confidence")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    title = " - ".join(x for x in (report.name, report.test_set) if x)
    ax.set_title(f"{title}\nBrier {cal['brier']:.3f}, ECE {cal['ece']:.3f}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def save_reliability_png(report: Report, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save `plot_reliability` as a PNG atomically (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_reliability(report)
    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _fmt_mean(f: dict[str, float], pct: bool = True, sign: bool = False) -> str:
    scale = 100 if pct else 1
    digits = 2 if pct else 3
    sg = "+" if sign else ""
    sd = f["sd"] * scale
    return (
        f"{f['mean'] * scale:{sg}.{digits}f} ± {sd:.{digits}f}"
        if f["n"] > 1
        else (f"{f['mean'] * scale:{sg}.{digits}f}")
    )


def seeds_markdown(summary: dict[str, Any]) -> str:
    """The repeated runs: each figure's mean ± SD over seeds, each difference's mean with the
    t interval of the mean, and every seed's intervals."""
    seeds = summary["seeds"]
    level = summary.get("level", 0.95)
    out = [f"# Crystal experiment over {len(seeds)} seeds ({', '.join(map(str, seeds))})", ""]
    for note in summary.get("notes") or []:
        out += [f"Note: {note}.", ""]
    methods = summary.get("methods")
    if methods:
        out += _methods_markdown(methods)
        out += ["(Methods of the first seed's run; every seed's own is in seed-*/report.md.)", ""]
    for test, t in summary["tests"].items():
        names = list(t["models"])
        out += [f"## Test set: {test} (mean ± SD over seeds)", ""]
        out.append("| | " + " | ".join(names) + " |")
        out.append("|---|" + "---:|" * len(names))
        keys = list(dict.fromkeys(k for m in t["models"].values() for k in m))
        for key in keys:
            pct = key not in ("Brier score", "ECE")
            label = f"{key} (%)" if pct else key
            cells = [
                _fmt_mean(t["models"][n][key], pct) if key in t["models"][n] else "-"
                for n in names
            ]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out += [
            "",
            f"Differences A - B (percentage points): mean ± SD over seeds, {100 * level:g}% "
            "t interval of the mean (seeds are independent replicates), and how many seeds' "
            "own paired intervals exclude 0.",
            "",
            "| A - B | mean ± SD | interval of the mean | covers 0 | seeds excluding 0 |",
            "|---|---:|---|---|---:|",
        ]
        for key, e in t["comparisons"].items():
            d = e["difference"]
            covers = "n/a" if d["n"] < 2 else ("yes" if d["lo"] <= 0 <= d["hi"] else "no")
            out.append(
                f"| {key} | {_fmt_mean(d, sign=True)} | {_ci((d['lo'], d['hi']))} | {covers} "
                f"| {e['seeds_excluding_0']}/{len(e['seeds'])} |"
            )
        out += [
            "",
            "Per-class accuracy differences on that class's patches (pp): mean ± SD over "
            f"seeds and the {100 * level:g}% t interval of the mean.",
            "",
        ]
        classes = list(dict.fromkeys(k for e in t["comparisons"].values() for k in e["per_class"]))
        out.append("| A - B | " + " | ".join(classes) + " |")
        out.append("|---|" + "---:|" * len(classes))
        for key, e in t["comparisons"].items():
            out.append(
                f"| {key} | "
                + " | ".join(
                    _fmt_mean(e["per_class"][k], sign=True)
                    + (
                        " " + _ci((e["per_class"][k]["lo"], e["per_class"][k]["hi"]))
                        if e["per_class"][k]["n"] > 1
                        else ""
                    )
                    if k in e["per_class"]
                    else "-"
                    for k in classes
                )
                + " |"
            )
        out += [
            "",
            "Every seed (pp):",
            "",
            "| seed | A - B | difference | Wald CI | paired CI | patient bootstrap CI | McNemar p |",
            "|---:|---|---:|---|---|---|---:|",
        ]
        for key, e in t["comparisons"].items():
            for s in e["seeds"]:
                boot = _ci(s["cluster_ci"]) + (f" ({s['clusters']} pt)" if s["clusters"] else "")
                out.append(
                    f"| {s['seed']} | {key} | {_pp(s['difference'])} | {_ci(s['wald_ci'])} | "
                    f"{_ci(s['paired_ci'])} | {boot} | {_format_p(s['mcnemar_p'])} |"
                )
        out.append("")
    return "\n".join(out)
