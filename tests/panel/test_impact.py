"""`pacing-cds rules impact` as a CDS committee runs it: a rule change's effect on every patient of a panel agrees
with the two worklists it stands for, a git ref is as good a baseline as a folder, a red flag lost fails the run
when asked, the examples a change alters are named, and bad input is told in one line."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.export import patient
from cds.engine import RuleEngine
from cds.knowledge import load_knowledge
from tests.panel.conftest import NOW, NOW_AT, PACING_CDS, Run, one_worker, worklist
from tests.panel.test_bulk_client import key_file
from tests.support.dask_cluster import DaskCluster
from tests.support.examples import EXAMPLES_DIR, SCENARIOS, run_example
from tests.support.fhir_server import FhirServer, SmartClient
from tests.support.rules import RULES, VALUES, edit, set_parameter

pytestmark = pytest.mark.slow  # runs pacing-cds rules impact and worklist

GOAL = ("goal_weekly_minutes", 250)  # goal-met patients (200 minutes a week) are no longer at the goal: progress
# Burst fracture of vertebra, the generated panel's red flags; a fracture of a lumbar vertebra, an example's.
FRACTURE, LUMBAR = "314667001", "S32.0"


@dataclass
class Impact(Run):
    """A finished `pacing-cds rules impact` process and its output folder."""

    def rows(self, name: str = "impact.csv") -> list[dict[str, str]]:
        with open(self.out / name, newline="") as handle:
            return list(csv.DictReader(handle))

    @property
    def page(self) -> str:
        return (self.out / "impact.html").read_text()


def impact(out: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 600) -> Impact:
    """`pacing-cds rules impact --out OUT --now NOW ARGS...` as a user runs it, with `env` added to an environment
    cleared of PACING_CDS_* and DASK_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PACING_CDS_", "DASK_"))} | (env or {})
    done = subprocess.run([str(PACING_CDS), "rules", "impact", "--out", str(out), "--now", NOW, *one_worker(args)],
                          env=env,
                          capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    return Impact(done.returncode, done.stdout, done.stderr, out)


def repository(folder: Path, change: Callable[[Path], None] | None = None) -> Path:
    """A repository's rules/ (returned) and fhir_examples/ in `folder`, copied from the checkout, with `change`
    made to the rules."""
    shutil.copytree(RULES, folder / "rules")
    shutil.copytree(EXAMPLES_DIR, folder / "fhir_examples")
    if change is not None:
        change(folder / "rules")
    return folder / "rules"


def goal_change(rules: Path) -> None:
    set_parameter(rules, *GOAL)


def fracture_dropped(rules: Path) -> None:
    """Vertebral fracture's red flag no longer raised by the codes the generated panel and an example record."""
    value_set = rules / "value-sets" / "vertebral-fracture.yaml"
    edit(value_set, f'  - {{code: "{FRACTURE}"', f'  # - {{code: "{FRACTURE}"')
    edit(value_set, f"  - {{prefix: {LUMBAR},", f"  # - {{prefix: {LUMBAR},")


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=CDS committee", "-c", "user.email=cds@example.org",
                    "-c", "commit.gpgsign=false", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rules before the change: the checkout's, copied once (a later edit of the checkout does not move it)."""
    return repository(tmp_path_factory.mktemp("baseline"))


@pytest.fixture(scope="module")
def goal_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repository(tmp_path_factory.mktemp("goal"), goal_change)


@pytest.fixture(scope="module")
def folder_run(dask_cluster: DaskCluster, generated: Path, baseline: Path, goal_rules: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Impact:
    """The goal change over the generated panel and the examples, the baseline a folder."""
    return impact(tmp_path_factory.mktemp("impact"), "--baseline", str(baseline), "--rules", str(goal_rules),
                  "--export", str(generated), "--examples", "--scheduler", dask_cluster.address,
                  "--fail-on", "red-flag-lost")


def by_patient(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {r["patient"]: r for r in rows}


def test_each_patient_before_and_after_is_what_the_two_worklists_say(
        folder_run: Impact, dask_cluster: DaskCluster, generated: Path, baseline: Path, goal_rules: Path,
        tmp_path: Path) -> None:
    assert folder_run.code == 0, folder_run.stderr
    assert "Traceback" not in folder_run.stderr
    lists = {}
    for side, rules in (("before", baseline), ("after", goal_rules)):
        run = worklist(generated, tmp_path / side, "--scheduler", dask_cluster.address,
                       env={"PACING_CDS_RULES_DIR": str(rules)})
        assert run.code == 0, run.stderr
        with open(run.out / "worklist.csv", newline="") as handle:
            lists[side] = by_patient(list(csv.DictReader(handle)))
    rows = folder_run.rows()
    assert [r["patient"] for r in rows] == sorted(lists["before"]) == sorted(lists["after"])
    for row in rows:
        for side in ("before", "after"):
            listed = lists[side][row["patient"]]
            assert row[side] == listed["recommendations"], (row, side)
            assert row[f"dose_{side}"] == listed["dose_proposed"], (row, side)
            assert row[f"red_flags_{side}"] == listed["red_flags"], (row, side)
            assert row[f"recommendation_{side}"] in [*listed["recommendations"].split()[:1], ""]
        differs = any(row[f"{p}before"] != row[f"{p}after"] for p in ("", "dose_", "recommendation_", "red_flags_"))
        assert row["changed"] == ("true" if differs else "false")
    moved = [r for r in rows if (r["recommendation_before"], r["recommendation_after"]) == ("goal-met", "progress")]
    assert moved, "the change moves patients at the goal on to progress"
    assert re.search(rf"^    goal-met -> progress +{len(moved)}$", folder_run.stdout, re.MULTILINE)
    assert f"{len(rows)} patients as of 2026-11-20T09:00:00Z, {sum(r['changed'] == 'true' for r in rows)} changed" \
        in folder_run.stdout
    assert "red flags: 0 patient(s) lose one, 0 gain one" in folder_run.stdout


def test_the_page_says_what_differs_and_what_it_does(folder_run: Impact) -> None:
    page = folder_run.page
    assert "<script" not in page and "<link" not in page and " src=" not in page, "self-contained, no script"
    assert "Rules in silent mode are evaluated as if live" in page
    assert f"<td>{GOAL[0]}</td><td><span class=changed>changed</span></td><td class=n>{VALUES[GOAL[0]]:g}</td>" \
           f"<td class=n>{GOAL[1]}</td><td>min/wk</td>" in page
    assert "Dose recommendation, before and after" in page and "class='n moved'" in page
    assert "Examples (" in page and "<td>goal-met</td>" in page
    assert {"impact.csv", "impact.html", "examples.csv", "problems.csv"} <= {p.name for p in folder_run.out.iterdir()}
    assert all(p.stat().st_mode & 0o077 == 0 for p in folder_run.out.iterdir() if p.is_file()), "patient data: 0600"


def test_a_git_ref_baseline_gives_what_the_folder_gives(folder_run: Impact, dask_cluster: DaskCluster,
                                                         generated: Path, tmp_path: Path) -> None:
    rules = repository(tmp_path / "repo")
    git(tmp_path / "repo", "init", "-q")
    git(tmp_path / "repo", "add", ".")
    git(tmp_path / "repo", "commit", "-q", "-m", "the rules in force")
    goal_change(rules)  # the change under review, not committed
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = impact(tmp_path / "out", "--baseline", "HEAD", "--rules", str(rules), "--export", str(generated),
                 "--examples", "--scheduler", dask_cluster.address, "--fail-on", "red-flag-lost",
                 env={"TMPDIR": str(scratch)})
    assert run.code == 0, run.stderr
    assert "(baseline HEAD)" in run.stdout
    assert (run.out / "impact.csv").read_text() == (folder_run.out / "impact.csv").read_text()
    assert (run.out / "examples.csv").read_text() == (folder_run.out / "examples.csv").read_text()
    assert not any(scratch.glob("pacing-cds-baseline-*")), "the rules extracted from git are removed"


def test_a_red_flag_lost_fails_the_run_when_asked(dask_cluster: DaskCluster, generated: Path, baseline: Path,
                                                   tmp_path: Path) -> None:
    rules = repository(tmp_path / "repo", fracture_dropped)
    asked = impact(tmp_path / "asked", "--baseline", str(baseline), "--rules", str(rules), "--export",
                   str(generated), "--scheduler", dask_cluster.address, "--fail-on", "red-flag-lost")
    lost = [r for r in asked.rows() if "vertebral-fracture" in r["red_flags_before"].split()]
    assert lost, "the generated panel has vertebral fractures"
    assert all("vertebral-fracture" not in r["red_flags_after"].split() and r["changed"] == "true" for r in lost)
    assert asked.code == 3, asked.stderr
    assert f"{len(lost)} patient(s) lose a red flag under the new rules (--fail-on red-flag-lost)" in asked.stderr
    assert f"red flags: {len(lost)} patient(s) lose one" in asked.stdout
    assert f"Red flags lost ({len(lost)})" in asked.page and "Value sets" in asked.page
    assert f"SNOMED CT {FRACTURE} removed" in asked.page and f"ICD-10-CM {LUMBAR} removed" in asked.page
    assert "Traceback" not in asked.stderr
    not_asked = impact(tmp_path / "not-asked", "--baseline", str(baseline), "--rules", str(rules), "--examples")
    assert not_asked.code == 0, "without --fail-on a red flag lost is reported, not a failure"
    failing = impact(tmp_path / "examples", "--baseline", str(baseline), "--rules", str(rules), "--examples",
                     "--fail-on", "red-flag-lost")
    losing = [r["example"] for r in failing.rows("examples.csv") if "red-flag" in r["before"].split()
              and "red-flag" not in r["after"].split()]
    assert losing == ["fracture-resolved-without-date"], "the example recording a fracture of a lumbar vertebra"
    assert failing.code == 3 and f"{len(losing)} example(s) lose a red flag" in failing.stderr


def test_a_panel_exported_from_the_server_and_then_its_store(dask_cluster: DaskCluster, baseline: Path,
                                                              goal_rules: Path, tmp_path: Path) -> None:
    """--fhir-server exports the Group into OUT as the nightly worklist does; that store, given as --export, is
    the same panel (last night's, without asking the server again)."""
    client = SmartClient.generate("pacing-cds-impact", "ES384")
    server = FhirServer(tmp_path / "sekmet", smart_client=client)
    try:
        people = [patient(i, 11, NOW_AT, 30)[1] for i in range(5)]
        server.load([resource for resources in people for resource in resources])
        server.load_group("panel-1", [resources[0]["id"] for resources in people[:4]])
        compare = ("--baseline", str(baseline), "--rules", str(goal_rules), "--scheduler", dask_cluster.address)
        fetched = impact(tmp_path / "out", *compare, "--fhir-server", server.base_url, "--group", "panel-1",
                         "--client-id", client.client_id, "--private-key", str(key_file(client, tmp_path)),
                         "--key-id", client.kid)
    finally:
        server.stop()
    assert fetched.code == 0, fetched.stderr
    assert [r["patient"] for r in fetched.rows()] == sorted(f"Patient/{p[0]['id']}" for p in people[:4])
    assert "full export (transactionTime " in fetched.stdout
    stored = impact(tmp_path / "again", *compare, "--export", str(tmp_path / "out" / "store"))
    assert stored.code == 0, stored.stderr
    assert stored.rows() == fetched.rows()
    assert f"the panel as the store in {tmp_path / 'out' / 'store'} holds it" in stored.stdout


def example_codes(rules: Path) -> dict[str, str]:
    """Each example's card topic codes under these rules, with silent rules live, as the golden tests answer it."""
    engine = RuleEngine(load_knowledge(rules), silent_as_live=True)
    return {name: " ".join(c.source.topic.code for c in run_example(name, engine).response.cards if c.source.topic)
            for name in SCENARIOS}


def test_the_examples_a_change_alters_are_listed_and_no_others(baseline: Path, goal_rules: Path,
                                                               tmp_path: Path) -> None:
    run = impact(tmp_path / "out", "--baseline", str(baseline), "--rules", str(goal_rules), "--examples")
    assert run.code == 0, run.stderr
    before, after = example_codes(baseline), example_codes(goal_rules)
    altered = {name for name in SCENARIOS if before[name] != after[name]}
    assert "goal-met" in altered and "progress-walking" not in altered
    rows = run.rows("examples.csv")
    assert {r["example"]: (r["before"], r["after"], r["changed"]) for r in rows} == {
        name: (before[name], after[name], "true" if name in altered else "false") for name in SCENARIOS}
    listed = {line.split(":")[0].strip() for line in run.stdout.splitlines() if line.startswith("  ")}
    assert listed == altered
    assert f"examples: {len(SCENARIOS)} compared, {len(altered)} changed" in run.stdout
    assert all(f"<td>{name}</td>" in run.page for name in altered)
    assert "<td>progress-walking</td>" not in run.page
    assert not (run.out / "impact.csv").exists(), "no panel, no patient rows"


def test_examples_without_their_folder_are_said_to_be_missing(baseline: Path, tmp_path: Path) -> None:
    """An installed package has rules and no fhir_examples beside them."""
    shutil.copytree(RULES, tmp_path / "installed" / "rules")
    run = impact(tmp_path / "out", "--baseline", str(baseline), "--rules", str(tmp_path / "installed" / "rules"),
                 "--examples")
    assert run.code == 2
    assert run.stderr.strip().splitlines() == [
        f"pacing-cds: no fhir_examples folder beside {tmp_path / 'installed' / 'rules'} (an installed package has "
        f"none): no example compared"]


def bad_git_ref(tmp_path: Path) -> list[str]:
    rules = repository(tmp_path / "repo")
    git(tmp_path / "repo", "init", "-q")
    git(tmp_path / "repo", "add", ".")
    git(tmp_path / "repo", "commit", "-q", "-m", "rules")
    return ["--baseline", "no-such-branch", "--rules", str(rules), "--examples"]


def not_a_repository(tmp_path: Path) -> list[str]:
    return ["--baseline", "HEAD", "--rules", str(repository(tmp_path / "copy")), "--examples"]


def ref_without_rules(tmp_path: Path) -> list[str]:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text("Rules to come.\n")
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "before the rules")
    rules = repository(folder)
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "the rules")
    return ["--baseline", "HEAD~1", "--rules", str(rules), "--examples"]


def nothing_to_compare(tmp_path: Path) -> list[str]:
    return ["--baseline", str(RULES)]


def baseline_not_rules(tmp_path: Path) -> list[str]:
    (tmp_path / "empty").mkdir()
    return ["--baseline", str(tmp_path / "empty"), "--rules", str(repository(tmp_path / "repo")), "--examples"]


def export_not_a_folder(tmp_path: Path) -> list[str]:
    return ["--baseline", str(RULES), "--export", str(tmp_path / "nowhere")]


def both_panels(tmp_path: Path) -> list[str]:
    return ["--baseline", str(RULES), "--export", str(tmp_path), "--fhir-server", "https://ehr.example.org/fhir"]


@pytest.mark.parametrize(("case", "says"), [
    (bad_git_ref, r"--baseline no-such-branch is neither a folder nor a commit, branch or tag of the git repository "),
    (not_a_repository, r"--baseline HEAD is not a folder, and .* is not in a git repository to find it in as a git "
                       r"ref \(fatal: not a git repository"),
    (ref_without_rules, r"--baseline HEAD~1: the git repository .* holds no rules/ folder at HEAD~1"),
    (nothing_to_compare, r"nothing to compare: give the panel \(--export FOLDER or --fhir-server URL\), --examples, "
                         r"or both$"),
    (baseline_not_rules, r"\d+ problem\(s\) in the baseline .*/empty:$"),
    (export_not_a_folder, r"--export .*/nowhere is not a folder \(of Bulk Data NDJSON files, or a worklist's store\)$"),
    (both_panels, r"give the panel as --export or --fhir-server, not both$"),
], ids=lambda value: value.__name__ if callable(value) else "")
def test_bad_input_is_told_in_a_line(case: Callable[[Path], list[str]], says: str, tmp_path: Path) -> None:
    run = impact(tmp_path / "out", *case(tmp_path))
    assert run.code == 2, run.stderr
    assert re.match(f"pacing-cds: {says}", run.stderr.splitlines()[0]), run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists(), "nothing written"


def test_rules_put_in_silent_mode_count_as_live(baseline: Path, tmp_path: Path) -> None:
    """Rules put in silent mode (a pilot) change no answer in the impact: it measures the rules once live, and
    honouring the silent mode here would have shown the goal-met example moving on to progress."""
    def silent(rules: Path) -> None:
        edit(rules / "goal-met" / "rule.yaml", "  kind: dose\n", "  kind: dose\n  mode: silent\n", count=2)

    run = impact(tmp_path / "out", "--baseline", str(baseline), "--rules", str(repository(tmp_path / "repo", silent)),
                 "--examples")
    assert run.code == 0, run.stderr
    assert [r for r in run.rows("examples.csv") if r["changed"] == "true"] == []
    assert "mode live → silent" in run.page
    assert "Rules in silent mode: after: goal-met, goal-met-active." in run.page
