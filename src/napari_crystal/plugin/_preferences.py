"""napari-crystal as napari's preferred reader for slides and writer for annotation ``.csv``.

Set only when the user presses the Annotate widget's button, in napari's own extension
preferences (``settings.plugins.extension2reader`` / ``extension2writer``). napari consults
``extension2reader`` when opening a file, but its save dialog and ``layers.save`` take the first
compatible writer in registration order (napari's builtin Shapes CSV, which drops the labels)
and never read ``extension2writer``; so where the user chose napari-crystal for ``.csv``, its
writers are moved ahead of the others for the session (:func:`apply_writer_preference`,
also run when the plugin activates).
"""

from __future__ import annotations

PLUGIN = "napari-crystal"
READ_PATTERNS = ("*.svs",)
WRITE_EXTENSIONS = (".csv",)


def _plugin_settings():
    from napari.settings import get_settings

    return get_settings().plugins


def is_preferred() -> bool:
    """Whether napari's preferences name napari-crystal for every pattern and extension here."""
    plugins = _plugin_settings()
    return all(plugins.extension2reader.get(p) == PLUGIN for p in READ_PATTERNS) and all(
        plugins.extension2writer.get(e) == PLUGIN for e in WRITE_EXTENSIONS
    )


def make_preferred() -> list[str]:
    """Record napari-crystal as the reader for ``.svs`` and the writer for ``.csv`` in napari's
    preferences and apply the writer order now. Returns what was set, for the notification."""
    plugins = _plugin_settings()
    plugins.extension2reader = {**plugins.extension2reader, **dict.fromkeys(READ_PATTERNS, PLUGIN)}
    plugins.extension2writer = {
        **plugins.extension2writer,
        **dict.fromkeys(WRITE_EXTENSIONS, PLUGIN),
    }
    apply_writer_preference()
    return [f"open {p}" for p in READ_PATTERNS] + [f"save {e}" for e in WRITE_EXTENSIONS]


def _writer_entries():
    """npe2's registered writer list (the order napari's save dialog and save use)."""
    from npe2 import PluginManager

    contrib = getattr(PluginManager.instance(), "_contrib", None)
    return contrib, getattr(contrib, "_writers", None)


def apply_writer_preference() -> bool:
    """Put the writers napari's ``extension2writer`` names ahead of the others (stable order
    otherwise). Returns whether napari-crystal now comes first for every extension it was
    chosen for; nothing changes where the user chose nothing."""
    chosen = {ext: name for ext, name in _plugin_settings().extension2writer.items()}
    if not chosen:
        return False
    contrib, entries = _writer_entries()
    if entries is None:
        return False

    def rank(entry) -> int:
        writer = entry[-1]
        exts = set(writer.filename_extensions or ())
        return 0 if any(chosen.get(e) == writer.plugin_name for e in exts) else 1

    contrib._writers = sorted(entries, key=rank)
    return all(first_writer(ext) == name for ext, name in chosen.items() if name == PLUGIN)


def first_writer(extension: str, layer_type: str = "shapes") -> str | None:
    """The plugin whose writer napari uses first for a ``layer_type`` layer saved as
    ``extension`` (what *File > Save Selected Layers* offers first)."""
    from npe2 import PluginManager

    for writer in PluginManager.instance().iter_compatible_writers([layer_type]):
        if extension in (writer.filename_extensions or ()):
            return writer.plugin_name
    return None


def activate(context) -> None:
    """npe2 activation hook: re-apply a writer preference the user made in an earlier session."""
    apply_writer_preference()
