"""Small magicgui building blocks shared by the widgets."""

from __future__ import annotations

from magicgui.widgets import Container, Label, ProgressBar, PushButton, RadioButtons, Table


def job_row(bar: ProgressBar, cancel: PushButton) -> Container:
    """Progress bar and Cancel in one row: showing the bar then changes no column width, so
    starting a job does not resize the dock (and with it the canvas, a full repaint)."""
    return Container(widgets=[bar, cancel], layout="horizontal", labels=False, label="")


def count_table(columns: dict) -> Table:
    """A read-only per-class table, tall enough for every class, without row numbers."""
    table = Table(value=columns)
    table.read_only = True
    table.min_height = 300
    table.native.verticalHeader().setVisible(False)
    return table


def wrapped(label: Label) -> Label:
    """A label that wraps long text (paths) instead of widening the dock."""
    label.native.setWordWrap(True)
    return label


class FixedRadioButtons(RadioButtons):
    """Radio buttons with fixed choices, left alone by napari's ``reset_choices``.

    magicgui rebuilds every button on each reset (napari resets docked widgets whenever a
    layer is added or removed), leaving the old buttons parentless until Qt deletes them.
    """

    def reset_choices(self, *_: object) -> None:
        """Fill the buttons once; later resets have nothing to refresh."""
        if not self.choices:
            super().reset_choices()
