"""axe-core (Deque's accessibility engine, from the npm registry, pinned in tests/support/axe/package-lock.json) run
inside the page headless Chromium shows: the WCAG 2.0 and 2.1 A and AA rules.

It is installed once per machine and lock content with `npm ci`, into .venv/ (outside the tracked files); pytest-xdist
workers asking at once wait on a file lock. Missing npm skips with the reason, and fails under CI, where .ci/run
installs it."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.support.backing import require

HERE = Path(__file__).resolve().parent / "axe"
ROOT = Path(__file__).resolve().parents[2]
# WCAG 2.0 and 2.1, A and AA, and axe's best practices (a main landmark, content in landmarks, named table headers).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
   .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                              nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}))))
   .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));
"""


def axe_source() -> str:
    """axe.min.js of the pinned axe-core, installed on first use."""
    npm = require("npm", "apt-get install npm")
    lock = (HERE / "package-lock.json").read_bytes()
    target = ROOT / ".venv" / f"axe-core-{hashlib.sha256(lock).hexdigest()[:12]}"
    script = target / "node_modules" / "axe-core" / "axe.min.js"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".axe-core.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not script.is_file():
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".axe-core-") as work:
                for name in ("package.json", "package-lock.json"):
                    shutil.copy(HERE / name, Path(work) / name)
                result = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=work,
                                        capture_output=True, text=True, timeout=600)
                assert result.returncode == 0, f"npm ci of axe-core failed: {result.stderr[-2000:]}"
                shutil.rmtree(target, ignore_errors=True)
                Path(work).rename(target)
                Path(work).mkdir()  # for the context manager's cleanup
    return script.read_text(encoding="utf-8")


def violations(driver: Any, source: str) -> list[dict[str, Any]]:
    """The WCAG 2.1 A/AA and best-practice violations axe-core finds in the page the driver shows."""
    driver.execute_script(source)
    driver.set_script_timeout(60)
    return driver.execute_async_script(RUN, TAGS)


def described(found: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']}\n  " + "\n  ".join(v["nodes"][:5]) for v in found)
