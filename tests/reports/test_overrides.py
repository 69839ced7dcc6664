"""`pacing-cds feedback report --html`: override trends per rule and ISO week, counted from a seeded audit (cards
issued at pinned instants, feedback with pinned outcome timestamps) on SQLite and PostgreSQL; the rules overridden
past the alert listed first with their reasons; the page inert whatever the client sent."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds.engine import Knowledge, load_knowledge
from cds.hooks.models import Feedback
from cds.reports.overrides import (
    Alert,
    Counts,
    RuleKey,
    build_report,
    day_counts,
    flagged,
    overrides_command,
    page,
    weekly_counts,
    window_counts,
)
from cds.settings import load_settings
from cds.store.database import SHOWN, SILENT, CardEntry, Store
from tests.conftest import ROOT, VENV_BIN
from tests.support.backing import fresh_database

SERVICE = "pacing-review"
OURS = "https://pacing-cds.example.org/CodeSystem/override-reason"  # rules/ruleset.yaml override_reason_system
HOSTILE = "<script>alert(1)</script>"
HOSTILE_COMMENT = "<img src=x onerror=alert(2)>"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday; its week starts Monday 16 November
GENERATED = "2026-11-20T09:00:00+00:00"
PERIOD = (date(2026, 8, 31), date(2026, 11, 21))  # the twelve weeks to the report's day, as the page counts them
W0, W1, W2, W3, W4, W6 = (date(2026, 11, 16), date(2026, 11, 9), date(2026, 11, 2), date(2026, 10, 26),
                          date(2026, 10, 19), date(2026, 10, 5))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Seeder:
    """Issues cards and sends feedback on them, at the instants the test gives (UTC, ISO 8601 without a zone)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def card(self, rule: str | None, when: str, mode: str = SHOWN, topic: str | None = None,
             version: str = "0.2.0") -> str:
        card_uuid = str(uuid.uuid4())
        entry = CardEntry(card_uuid, topic or rule, rule, version if rule else None, mode,
                          {"summary": "would-be"} if mode == SILENT else None)
        self.store.record_issued_cards(SERVICE, str(uuid.uuid4()), [entry], patient_id="p", at=at(when))
        return card_uuid

    def accept(self, card_uuid: str, when: str) -> None:
        self.send({"card": card_uuid, "outcome": "accepted", "outcomeTimestamp": f"{when}Z",
                   "acceptedSuggestions": [{"id": "suggestion"}]})

    def override(self, card_uuid: str, when: str, code: str | None = None, system: str = OURS,
                 comment: str | None = None) -> None:
        reason: dict[str, Any] = {}
        if code is not None:
            reason["reason"] = {"code": code, "system": system}
        if comment is not None:
            reason["userComment"] = comment
        self.send({"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": f"{when}Z",
                   **({"overrideReason": reason} if reason else {})})

    def send(self, item: dict[str, Any]) -> None:
        assert self.store.add_feedback(SERVICE, [Feedback.model_validate(item)]) == 1

    def cards(self, rule: str | None, when: str, count: int, outcome: str | None = None, code: str | None = None,
              **card: Any) -> None:
        """`count` cards issued at `when`, each answered an hour later with `outcome` (or not at all)."""
        answered = (at(when) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        for _ in range(count):
            card_uuid = self.card(rule, when, **card)
            if outcome == "accepted":
                self.accept(card_uuid, answered)
            elif outcome == "overridden":
                self.override(card_uuid, answered, code)


def seed(store: Store) -> None:
    s = Seeder(store)
    # progress: 9 of 13 cards with feedback overridden over the four weeks to 20 November (69.2 %): flagged.
    monday = "2026-11-16T00:30:00"  # just after midnight UTC: the report's week
    s.override(s.card("progress", monday), "2026-11-16T09:00:00", "clinical-judgement", comment="Patient is improving")
    s.override(s.card("progress", monday), "2026-11-16T09:05:00", "clinical-judgement")
    s.override(s.card("progress", monday), "2026-11-16T09:10:00", HOSTILE, comment=HOSTILE_COMMENT)
    s.card("progress", monday)  # no feedback: dismissed or ignored
    sunday = "2026-11-15T23:30:00"  # just before midnight UTC: the week before
    s.cards("progress", sunday, 2, "overridden", "patient-declined")
    s.cards("progress", "2026-11-10T10:00:00", 2, "accepted")
    s.override(s.card("progress", "2026-11-10T10:00:00"), "2026-11-10T11:00:00", "busy",
               system="http://other.example/reasons")
    s.card("progress", sunday)
    twice = s.card("progress", "2026-11-11T08:00:00")  # overridden, then accepted: accepted counts
    s.override(twice, "2026-11-11T10:00:00", "clinical-judgement")
    s.accept(twice, "2026-11-11T12:00:00")
    again = s.card("progress", "2026-11-12T08:00:00")  # accepted, then overridden: overridden counts
    s.accept(again, "2026-11-12T09:00:00")
    s.override(again, "2026-11-12T10:00:00", "clinical-judgement")
    tie = s.card("progress", "2026-11-13T08:00:00")  # two outcomes at one instant: the later arrival counts
    s.accept(tie, "2026-11-13T09:00:00")
    s.override(tie, "2026-11-13T09:00:00", "clinical-judgement")
    s.cards("progress", "2026-10-27T08:00:00", 1, "overridden", "clinical-judgement")
    s.cards("progress", "2026-10-27T08:00:00", 1, "accepted")
    s.cards("progress", "2026-10-06T08:00:00", 5, "accepted")  # before the alert's weeks: in the table only
    s.cards("progress", "2026-11-23T08:00:00", 1, "overridden", "clinical-judgement")  # after the report's day
    # hold: 5 of 10 overridden, at the alert's rate and not above it.
    s.cards("hold", "2026-11-03T08:00:00", 5, "overridden", "already-addressed")
    s.cards("hold", "2026-11-03T08:00:00", 5, "accepted")
    # step-back: every card overridden, but 9 with feedback are too few.
    s.cards("step-back", "2026-11-10T08:00:00", 9, "overridden", "clinical-judgement")
    # re-baseline: 10 overridden on Friday 23 October, the day before the four weeks to 20 November begin.
    s.cards("re-baseline", "2026-10-23T08:00:00", 10, "overridden", "data-not-representative")
    s.cards("re-baseline", "2026-11-18T08:00:00", 1, "accepted")
    # inactivity (silent in these rules): would-be cards, no feedback possible.
    s.cards("inactivity", "2026-11-17T08:00:00", 3, mode=SILENT, version="0.1.0")
    s.cards("inactivity", "2026-11-04T08:00:00", 2, mode=SILENT, version="0.1.0")
    # cards issued before rules were recorded, under their topic; and a rule no longer in the rules.
    s.cards(None, "2026-11-10T08:00:00", 1, "overridden", "patient-declined", topic="hold")
    s.cards(None, "2026-11-10T08:00:00", 1, topic="hold")
    s.cards("retired-rule", "2026-11-17T08:00:00", 1, topic="hold", version="0.1.0")


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of rules/ with the inactivity rule in pilot (silent)."""
    target = tmp_path_factory.mktemp("overrides") / "rules"
    shutil.copytree(ROOT / "rules", target)
    path = target / "inactivity" / "rule.yaml"
    document = yaml.safe_load(path.read_text())
    for rule in document["rules"]:
        if rule["id"] == "inactivity":
            rule["mode"] = "silent"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return target


@pytest.fixture(scope="module")
def silent_knowledge(rules: Path) -> Knowledge:
    return load_knowledge(rules)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    seeded = Store(fresh_database(request.param, tmp_path_factory.mktemp("overrides-db"), request))
    seeded.create_schema()
    seed(seeded)
    yield seeded
    seeded.close()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The seeded audit in an SQLite file, for the command."""
    url = f"sqlite:///{tmp_path_factory.mktemp('overrides-cli') / 'cds.db'}"
    seeded = Store(url)
    seeded.create_schema()
    seed(seeded)
    seeded.close()
    return url


@dataclass
class Part:
    """A rule's section, or a flagged rule's box: its tables (rows of cell texts), charts, captions and text."""

    tables: list[list[list[str]]] = field(default_factory=list)
    svgs: int = 0
    captions: list[str] = field(default_factory=list)
    text: str = ""

    def rows(self, index: int) -> dict[str, list[str]]:
        """A table by its first column, the header left out."""
        return {row[0]: row[1:] for row in self.tables[index][1:]}


class Page(HTMLParser):
    """The page as a reader meets it: the flagged rules in order, then each rule's tables, chart and words."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.flags: dict[str, Part] = {}
        self.sections: dict[str, Part] = {}
        self.text = ""
        self._part: Part | None = None
        self._open: list[str] = []  # the tags open inside the current part
        self._row: list[str] | None = None
        self._cell: str | None = None
        self._caption: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(str(found["id"]))
        if self._part is None:
            if tag == "section" and found.get("data-rule"):
                self._part = self.sections.setdefault(str(found["data-rule"]), Part())
            elif tag == "div" and found.get("data-flag"):
                self._part = self.flags.setdefault(str(found["data-flag"]), Part())
            else:
                return
        if tag not in ("br", "img", "meta", "hr"):  # void elements: no end tag
            self._open.append(tag)
        if tag == "table":
            self._part.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "svg":
            self._part.svgs += 1
        elif tag == "figcaption":
            self._caption = ""

    def handle_endtag(self, tag: str) -> None:
        if self._part is None:
            return
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._part.tables[-1].append(self._row)
            self._row = None
        elif tag == "figcaption" and self._caption is not None:
            self._part.captions.append(self._caption)
            self._caption = None
        if self._open and self._open[-1] == tag:
            self._open.pop()
            if not self._open:
                self._part = None

    def handle_data(self, data: str) -> None:
        self.text += data
        if self._part is None:
            return
        self._part.text += data
        if self._cell is not None:
            self._cell += data
        if self._caption is not None:
            self._caption += data

    def weeks(self, rule: str) -> dict[str, list[str]]:
        """The rule's week table: week starting (or the total row's label) -> the other cells."""
        return self.sections[rule].rows(0)

    def reasons(self, rule: str) -> dict[str, list[str]]:
        """The rule's override reasons over the period: code -> (reason, cards)."""
        return self.sections[rule].rows(1)


