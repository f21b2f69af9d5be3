"""Whole-slide probability maps: a model run over the tissue frames of a slide, streamed.

Frames tile level 0 with step ``frame``; each is classified from the ``window`` centred on it
(NEDC's 128/256, the student tools' 250/500). Only frames whose window holds tissue are read.
Frames go in chunks of whole frame rows: one strip read per chunk, features, prediction, then
the rows are written out, so memory is flat in slide size (only the small frame grid of
probabilities stays). Outputs in ``out``: ``frames.csv`` (class and probabilities per
frame), ``tiles.geojson`` (QuPath FeatureCollection of tiles with class and measurements),
``prob-<class>.tif`` (pyramidal, one pixel per frame) and ``classes.tif`` (class index).
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_crystal import palette
from napari_crystal._atomic import atomic_path
from napari_crystal.errors import Cancelled, ModelError, SlideError
from napari_crystal.features import sets
from napari_crystal.geometry import level_box

PRESETS = {"nedc": (128, 256), "student": (250, 500)}
#: A frame is predicted when at least this share of its window is tissue.
MIN_TISSUE = 0.25
Progress = Callable[[int, int], None] | None
#: Pixels of the windows measured together (texture's co-occurrence counts take ~100 bytes
#: per pixel: ~25 MB a batch).
WINDOW_PIXELS = 2**18


@dataclass
class SlideMap:
    """Where a slide's maps were written and what they cover."""

    out: Path
    slide: str
    frame: int
    window: int
    grid: tuple[int, int]
    classes: tuple[str, ...]
    n_frames: int
    n_tissue: int
    skipped: int
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("slide", "frame", "window", "n_frames", "n_tissue",
                                           "skipped", "seconds")}  # fmt: skip
        return {**d, "grid": list(self.grid), "classes": list(self.classes),
                "files": {k: str(v) for k, v in self.files.items()}}  # fmt: skip


# --------------------------------------------------------------------------- settings


def model_frames(model, frame: int | None, window: int | None) -> tuple[int, int]:
    """The frame/window to use: the model's own when it was trained on frames (anything else
    is refused, naming both), else the given sizes, else NEDC's 128/256."""
    meta = model.meta or {}
    trained = (meta.get("frame"), meta.get("window"))
    if trained[0] is not None:
        want = (frame or trained[0], window or trained[1])
        if tuple(want) != tuple(trained):
            raise ModelError(
                model.path,
                f"frames of {want[0]}/{want[1]} px (frame/window) asked, but the model was "
                f"trained on {trained[0]}/{trained[1]} px frames",
            )
        return int(trained[0]), int(trained[1])
    frame = int(frame or PRESETS["nedc"][0])
    window = int(window or (2 * frame if frame != PRESETS["student"][0] else 500))
    if frame <= 0 or window < frame:
        raise ValueError(f"need 0 < frame <= window, got frame={frame}, window={window}")
    return frame, window


def check_stain(model, stain_reference) -> None:
    """Refuse a stain reference other than the model's (both named)."""
    from napari_crystal.features.stain import StainNormaliser

    if stain_reference is None:
        return
    mine = StainNormaliser.from_dict(((model.meta or {}).get("features") or {}).get("stain"))
    other = (
        StainNormaliser.from_dict(stain_reference)
        if isinstance(stain_reference, dict)
        else stain_reference
    )
    if mine is None or other is None or mine.fingerprint() != other.fingerprint():
        raise ModelError(
            model.path,
            f"stain reference {other.describe() if other else 'none'} given, but the model was "
            f"trained with {mine.describe() if mine else 'no stain normalisation'}",
        )


# --------------------------------------------------------------------------- tissue


