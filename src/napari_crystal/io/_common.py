"""Helpers the foreign-format readers and writers share: colours, rings, size limits, warnings."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_crystal.errors import AnnotationError
from napari_crystal.io.annotation import ConversionWarning, Region

MAX_BYTES = 2 * 1024**3  # files above this are refused before reading
SNIFF_BYTES = 65536


def check_size(path: Path) -> int:
    """The file's size; a file over 2 GiB is refused before a byte of it is read."""
    size = os.stat(path).st_size
    if size > MAX_BYTES:
        raise AnnotationError(
            path, f"file is {size / 1024**3:.1f} GiB: annotation files over 2 GiB are refused"
        )
    return size


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a parser builds millions of acyclic objects: each
    collection would walk everything built so far (3x the time of ``json.loads`` alone)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_head(path: str | os.PathLike, n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` bytes (b"" if unreadable), without a UTF-8 byte-order mark."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(n)
    except OSError:
        return b""
    return head.removeprefix(b"\xef\xbb\xbf")


def hex_color(rgb: Iterable[int]) -> str:
    """``"#rrggbb"`` of three 0..255 integers (clipped)."""
    r, g, b = (int(min(255, max(0, round(float(v))))) for v in list(rgb)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def rgb_of(color: str) -> list[int]:
    """The three 0..255 integers of ``"#rrggbb"``."""
    h = color.lstrip("#")
    return [int(h[i : i + 2], 16) for i in (0, 2, 4)]


def bgr_int_color(value: int) -> str:
    """ImageScope's ``LineColor`` (decimal 0xBBGGRR, red in the low byte) as ``"#rrggbb"``."""
    value = int(value) & 0xFFFFFF
    return hex_color((value & 0xFF, (value >> 8) & 0xFF, (value >> 16) & 0xFF))


def color_bgr_int(color: str) -> int:
    """``"#rrggbb"`` as ImageScope's decimal ``LineColor``."""
    r, g, b = rgb_of(color)
    return r | (g << 8) | (b << 16)


def argb_int_color(value: int) -> str:
    """QuPath's ``colorRGB`` (a signed 32-bit packed ARGB integer) as ``"#rrggbb"``."""
    value = int(value) & 0xFFFFFFFF
    return hex_color(((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF))


def closed(ring: np.ndarray) -> np.ndarray:
    """The ring with its first vertex repeated at the end (unchanged if already closed)."""
    if len(ring) and not (ring[0] == ring[-1]).all():
        return np.vstack([ring, ring[:1]])
    return ring


def open_vertices(ring: np.ndarray) -> int:
    """Number of vertices not counting a closing repeat of the first."""
    n = len(ring)
    return n - 1 if n > 1 and (ring[0] == ring[-1]).all() else n


def ellipse_polygon(top: float, left: float, bottom: float, right: float, n: int = 128):
    """A closed ``n``-gon (row, col) on the ellipse inscribed in a bounding box; its area is
    within 0.05% of pi*a*b for the default ``n`` (an inscribed 128-gon)."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    ry, rx = abs(bottom - top) / 2, abs(right - left) / 2
    ring = np.column_stack([cy + ry * np.sin(t), cx + rx * np.cos(t)])
    return np.vstack([ring, ring[:1]])


def flag_self_intersecting(path, regions: list[Region]) -> None:
    """Mark regions whose polygon is not simple (``extra["invalid"]``) and warn once: they are
    kept as drawn, but areas and masks of such polygons are not what the drawer meant."""
    if not regions:
        return
    sizes = np.fromiter((len(r.coords) for r in regions), dtype=np.int64, count=len(regions))
    holes = {i: r.holes for i, r in enumerate(regions) if r.holes}
    bad = invalid_polygons(np.concatenate([r.coords for r in regions]), sizes, holes)
    for i in bad:
        regions[i].extra["invalid"] = True
    warn_invalid(path, bad)


def invalid_polygons(
    shells: np.ndarray, sizes: np.ndarray, holes: dict[int, list[np.ndarray]]
) -> list[int]:
    """Which polygons are not simple, or with their holes not valid, in ascending order.

    ``shells``: every polygon's outer ring, (row, col) rows one after another, ``sizes[k]``
    rows for polygon ``k``; ``holes``: the inner rings of the polygons that have some. The
    rings go to shapely as one ragged array: a few vectorised calls for any number.
    """
    import shapely

    rings = shapely.linearrings(shells[:, ::-1], indices=np.repeat(np.arange(len(sizes)), sizes))
    simple = shapely.is_simple(rings)
    bad = np.flatnonzero(~simple).tolist()
    ends = np.cumsum(sizes)
    for i in sorted(holes):
        if simple[i]:
            shell = shells[ends[i] - sizes[i] : ends[i]]
            polygon = shapely.Polygon(shell[:, ::-1], [h[:, ::-1] for h in holes[i]])
            if not shapely.is_valid(polygon):
                bad.append(i)
    return sorted(bad)


def warn_invalid(path, bad: list[int]) -> None:
    """One warning naming the first few self-intersecting or invalid polygons, if any."""
    if not bad:
        return
    shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
    warnings.warn(
        f"{path}: {len(bad)} self-intersecting or invalid polygon(s) kept as drawn "
        f"(regions {shown}); their areas and masks may not be what was meant",
        ConversionWarning,
        stacklevel=4,
    )


def warn_skipped(path, counts: dict[str, int], hint: str = "") -> None:
    """One warning for everything a reader skipped (arrows, rulers, dots, detections...)."""
    counts = {k: v for k, v in counts.items() if v}
    if counts:
        what = ", ".join(f"{v} {k}" for k, v in counts.items())
        warnings.warn(
            f"{path}: skipped {what} (not regions){hint}", ConversionWarning, stacklevel=3
        )


def show(raw: bytes, limit: int = 40) -> str:
    """A quoted, shortened piece of the input for an error message."""
    text = raw.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_events(path: Path, data: bytes, target, *, expat_direct: bool = True) -> None:
    """Feed XML through defusedxml (no DTDs, entities or external references) into ``target``.

    ``target`` has ElementTree's ``start``/``end`` and a ``line()`` for error messages. With
    ``expat_direct`` elements go straight from expat to the target (tag, attribute dict) and
    text is not passed on (no reader uses it: a call per vertex saved): defusedxml's refusals
    stay installed; only ElementTree's per-element name fixing for namespaces, a third of the
    parse time, is left out.
    """
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import DefusedXMLParser, ParseError

    if not data.strip():
        raise AnnotationError(path, "empty file", 1)
    parser = DefusedXMLParser(
        target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    if expat_direct:
        parser.parser.ordered_attributes = False  # attributes as a dict
        parser.parser.StartElementHandler = target.start
        parser.parser.EndElementHandler = target.end
        parser.parser.CharacterDataHandler = None
    target.parser = parser
    try:
        parser.feed(data)
        parser.close()
    except DefusedXmlException as exc:
        raise AnnotationError(
            path, f"XML refused: {exc} (DTDs and entities are not allowed)", target.line()
        ) from None
    except ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        msg = str(exc).split(": line")[0]
        raise AnnotationError(path, f"XML is not well formed: {msg}", line) from None
    except AnnotationError:
        raise
    except (LookupError, ValueError) as exc:  # a declared encoding expat cannot use (UTF-7)
        raise AnnotationError(
            path, f"XML cannot be decoded: {show(str(exc).encode(), 60)}", target.line()
        ) from None