def counts(c: Counts) -> tuple[int, int, int, int, int]:
    return c.shown, c.accepted, c.overridden, c.dismissed, c.silent


@pytest.fixture(scope="module")
def report_page(store: Store, silent_knowledge: Knowledge) -> tuple[str, Page]:
    text = page(build_report(store, silent_knowledge, NOW, GENERATED))
    return text, Page(text)


def test_each_card_counts_once_in_its_week_by_its_latest_outcome(store: Store) -> None:
    weeks = weekly_counts(store, *PERIOD)
    progress = weeks[RuleKey("progress")]
    assert {w: counts(c) for w, c in progress.weeks.items()} == {
        W0: (4, 0, 3, 1, 0),  # the card issued at 00:30 on Monday counts in the Monday's week
        W1: (9, 3, 5, 1, 0),  # of the cards answered twice, the later outcome counts
        W3: (2, 1, 1, 0, 0),
        W6: (5, 5, 0, 0, 0),
    }, "the card issued after the report's day is left out"
    assert progress.weeks[W1].reasons == {(OURS, "patient-declined"): 2, (OURS, "clinical-judgement"): 2,
                                          ("http://other.example/reasons", "busy"): 1}
    assert progress.weeks[W0].reasons == {(OURS, "clinical-judgement"): 2, (OURS, HOSTILE): 1}
    assert counts(progress.total()) == (20, 9, 9, 2, 0)
    assert {w: counts(c) for w, c in weeks[RuleKey("inactivity")].weeks.items()} == {W0: (0, 0, 0, 0, 3),
                                                                                     W2: (0, 0, 0, 0, 2)}
    assert {w: counts(c) for w, c in weeks[RuleKey("re-baseline")].weeks.items()} == {W4: (10, 0, 10, 0, 0),
                                                                                      W0: (1, 1, 0, 0, 0)}
    unrecorded = weeks[RuleKey(None, "hold")]
    assert unrecorded.rule.label == "topic hold (rule not recorded)"
    assert {w: counts(c) for w, c in unrecorded.weeks.items()} == {W1: (2, 0, 1, 1, 0)}
    assert counts(weeks[RuleKey("hold")].total()) == (10, 5, 5, 0, 0)
    assert weeks[RuleKey("progress")].versions == {"0.2.0"} and weeks[RuleKey("inactivity")].versions == {"0.1.0"}
    assert set(weekly_counts(store, W0, PERIOD[1])) == {RuleKey("progress"), RuleKey("inactivity"),
                                                       RuleKey("re-baseline"), RuleKey("retired-rule")}


