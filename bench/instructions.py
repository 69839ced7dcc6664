"""Instructions per in-process call, counted by valgrind (callgrind), for this tree and a baseline commit in one run.

    .venv/bin/python bench/instructions.py                      # against the parent commit
    .venv/bin/python bench/instructions.py --baseline 8c6239d   # against any commit
    .venv/bin/python bench/instructions.py --days 365 --calls 20

Wall-clock timings move with whatever else the machine does; an instruction count does not (the same binary, input
and environment give the same count). Each tree answers the same pacing-review request (bench/requests.py) in
process, by the one call path: 5 warm-up calls, then N calls; the count of a run with N = 0 is subtracted, so start-up
and imports cancel out (the heap is collected and frozen after the warm-up calls, as a served worker's is). The
baseline is checked out in a temporary git worktree and removed afterwards. Needs
valgrind (Debian package valgrind).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = """
import sys
from datetime import datetime
from pathlib import Path
import orjson
root, days, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, root)
from bench.requests import NOW, patient_view
from cds.engine import RuleEngine, load_knowledge
from cds.fhir.client import FhirClient
from cds.fhir.typed import decode_request
from cds.services import services_of
from cds.services.pipeline import answer
now = datetime.fromisoformat(NOW.replace("Z", "+00:00")) if isinstance(NOW, str) else NOW
knowledge = load_knowledge(Path(root) / "rules")
engine, service = RuleEngine(knowledge), services_of(knowledge)["pacing-review"]
raw, fhir = orjson.dumps(patient_view(days)), FhirClient(3.0, 10)
for _ in range(5):
    answer(service, decode_request(raw, service.typed_keys), engine, fhir, now)
import gc
gc.collect()
gc.freeze()  # as a served worker settles its heap: a full collection of the start-up objects is not a call's cost
for _ in range(n):
    answer(service, decode_request(raw, service.typed_keys), engine, fhir, now)
"""


def instructions(tree: Path, days: int, calls: int, workdir: Path) -> int:
    """Instructions of one run of the script in `tree` (callgrind's total, I refs)."""
    script = workdir / "calls.py"
    script.write_text(CALLS)
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir / 'out'}",
                          sys.executable, str(script), str(tree), str(days), str(calls)],
                         cwd=tree, capture_output=True, text=True, timeout=3600,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"})
    found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed in {tree}: {run.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_call(tree: Path, days: int, calls: int, workdir: Path) -> float:
    """Both counted runs load the same cached bytecode: a first run without valgrind compiles and caches it (a
    fresh worktree has none, and compiling it would be counted in one run only)."""
    (workdir / "calls.py").write_text(CALLS)
    subprocess.run([sys.executable, str(workdir / "calls.py"), str(tree), str(days), "0"], cwd=tree, check=True,
                   capture_output=True, timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)})
    none = instructions(tree, days, 0, workdir)
    return (instructions(tree, days, calls, workdir) - none) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="HEAD~1", help="the commit to compare with (default: the parent)")
    parser.add_argument("--days", type=int, default=90, help="days of data in the request (default 90)")
    parser.add_argument("--calls", type=int, default=40, help="calls counted in each tree (default 40)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pacing-cds-instructions-") as temp:
        work, base = Path(temp), Path(temp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            rows = [(f"baseline {args.baseline}", per_call(base, args.days, args.calls, work)),
                    ("this tree", per_call(ROOT, args.days, args.calls, work))]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    print(f"Instructions per in-process pacing-review call, {args.days} days of data, {args.calls} calls counted\n")
    print("| tree | M instructions / call | against the baseline |\n|---|---:|---:|")
    for name, count in rows:
        print(f"| {name} | {count / 1e6:.2f} | {count / rows[0][1]:.3f} x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
