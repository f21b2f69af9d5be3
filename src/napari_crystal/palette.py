"""The one class palette shared by the reader, the masks, the models and the overlays.

Class index 0 is "unannotated"; 1..12 are the nine NEDC labels then the three crystal labels,
in the order below; 13 is any label this palette does not know.
"""

from __future__ import annotations

import numpy as np

NEDC_LABELS: tuple[str, ...] = (
    "bckg", "norm", "null", "artf", "nneo", "infl", "susp", "dcis", "indc",
)  # fmt: skip
CRYSTAL_LABELS: tuple[str, ...] = ("cnno", "cdcs", "cidc")
CRYSTAL_PARENT: dict[str, str] = {"cnno": "nneo", "cdcs": "dcis", "cidc": "indc"}
LABELS: tuple[str, ...] = NEDC_LABELS + CRYSTAL_LABELS
UNKNOWN = "unknown"
UNKNOWN_INDEX = len(LABELS) + 1

MEANINGS: dict[str, str] = {
    "bckg": "background (stroma)",
    "norm": "normal ducts and lobules",
    "null": "indistinguishable tissue",
    "artf": "artifact",
    "nneo": "non-neoplastic",
    "infl": "inflammation",
    "susp": "suspicious",
    "dcis": "carcinoma in situ",
    "indc": "invasive carcinoma",
    "cnno": "crystalline non-neoplastic",
    "cdcs": "crystalline DCIS",
    "cidc": "crystalline invasive carcinoma",
}

# Colour-blind-aware choices; cancer classes warm, benign cool, crystal variants a lighter tint.
COLORS: dict[str, str] = {
    "bckg": "#9e9e9e",
    "norm": "#2ca02c",
    "null": "#bcbd22",
    "artf": "#8c564b",
    "nneo": "#1f77b4",
    "infl": "#9467bd",
    "susp": "#ff7f0e",
    "dcis": "#e377c2",
    "indc": "#d62728",
    "cnno": "#6fc3ff",
    "cdcs": "#ffb3e6",
    "cidc": "#ff8c8c",
    UNKNOWN: "#ffffff",
}


def class_index(label: str) -> int:
    """Palette index of ``label``: 1..12 for known labels, ``UNKNOWN_INDEX`` otherwise."""
    try:
        return LABELS.index(label) + 1
    except ValueError:
        return UNKNOWN_INDEX


def index_label(index: int) -> str:
    """Label of a palette index (``""`` for 0, ``"unknown"`` for anything unknown)."""
    if index == 0:
        return ""
    if 1 <= index <= len(LABELS):
        return LABELS[index - 1]
    return UNKNOWN


def rgba(label: str, alpha: float = 1.0) -> np.ndarray:
    """RGBA (floats in 0..1) of a label; unknown labels get the unknown colour."""
    hexa = COLORS.get(label, COLORS[UNKNOWN]).lstrip("#")
    rgb = [int(hexa[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    return np.array([*rgb, alpha], dtype=float)


def label_colormap(alpha: float = 0.5) -> dict[int | None, np.ndarray]:
    """``{index: rgba}`` for napari's ``DirectLabelColormap``: 0 transparent, every class coloured."""
    colors: dict[int | None, np.ndarray] = {0: np.zeros(4), None: np.zeros(4)}
    for i, label in enumerate(LABELS, start=1):
        colors[i] = rgba(label, alpha)
    colors[UNKNOWN_INDEX] = rgba(UNKNOWN, alpha)
    return colors


def label_order(labels) -> list[str]:
    """The distinct ``labels`` in palette order; labels the palette does not know last, sorted."""
    present = {str(label) for label in labels}
    return [lab for lab in LABELS if lab in present] + sorted(present - set(LABELS))


def count_by_class(labels) -> dict[str, int]:
    """Patches per label in palette order (:func:`label_order`)."""
    found, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    table = dict(zip(found.tolist(), counts.tolist(), strict=True))
    return {lab: int(table[lab]) for lab in label_order(table)}