def test_the_alert_flags_a_rate_above_the_line_with_enough_cards_in_the_weeks_to_the_day(store: Store) -> None:
    alert = Alert(rate=0.5, weeks=4, min_cards=10)
    rows = day_counts(store, *PERIOD)
    window = window_counts(rows, *alert.window(date(2026, 11, 20)))
    assert counts(window[RuleKey("progress")]) == (15, 4, 9, 2, 0)
    assert flagged(window, alert) == [RuleKey("progress")], "hold is at the line, step-back has 9 with feedback"
    assert window[RuleKey("hold")].rate == 0.5 and window[RuleKey("step-back")].with_feedback == 9
    assert counts(window[RuleKey("re-baseline")]) == (1, 1, 0, 0, 0), "23 October is before the four weeks"
    a_day_earlier = window_counts(rows, *alert.window(date(2026, 11, 19)))
    assert flagged(a_day_earlier, alert) == [RuleKey("re-baseline"), RuleKey("progress")], "highest rate first"
    assert flagged(window, Alert(rate=0.5, weeks=4, min_cards=9)) == [RuleKey("step-back"), RuleKey("progress")]


def test_the_page_carries_the_weekly_numbers_per_rule(report_page: tuple[str, Page]) -> None:
    _, parsed = report_page
    progress = parsed.weeks("progress")
    assert progress["2026-11-16"] == ["4", "0", "3", "1", "0", "100.0%"]
    assert progress["2026-11-09"] == ["9", "3", "5", "1", "0", "62.5%"]
    assert progress["2026-10-05"] == ["5", "5", "0", "0", "0", "0.0%"]
    assert progress["2026-09-28"] == ["0", "0", "0", "0", "0", "–"]
    assert progress["all 12 weeks"] == ["20", "9", "9", "2", "0", "50.0%"]
    assert list(progress)[0] == "2026-08-31" and len(progress) == 13, "twelve weeks, oldest first, then the total"
    assert parsed.sections["progress"].tables[0][0] == ["week starting", "shown", "accepted", "overridden",
                                                        "dismissed", "silent", "override rate"]
    assert parsed.weeks("topic hold (rule not recorded)")["2026-11-09"] == ["2", "0", "1", "1", "0", "100.0%"]
    assert parsed.reasons("progress")["clinical-judgement"] == ["Clinical judgement", "5"]
    assert parsed.reasons("progress")["busy"][0].startswith("(unknown reason) system http://other.example/reasons")
    assert "not in the current rules" in parsed.sections["retired-rule"].text
    assert "cards issued before rules were recorded" in parsed.sections["topic hold (rule not recorded)"].text
    assert "dismissed or ignored" in parsed.text and "only two outcomes, accepted and overridden" in parsed.text


