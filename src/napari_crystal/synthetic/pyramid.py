"""A generic Aperio-style pyramidal TIFF writer: tiles come from a callback, written strip by
strip so a slide of any size is written in bounded memory."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

Progress = Callable[[int, int], None]
TileSource = Callable[[int, int, int, int], np.ndarray]
SPLITS = ("train", "dev", "eval")
APERIO = "Aperio Image Library v12.0.15 \r\n"
WHITE = (244, 242, 244)


# ----------------------------------------------------------------------------- pyramid writer


def _level_shapes(shape: tuple[int, int], factor: int, min_levels: int, min_side: int):
    shapes = [shape]
    while len(shapes) < min_levels or max(shapes[-1]) > min_side:
        r, c = shapes[-1]
        nxt = (max(1, r // factor), max(1, c // factor))
        if nxt == shapes[-1] or min(nxt) < 16:
            break
        shapes.append(nxt)
    return shapes


def _pool(strip: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downsample of a strip whose height is a multiple of ``factor``."""
    h, w = strip.shape[:2]
    wp = -(-w // factor) * factor
    if wp != w:
        strip = np.concatenate([strip, np.full((h, wp - w, 3), 255, np.uint8)], axis=1)
    rows = strip[0::factor].astype(np.uint16)
    for k in range(1, factor):
        rows += strip[k::factor]
    out = rows[:, 0::factor].copy()
    for k in range(1, factor):
        out += rows[:, k::factor]
    out //= factor * factor
    return out.astype(np.uint8)


def write_pyramid(
    path,
    tile_source: TileSource,
    shape: tuple[int, int],
    mpp: float,
    *,
    tile: int = 256,
    compression: str = "jpeg",
    quality: int = 85,
    factor: int = 4,
    min_levels: int = 3,
    min_side: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write an Aperio-style pyramidal tiled TIFF, pulling level 0 strip by strip from ``tile_source``.

    ``tile_source(top, left, height, width)`` returns (h, w, 3) uint8. Memory stays at a few
    strips: coarser levels are pooled on the fly into raw files beside the target, then
    tiled. The file is written under a temporary name and renamed, so it is never half-written.
    ``progress(strips_done)`` is called after each level-0 strip.
    """
    import tifffile

    path = Path(path)
    rows, cols = int(shape[0]), int(shape[1])
    shapes = _level_shapes((rows, cols), factor, min_levels, min_side)
    if compression == "jpeg":
        codec = {"compression": "jpeg", "compressionargs": {"level": quality}}
        kind = f"JPEG/RGB Q={quality}"
    else:
        codec = {"compression": compression}
        kind = f"{compression.upper()}/RGB"
    res = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    big = rows * cols * 3 * 1.4 > 2**32 - 2**26
    head = f"{APERIO}{cols}x{rows} [0,0 {cols}x{rows}] ({tile}x{tile})"
    meta = f"|AppMag = 20|MPP = {mpp:.4f}|Filename = {path.stem}|Title = synthetic NEDC slide"
    strip_rows = tile  # pooled rows are carried over between strips, so any height works
    tmpdir = Path(tempfile.mkdtemp(prefix=".pyramid-", dir=path.parent))
    raws = [tmpdir / f"level{i}.raw" for i in range(len(shapes))]
    tmp = tmpdir / path.name
    try:
        handles = [open(raw, "wb") for raw in raws[1:]]
        pending: list[np.ndarray] = [np.zeros((0, 0, 3), np.uint8) for _ in shapes]
        kept: list[np.ndarray] = []  # one level only: it is small, and it is its own thumbnail

        def push(level: int, block: np.ndarray) -> None:
            """Append level rows to its raw file and pool full groups into the next level."""
            lr, lc = shapes[level]
            handles[level - 1].write(np.ascontiguousarray(block[:, :lc]).tobytes())
            if level + 1 >= len(shapes):
                return
            buf = block if pending[level].size == 0 else np.concatenate([pending[level], block])
            usable = buf.shape[0] // factor * factor
            if usable:
                push(level + 1, _pool(buf[:usable], factor))
            pending[level] = buf[usable:]

        def level0_tiles():
            done = 0
            for top in range(0, rows, strip_rows):
                h = min(strip_rows, rows - top)
                strip = np.asarray(tile_source(top, 0, h, cols), dtype=np.uint8)
                if (
                    len(shapes) > 1
                ):  # before yielding: the writer stops pulling after the last tile
                    pad = -h % factor
                    padded = strip
                    if pad:
                        padded = np.concatenate([strip, np.full((pad, cols, 3), 255, np.uint8)])
                    push(1, _pool(padded, factor))
                else:
                    kept.append(strip)
                done += 1
                if progress is not None:
                    progress(done)
                for r in range(0, h, tile):
                    for c in range(0, cols, tile):
                        yield strip[r : r + tile, c : c + tile]

        def raw_tiles(level: int):
            lr, lc = shapes[level]
            with open(raws[level], "rb") as fh:
                for top in range(0, lr, tile):
                    h = min(tile, lr - top)
                    data = np.frombuffer(fh.read(h * lc * 3), np.uint8)
                    if data.size < h * lc * 3:  # last pooled rows may be short by one
                        data = np.concatenate(
                            [data, np.full(h * lc * 3 - data.size, 255, np.uint8)]
                        )
                    block = data.reshape(h, lc, 3)
                    for c in range(0, lc, tile):
                        yield block[:, c : c + tile]

        with tifffile.TiffWriter(tmp, bigtiff=big) as tw:
            tw.write(
                level0_tiles(), shape=(rows, cols, 3), dtype=np.uint8, tile=(tile, tile),
                photometric="rgb", description=head + " " + kind + meta, metadata=None,
                **codec, **res,
            )  # fmt: skip
            for fh in handles:
                fh.close()
            # SVS keeps a striped thumbnail as the second page, then the reduced levels.
            lr, lc = shapes[-1]
            if kept:
                coarse = np.concatenate(kept)
            else:
                coarse = np.fromfile(raws[-1], np.uint8)
                pad = max(lr * lc * 3 - coarse.size, 0)  # pooled rows may run one over or short
                coarse = np.concatenate([coarse, np.full(pad, 255, np.uint8)])
                coarse = coarse[: lr * lc * 3].reshape(lr, lc, 3)
            step = max(1, math.ceil(max(lr, lc) / 768))
            thumb = np.ascontiguousarray(coarse[::step, ::step])
            tw.write(
                thumb, photometric="rgb", compression="jpeg", metadata=None,
                description=f"{APERIO}{cols}x{rows} -> {thumb.shape[1]}x{thumb.shape[0]} - " + meta,
            )  # fmt: skip
            for level in range(1, len(shapes)):
                lr, lc = shapes[level]
                tw.write(
                    raw_tiles(level), shape=(lr, lc, 3), dtype=np.uint8, tile=(tile, tile),
                    photometric="rgb", description=f"{head} -> {lc}x{lr} {kind}", metadata=None,
                    **codec, **res,
                )  # fmt: skip
        os.replace(tmp, path)
    finally:
        for raw in raws[1:]:
            raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        tmpdir.rmdir()
    return path
