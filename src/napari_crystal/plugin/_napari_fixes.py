"""A narrow fix for a napari cost that makes relabelling slow on annotation-sized layers.

napari's ``Shapes._view_text_coords`` (up to at least 0.9.2) rebuilds the list of every
shape's vertices once per shape in view (``self._data_view.data[i]``; napari issue #8650, PR
#9501), so every colour or text change of a layer with text costs O(n^2): seconds for 5,000
regions. :func:`apply` swaps in the same computation reading each shape once; it leaves
napari alone when its code no longer has that pattern (a napari that fixed it).
"""

from __future__ import annotations

import inspect

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