def test_the_flagged_rule_comes_first_with_its_reasons(report_page: tuple[str, Page]) -> None:
    _, parsed = report_page
    assert list(parsed.flags) == ["progress"], "hold is at the line, step-back has too few cards with feedback"
    assert list(parsed.sections)[0] == "progress", "the flagged rule's weeks come first too"
    flag = parsed.flags["progress"]
    assert "override rate 69.2%" in flag.text and "9 overridden, 4 accepted (13 with feedback)" in flag.text
    assert "issued from 2026-10-24 to 2026-11-20" in flag.text
    assert flag.rows(0) == {"clinical-judgement": ["Clinical judgement", "5"],
                            "patient-declined": ["Patient declined", "2"],
                            HOSTILE: ["(unknown reason)", "1"],
                            "busy": ["(unknown reason) system http://other.example/reasons", "1"]}
    assert "Patient is improving" in flag.text and HOSTILE_COMMENT in flag.text
    for name, value in (("override_rate_alert", "0.5"), ("override_alert_weeks", "4"),
                        ("override_alert_min_cards", "10")):
        assert f"{name} = {value}" in parsed.text


def test_a_silent_rule_shows_its_would_be_cards(report_page: tuple[str, Page]) -> None:
    _, parsed = report_page
    inactivity = parsed.sections["inactivity"]
    assert "silent: would-be counts" in inactivity.text
    assert parsed.weeks("inactivity")["2026-11-16"] == ["0", "0", "0", "0", "3", "–"]
    assert parsed.weeks("inactivity")["2026-11-02"] == ["0", "0", "0", "0", "2", "–"]
    assert "silent (would-be)" in inactivity.captions[0] and "shown:" not in inactivity.captions[0]
    assert "No card shown in these weeks, so no feedback." in inactivity.text
    assert "silent: would-be" not in parsed.sections["progress"].text


