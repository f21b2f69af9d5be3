"""Whole-slide access on a generated 60,000 x 40,000 Aperio-style slide (cached in bench-data/).

Figures: time and memory to open, time to the first view (the coarsest level, what napari
shows first), and 100 random 512 x 512 level-0 ``read_region`` calls against reading the same
pixels through plain tifffile (its zarr store, the usual recipe), outputs checked equal; the
same 100 reads through the OpenSlide path (why SVS stays on tifffile), on the generated slide
and on the real CMU-1 excerpt from ../shared when present.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks._harness import DATA, ROOT, peak_python_memory, timed

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
    backends_row(record, path, label)
    real = ROOT.parent / "shared" / "data" / "slides" / "CMU-1-small-region.svs"
    if real.is_file():
        backends_row(record, real, "real Aperio CMU-1 excerpt 2220x2967")
    record(
        f"slide 100 read_region 512x512 L0 ({label})",
        f"{t_ours * 1000:.0f} ms",
        f"{t_plain * 1000:.0f} ms plain tifffile+zarr",
        t_plain / t_ours,
        "no slower than plain tifffile (>= 1x), identical pixels",
        bool(same and t_plain / t_ours >= 0.95),
        identical=same,
    )


def backends_row(record, path, label: str) -> None:
    """100 random 512 x 512 level-0 reads through the tifffile path and the OpenSlide path of
    the same SVS (``open_slide(backend=...)``): time ratio and whether the pixels are equal."""
    from napari_crystal.io.slide import open_slide

    with open_slide(path) as fast, open_slide(path, backend="openslide") as osl:
        rows, cols = fast.shape
        rng = np.random.default_rng(1)
        boxes = [
            (int(rng.integers(0, max(rows - 512, 1))), int(rng.integers(0, max(cols - 512, 1))))
            for _ in range(100)
        ]

        def reads(slide):
            return [slide.read_region(0, r, c, 512, 512) for r, c in boxes]

        reads(fast), reads(osl)  # warm both alike
        t_fast = t_osl = float("inf")
        for _ in range(3):  # interleaved, so a busy machine weighs on both alike
            t, ours = timed(reads, fast)
            t_fast = min(t_fast, t)
            t, theirs = timed(reads, osl)
            t_osl = min(t_osl, t)
    identical = all(np.array_equal(x, y) for x, y in zip(ours, theirs, strict=True))
    ratio = t_osl / t_fast
    print(
        f"   {label}: tifffile path {t_fast * 1000:.0f} ms, OpenSlide path "
        f"{t_osl * 1000:.0f} ms for 100 reads: OpenSlide/tifffile time = {ratio:.2f}x; "
        f"pixels identical: {identical}",
        flush=True,
    )
    record(
        f"slide 100 read_region 512x512 L0, tifffile vs OpenSlide path ({label})",
        f"tifffile path {t_fast * 1000:.0f} ms",
        f"OpenSlide path {t_osl * 1000:.0f} ms",
        ratio,
        ">= 1x (SVS stays on the tifffile path), identical pixels",
        bool(identical and ratio >= 1),
        tifffile_s=t_fast,
        openslide_s=t_osl,
        identical=identical,
    )