def tissue_fraction(slide, frame: int, window: int) -> np.ndarray:
    """Share of tissue (`tissue.tissue_mask`) in every frame's window, (n_rows, n_cols).

    The mask's thumbnail has about two pixels per frame side (1,024 to 4,096 on the longer
    side); a slide without tissue raises `SlideError` naming it.
    """
    from napari_crystal.geometry import frame_grid
    from napari_crystal.tissue import tissue_mask

    n_rows, n_cols, margin = frame_grid(slide.shape, frame, window)
    longest = max(slide.shape)
    tissue = tissue_mask(slide, max_side=int(min(4096, max(1024, 2 * longest // frame))))
    rr = np.arange(n_rows, dtype=np.float64)[:, None] * frame - margin
    cc = np.arange(n_cols, dtype=np.float64)[None, :] * frame - margin
    return tissue.box_fraction(rr, cc, window, window).astype(np.float32)


# --------------------------------------------------------------------------- rows


class _Rows:
    """Feature rows of windows cut from one strip read per chunk of frame rows.

    Without stain normalisation all windows of a strip are measured at once (``batched``);
    with it, or with ``batched`` False (the benchmarks' baseline), one window at a time.
    """

    batched = True

    def __init__(self, slide, model, frame: int, window: int):
        self.slide, self.model, self.frame, self.window = slide, model, frame, window
        meta = model.meta or {}
        self.settings = meta.get("features")
        if self.settings:
            from napari_crystal.features.extract import FeatureSpec

            self.spec = FeatureSpec.from_settings(self.settings)
            self.width = len(meta["feature_names"])
        else:
            from napari_crystal.patches import choose_level

            self.size = int(model.size)
            self.channel = meta.get("channel") or "grey"
            if (model.method or "threshold") != "threshold":
                raise ModelError(
                    model.path, "a polygon-mask model needs regions; whole-slide maps need "
                    "threshold masks or a feature set",
                )  # fmt: skip
            self.level = choose_level(slide.downsamples, window, window, self.size)
            self.width = self.size * self.size

    def rows(self, tops: np.ndarray, lefts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows float32 (k, F), ok bool (k,)) for windows at level-0 ``tops``/``lefts``."""
        if len(tops) == 0:
            return np.zeros((0, self.width), np.float32), np.zeros(0, bool)
        from napari_crystal.features.extract import one_blas_thread

        with one_blas_thread():
            if self.settings:
                return self._features(tops, lefts)
            return self._masks(tops, lefts)

    def _strip(self, level: int, tops, lefts, ds: float):
        top, left = tops.min(), lefts.min()
        bottom, right = tops.max() + self.window, lefts.max() + self.window
        t0, l0, h, w = level_box(top, left, bottom - top, right - left, ds)
        return self.slide.read_region(level, t0 * ds, l0 * ds, h, w), t0, l0

    def _masks(self, tops, lefts):
        from napari_crystal.masks import resize_mask, threshold_mask

        ds = float(self.slide.downsamples[self.level])
        strip, t0, l0 = self._strip(self.level, tops, lefts, ds)
        out = np.empty((len(tops), self.width), dtype=np.float32)
        for i, (top, left) in enumerate(zip(tops, lefts, strict=True)):
            r0, c0, h, w = level_box(top, left, self.window, self.window, ds)
            crop = strip[r0 - t0 : r0 - t0 + h, c0 - l0 : c0 - l0 + w]
            mask = threshold_mask(crop, np.ones(crop.shape[:2], bool), self.channel)
            out[i] = resize_mask(mask, self.size).reshape(-1)
        return out, np.ones(len(tops), dtype=bool)

    def _features(self, tops, lefts):
        from napari_crystal.features.extract import features_of_crop, region_crop
        from napari_crystal.features.sets import TooSmall
        from napari_crystal.features.stain import StainError

        spec = self.spec
        top0, left0 = int(tops.min()), int(lefts.min())
        h = int(tops.max()) + self.window - top0
        w = int(lefts.max()) + self.window - left0
        strip, _, um = region_crop(self.slide, top0, left0, h, w, None, spec.mpp, max(h, w) + 1)
        d = um / float(self.slide.mpp)
        side = max(1, int(round(self.window / d)))
        if self.batched and spec.stain is None and side >= sets.MIN_SIDE:
            rows, cols = (tops - top0) / d, (lefts - left0) / d
            if spec.name == "colour":
                return self._colour_batch(strip, rows, cols, side)
            return self._window_batch(strip, rows, cols, side, um)
        out = np.full((len(tops), self.width), np.nan, dtype=np.float32)
        ok = np.zeros(len(tops), dtype=bool)
        inside = np.ones((side, side), dtype=bool)
        for i, (top, left) in enumerate(zip(tops, lefts, strict=True)):
            r, c = int(round((top - top0) / d)), int(round((left - left0) / d))
            crop = strip[r : r + side, c : c + side]
            if crop.shape[:2] != (side, side):
                crop = np.pad(crop, ((0, side - crop.shape[0]), (0, side - crop.shape[1]), (0, 0)),
                              constant_values=255)  # fmt: skip
            try:
                out[i] = features_of_crop(spec, crop, inside, um)
                ok[i] = True
            except (TooSmall, StainError):
                pass
        return out, ok

    def _window_batch(self, strip, rows, cols, side, um):
        """Texture, morphology or multiscale rows of all windows of a strip: the set's channel
        of the strip once, then `sets.WINDOWS` on stacks of windows, `WINDOW_PIXELS` at a time
        (the same numbers as one window at a time, tested)."""
        channel, of_windows = sets.WINDOWS[self.spec.name]
        # windows sticking out of the strip see white, as crops are padded
        image = channel(np.pad(strip, ((0, side), (0, side), (0, 0)), constant_values=255))
        r = np.round(rows).astype(np.intp)
        c = np.round(cols).astype(np.intp)
        steps = np.arange(side)
        out = np.empty((len(r), self.width), dtype=np.float32)
        batch = max(1, WINDOW_PIXELS // (side * side))
        for a in range(0, len(r), batch):
            rr = (r[a : a + batch, None] + steps)[:, :, None]
            cc = (c[a : a + batch, None] + steps)[:, None, :]
            out[a : a + batch] = of_windows(image[rr, cc], um)
        return out, np.ones(len(r), dtype=bool)

    def _colour_batch(self, strip, rows, cols, side):
        """Colour features of all windows of a strip at once (no per-window Python work)."""
        stains = sets.hed(strip)
        white = sets.hed(np.full((1, 1, 3), 255, np.uint8))[0, 0]
        padded = np.empty((stains.shape[0] + side, stains.shape[1] + side, 3), np.float32)
        padded[...] = white  # windows sticking out of the strip see white, as crops are padded
        padded[: stains.shape[0], : stains.shape[1]] = stains
        r = np.round(rows).astype(np.intp)
        c = np.round(cols).astype(np.intp)
        cell = math.gcd(side, *np.unique(r).tolist(), *np.unique(c).tolist())
        if cell >= 4 and len(r) > 1:  # windows are whole blocks: sum the blocks' statistics
            n_r, n_c = (int(r.max()) + side) // cell, (int(c.max()) + side) // cell
            sums = sets.colour_sums(padded[: n_r * cell, : n_c * cell], cell)
            k = side // cell
            acc = np.zeros((len(r), *sums.shape[2:]))
            for i in range(k):
                for j in range(k):
                    acc += sums[r // cell + i, c // cell + j]
            rows_ = sets.colour_from_sums(acc, side * side).astype(np.float32)
            return rows_, np.ones(len(r), dtype=bool)
        steps = np.arange(side)
        out = np.empty((len(r), self.width), dtype=np.float32)
        batch = max(1, 2_000_000 // (side * side))
        for a in range(0, len(r), batch):
            rr = (r[a : a + batch, None] + steps)[:, :, None]
            cc = (c[a : a + batch, None] + steps)[:, None, :]
            windows = padded[rr, cc].reshape(len(rr), side * side, 3)
            out[a : a + batch] = sets.colour_batch(windows)
        return out, np.ones(len(r), dtype=bool)


# --------------------------------------------------------------------------- writers


def _write_csv_rows(fh, rr, cc, n_cols, frame, tissue, cls, proba, classes) -> None:
    """Append one CSV line per frame (probabilities blank for a skipped frame)."""
    import pandas as pd

    cols = {
        "frame": rr * n_cols + cc, "grid_row": rr, "grid_col": cc, "top": rr * frame,
        "left": cc * frame, "height": frame, "width": frame, "tissue": np.round(tissue, 3),
        "class": cls,
    }  # fmt: skip
    for k, c in enumerate(classes):
        cols[f"p_{c}"] = proba[:, k]
    pd.DataFrame(cols).to_csv(fh, header=False, index=False, float_format="%.4f")


def _geojson_rows(tops, lefts, frame, cls, proba, classes, tissue) -> str:
    """QuPath tile features (``objectType`` tile, classification with colour, measurements)
    for a chunk of frames, as comma-separated JSON objects."""
    colours = {}
    for c in set(cls.tolist()):
        rgb = palette.rgba(c)[:3] if c in palette.LABELS else np.array([0.5, 0.5, 0.5])
        colours[c] = json.dumps({"name": c, "color": [int(round(255 * v)) for v in rgb]})
    names = [json.dumps(f"p_{c}") for c in classes]
    out = []
    for i in range(len(tops)):
        y0, x0 = int(tops[i]), int(lefts[i])
        y1, x1 = y0 + frame, x0 + frame
        meas = ", ".join(f"{n}: {p:.4f}" for n, p in zip(names, proba[i].tolist(), strict=True))
        out.append(
            '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
            f"[[[{x0}, {y0}], [{x1}, {y0}], [{x1}, {y1}], [{x0}, {y1}], [{x0}, {y0}]]]}}, "
            f'"properties": {{"objectType": "tile", "classification": {colours[cls[i]]}, '
            f'"measurements": {{{meas}, "tissue": {float(tissue[i]):.3f}}}}}}}'
        )
    return ",\n".join(out)


def write_probability_tiff(path, image: np.ndarray, um_per_px: float | None, min_side: int = 64):
    """A pyramidal single-channel uint8 TIFF (sub-IFDs halving until ``min_side``), atomic."""
    import tifffile

    levels = [np.ascontiguousarray(image)]
    while max(levels[-1].shape) > min_side and min(levels[-1].shape) >= 2:
        levels.append(levels[-1][::2, ::2].copy())
    res = {}
    if um_per_px:
        res = {"resolution": (1e4 / um_per_px, 1e4 / um_per_px), "resolutionunit": "CENTIMETER"}
    tile = (256, 256) if min(image.shape) >= 256 else None
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp) as tw:
            tw.write(levels[0], subifds=len(levels) - 1, photometric="minisblack", tile=tile,
                     compression="zlib", metadata=None, **res)  # fmt: skip
            for k, lvl in enumerate(levels[1:], start=1):
                tw.write(lvl, subfiletype=1, photometric="minisblack", compression="zlib",
                         tile=(256, 256) if min(lvl.shape) >= 256 else None, metadata=None,
                         **({"resolution": (1e4 / (um_per_px * 2**k),) * 2,
                             "resolutionunit": "CENTIMETER"} if um_per_px else {}))  # fmt: skip
    return Path(path)


def read_probability_tiff(path) -> list[np.ndarray]:
    """The levels of a `write_probability_tiff` file, finest first."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return [level.asarray() for level in tif.series[0].levels]


# --------------------------------------------------------------------------- the run


def predict_slide_map(
    slide_path,
    model,
    out,
    *,
    frame: int | None = None,
    window: int | None = None,
    min_tissue: float = MIN_TISSUE,
    stain_reference=None,
    chunk: int = 2048,
    n_jobs: int | None = None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> SlideMap:
    """Predict every tissue frame of a slide and write its maps into ``out`` (see module doc).

    ``model`` is a `training.Model` or a model file. A slide with no tissue frame raises
    `SlideError` before anything is written.
    """
    import joblib

    from napari_crystal.geometry import frame_grid
    from napari_crystal.io.slide import open_slide
    from napari_crystal.training import load_model

    started = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    frame, window = model_frames(model, frame, window)
    check_stain(model, stain_reference)
    out = Path(out)
    classes = tuple(model.classes)
    with open_slide(slide_path) as slide:
        n_rows, n_cols, margin = frame_grid(slide.shape, frame, window)
        tissue = tissue_fraction(slide, frame, window)
        keep = tissue >= min_tissue
        n_tissue = int(keep.sum())
        if n_tissue == 0:
            raise SlideError(
                slide_path,
                f"no tissue found (no {frame}/{window} px frame has {100 * min_tissue:g}% tissue "
                "in its window): nothing to predict, nothing written",
            )
        rows_fn = _Rows(slide, model, frame, window)
        out.mkdir(parents=True, exist_ok=True)
        grid = np.full((n_rows, n_cols, len(classes)), np.nan, dtype=np.float32)
        done = skipped = 0
        if progress is not None:
            progress(0, n_tissue)
        csv_path, geo_path = out / "frames.csv", out / "tiles.geojson"
        with atomic_path(csv_path) as csv_tmp, atomic_path(geo_path) as geo_tmp, \
                open(csv_tmp, "w", newline="") as fcsv, open(geo_tmp, "w") as fgeo, \
                joblib.parallel_config(n_jobs=n_jobs) if n_jobs is not None else _null():  # fmt: skip
            csv.writer(fcsv).writerow(["frame", "grid_row", "grid_col", "top", "left", "height",
                                       "width", "tissue", "class", *[f"p_{c}" for c in classes]])  # fmt: skip
            fgeo.write('{"type": "FeatureCollection", "features": [\n')
            first = True
            per_row = max(1, n_cols)
            step = max(1, chunk // per_row)
            for r0 in range(0, n_rows, step):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("prediction cancelled")
                rr, cc = np.nonzero(keep[r0 : r0 + step])
                if len(rr) == 0:
                    continue
                rr = rr + r0
                tops, lefts = rr * frame - margin, cc * frame - margin
                X, ok = rows_fn.rows(tops, lefts)
                proba = np.full((len(rr), len(classes)), np.nan, dtype=np.float32)
                if ok.any():
                    proba[ok] = model.estimator.predict_proba(X[ok])
                skipped += int((~ok).sum())
                grid[rr, cc] = proba
                best = np.where(ok, np.argmax(np.nan_to_num(proba, nan=-1), axis=1), -1)
                t = tissue[rr, cc]
                cls = np.where(best >= 0, np.asarray(classes)[np.maximum(best, 0)], "skipped")
                _write_csv_rows(fcsv, rr, cc, n_cols, frame, t, cls, proba, classes)
                text = _geojson_rows(rr[ok] * frame, cc[ok] * frame, frame, cls[ok], proba[ok],
                                     classes, t[ok])  # fmt: skip
                if text:
                    fgeo.write(("" if first else ",\n") + text)
                    first = False
                done += len(rr)
                if progress is not None:
                    progress(done, n_tissue)
            fgeo.write("\n]}\n")
        files = {"csv": csv_path, "geojson": geo_path}
        um = float(slide.mpp) * frame if slide.mpp else None
        for k, c in enumerate(classes):
            img = np.nan_to_num(grid[..., k], nan=0.0)
            files[f"prob {c}"] = write_probability_tiff(
                out / f"prob-{c}.tif", np.round(img * 255).astype(np.uint8), um
            )
        lut = np.array([palette.class_index(c) for c in classes], dtype=np.uint8)
        filled = ~np.isnan(grid).any(axis=2)
        cls_img = np.zeros((n_rows, n_cols), dtype=np.uint8)
        cls_img[filled] = lut[np.argmax(grid[filled], axis=1)]
        files["classes"] = write_probability_tiff(out / "classes.tif", cls_img, um)
        result = SlideMap(
            out, str(slide_path), frame, window, (n_rows, n_cols), classes, n_rows * n_cols,
            n_tissue, skipped, round(time.perf_counter() - started, 3), files,
        )  # fmt: skip
    from napari_crystal._atomic import atomic_write

    files["summary"] = out / "summary.json"
    atomic_write(files["summary"], (json.dumps(result.to_dict(), indent=1) + "\n").encode())
    return result


def _null():
    from contextlib import nullcontext

    return nullcontext()


@dataclass
class LoadedMap:
    """A written slide map read back for display: per-class probability pyramids (uint8,
    255 = 1), the class-index image, and where frame cell (0, 0) sits on level 0."""

    classes: tuple[str, ...]
    frame: int
    probabilities: dict[str, list[np.ndarray]]
    class_map: np.ndarray
    summary: dict

    @property
    def transform(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``(scale, translate)`` putting one pixel per frame over the frame's level-0 pixels."""
        from napari_crystal.geometry import raster_transform

        return raster_transform(float(self.frame))

    def values_at(self, row: float, col: float) -> dict[str, float] | None:
        """Class probabilities of the frame under level-0 (row, col); None off the tissue."""
        r, c = int(row // self.frame), int(col // self.frame)
        if not (0 <= r < self.class_map.shape[0] and 0 <= c < self.class_map.shape[1]):
            return None
        if self.class_map[r, c] == 0:
            return None
        return {k: float(v[0][r, c]) / 255 for k, v in self.probabilities.items()}


def load_slide_map(out) -> LoadedMap:
    """Read the maps `predict_slide_map` wrote into ``out``."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    classes = tuple(summary["classes"])
    probs = {c: read_probability_tiff(out / f"prob-{c}.tif") for c in classes}
    class_map = read_probability_tiff(out / "classes.tif")[0]
    return LoadedMap(classes, int(summary["frame"]), probs, class_map, summary)


def _map_task(slide, model_path, out, frame, window, min_tissue, stain_reference, cancel):
    """Dask task: one slide's maps (the model is loaded in the task: workers get a path)."""
    from napari_crystal.training import load_model

    model = load_model(model_path)
    return predict_slide_map(
        slide, model, out, frame=frame, window=window, min_tissue=min_tissue,
        stain_reference=stain_reference, n_jobs=1, cancel=cancel,
    ).to_dict()  # fmt: skip


def predict_slide_maps(
    slides,
    model_path,
    out,
    *,
    frame: int | None = None,
    window: int | None = None,
    min_tissue: float = MIN_TISSUE,
    stain_reference=None,
    scheduler=None,
    progress: Progress = None,
    cancel: threading.Event | None = None,
) -> list[dict]:
    """Maps of many slides, one dask task per slide (`parallel.run_tasks` ``scheduler``), each
    into ``out/<slide stem>/``. Every slide and the model are checked before any work."""
    from napari_crystal.io.slide import open_slide
    from napari_crystal.parallel import run_tasks, scheduler_kind
    from napari_crystal.training import load_model

    slides = [Path(s) for s in slides]
    stems = [s.stem for s in slides]
    if len(set(stems)) != len(stems):
        raise ValueError("two slides share a file stem: their maps would share a folder")
    model = load_model(model_path)
    f, w = model_frames(model, frame, window)
    check_stain(model, stain_reference)
    for s in slides:  # a slide without tissue stops the run before any map is written
        with open_slide(s) as opened:
            if not (tissue_fraction(opened, f, w) >= min_tissue).any():
                raise SlideError(s, f"no tissue found in any {f}/{w} px frame: nothing written")
    local = scheduler_kind(scheduler) in ("threads", "sync")
    calls = [
        (str(s), str(model_path), str(Path(out) / s.stem), frame, window, min_tissue,
         stain_reference, cancel if local else None)
        for s in slides
    ]  # fmt: skip
    done = [0]

    def on_done(i: int) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], len(slides))

    if progress is not None:
        progress(0, len(slides))
    return run_tasks(_map_task, calls, scheduler, on_done, cancel)