def test_client_text_is_inert_and_every_rule_has_its_chart(report_page: tuple[str, Page]) -> None:
    text, parsed = report_page
    assert HOSTILE not in text and HOSTILE_COMMENT not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "script" not in parsed.tags and "img" not in parsed.tags and "<script" not in text
    assert HOSTILE in parsed.text, "escaped, the code still reads as sent"
    for rule, section in parsed.sections.items():
        assert section.svgs == 1, rule
        assert section.captions and "The table above gives the same numbers" in section.captions[0]
    assert "shown: solid line, circles" in parsed.sections["progress"].captions[0]
    assert "overridden: dotted line, triangles" in parsed.sections["progress"].captions[0]
    assert "#0072b2" in text.lower() and "#d55e00" in text.lower(), "Okabe-Ito colours"
    assert parsed.ids and len(parsed.ids) == len(set(parsed.ids)), "the charts on one page share no SVG id"
    assert "Rules with no cards from 2026-08-31 to 2026-11-20" in parsed.text and "boom-bust" in parsed.text
    assert "boom-bust" not in parsed.sections


def test_an_empty_database_says_no_cards_recorded(tmp_path: Path, rules: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", rules_dir=rules)
    out = tmp_path / "report.html"
    printed = io.StringIO()
    assert overrides_command(settings, str(out), "2026-11-20", printed) == 0
    parsed = Page(out.read_text())
    assert "No cards recorded from 2026-08-31 to 2026-11-20" in parsed.text
    assert "Flagged for review (0)" in parsed.text and not parsed.sections
    assert printed.getvalue() == f"wrote {out}\n"


def cli(*args: str, url: str, rules: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PACING_CDS_DATABASE_URL": url, "PACING_CDS_RULES_DIR": str(rules)}
    return subprocess.run([str(VENV_BIN / "pacing-cds"), "feedback", "report", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow  # runs a command
def test_the_command_writes_the_page_for_its_owner_only(tmp_path: Path, sqlite_url: str, rules: Path) -> None:
    out = tmp_path / "overrides.html"
    result = cli("--html", str(out), "--now", "2026-11-20", url=sqlite_url, rules=rules)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "flagged: progress: override rate 69.2% (9 of 13 cards with feedback, issued 2026-10-24 to 2026-11-20)",
        f"wrote {out}"]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    parsed = Page(out.read_text())
    assert list(parsed.flags) == ["progress"] and parsed.weeks("progress")["2026-11-16"][:3] == ["4", "0", "3"]
    earlier = cli("--html", str(out), "--now", "2026-11-19T23:00:00+00:00", url=sqlite_url, rules=rules)
    assert earlier.returncode == 0, earlier.stderr
    assert [line.split(":")[1].strip() for line in earlier.stdout.splitlines()[:2]] == ["re-baseline", "progress"]
    assert list(Page(out.read_text()).flags) == ["re-baseline", "progress"], "the window follows --now"


@pytest.mark.slow  # runs a command
def test_an_unreadable_now_exits_2_with_a_message(tmp_path: Path, sqlite_url: str, rules: Path) -> None:
    out = tmp_path / "report.html"
    result = cli("--html", str(out), "--now", "next tuesday", url=sqlite_url, rules=rules)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pacing-cds: --now 'next tuesday' is not a date or date-time (YYYY-MM-DD or ISO 8601)"]
    assert not out.exists()


@pytest.mark.slow  # runs a command
def test_a_folder_that_does_not_exist_exits_2_with_a_message(tmp_path: Path, sqlite_url: str, rules: Path) -> None:
    out = tmp_path / "no-such-folder" / "report.html"
    result = cli("--html", str(out), "--now", "2026-11-20", url=sqlite_url, rules=rules)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pacing-cds: cannot write {out}: folder {out.parent} does not exist"]
    assert not out.parent.exists()
