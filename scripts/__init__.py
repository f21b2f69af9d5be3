"""Demo, screenshot scripts and screen helpers (run as ``python -m scripts.NAME``)."""

import atexit as _atexit
import os as _os
import shutil as _shutil
import tempfile as _tempfile

# Scripted viewers (demo, screenshots, benchmarks) start from the widgets' defaults, not from
# the fields a user's own sessions remembered, and remember nothing for them.
if "NAPARI_CRYSTAL_CONFIG" not in _os.environ:
    _os.environ["NAPARI_CRYSTAL_CONFIG"] = _tempfile.mkdtemp(prefix="napari-crystal-config-")
    _atexit.register(_shutil.rmtree, _os.environ["NAPARI_CRYSTAL_CONFIG"], True)
