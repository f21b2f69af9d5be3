"""Narrow fixes for napari costs that our widgets meet: relabelling and adding Labels layers.

napari's ``Shapes._view_text_coords`` (up to at least 0.9.2) rebuilds the list of every
shape's vertices once per shape in view (``self._data_view.data[i]``; napari issue #8650, PR
#9501), so every colour or text change of a layer with text costs O(n^2): seconds for 5,000
regions. :func:`apply` swaps in the same computation reading each shape once; it leaves
napari alone when its code no longer has that pattern (a napari that fixed it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

_QUADRATIC = "self._data_view.data[i] for i in self._view_indices"
_applied = False


def _view_text_coords(self):
    """Coordinates of the text elements in view, as napari computes them, in linear time."""
    ndisplay = self._slice_input.ndisplay
    order = self._slice_input.order
    shapes = self._data_view.shapes
    displayed = self._slice_input.displayed
    coords = [shapes[i].data[:, displayed] for i in self._view_indices]
    return self.text.compute_text_coords(coords, ndisplay, order)


def apply() -> bool:
    """Install the linear ``_view_text_coords`` if napari still has the quadratic one.

    Returns whether the fix is in place (now or from an earlier call).
    """
    global _applied
    if _applied:
        return True
    from napari.layers import Shapes

    try:
        source = inspect.getsource(Shapes._view_text_coords.fget)
    except (AttributeError, OSError, TypeError):
        return False
    if _QUADRATIC not in source:
        return False
    Shapes._view_text_coords = property(_view_text_coords, doc=Shapes._view_text_coords.__doc__)
    _applied = True
    return True


# A Labels layer's editing overlays (the polygon tool and the brush outline): napari builds
# their vispy visuals when the layer is added, about a third of the layer's set-up.
EDITING_OVERLAYS = ("polygon", "brush_stroke")


def add_editing_later(viewer, layer) -> Callable[[], None]:
    """Add ``layer`` to ``viewer`` without its editing overlays; the returned call puts them
    back (napari then builds their visuals), so the window can repaint in between.

    For display layers added one per event-loop turn (the prediction overlay): each turn then
    stays short. If the layer has no such overlays (another napari), it is added whole.
    """
    overlays = getattr(layer, "_overlays", None)
    held = {}
    if overlays is not None and all(k in overlays for k in EDITING_OVERLAYS):
        held = {k: overlays.pop(k) for k in EDITING_OVERLAYS}
    viewer.layers.append(layer)

    def restore() -> None:
        for key, overlay in held.items():
            overlays[key] = overlay
        held.clear()

    return restore
