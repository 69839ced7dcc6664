"""`pacing-cds rules impact`: what a rule change would change, before it is made: every patient of a panel (and
every example request of the repository) evaluated under the rules before the change (the baseline: a folder, or
the rules folder at a git ref) and after it, and what differs.

The panel is evaluated on Dask as the worklist is (cds/panel/job.py): each patient's lines are read and parsed
once, and the same resources are evaluated under both rule sets in the same task, so nothing but the rules can
differ between the two answers. Rules in silent mode answer as if live on both sides: the impact is what the change
does once live. The examples are answered in this process by the hook's own call path.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds.clock import parse_now
from cds.knowledge.diff import diff_knowledge
from cds.knowledge.examples import example_dirs, examples_folder, missing_examples
from cds.logs import escape_controls
from cds.panel.command import (
    REBUILD,
    BulkArgs,
    bulk_misuse,
    error_words,
    fetch_panel,
    hold,
    progress_bar,
    refuse,
    remote_credentials,
)
from cds.panel.impact_model import (
    NONE,
    ExampleResult,
    Impact,
    RuleSet,
    example_flags,
    red_flags_lost,
    row_flags,
    transitions,
)
from cds.panel.rows import IMPACT_COLUMNS, red_flags
from cds.panel.source import NOT_LISTED, Export
from cds.settings import Settings

RED_FLAG_LOST = "red-flag-lost"  # the --fail-on choice
EXIT_RED_FLAG_LOST = 3


class Stop(Exception):
    """Why the command stops before its outputs (None: the reason is printed already), and its exit code."""

    def __init__(self, message: str | None, code: int = 2) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def impact_command(settings: Settings, args: Any) -> int:
    """The command: 0 when done, 2 on unusable arguments or rules, 1 if the panel cannot be evaluated, 3 with
    --fail-on red-flag-lost when a patient or an example loses a red flag."""
    try:
        return _impact(settings, args)
    except Stop as stop:
        return refuse(stop.message, stop.code) if stop.message else stop.code


def _impact(settings: Settings, args: Any) -> int:
    from rich.console import Console

    started = time.perf_counter()
    now, bulk, security = _arguments(settings, args)
    has_panel = args.export is not None or bulk is not None
    rules_dir = Path(args.rules) if args.rules else settings.rules_path
    after = load_rule_set(rules_dir, str(rules_dir))
    with baseline_folder(args.baseline, rules_dir) as folder:
        before = load_rule_set(folder, f"the baseline {args.baseline}")
    impact = Impact(before, after, args.baseline, now, diff_knowledge(before.knowledge, after.knowledge))
    if args.examples:
        examples_dir = examples_folder(rules_dir)
        if examples_dir is not None:
            impact.examples = compare_examples(examples_dir, before, after, settings)
        elif has_panel:
            impact.notes.append(no_examples(rules_dir))
        else:
            raise Stop(no_examples(rules_dir))
    out = Path(args.out)
    if bulk is not None:
        try:
            lock = hold(out)  # held until the command ends: the store and export in OUT are this run's
        except OSError as exc:
            raise Stop(f"cannot use the output folder {out}: {exc.strerror or exc}", 1) from None
        if lock is None:
            raise Stop(f"another pacing-cds run is using {out} (its store and export): this one stops", 1)
    if has_panel:
        _evaluate_panel(impact, args, bulk, security, out, Console(stderr=True))
    impact.seconds = time.perf_counter() - started
    try:
        files = write_outputs(out, impact)
    except OSError as exc:
        raise Stop(f"cannot write the outputs in {out}: {exc.strerror or exc}", 1) from None
    print_summary(impact, files)
    patients, examples = red_flags_lost(impact)
    lost = [f"{n} {who}" for n, who in ((patients, "patient(s)"), (examples, "example(s)")) if n]
    if RED_FLAG_LOST in args.fail_on and lost:
        return refuse(f"{' and '.join(lost)} lose a red flag under the new rules (--fail-on {RED_FLAG_LOST})",
                      EXIT_RED_FLAG_LOST)
    return 0


def _arguments(settings: Settings, args: Any) -> tuple[datetime, BulkArgs | None, Any]:
    """(the moment of evaluation, where to export the panel from (None: not from a server), the credentials of
    --scheduler), before anything is read; Stop on arguments that cannot be used together or at all."""
    try:
        now = parse_now(args.now, settings)
    except ValueError:
        raise Stop(f"--now {args.now!r} is not a date (YYYY-MM-DD) or date-time") from None
    if args.workers is not None and args.workers < 1:
        raise Stop("--workers is 1 or more")
    given = (args.fhir_server, args.group, args.client_id, args.private_key, args.key_id)
    bulk = BulkArgs(*given) if any(given) else None
    if bulk is not None and args.export is not None:
        raise Stop("give the panel as --export or --fhir-server, not both")
    misuse = bulk_misuse(bulk, None, settings.env == "production") if bulk is not None else None
    if misuse:
        raise Stop(misuse)
    if args.export is None and bulk is None:
        if not args.examples:
            raise Stop("nothing to compare: give the panel (--export FOLDER or --fhir-server URL), --examples, or "
                       "both")
        return now, None, None
    if args.export is not None and not Path(args.export).is_dir():
        raise Stop(f"--export {args.export} is not a folder (of Bulk Data NDJSON files, or a worklist's store)")
    security, unusable = remote_credentials(args.scheduler, None, None, None)
    if unusable:
        raise Stop(unusable)
    return now, bulk, security


def no_examples(rules_dir: Path) -> str:
    return f"{missing_examples(rules_dir)}: no example compared"


# ---------------------------------------------------------------- the two rule sets


def load_rule_set(folder: Path, label: str) -> RuleSet:
    """The rules of `folder`, checked as `pacing-cds rules check` checks them; Stop after printing every problem."""
    from cds.panel.workers import rule_bundle
    from cds.startup import checked_rules

    knowledge = checked_rules(folder, label)
    if knowledge is None:
        raise Stop(None)
    return RuleSet(label, knowledge, rule_bundle(folder))


@contextmanager
def baseline_folder(baseline: str, rules_dir: Path) -> Iterator[Path]:
    """The baseline's rules folder: --baseline itself when it is a folder; else --baseline is a git ref of the
    repository holding `rules_dir`, and that folder as it was at the ref is extracted into a temporary folder,
    removed on leaving."""
    if Path(baseline).is_dir():
        yield Path(baseline)
        return
    with tempfile.TemporaryDirectory(prefix="pacing-cds-baseline-") as temporary:
        yield extract_rules(baseline, rules_dir, Path(temporary))


def extract_rules(ref: str, rules_dir: Path, into: Path) -> Path:
    """The rules folder `rules_dir` as it was at git `ref` of its repository, written into `into` (`git archive`,
    extracted with the data filter: no link out of `into`, no device, no special mode); Stop when it cannot be."""
    if ref.startswith("-"):
        raise Stop(f"--baseline {ref!r} is neither a folder nor a git ref")
    if not rules_dir.is_dir():
        raise Stop(f"{rules_dir} is not a folder of rules")
    found = _git(rules_dir, "rev-parse", "--show-toplevel")
    if isinstance(found, Failure):
        raise Stop(f"--baseline {ref} is not a folder, and {rules_dir} is not in a git repository to find it in as a "
                   f"git ref ({found.reason})")
    top = Path(found.decode().strip())
    inside = rules_dir.resolve().relative_to(top.resolve()).as_posix()
    commit = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if isinstance(commit, Failure):
        raise Stop(f"--baseline {ref} is neither a folder nor a commit, branch or tag of the git repository {top}")
    archive = _git(top, "archive", "--format=tar", commit.decode().strip(), "--", inside)
    if isinstance(archive, Failure):
        raise Stop(f"--baseline {ref}: the git repository {top} holds no {inside}/ folder at {ref} ({archive.reason})")
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise Stop(f"--baseline {ref}: {inside}/ at {ref} could not be extracted ({error_words(exc)})") from None
    folder = into / inside
    if not folder.is_dir():
        raise Stop(f"--baseline {ref}: the git repository {top} holds no {inside}/ folder at {ref}")
    return folder


@dataclass(frozen=True)
class Failure:
    """A git command that failed, with the first line of what it said."""

    reason: str


def _git(where: Path, *arguments: str) -> bytes | Failure:
    """What `git -C where ARGUMENTS` writes, or why it failed."""
    try:
        done = subprocess.run(["git", "-C", str(where), *arguments], capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=120, check=False)
    except FileNotFoundError:
        return Failure("git is not installed: give --baseline as a folder")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Failure(error_words(exc))
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return Failure(said[0][:200] if said else f"git exited {done.returncode}")
    return done.stdout


# ---------------------------------------------------------------- the examples


def compare_examples(folder: Path, before: RuleSet, after: RuleSet, settings: Settings) -> list[ExampleResult]:
    """Every example of `folder` answered in-process under both rule sets, each as of its expected.json's now."""
    from cds.engine import RuleEngine
    from cds.fhir.allowlist import AllowList
    from cds.fhir.client import FhirClient

    engines = (RuleEngine(before.knowledge, silent_as_live=True), RuleEngine(after.knowledge, silent_as_live=True))
    allowed = AllowList.parse(settings.allowed_fhir_servers)
    fhir = FhirClient(settings.fhir_timeout_s, settings.fhir_max_pages, max_bytes=settings.fhir_max_bytes,
                      max_entries=settings.fhir_max_entries)
    try:
        results = []
        for example in example_dirs(folder):
            was, flags_was = _answer_example(example, engines[0], fhir, allowed, settings.base_url)
            will, flags_will = _answer_example(example, engines[1], fhir, allowed, settings.base_url)
            results.append(ExampleResult(example.name, was, will, flags_was, flags_will))
        return results
    finally:
        fhir.close()


