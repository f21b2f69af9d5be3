"""Lazy whole-slide access: every format OpenSlide reads, SVS and pyramidal TIFF through tifffile.

A slide is a list of lazy (rows, cols, 3) uint8 arrays, level 0 first. Aperio SVS and generic
pyramidal TIFF go through tifffile + zarr (faster, see ``benchmarks/bench_slide.py``); NDPI,
MRXS, SCN, BIF, Philips TIFF, DICOM folders and the rest through OpenSlide (``openslide-bin``
wheels). Opening reads tags and decodes one tile of the coarsest level (to fail early on bad
files), never a whole level.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_crystal.errors import SlideError

# The one list of slide suffixes (readers, CLI, dataset building): OpenSlide's formats
# (https://openslide.org/formats/) and the TIFF variants tifffile reads.
SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".btf", ".tf8", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif",
    ".svslide", ".czi", ".dcm",
)  # fmt: skip
# Extensions no other reader wants: a broken file with one of these is ours to report.
SLIDE_ONLY_SUFFIXES = (".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide")
# OpenSlide vendors that tifffile reads faster (same pixels): these stay on the tifffile path.
TIFFFILE_VENDORS = ("aperio", "generic-tiff")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NOT_LEVELS = ("thumbnail", "label", "macro", "overview")
_MPP_RE = re.compile(r"\|\s*MPP\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


@dataclass
class Slide:
    """An open slide: lazy ``levels`` (level 0 first), their ``downsamples``, pixel size ``mpp`` (µm).

    ``read_region`` takes level-0 ``top``/``left`` (like OpenSlide) and a size in pixels of the
    requested level, so callers keep level-0 coordinates everywhere.
    """

    path: Path
    levels: list
    downsamples: list[float]
    mpp: float | None
    backend: str = "tifffile"
    vendor: str | None = None  # OpenSlide's name for the format: aperio, hamamatsu, mirax...
    objective_power: float | None = None  # scanning magnification, e.g. 20 or 40
    _tiles: list | None = field(default=None, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 (rows, cols)."""
        return tuple(int(n) for n in self.levels[0].shape[:2])

    @property
    def level_count(self) -> int:
        return len(self.levels)

    def level_shape(self, level: int) -> tuple[int, int]:
        """(rows, cols) of a level."""
        return tuple(int(n) for n in self.levels[level].shape[:2])

    def level_for_downsample(self, downsample: float) -> int:
        """The finest level whose downsample does not exceed ``downsample`` (OpenSlide's rule)."""
        best = 0
        for i, ds in enumerate(self.downsamples):
            if ds <= downsample * (1 + 1e-6):
                best = i
        return best

    def read_region(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """(height, width, 3) uint8 from ``level``; ``top``/``left`` in level-0 pixels.

        Parts outside the slide are white, so edge regions keep their requested size.
        """
        if not 0 <= level < len(self.levels):
            raise SlideError(
                self.path, f"level {level} does not exist ({len(self.levels)} levels)"
            )
        height, width = int(height), int(width)
        if height < 0 or width < 0:
            raise ValueError(f"negative region size {height}x{width}")
        ds = self.downsamples[level]
        top_l = int(math.floor(top / ds)) if level else int(top)
        left_l = int(math.floor(left / ds)) if level else int(left)
        rows, cols = self.level_shape(level)
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        r0, r1 = max(top_l, 0), min(top_l + height, rows)
        c0, c1 = max(left_l, 0), min(left_l + width, cols)
        if r1 <= r0 or c1 <= c0:
            return out
        try:
            if self._tiles is not None and self._tiles[level] is not None:
                data = self._tiles[level].read(r0, r1, c0, c1)
            else:
                data = np.asarray(self.levels[level][r0:r1, c0:c1])
        except SlideError:
            raise
        except Exception as exc:  # codec and I/O errors from deep inside tifffile/zarr
            raise SlideError(
                self.path, f"cannot read level {level} tiles: {_one_line(exc)}"
            ) from exc
        out[r0 - top_l : r1 - top_l, c0 - left_l : c1 - left_l] = data
        return out

    def close(self) -> None:
        """Release the file handles."""
        while self._closers:
            try:
                self._closers.pop()()
            except Exception:  # noqa: BLE001 - closing must not raise
                pass

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _snap(downsample: float) -> float:
    """A downsample within 1% of an integer is that integer: levels made by flooring
    ``rows / 4`` are exactly 4x coarser, and level-0 coordinates must map onto them exactly."""
    nearest = round(downsample)
    return (
        float(nearest)
        if nearest and abs(downsample - nearest) <= 0.01 * downsample
        else downsample
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _has_tiff_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def is_slide(path) -> bool:
    """Fast sniff: a tiled or pyramidal RGB TIFF (SVS, NDPI, OME...) or an OpenSlide format.

    A plain (striped, single-level) TIFF is not a slide, so napari's other readers get it.
    """
    path = Path(path)
    if path.is_dir():
        return _dicom_file(path) is not None
    if not path.is_file():
        return False
    if _has_tiff_magic(path):
        try:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if tif.is_svs or tif.is_ndpi or tif.is_scn or tif.is_bif:
                    return True
                page = tif.pages.first
                if page.samplesperpixel in (1, 3, 4):
                    if page.is_tiled and (
                        page.samplesperpixel >= 3 or len(tif.series[0].levels) > 1
                    ):
                        return True
                    if len(tif.series) > 0 and len(tif.series[0].levels) > 1:
                        return True
        except Exception:  # noqa: BLE001 - a file tifffile cannot parse may be OpenSlide's
            pass
        # Vendor TIFFs tifffile does not name (Philips, Trestle, Ventana); a merely tiled TIFF
        # (OpenSlide's generic-tiff) was judged above.
        return _openslide_detect(path) not in (None, "generic-tiff")
    return _openslide_detect(path) is not None


def slide_files(folder) -> list[Path]:
    """Slides under ``folder`` (recursive, sorted): files with a slide suffix, and each DICOM
    slide folder once (its ``.dcm`` files are one slide's levels)."""
    folder = Path(folder)
    found = set()
    for p in folder.rglob("*"):
        suffix = p.suffix.lower()
        if suffix == ".dcm":
            if _dicom_file(p.parent) is not None:
                found.add(p.parent)
        elif suffix in SLIDE_SUFFIXES and p.is_file():
            found.add(p)
    return sorted(found)


# --------------------------------------------------------------------------- tifffile backend


class _TileReader:
    """Reads a window of one tiled TIFF page straight from its tiles (tifffile decode, no zarr)."""

    def __init__(self, page, lock: threading.RLock):
        self.page = page
        self.lock = lock
        self.th, self.tw = page.tilelength, page.tilewidth
        self.rows, self.cols = page.imagelength, page.imagewidth
        self.tiles_across = -(-self.cols // self.tw)
        self.offsets = page.dataoffsets
        self.counts = page.databytecounts
        self.decode = page.decode
        self.jpegtables = page.jpegtables
        self.jpegheader = page.jpegheader

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        th, tw = self.th, self.tw
        tr0, tr1 = r0 // th, (r1 - 1) // th + 1
        tc0, tc1 = c0 // tw, (c1 - 1) // tw + 1
        out = np.empty((r1 - r0, c1 - c0, 3), dtype=np.uint8)
        indices = [tr * self.tiles_across + tc for tr in range(tr0, tr1) for tc in range(tc0, tc1)]
        fh = self.page.parent.filehandle
        with self.lock:
            chunks = []
            for i in indices:
                fh.seek(int(self.offsets[i]))
                chunks.append(fh.read(int(self.counts[i])))
        for i, data in zip(indices, chunks, strict=True):
            tile = self.decode(data, i, jpegtables=self.jpegtables, jpegheader=self.jpegheader)[0]
            tile = tile.reshape(tile.shape[-3:])[..., :3]
            tr, tc = divmod(i, self.tiles_across)
            y0, x0 = tr * th, tc * tw
            ys, ye = max(r0, y0), min(r1, y0 + th)
            xs, xe = max(c0, x0), min(c1, x0 + tw)
            out[ys - r0 : ye - r0, xs - c0 : xe - c0] = tile[ys - y0 : ye - y0, xs - x0 : xe - x0]
        return out


def _pick_series(tif):
    """The pyramid: the largest series that is not a thumbnail/label/macro image."""
    candidates = [s for s in tif.series if (s.name or "").lower() not in _NOT_LEVELS]
    if not candidates:
        candidates = list(tif.series)
    if not candidates:
        return None
    return max(candidates, key=lambda s: int(np.prod(s.levels[0].shape[:-1] or (1,))))


def _series_levels(tif, series) -> list:
    """Level series of ``series``; a plain multi-page pyramid (one series per page) is gathered too."""
    levels = list(series.levels)
    if len(levels) > 1:
        return levels
    base = series.pages[0] if len(series.pages) else None
    if base is None or not getattr(base, "is_tiled", False):
        return levels
    rows0, cols0 = base.imagelength, base.imagewidth
    for other in tif.series:
        if other is series or (other.name or "").lower() in _NOT_LEVELS:
            continue
        page = other.pages[0]
        if page is None or not page.is_tiled or page.samplesperpixel != base.samplesperpixel:
            continue
        prev = levels[-1].pages[0]
        if page.imagelength >= prev.imagelength or page.imagewidth >= prev.imagewidth:
            continue
        if (
            abs(page.imagelength / rows0 - page.imagewidth / cols0)
            > 0.02 * page.imagewidth / cols0 + 2 / cols0
        ):
            continue
        levels.append(other)
    return levels


def _normalise(arr, axes: str, path: Path):
    """A lazy (rows, cols, 3) uint8 view of a level with tifffile ``axes``."""
    axes = axes.upper()
    if axes == "YXS" and arr.shape[-1] == 3 and arr.dtype == np.uint8:
        return arr
    import dask.array as da

    d = da.from_zarr(arr) if not isinstance(arr, da.Array) else arr
    if "Y" not in axes or "X" not in axes:
        raise SlideError(path, f"no image plane in axes {axes!r}")
    channel = next((a for a in ("S", "C") if a in axes), None)
    index = tuple(
        slice(None) if a in ("Y", "X") or a == channel else 0 for a in axes
    )  # first plane of any other axis (time, depth, series)
    d = d[index]
    kept = [a for a in axes if a in ("Y", "X") or a == channel]
    order = [kept.index("Y"), kept.index("X")] + ([kept.index(channel)] if channel else [])
    d = d.transpose(order)
    if channel is None:
        d = da.stack([d, d, d], axis=-1)
    elif d.shape[-1] == 1:
        d = da.concatenate([d, d, d], axis=-1)
    elif d.shape[-1] >= 3:
        d = d[..., :3]
    else:
        raise SlideError(path, f"cannot show {d.shape[-1]} channels as RGB")
    if d.dtype == np.uint16:
        d = (d >> 8).astype(np.uint8)
    elif d.dtype != np.uint8:
        raise SlideError(path, f"unsupported pixel type {d.dtype} (uint8 or uint16 expected)")
    return d


def _tiff_mpp(tif, page) -> float | None:
    """Pixel size (µm) from the Aperio description, OME metadata or TIFF resolution tags."""
    for desc in (page.description or "", getattr(page, "description1", "") or ""):
        m = _MPP_RE.search(desc)
        if m:
            value = float(m.group(1))
            if value > 0:
                return value
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        if m:
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
            scale = {"nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}.get(
                unit.group(1) if unit else "", 1.0
            )
            value = float(m.group(1)) * scale
            if value > 0:
                return value
    try:
        xres = page.resolution[0]
        unit = int(page.resolutionunit)
    except Exception:  # noqa: BLE001 - missing or odd tags mean unknown
        return None
    if not xres or unit not in (2, 3):
        return None
    value = (25400.0 if unit == 2 else 10000.0) / xres
    return value if 0.01 <= value <= 100 else None


def _open_tifffile(path: Path) -> Slide:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad files
        raise SlideError(path, f"not a readable TIFF/SVS file: {_one_line(exc)}") from exc
    try:
        series = _pick_series(tif)
        if series is None:
            raise SlideError(path, "TIFF holds no image")
        level_series = _series_levels(tif, series)
        size = path.stat().st_size
        levels, tiles, pages = [], [], []
        tif.filehandle.set_lock(True)  # napari (zarr) and read_region may read from threads
        lock = tif.filehandle.lock
        for i, lvl in enumerate(level_series):
            page = lvl.pages[0] if hasattr(lvl, "pages") else lvl
            page = page.keyframe if hasattr(page, "keyframe") else page
            ends = np.asarray(page.dataoffsets, dtype=np.int64) + np.asarray(
                page.databytecounts, dtype=np.int64
            )
            if ends.size and int(ends.max()) > size:
                raise SlideError(
                    path, f"truncated: level {i} tile data runs past the end of the file"
                )
            if ends.size and int(np.min(page.databytecounts)) == 0 and page.is_tiled:
                raise SlideError(path, f"corrupt: level {i} has empty tiles")
            own = i < len(series.levels)
            store = series.aszarr(level=i) if own else lvl.aszarr()
            arr = zarr.open(store, mode="r")
            levels.append(_normalise(arr, lvl.axes, path))
            pages.append(page)
            direct = (
                page.is_tiled
                and lvl.axes.upper() == "YXS"
                and page.samplesperpixel == 3
                and page.dtype == np.uint8
                and page.planarconfig == 1
                and len(lvl.pages) == 1
            )
            tiles.append(_TileReader(page, lock) if direct else None)
        base_rows, base_cols = levels[0].shape[:2]
        downsamples = [
            _snap((base_rows / lv.shape[0] + base_cols / lv.shape[1]) / 2) for lv in levels
        ]
        slide = Slide(
            path=path,
            levels=levels,
            downsamples=downsamples,
            mpp=_tiff_mpp(tif, pages[0]),
            backend="tifffile",
            objective_power=_aperio_power(pages[0]),
            _tiles=tiles,
            _closers=[tif.close],
        )
        _probe(slide)
        return slide
    except SlideError:
        tif.close()
        raise
    except Exception as exc:  # noqa: BLE001
        tif.close()
        raise SlideError(path, f"cannot open slide: {_one_line(exc)}") from exc


def _probe(slide: Slide) -> None:
    """Decode one tile of the coarsest level, so unsupported codecs and bad data fail at open."""
    level = len(slide.levels) - 1
    rows, cols = slide.level_shape(level)
    try:
        slide.read_region(level, 0, 0, min(rows, 64), min(cols, 64))
    except SlideError as exc:
        raise SlideError(slide.path, f"cannot decode image data: {exc.message}") from exc


# --------------------------------------------------------------------------- OpenSlide backend


def _openslide_detect(path: Path) -> str | None:
    """OpenSlide's vendor name for a file (``"aperio"``, ``"mirax"``...), or None."""
    try:
        import openslide
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:  # noqa: BLE001
        return None


def _dicom_file(folder: Path) -> Path | None:
    """A DICOM whole-slide folder's first ``.dcm`` file that OpenSlide recognises, or None."""
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".dcm" and p.is_file())
    except OSError:
        return None
    return next((p for p in files[:1] if _openslide_detect(p) == "dicom"), None)


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _open_openslide(path: Path, target: Path | None = None) -> Slide:
    """Levels as dask arrays whose blocks come from ``OpenSlide.read_region`` (alpha over white).

    ``target`` is the file OpenSlide opens when it differs from ``path`` (a DICOM folder's file).
    """
    import dask.array as da
    import openslide

    try:
        osr = openslide.OpenSlide(str(target or path))
    except Exception as exc:  # noqa: BLE001
        raise SlideError(path, f"OpenSlide cannot open it: {_one_line(exc)}") from exc
    chunk = 512
    readers = [_OpenSlideReader(osr, level) for level in range(osr.level_count)]
    levels = []
    for (w, h), reader in zip(osr.level_dimensions, readers, strict=True):

        def block(x, block_info=None, reader=reader):
            (r0, r1), (c0, c1), _ = block_info[0]["array-location"]
            return reader.read(r0, r1, c0, c1)

        zeros = da.zeros((h, w, 3), dtype=np.uint8, chunks=(chunk, chunk, 3))
        levels.append(zeros.map_blocks(block, dtype=np.uint8))
    props = osr.properties
    slide = Slide(
        path=path,
        levels=levels,
        downsamples=[float(d) for d in osr.level_downsamples],
        mpp=_number(props.get(openslide.PROPERTY_NAME_MPP_X)),
        backend="openslide",
        vendor=props.get(openslide.PROPERTY_NAME_VENDOR),
        objective_power=_number(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
        _tiles=readers,
        _closers=[osr.close],
    )
    _probe(slide)
    return slide


def _openslide_rgb(osr, level: int, top0: int, left0: int, height: int, width: int):
    """RGB uint8 of an OpenSlide read (level-0 origin), transparent pixels as white."""
    rgba = np.asarray(osr.read_region((left0, top0), level, (width, height)), dtype=np.uint8)
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    alpha = alpha.astype(np.uint16)
    rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha)) // 255
    return rgb.astype(np.uint8)


class _OpenSlideReader:
    """``read_region`` of one level straight through OpenSlide (no dask graph per call)."""

    def __init__(self, osr, level: int):
        self.osr, self.level = osr, level
        self.downsample = float(osr.level_downsamples[level])

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        ds = self.downsample
        return _openslide_rgb(self.osr, self.level, int(r0 * ds), int(c0 * ds), r1 - r0, c1 - c0)


def _aperio_power(page) -> float | None:
    """Objective power from an Aperio description's ``AppMag``."""
    m = re.search(r"\|\s*AppMag\s*=\s*([0-9.]+)", page.description or "")
    return _number(m.group(1)) if m else None


def open_slide(path, backend: str | None = None) -> Slide:
    """Open a slide lazily; a bad file raises ``SlideError`` naming it, in one line.

    ``backend``: ``"tifffile"`` or ``"openslide"`` to force one; by default SVS and generic
    pyramidal TIFF go through tifffile (faster) and every other OpenSlide format through
    OpenSlide. A DICOM slide is opened by its folder (or any of its ``.dcm`` files).
    """
    path = Path(path)
    if backend not in (None, "tifffile", "openslide"):
        raise ValueError(f"backend must be 'tifffile' or 'openslide', not {backend!r}")
    if not path.exists():
        raise SlideError(path, "no such file")
    if path.is_dir():
        dicom = _dicom_file(path)
        if dicom is None or backend == "tifffile":
            raise SlideError(path, "is a folder, not a slide file (nor a DICOM slide folder)")
        return _open_openslide(path, dicom)
    size = path.stat().st_size
    if size == 0:
        raise SlideError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise SlideError(path, "permission denied")
    vendor = _openslide_detect(path)
    if backend == "openslide":
        if vendor is None:
            raise SlideError(path, "OpenSlide does not recognise this file")
        return _open_openslide(path)
    tiff = _has_tiff_magic(path)
    if tiff and (backend == "tifffile" or vendor in (None, *TIFFFILE_VENDORS)):
        try:
            slide = _open_tifffile(path)
        except SlideError:
            if vendor is None or backend == "tifffile":
                raise
            return _open_openslide(path)
        slide.vendor = vendor
        return slide
    if backend == "tifffile":
        raise SlideError(path, "not a TIFF/SVS file (tifffile cannot read it)")
    if vendor is not None:
        return _open_openslide(path)
    raise SlideError(path, "not a TIFF/SVS slide, nor any format OpenSlide reads")


# --------------------------------------------------------------------------- display


class DisplayLevel:
    """A slide level for the viewer: reads like the level, but a tile area that cannot be
    decoded comes back black with one warning per slide instead of a codec exception
    (``Jpeg8Error``...) in napari's slicing. Science never reads through this: masks use
    `Slide.read_region`, which raises `SlideError`."""

    def __init__(self, array, path: Path, level: int, warned: list[bool]):
        self.array = array
        self.path = path
        self.level = level
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self._warned = warned  # shared by a slide's levels: one warning per slide

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        try:
            return np.asarray(self.array[key])
        except Exception as exc:  # noqa: BLE001 - any codec or I/O error from a damaged tile
            if not self._warned[0]:
                self._warned[0] = True
                import warnings

                warnings.warn(
                    f"{self.path}: damaged image data at level {self.level} shown black "
                    f"({_one_line(exc)})",
                    stacklevel=2,
                )
            dummy = np.lib.stride_tricks.as_strided(
                np.zeros(1, dtype=self.dtype), shape=self.shape, strides=(0,) * self.ndim
            )
            return np.zeros(dummy[key].shape, dtype=self.dtype)

    def __array__(self, dtype=None, copy=None):
        out = self[tuple(slice(None) for _ in self.shape)]
        return out if dtype is None else out.astype(dtype)


def _close_all(closers: list) -> None:
    while closers:
        try:
            closers.pop()()
        except Exception:  # noqa: BLE001 - closing must not raise
            pass


def display_levels(slide: Slide) -> list[DisplayLevel]:
    """The slide's levels wrapped for display (see `DisplayLevel`); the file is closed when
    the last of them is gone (a layer deleted), not left to the garbage collector."""
    import weakref

    warned = [False]
    levels = [DisplayLevel(lv, slide.path, i, warned) for i, lv in enumerate(slide.levels)]
    for level in levels:
        level.slide = slide  # the levels keep the slide, so it goes with the last of them
    weakref.finalize(slide, _close_all, slide._closers)
    return levels
