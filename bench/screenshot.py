"""docs/worklist.png: the worklist page of a generated export of 300 patients, as headless Chromium shows it.

    .venv/bin/python -m bench.screenshot
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PNG = ROOT / "docs" / "worklist.png"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_args(*args: str) -> list[str]:
    """Headless Chromium in a throw-away profile that reaches for nothing on the network by itself."""
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("chromium is not installed")
    profile = tempfile.mkdtemp(prefix="pacing-cds-chromium-")
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", *args]


def render(page: Path, png: Path, width: int = 1280, height: int = 1500) -> None:
    args = chromium_args("--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={png}",
                         page.resolve().as_uri())
    try:
        subprocess.run(args, check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(args[8].split("=", 1)[1], ignore_errors=True)


def dump_dom(page: Path) -> str:
    """The page's DOM after Chromium has loaded it."""
    args = chromium_args("--dump-dom", page.resolve().as_uri())
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
    finally:
        shutil.rmtree(args[8].split("=", 1)[1], ignore_errors=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pacing-cds-shot-") as work:
        subprocess.run([sys.executable, "-m", "bench.export", str(Path(work) / "export"), "--patients", "300",
                        "--seed", "3"], check=True, cwd=ROOT)
        # Run in the temporary folder, so that the page names the export as a user would have typed it.
        subprocess.run([str(Path(sys.executable).parent / "pacing-cds"), "worklist", "export", "--out", "out",
                        "--now", "2026-11-20", "--workers", "2"], check=True, cwd=work)
        render(Path(work) / "out" / "worklist.html", PNG)
    print(f"wrote {PNG}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