def _answer_example(folder: Path, engine: Any, fhir: Any, allowed: Any, base_url: str) -> tuple[str, str]:
    """(the card topic codes, the red flags) of an example's answer; the codes say why when it has none."""
    from cds.errors import CdsError
    from cds.services import services_of
    from cds.services.pipeline import answer

    try:
        body = json.loads((folder / "request.json").read_text(encoding="utf-8"))
        expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
        now = datetime.fromisoformat(str(expected["now"]).replace("Z", "+00:00"))
        service = services_of(engine.knowledge).get(str(expected["service"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"error: cannot read the example ({error_words(exc)})", ""
    if service is None:
        return f"error: no service {expected['service']} in these rules", ""
    try:
        outcome = answer(service, body, engine, fhir, now if now.tzinfo else now.replace(tzinfo=UTC),
                         base_url=base_url, allowed=allowed).outcome
    except CdsError as exc:
        return f"error: {exc.message}", ""
    return " ".join(c.source.topic.code for c in outcome.response.cards if c.source.topic), red_flags(
        outcome.evaluation)


# ---------------------------------------------------------------- the panel


def _evaluate_panel(impact: Impact, args: Any, bulk: BulkArgs | None, security: Any, out: Path, console: Any) -> None:
    """The panel's rows under both rule sets, into `impact`; Stop when the panel cannot be read or evaluated."""
    import pyarrow as pa
    from distributed import KilledWorker

    from cds.panel.job import dask_client, run_buckets
    from cds.panel.store import NotSorted
    from cds.panel.workers import RulesPlugin, impact_bucket

    export = _panel(impact, args, bulk, out, console)
    made = not out.exists()
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)  # the spill folder goes in it
    except OSError as exc:
        raise Stop(f"cannot make the output folder {out}: {exc.strerror or exc}", 1) from None
    plugins = [RulesPlugin(impact.before.bundle, silent_as_live=True),
               RulesPlugin(impact.after.bundle, silent_as_live=True)]
    options = {"before": plugins[0].digest, "after": plugins[1].digest}
    try:
        with dask_client(args.scheduler, args.workers or os.cpu_count() or 1, security) as client:
            result = run_buckets(client, export, plugins, impact_bucket, options, impact.now,
                                 progress_bar(console), out)
    except (pa.ArrowException, NotSorted) as exc:
        raise Stop(f"the panel's store could not be read ({error_words(exc)}): {REBUILD}", 1) from None
    except (OSError, KilledWorker) as exc:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, KilledWorker):
            raise Stop(f"the impact stopped: {exc}", 1) from None
        raise Stop(f"cannot reach the Dask scheduler {args.scheduler}: {exc}", 1) from None
    impact.rows, impact.problems, impact.not_listed = result.rows, result.problems, result.not_listed
    impact.notes += result.notes
    impact.workers = result.workers


def _panel(impact: Impact, args: Any, bulk: BulkArgs | None, out: Path, console: Any) -> Export:
    """The panel to evaluate: exported from the FHIR server into OUT, a worklist's store, or an export folder."""
    import pyarrow as pa

    from cds.panel import store
    from cds.panel.source import discover

    if bulk is not None:
        export, failed = fetch_panel(bulk, out, lambda text: console.print(escape_controls(text), markup=False,
                                                                            highlight=False))
        if export is None:
            raise Stop(failed or "the export failed", 1)
        if not export.parts:
            raise Stop(f"the export from {bulk.fhir_server} holds no resources the worklist reads", 1)
        impact.panel = f"{bulk.fhir_server} (exported into {out})"
    else:
        folder = Path(args.export)
        try:
            state = store.load(folder)
            export = discover(folder) if state is None else store.as_export(
                folder, state, [], {}, [f"the panel as the store in {folder} holds it (server {state.server}, "
                                        f"transactionTime {state.transaction_time})"])
        except store.StoreError as exc:
            raise Stop(f"--export {folder}: the panel's store cannot be used ({exc})") from None
        except (OSError, pa.ArrowException) as exc:
            raise Stop(f"--export {folder} cannot be read ({error_words(exc)})") from None
        if state is not None and not export.parts:
            raise Stop(f"--export {folder}: the panel's store holds no patient")
        if state is None and not export.parts:
            refused = ", ".join(p.file for p in export.refused)
            raise Stop(f"--export {folder} holds no .ndjson or .ndjson.gz files"
                       + (f" that are regular files (not read: {refused})" if refused else ""))
        impact.panel = str(folder)
    impact.notes += export.notes + [f"no {t} file in the export: none recorded for any patient (an empty type has "
                                    f"no file in Bulk Data)" for t in export.missing_types]
    return export


# ---------------------------------------------------------------- outputs


def write_outputs(out: Path, impact: Impact) -> list[Path]:
    """impact.csv and problems.csv (with a panel), examples.csv (with examples) and impact.html in `out` (a new
    folder is 0700), each readable by its owner only."""
    from cds.panel.impact_page import page
    from cds.panel.report import not_listed_text, private_file

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    files: list[Path] = []
    if impact.rows is not None:
        with private_file(out / "impact.csv") as handle:
            writer = csv.writer(handle)
            writer.writerow(IMPACT_COLUMNS)
            writer.writerows([_csv_value(row[name]) for name in IMPACT_COLUMNS] for row in impact.rows)
        with private_file(out / "problems.csv") as handle:
            writer = csv.writer(handle)
            writer.writerow(("kind", "file", "line", "message"))
            writer.writerows((p.kind, p.file, p.line, p.message) for p in impact.problems)
            if impact.not_listed:
                writer.writerow((NOT_LISTED, "", "", not_listed_text(impact.not_listed)))
        files += [out / "impact.csv", out / "problems.csv"]
    if impact.examples is not None:
        with private_file(out / "examples.csv") as handle:
            writer = csv.writer(handle)
            writer.writerow(("example", "before", "after", "changed"))
            writer.writerows((e.name, e.before, e.after, _csv_value(e.changed)) for e in impact.examples)
        files.append(out / "examples.csv")
    with private_file(out / "impact.html") as handle:
        handle.write(page(impact, datetime.now(UTC).replace(microsecond=0)))
    return [out / "impact.html", *files]


def _csv_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def print_summary(impact: Impact, files: list[Path]) -> None:
    """The summary on standard output (text from the export with its control characters escaped)."""
    from cds.panel.report import now_text

    lines = [f"Rule change impact: {impact.before.title} (baseline {impact.baseline}) -> {impact.after.title} "
             f"({impact.after.label}); rules in silent mode count as live"]
    diff = impact.diff
    lines.append("rules: no difference in parameters, rules, value sets or shared files" if diff.empty else
                 f"rules: {len(diff.parameters)} parameter(s), {len(diff.rules)} rule(s), {len(diff.value_sets)} "
                 f"value set(s) differ" + (f"; also {', '.join(diff.files)}" if diff.files else ""))
    if impact.rows is not None:
        rows, changed = impact.rows, impact.changed
        lines.append(f"panel: {len(rows)} patients as of {now_text(impact.now)}, {len(changed)} changed "
                     f"({impact.workers} workers)")
        moved = sorted(((key, len(ids)) for key, ids in transitions(rows).items() if key[0] != key[1]),
                       key=lambda item: (-item[1], item[0]))
        if moved:
            width = max(len(f"{a} -> {b}") for (a, b), _ in moved)
            lines.append("  dose recommendation, before -> after: patients")
            lines += [f"    {f'{a} -> {b}':<{width}}  {n}" for (a, b), n in moved]
        same = sum(1 for r in changed if r["recommendation_before"] == r["recommendation_after"])
        if same:
            lines.append(f"  the same dose recommendation, other cards, dose or red flags: {same}")
        flags = [row_flags(r) for r in rows]
        lost, gained = sum(1 for f in flags if f[0]), sum(1 for f in flags if f[1])
        lines.append(f"  red flags: {lost} patient(s) lose one, {gained} gain one")
        problems = len(impact.problems) + impact.not_listed
        if problems:
            lines.append(f"  problems in the export: {problems} (problems.csv)")
    if impact.examples is not None:
        changed_examples = [e for e in impact.examples if e.changed]
        lines.append(f"examples: {len(impact.examples)} compared, {len(changed_examples)} changed")
        lines += [f"  {e.name}: {e.before or NONE} -> {e.after or NONE}" for e in changed_examples]
        lost_examples = sum(1 for e in impact.examples if example_flags(e)[0])
        if lost_examples:
            lines.append(f"  red flags: {lost_examples} example(s) lose one")
    lines += [f"note: {note}" for note in impact.notes]
    lines.append(f"{impact.seconds:.1f} s; wrote {', '.join(str(f) for f in files)}")
    for line in lines:
        print(escape_controls(line))

