"""rules/patient-text/: one file per language, the same keys, placeholders and sentences as English, every safety
sentence in every language, and every text within its language's reading level (pacing-cds rules check)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cds.engine import RuleError, load_knowledge
from cds.knowledge.checks import check_rule_set
from tests.support.rules import SERVICE_IDS, edit

RED_FLAG = "        - Pierde peso sin intentarlo.\n"


def problems(rules: Path) -> list[str]:
    with pytest.raises(RuleError) as refused:
        load_knowledge(rules, SERVICE_IDS)
    return refused.value.problems


def test_a_warning_sign_missing_in_spanish_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "patient-text/es.yaml", RED_FLAG, "")
    found = [re.fullmatch(r"patient-text/es\.yaml plan\.sections\[2\]\.sentences: (\d+) entries where en\.yaml has "
                          r"(\d+); translate each one", p) for p in problems(rules_copy)]
    [(spanish, english)] = [(int(m.group(1)), int(m.group(2))) for m in found if m]
    assert spanish == english - 1, "the warning signs are counted against English's"


def test_a_safety_sentence_dropped_from_a_spanish_instruction_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "patient-text/es.yaml", "no cuando le duela. {soreness} {get_help}'", "no cuando le duela.'")
    assert ("patient-text/es.yaml instructions.exercise-dose: fills in ['minutes', 'per_week'] where en.yaml fills in "
            "['get_help', 'minutes', 'per_week', 'soreness']") in problems(rules_copy)


def test_a_text_missing_or_added_in_a_language_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "patient-text/es.yaml", "  check-first:", "  check-later:")
    found = problems(rules_copy)
    assert "patient-text/es.yaml instructions.check-first: missing (it is in en.yaml)" in found
    assert "patient-text/es.yaml instructions.check-later: not in en.yaml" in found


def test_an_instruction_a_rule_names_must_exist(rules_copy: Path) -> None:
    edit(rules_copy / "inactivity/rule.yaml", "instruction: group-exercise", "instruction: group-class")
    assert "patient-text/en.yaml instructions: no 'group-class', which a rule names" in problems(rules_copy)


def test_english_is_required_and_a_file_is_named_by_its_language(rules_copy: Path) -> None:
    edit(rules_copy / "patient-text/es.yaml", "language: es", "language: pt")
    assert "patient-text/es.yaml: language 'pt' differs from the file name" in problems(rules_copy)
    (rules_copy / "patient-text/en.yaml").unlink()
    assert any(p.startswith("patient-text/en.yaml: missing") for p in problems(rules_copy))


def test_a_language_is_a_file_away(rules_copy: Path) -> None:
    text = (rules_copy / "patient-text/es.yaml").read_text().replace("language: es", "language: pt")
    text = text.replace("Su plan de actividad", "O seu plano de atividade")
    (rules_copy / "patient-text/pt.yaml").write_text(text)
    texts = load_knowledge(rules_copy, SERVICE_IDS).patient
    choice = texts.choose("pt-BR")
    assert choice.catalogue.language == "pt" and choice.fallback is None
    assert choice.catalogue.plan.title == "O seu plano de atividade"


def test_a_text_over_the_reading_level_is_named_with_its_hardest_sentence(rules_copy: Path) -> None:
    hard = ("Notwithstanding considerable interindividual variability, physiotherapeutic reconditioning "
            "necessitates consistent, incremental, individualised exposure to progressively intensifying activity.")
    edit(rules_copy / "patient-text/en.yaml", "Join a group where a trainer helps you build up your exercise safely.",
         hard)
    edit(rules_copy / "patient-text/es.yaml", "Únase a un grupo con un monitor que le ayude a hacer más ejercicio sin riesgo.",
         "La rehabilitación fisioterapéutica individualizada necesita exposición progresiva, consistente e "
         "incremental a actividades paulatinamente intensificadas.")
    report = check_rule_set(load_knowledge(rules_copy, SERVICE_IDS), rules_copy)
    [english, *_] = [p for p in report.problems if p.startswith("patient-text/en.yaml instructions.group-exercise")]
    assert "flesch_kincaid_grade" in english and "at most 6" in english and hard in english
    [spanish, *_] = [p for p in report.problems if p.startswith("patient-text/es.yaml instructions.group-exercise")]
    assert "fernandez_huerta" in spanish and "at least 70" in spanish and "fisioterapéutica" in spanish


def test_a_hard_sentence_among_easy_ones_is_named_though_the_text_passes(rules_copy: Path) -> None:
    """A text's level is an average: one long sentence hides among short ones, so each sentence of five words or
    more is measured alone too. A heading of three words ("Your activity plan.", grade 9.2 by its one long word) is
    left to its text."""
    long = ("If it hurts a lot more than it did the day before and it does not get a bit less by the time you go to "
            "bed or by the time you get up the next day then do less.")
    edit(rules_copy / "patient-text/en.yaml",
         "If your pain is much worse and still bad the next day, go back to the last amount that felt OK.", long)
    report = check_rule_set(load_knowledge(rules_copy, SERVICE_IDS), rules_copy)
    named = [p for p in report.problems if p.startswith("patient-text/en.yaml instructions.exercise-dose")]
    assert named == [f"patient-text/en.yaml instructions.exercise-dose: the sentence {long!r} reads at "
                     "flesch_kincaid_grade 12.1 alone, where at most 6 is the bound. Split it, or use shorter words"], \
        "named alone, and only alone: the instruction as a whole still reads within grade 6"
    assert not [p for p in report.problems if "Your activity plan" in p]


def test_the_project_texts_are_within_their_reading_level(tmp_path: Path) -> None:
    from tests.conftest import ROOT

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    report = check_rule_set(load_knowledge(rules, SERVICE_IDS), rules)
    assert not [p for p in report.problems if p.startswith("patient-text/")]
    rows = [line for line in report.reading.splitlines()[2:]]
    assert {row.split(" | ")[0].strip("| ") for row in rows} == {"en", "es"}
    assert all(row.endswith("| yes |") for row in rows)
