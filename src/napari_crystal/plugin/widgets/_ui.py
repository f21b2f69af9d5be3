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


#: Width a wrapping label may shrink to: Qt's own minimum for word-wrapped text is about 80
#: characters, which would widen a dock past a laptop screen instead of wrapping.
WRAP_MIN_WIDTH = 160


def wrapped(label: Label) -> Label:
    """A label that fills its row and wraps long text (paths) instead of widening the dock
    (magicgui's labels keep a fixed size: their text's width, cut at the dock's edge)."""
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    label.native.setMinimumWidth(WRAP_MIN_WIDTH)
    policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    policy.setHeightForWidth(True)  # as tall as its wrapped text at the width it gets
    label.native.setSizePolicy(policy)
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


def scroll_body(outer: Container, widgets, labels: bool = True) -> Container:
    """Put ``widgets`` in a vertical scroll area that fills ``outer``, and return their container.

    napari docks ``outer.native`` and adds no scrolling (magicgui's ``scrollable=True`` leaves
    its scroll area outside the dock), so a tall widget would set the window's minimum height;
    this way a dock shrinks to a few rows and scrolls. The body stays one of ``outer``'s
    widgets, so napari's ``reset_choices`` still reaches its layer boxes.
    """
    from qtpy.QtCore import QSize, Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    class _Area(QScrollArea):
        """Scrolls vertically only, so it asks for the body's full minimum width."""

        def minimumSizeHint(self) -> QSize:
            hint = super().minimumSizeHint()
            inner = self.widget()
            if inner is None:
                return hint
            width = inner.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
            return QSize(max(hint.width(), width), hint.height())

    body = Container(widgets=widgets, labels=labels)
    outer.labels = False  # the body carries the labels; outer holds only the scroll area
    outer.append(body)
    area = _Area(outer.native)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    body.native.layout().addStretch(1)  # rows keep their height in a dock taller than them
    area.setWidget(body.native)  # out of outer's layout, into the area
    layout = outer.native.layout()
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(area)
    return body


def confirm_overwrite(parent, path) -> bool:
    """Ask before replacing an existing file (typed names get no dialog's own question)."""
    from pathlib import Path

    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        parent,
        "napari-crystal",
        f"{Path(path).name} exists. Replace it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes
