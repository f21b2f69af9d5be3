"""Whole-slide access on a generated 60,000 x 40,000 Aperio-style slide (cached in bench-data/).

Figures: time and memory to open, time to the first view (the coarsest level, what napari
shows first), and 100 random 512 x 512 level-0 ``read_region`` calls against reading the same
pixels through plain tifffile (its zarr store, the usual recipe), outputs checked equal.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._harness import DATA, peak_python_memory, timed

FULL = (40_000, 60_000)  # rows, cols: 60,000 x 40,000 (width x height), like an NEDC slide
QUICK = (12_000, 18_000)


def slide_path(shape) -> object:
    """Generate the benchmark slide once (stroma texture, JPEG tiles) and reuse it."""
    from napari_crystal.io.slide import SlideError, open_slide
    from napari_crystal.synthetic import SlideCanvas, write_pyramid

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"slide-{shape[1]}x{shape[0]}.svs"
    if path.exists():
        try:
            with open_slide(path) as slide:
                if slide.shape == tuple(shape):
                    return path
        except SlideError:
            pass
    start = time.perf_counter()
    print(f"   generating {path.name} (cached for later runs)...", flush=True)
    write_pyramid(path, SlideCanvas(shape, [], seed=7), shape, 0.499)
    size = path.stat().st_size / 2**20
    print(f"   generated in {time.perf_counter() - start:.0f} s, {size:.0f} MiB", flush=True)
    return path


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def run(record, quick: bool = False) -> None:
    import tifffile
    import zarr

    from napari_crystal.io.slide import open_slide

    shape = QUICK if quick else FULL
    path = slide_path(shape)
    label = f"{shape[1]}x{shape[0]}"

    open_slide(path).close()  # warm imports and the OS file cache once
    t_open, slide = timed(open_slide, path, repeat=3)
    slide.close()
    rss0 = _rss()
    peak, slide = peak_python_memory(open_slide, path)
    rss_delta = max(_rss() - rss0, 0)

    def first_view():
        return np.asarray(slide.levels[-1])

    t_view, view = timed(first_view, repeat=3)
    ok_open = t_open < 1.0 and peak < 200 * 2**20
    record(
        f"slide open ({label})",
        f"{t_open * 1000:.0f} ms, peak {peak / 2**20:.1f} MB (RSS +{rss_delta / 2**20:.1f} MB)",
        "-",
        None,
        "< 1 s and < 200 MB",
        ok_open,
        open_s=t_open,
        peak_bytes=peak,
        rss_delta_bytes=rss_delta,
        levels=[list(lv.shape) for lv in slide.levels],
    )
    record(
        f"slide first view ({label})",
        f"{t_view * 1000:.0f} ms for level {len(slide.levels) - 1} {view.shape[1]}x{view.shape[0]}",
        "-",
        None,
        "< 1 s",
        t_view < 1.0,
        first_view_s=t_view,
    )

    rng = np.random.default_rng(0)
    rows, cols = slide.shape
    boxes = [
        (int(rng.integers(0, rows - 512)), int(rng.integers(0, cols - 512))) for _ in range(100)
    ]

    def ours():
        return [slide.read_region(0, r, c, 512, 512) for r, c in boxes]

    with tifffile.TiffFile(path) as tif:
        z = zarr.open(tif.series[0].aszarr(level=0), mode="r")

        def plain():
            return [np.asarray(z[r : r + 512, c : c + 512]) for r, c in boxes]

        plain()  # same warm-up for both
        ours()
        t_ours, a = timed(ours, repeat=3)
        t_plain, b = timed(plain, repeat=3)
    same = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    slide.close()
    record(
        f"slide 100 read_region 512x512 L0 ({label})",
        f"{t_ours * 1000:.0f} ms",
        f"{t_plain * 1000:.0f} ms plain tifffile+zarr",
        t_plain / t_ours,
        "no slower than plain tifffile (>= 1x), identical pixels",
        bool(same and t_plain / t_ours >= 0.95),
        identical=same,
    )
