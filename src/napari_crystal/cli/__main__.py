"""``python -m napari_crystal.cli``: same as the ``napari-crystal`` command."""

import sys

from napari_crystal.cli import main

sys.exit(main())
