"""``make docs``: regenerate every screenshot in docs/ by running each scripts/screenshot_*.py.

Each script opens a real napari viewer (Xvfb through pyvirtualdisplay when no DISPLAY is set)
and writes its PNGs into docs/. One process per script, so one failure does not hide the rest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Run the screenshot scripts; exit non-zero if any failed."""
    failed = []
    for script in sorted(HERE.glob("screenshot_*.py")):
        print(f"== {script.name}", flush=True)
        if subprocess.run(
            [sys.executable, "-m", f"scripts.{script.stem}"], cwd=HERE.parent
        ).returncode:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
