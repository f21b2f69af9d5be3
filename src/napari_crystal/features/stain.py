"""Stain normalisation (Macenko, Reinhard) through torchstain's numpy backend.

A normaliser is fitted once on a reference (an RGB region, or a slide's tissue at a coarse
level), kept as a small JSON-able dict in datasets and model files, and applied to every crop
before colour and texture features, so prediction transforms pixels exactly as training did.
Vahadane is not offered: no maintained numpy implementation exists (staintools needs SPAMS
and is unmaintained since 2019).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

METHODS = ("macenko", "reinhard")
#: torchstain's Macenko defaults: transmitted light, angle percentile, OD threshold.
IO, ALPHA, BETA = 240, 1, 0.15
#: Fewer stained pixels than this in a crop: its own stains cannot be estimated.
MIN_STAINED = 64


class StainError(ValueError):
    """The stains of an image cannot be estimated (too little tissue)."""


def _stained(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 pixels whose optical density is at least `BETA` in every channel."""
    px = np.asarray(rgb)[..., :3].reshape(-1, 3)
    od = -np.log((px.astype(np.float64) + 1) / IO)
    return px[~np.any(od < BETA, axis=1)]


@dataclass(frozen=True)
class StainNormaliser:
    """A fitted normaliser: ``method`` and its reference parameters, ``reference`` its source.

    Macenko: ``stain_matrix`` (3 x 2, H and E optical-density unit columns) and
    ``max_concentrations`` (99th percentiles); Reinhard: LAB ``means`` and ``stds``.
    """

    method: str
    params: dict = field(default_factory=dict)
    reference: str = ""

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params, "reference": self.reference}

    @classmethod
    def from_dict(cls, d: dict | None) -> StainNormaliser | None:
        if not d:
            return None
        return cls(str(d["method"]), dict(d.get("params") or {}), str(d.get("reference", "")))

    def fingerprint(self) -> str:
        """Short hash of method and parameters (rounded): equal for the same reference."""
        rounded = {
            k: np.round(np.asarray(v, dtype=float), 6).tolist() for k, v in self.params.items()
        }
        text = json.dumps([self.method, rounded], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> str:
        where = f" from {self.reference}" if self.reference else ""
        return f"{self.method} ({self.fingerprint()}{where})"

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The crop with the reference's stain appearance (uint8); `StainError` when the
        crop's own stains cannot be estimated (Macenko on too few stained pixels)."""
        rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
        if self.method == "macenko":
            from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

            if len(_stained(rgb)) < MIN_STAINED:
                raise StainError(f"under {MIN_STAINED} stained pixels")
            norm = NumpyMacenkoNormalizer()
            norm.HERef = np.asarray(self.params["stain_matrix"], dtype=np.float64)
            norm.maxCRef = np.asarray(self.params["max_concentrations"], dtype=np.float64)
            try:
                with np.errstate(all="ignore"):
                    out, _, _ = norm.normalize(rgb, Io=IO, alpha=ALPHA, beta=BETA, stains=False)
            except np.linalg.LinAlgError as exc:
                raise StainError(f"stain estimate failed: {exc}") from None
            return out
        if self.method == "reinhard":
            from torchstain.numpy.normalizers import NumpyReinhardNormalizer

            norm = NumpyReinhardNormalizer()
            norm.target_means = np.asarray(self.params["means"], dtype=np.float32)
            norm.target_stds = np.asarray(self.params["stds"], dtype=np.float32)
            with np.errstate(all="ignore"):
                out = norm.normalize(rgb)
            return out
        raise ValueError(f"unknown stain method {self.method!r}; expected one of {METHODS}")


def fit_stain(method: str, rgb: np.ndarray, reference: str = "") -> StainNormaliser:
    """Fit ``method`` on the stained pixels of an RGB reference image."""
    if method not in METHODS:
        raise ValueError(f"unknown stain method {method!r}; expected one of {METHODS}")
    stained = _stained(rgb)
    if len(stained) < MIN_STAINED:
        raise StainError(f"the reference has under {MIN_STAINED} stained pixels")
    pixels = stained.reshape(-1, 1, 3)
    if method == "macenko":
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

        norm = NumpyMacenkoNormalizer()
        norm.fit(pixels, Io=IO, alpha=ALPHA, beta=BETA)
        params = {
            "stain_matrix": np.asarray(norm.HERef, dtype=float).tolist(),
            "max_concentrations": np.asarray(norm.maxCRef, dtype=float).tolist(),
        }
    else:
        from torchstain.numpy.normalizers import NumpyReinhardNormalizer

        norm = NumpyReinhardNormalizer()
        norm.fit(pixels)
        params = {
            "means": np.asarray(norm.target_means, dtype=float).tolist(),
            "stds": np.asarray(norm.target_stds, dtype=float).tolist(),
        }
    return StainNormaliser(method, params, str(reference))


def fit_stain_on_slide(
    method: str, slide_path, box: tuple[int, int, int, int] | None = None, max_side: int = 2048
) -> StainNormaliser:
    """Fit on a slide: the level-0 ``box`` (top, left, height, width), else the whole slide,
    read at the finest level that fits ``max_side`` pixels (white background is ignored)."""
    from napari_crystal.errors import SlideError
    from napari_crystal.io.slide import open_slide

    with open_slide(slide_path) as slide:
        top, left, h, w = box if box is not None else (0, 0, *slide.shape)
        level = slide.level_for_downsample(max(h, w) / max_side)
        ds = slide.downsamples[level]
        rgb = slide.read_region(level, top, left, max(1, int(h / ds)), max(1, int(w / ds)))
        where = f"{slide_path}" + (f" [{top},{left} {h}x{w}]" if box is not None else "")
        try:
            return fit_stain(method, rgb, reference=where)
        except StainError as exc:
            raise SlideError(
                slide_path, f"cannot fit {method} stain normalisation: {exc}"
            ) from None
