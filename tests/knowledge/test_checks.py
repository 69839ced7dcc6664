"""The checks of `pacing-cds rules check` beyond loading (cds/knowledge/checks.py): each finds its fault in a broken
copy of rules/ and nothing in the project's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cds.engine import Knowledge, RuleError, load_knowledge
from cds.knowledge.checks import (
    check_rule_set,
    docs_coverage,
    literal_numbers,
    snomed_check_digits,
    value_set_codes,
    verhoeff_valid,
)
from cds.knowledge.texts import literals, render
from tests.support.rules import RULES, SERVICE_IDS, edit, set_parameter

DOCS = RULES.parent / "docs"


def load(rules: Path) -> Knowledge:
    return load_knowledge(rules, SERVICE_IDS)


def test_the_project_rule_set_passes_every_check(knowledge: Knowledge) -> None:
    report = check_rule_set(knowledge, RULES)
    assert report.problems == [] and report.notes == []


def test_a_threshold_written_as_its_value_is_a_problem_that_says_how_to_fix_it(rules_copy: Path,
                                                                               knowledge: Knowledge) -> None:
    adherence, fever = knowledge.values["adherence_min"], knowledge.values["fever_celsius"]
    edit(rules_copy / "progress/rule.yaml", "least {adherence_min:.0%} of the planned",
         f"least {adherence * 100:g} % of the planned")
    edit(rules_copy / "precaution/rule.yaml", "A body temperature of {fever_celsius:.1f} Cel",
         f"A body temperature of {fever:.1f} Cel")
    found = literal_numbers(load(rules_copy))
    assert len(found) == 2, found
    assert found[0].startswith(f"precaution/rule.yaml rule precaution-fever plain.when: writes '{fever:.1f}', the "
                               "value of fever_celsius") and "write {fever_celsius:.1f} instead" in found[0]
    assert found[1].startswith(f"progress/rule.yaml rule progress plain.when: writes '{adherence * 100:g} %', the "
                               f"value of adherence_min ({adherence:g}), which the rule uses; write "
                               "{adherence_min:.0%} instead")


def test_a_number_that_is_another_threshold_or_no_threshold_is_left_alone(rules_copy: Path) -> None:
    """Only the values of parameters the rule uses count: 2 days of strength work in goal-met is none of its
    thresholds, and section numbers, codes and citations are not numbers."""
    edit(rules_copy / "hold/rule.yaml", "Keep the dose (time-contingent, not pain-contingent)",
         "Keep the dose (time-contingent, not pain-contingent; NICE NG193 1.2.8, SNOMED 426866005)")
    assert literal_numbers(load(rules_copy)) == []
    values = {"min_days_on_dose": 7, "adherence_min": 0.8}
    assert [lit.written for lit in literals("on 2 days; NG7 1.2.7; 7x; 7 days; {adherence_min:.0%} or 80%",
                                            values)] == ["7", "80%"]


def test_a_site_value_changes_the_text_and_not_the_check(rules_copy: Path, knowledge: Knowledge) -> None:
    adherence = round(knowledge.values["adherence_min"] - 0.05, 2)
    set_parameter(rules_copy, "adherence_min", adherence)
    tuned = load(rules_copy)
    assert literal_numbers(tuned) == []
    values = tuned.values
    assert render("at least {adherence_min:.0%}, {fever_celsius}, {goal_daily_steps:,.0f}", values) == \
        f"at least {adherence:.0%}, {values['fever_celsius']:g}, {values['goal_daily_steps']:,.0f}"


def test_verhoeff_accepts_known_identifiers_and_rejects_every_single_digit_typo() -> None:
    for known in ("22298006", "192970008", "52702003", "1121000119107"):
        assert verhoeff_valid(known)
        for position, digit in enumerate(known):
            for other in "0123456789".replace(digit, ""):
                typo = known[:position] + other + known[position + 1:]
                assert not verhoeff_valid(typo), typo


def test_a_snomed_code_with_a_wrong_check_digit_is_a_problem(rules_copy: Path) -> None:
    edit(rules_copy / "value-sets/cauda-equina.yaml", '"192970008"', '"192970009"')
    edit(rules_copy / "codes.yaml", 'code: "426866005"', 'code: "426866006"')
    found = snomed_check_digits(load(rules_copy))
    assert len(found) == 2, found
    assert found[0].startswith("value-sets/cauda-equina.yaml snomed[") and "192970009" in found[0]
    assert found[1].startswith("codes.yaml orderables.tolerance-assessment: 426866006 is not a SNOMED CT identifier")


def test_a_code_twice_a_nested_prefix_and_a_published_set_without_reference_are_problems(rules_copy: Path) -> None:
    path = rules_copy / "value-sets/me-cfs.yaml"
    text = path.read_text()
    first = text.index("  - {code:")
    line = text[first:text.index("\n", first) + 1]
    path.write_text(text[:first] + line + text[first:])
    edit(path, "icd10cm:\n", "icd10cm:\n  - {prefix: G93.32, display: Myalgic encephalomyelitis/chronic fatigue syndrome}\n")
    edit(rules_copy / "value-sets/malignancy.yaml", "  reference:", "  # reference:")
    found = value_set_codes(load(rules_copy))
    assert any(p.startswith("value-sets/me-cfs.yaml snomed:") and "listed more than once" in p for p in found)
    assert any(p.startswith("value-sets/me-cfs.yaml icd10cm: G93.32 lies inside G93.3") for p in found)
    assert any(p.startswith("value-sets/malignancy.yaml source: a published value set names its reference")
               for p in found)


def test_a_code_in_a_value_set_read_apart_is_a_problem(rules_copy: Path) -> None:
    """Myeloma counts whatever its clinical status, so a myeloma code in malignancy too would be read both ways."""
    edit(rules_copy / "value-sets/malignancy.yaml", "icd10cm:\n", "icd10cm:\n  - {prefix: C90, display: Myeloma}\n")
    found = [p for p in value_set_codes(load(rules_copy)) if "disjoint_from" in p]
    assert found and all(p.startswith("value-sets/malignancy.yaml icd10cm: C90 overlaps C90") for p in found)
    assert found[0].endswith("of myeloma, which disjoint_from reads apart; narrow the prefix")


def test_a_forbidden_phrase_in_the_patient_plan_is_a_problem(rules_copy: Path) -> None:
    edit(rules_copy / "patient-text/en.yaml", "Rest for a short time, then move again.",
         "Push through the pain, then rest.")
    with pytest.raises(RuleError) as refused:
        load(rules_copy)
    [found] = refused.value.problems
    assert found.startswith("patient-text/en.yaml plan.sections[0]: matches the forbidden words")


def test_docs_must_name_every_parameter_and_recommendation_code(tmp_path: Path, knowledge: Knowledge) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    text = (DOCS / "clinical.md").read_text()
    (docs / "clinical.md").write_text(text.replace("`adherence_min`", "adherence_min").replace("`goal-met`", "goal-met"))
    assert docs_coverage(knowledge, docs) == [
        "docs/clinical.md: does not name the parameter `adherence_min` of parameters.yaml; say in it what the "
        "threshold is for and where it comes from",
        "docs/clinical.md: does not name the recommendation code `goal-met`; specify the recommendation there"]
    assert docs_coverage(knowledge, DOCS) == []


def test_without_docs_beside_the_rules_docs_coverage_is_not_checked_and_says_so(tmp_path: Path,
                                                                                knowledge: Knowledge) -> None:
    shutil.copytree(RULES, tmp_path / "rules")
    report = check_rule_set(knowledge, tmp_path / "rules")
    assert report.problems == []
    assert report.notes == ["docs coverage not checked: no docs/clinical.md beside rules/ (as with the rules an "
                            "installed package carries)"]


@pytest.mark.parametrize("broken", ["literal", "check-digit"])
def test_rules_check_reports_the_checks_as_problems(rules_copy: Path, broken: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from cds.cli import rules_check
    from cds.settings import load_settings

    if broken == "literal":
        fraction = load(rules_copy).values["baseline_fraction"]
        edit(rules_copy / "start/rule.yaml", "Start at {baseline_fraction:.0%} of", f"Start at {fraction:.0%} of")
    else:
        edit(rules_copy / "codes.yaml", 'code: "3457005"', 'code: "3457006"')
    out = io.StringIO()
    assert rules_check(load_settings(rules_dir=rules_copy), out) == 1
    err = capsys.readouterr().err
    assert "1 problem(s) in" in err
    assert ("start/rule.yaml rule start plain.then: writes" if broken == "literal"
            else "codes.yaml orderables.patient-referral: 3457006") in err
    assert "docs coverage not checked" in out.getvalue()
