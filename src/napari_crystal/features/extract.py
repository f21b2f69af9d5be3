"""Feature rows of patches: each region read at a physical resolution, normalised, measured.

A `FeatureSpec` names the set and its settings (um per pixel, largest crop side, stain
normaliser); it is stored in feature datasets and model files, and `FeatureSpec.check_same`
refuses a model used with data made another way, naming both settings.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_crystal.errors import Cancelled, SlideError
from napari_crystal.features import sets
from napari_crystal.features.stain import StainError, StainNormaliser

FEATURE_SETS = ("mask", "texture", "colour", "morphology", "multiscale")
#: Bumped when a set's definition changes (datasets and models record it).
FEATURES_VERSION = 1
DEFAULT_MPP = 1.0
DEFAULT_MAX_SIDE = 512
READ_RULE = (
    "the patch box is read from the finest pyramid level not finer than needed "
    "(Slide.level_for_downsample of mpp / slide mpp) and resized (anti-aliased) to mpp, or "
    "block-averaged when mpp is within 2% of an integer multiple of the level's; a box "
    "over max_side pixels at mpp is cut to its central max_side x max_side part"
)


@dataclass(frozen=True)
class FeatureSpec:
    """How feature rows are made: set ``name``, resolution ``mpp`` (um per pixel), crop cap
    ``max_side`` and an optional stain normaliser applied before colour and texture."""

    name: str = "texture"
    mpp: float = DEFAULT_MPP
    max_side: int = DEFAULT_MAX_SIDE
    stain: StainNormaliser | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.name not in FEATURE_SETS:
            raise ValueError(f"unknown feature set {self.name!r}; expected one of {FEATURE_SETS}")
        if self.name == "mask":
            raise ValueError("the mask set is made by dataset.build_dataset, not a FeatureSpec")
        if not self.mpp > 0:
            raise ValueError(f"mpp must be positive, got {self.mpp}")
        if int(self.max_side) < sets.MIN_SIDE:
            raise ValueError(f"max_side must be at least {sets.MIN_SIDE}")

    @property
    def names(self) -> list[str]:
        return sets.SETS[self.name][0]()

    def settings(self) -> dict:
        """JSON description stored in datasets and models."""
        return {
            "feature_set": self.name,
            "mpp": float(self.mpp),
            "max_side": int(self.max_side),
            "features_version": FEATURES_VERSION,
            "stain": None if self.stain is None else self.stain.to_dict(),
            "read_rule": READ_RULE,
            "too_small_rule": sets.TOO_SMALL_RULE,
        }

    @classmethod
    def from_settings(cls, d: dict) -> FeatureSpec:
        return cls(
            str(d["feature_set"]), float(d["mpp"]), int(d["max_side"]),
            StainNormaliser.from_dict(d.get("stain")),
        )  # fmt: skip


def describe(settings: dict | None) -> str:
    """One-line description of a feature setting (``None`` = the mask baseline)."""
    if not settings or settings.get("feature_set", "mask") == "mask":
        size = (settings or {}).get("size")
        return "mask" + (f" ({size}x{size})" if size else "")
    stain = StainNormaliser.from_dict(settings.get("stain"))
    return (
        f"{settings['feature_set']} at {settings['mpp']:g} um/px, max side {settings['max_side']}, "
        f"stain {'none' if stain is None else stain.describe()}"
    )


def same_settings(a: dict | None, b: dict | None) -> bool:
    """Whether two feature settings make the same rows (set, resolution, cap, stain, version)."""
    a, b = a or {}, b or {}
    if a.get("feature_set", "mask") != b.get("feature_set", "mask"):
        return False
    if a.get("feature_set", "mask") == "mask":
        return True
    keys = ("mpp", "max_side", "features_version")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    sa, sb = StainNormaliser.from_dict(a.get("stain")), StainNormaliser.from_dict(b.get("stain"))
    return (sa is None and sb is None) or (
        sa is not None and sb is not None and sa.fingerprint() == sb.fingerprint()
    )


# --------------------------------------------------------------------------- reading


def region_crop(slide, top: int, left: int, height: int, width: int, polygon, mpp: float,
                max_side: int = DEFAULT_MAX_SIDE):  # fmt: skip
    """RGB crop of a level-0 box at ``mpp`` um per pixel, the polygon's pixels in it, and mpp.

    See `READ_RULE`. ``polygon`` (level-0 (N, 2) row/col) None means the whole box.
    """
    from napari_crystal.geometry import level_box, polygon_mask

    if not slide.mpp:
        raise SlideError(slide.path, "the slide has no pixel size (MPP): features need one")
    d = float(mpp) / float(slide.mpp)  # level-0 pixels per output pixel
    cap = max_side * d
    if height > cap:
        top, height = top + (height - cap) / 2, cap
    if width > cap:
        left, width = left + (width - cap) / 2, cap
    top, left = int(math.floor(top)), int(math.floor(left))
    out_h = max(1, int(round(height / d)))
    out_w = max(1, int(round(width / d)))
    level = slide.level_for_downsample(d)
    ds = float(slide.downsamples[level])
    lt, ll, lh, lw = level_box(top, left, out_h * d, out_w * d, ds)
    k = d / ds
    if abs(k - round(k)) <= 0.02 * k:  # an integer factor from a level: block means, fast
        k = int(round(k))
        rgb = np.asarray(slide.read_region(level, top, left, out_h * k, out_w * k))[..., :3]
        if k > 1:
            rgb = block_mean(rgb, k)
        d = k * ds
    else:
        rgb = np.asarray(slide.read_region(level, top, left, lh, lw))[..., :3]
    if rgb.shape[:2] != (out_h, out_w):
        from skimage.transform import resize

        rgb = resize(
            rgb, (out_h, out_w), order=1, preserve_range=True, anti_aliasing=ds < d
        ).astype(np.uint8)
    if polygon is None:
        inside = np.ones((out_h, out_w), dtype=bool)
    else:
        inside = polygon_mask(polygon, (out_h, out_w), top, left, d)
    return rgb, inside, float(d * slide.mpp)


def block_mean(rgb: np.ndarray, k: int) -> np.ndarray:
    """Mean of k x k blocks of a uint8 image (sides multiples of k), rounded half up."""
    acc = np.zeros((rgb.shape[0] // k, rgb.shape[1] // k, rgb.shape[2]), dtype=np.uint32)
    for i in range(k):
        for j in range(k):
            acc += rgb[i::k, j::k]
    return ((acc + k * k // 2) // (k * k)).astype(np.uint8)


#: The sets measured on the stain-normalised crop (morphology keeps the slide's own look).
STAIN_NORMALISED = ("texture", "colour", "multiscale")


def features_of_crop(spec: FeatureSpec, rgb: np.ndarray, inside: np.ndarray, um: float):
    """The feature vector of one crop (stain-normalised first when the spec says so).

    Raises `sets.TooSmall` or `StainError` for a crop that must be skipped.
    """
    sets.check_size(inside)
    if spec.stain is not None and spec.name in STAIN_NORMALISED:
        rgb = spec.stain.apply(rgb)
    return sets.SETS[spec.name][1](rgb, inside, um)


@dataclass
class Skipped:
    """Patches left out (NaN rows) and why, by reason."""

    too_small: int = 0
    no_stain: int = 0

    @property
    def total(self) -> int:
        return self.too_small + self.no_stain

    def add(self, other: Skipped) -> None:
        self.too_small += other.too_small
        self.no_stain += other.no_stain

    def to_dict(self) -> dict:
        return {"too_small": self.too_small, "no_stain": self.no_stain}


def feature_rows(
    slide,
    boxes: np.ndarray,
    polygons: Sequence,
    spec: FeatureSpec,
    cancel: threading.Event | None = None,
    tick: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, Skipped]:
    """float32 (n, F) rows for level-0 boxes (n, 4: top, left, height, width) of an open slide.

    ``polygons[i]`` restricts row ``i`` to a region (None: the whole box). Skipped patches
    (`sets.TOO_SMALL_RULE`, stains not estimable) are NaN rows, counted in `Skipped`.
    """
    return feature_rows_of_sets(slide, boxes, polygons, [spec], cancel, tick)[0]


def feature_rows_of_sets(
    slide,
    boxes: np.ndarray,
    polygons: Sequence,
    specs: Sequence[FeatureSpec],
    cancel: threading.Event | None = None,
    tick: Callable[[int], None] | None = None,
) -> list[tuple[np.ndarray, Skipped]]:
    """`feature_rows` of several sets read the same way (resolution, crop cap, stain), from
    one read of each patch: ``[(rows, skipped)]`` in the order of ``specs``, each the same as
    that set alone would give."""
    if not specs:
        return []
    read = {(s.mpp, s.max_side, None if s.stain is None else s.stain.fingerprint()) for s in specs}
    if len(read) > 1:
        raise ValueError("feature sets read together must share mpp, max_side and stain")
    with one_blas_thread():
        return _feature_rows(slide, boxes, polygons, list(specs), cancel, tick)


def one_blas_thread():
    """BLAS on one thread: many tiny solves (Macenko) are 5x slower with threads spinning, and
    patches are already spread over cores by dask."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _feature_rows(slide, boxes, polygons, specs, cancel, tick):
    boxes = np.asarray(boxes).reshape(-1, 4)
    outs = [np.full((len(boxes), len(s.names)), np.nan, dtype=np.float32) for s in specs]
    skipped = [Skipped() for _ in specs]
    mpp, max_side, stain = specs[0].mpp, specs[0].max_side, specs[0].stain
    stain_sets = [stain is not None and s.name in STAIN_NORMALISED for s in specs]
    for i, (top, left, h, w) in enumerate(boxes):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        rgb, inside, um = region_crop(slide, top, left, h, w, polygons[i], mpp, max_side)
        try:
            sets.check_size(inside)
        except sets.TooSmall:
            for sk in skipped:
                sk.too_small += 1
        else:
            normalised = _normalised(stain, rgb) if any(stain_sets) else None
            for spec, stained, out, sk in zip(specs, stain_sets, outs, skipped, strict=True):
                if stained and normalised is None:
                    sk.no_stain += 1
                else:
                    out[i] = sets.SETS[spec.name][1](normalised if stained else rgb, inside, um)
        if tick is not None:
            tick(i + 1)
    return list(zip(outs, skipped, strict=True))


def _normalised(stain: StainNormaliser, rgb: np.ndarray) -> np.ndarray | None:
    """The crop in the reference's stains, or None when its own stains cannot be estimated."""
    try:
        return stain.apply(rgb)
    except StainError:
        return None
