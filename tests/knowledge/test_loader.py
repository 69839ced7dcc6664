"""The loader refuses broken knowledge and says exactly where and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds.engine import Knowledge, RuleError, load_knowledge
from tests.support.rules import SERVICE_IDS, edit, set_parameter


def problems(rules_dir: Path) -> list[str]:
    with pytest.raises(RuleError) as raised:
        load_knowledge(rules_dir, SERVICE_IDS)
    return raised.value.problems


def test_the_project_rules_load(knowledge: Knowledge) -> None:
    assert {c.rule.id for c in knowledge.rules} >= {
        "data-gap", "establish-baseline", "start", "re-baseline", "step-back", "hold", "goal-met", "progress",
        "boom-bust", "inactivity", "red-flag-emergency", "red-flag-new-malignancy", "precaution-blood-pressure",
        "energy-management", "order-dose-jump", "order-no-baseline"}
    assert knowledge.version.startswith(knowledge.info.version + "+")
    progress = knowledge.rule("progress")
    assert progress.parameters == {name: knowledge.values[name] for name in (
        "min_days_on_dose", "step_back_hold_days", "adherence_min", "hold_pain_delta", "acwr_progression_cap")}


def test_every_code_of_clinical_sections_5_and_6_is_concluded(knowledge: Knowledge) -> None:
    codes = {c.rule.conclude.code for c in knowledge.rules}
    assert codes >= {"red-flag", "precaution", "energy-management", "data-gap", "establish-baseline", "start",
                     "re-baseline", "step-back", "hold", "goal-met", "progress", "boom-bust", "inactivity",
                     "order-dose-jump", "order-no-baseline"}


def test_parameters_are_substituted_into_the_engine_conditions(knowledge: Knowledge) -> None:
    conditions = knowledge.rule("precaution-fever").conditions
    fever = knowledge.values["fever_celsius"]
    assert conditions == {"all": [{"v": {"$and": [{"t": "vitals"}, {"$gte": {"temperature_max": fever}}]}}]}


def test_a_literal_number_in_a_rule_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "precaution/rule.yaml", "{temperature_max: {param: fever_celsius}}", "{temperature_max: 38}")
    assert any("precaution-fever" in p and "literal number 38" in p for p in problems(rules_copy))


def test_a_misspelt_field_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "step-back/rule.yaml", "- {flare: true}", "- {flair: true}")
    assert any("step-back" in p and "field 'flair' is not in the fact vocabulary" in p for p in problems(rules_copy))


def test_a_join_between_facts_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "progress/rule.yaml", "{acwr: {param: acwr_progression_cap}}", "{acwr: {p: acwr}}")
    assert any("progress" in p and "no joins" in p for p in problems(rules_copy))


def test_an_unknown_parameter_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "goal-met/rule.yaml", "{param: goal_daily_steps}", "{param: goal_steps}")
    assert any("parameter 'goal_steps' is not in parameters.yaml" in p for p in problems(rules_copy))


def test_a_parameter_outside_its_range_is_refused(rules_copy: Path) -> None:
    set_parameter(rules_copy, "progression_step", 0.5)
    assert any("parameters.yaml parameters.progression_step" in p and "outside its allowed range" in p
               for p in problems(rules_copy))


def test_a_derived_threshold_must_be_said_in_the_card(rules_copy: Path) -> None:
    edit(rules_copy / "precaution/rule.yaml", "Weight down {weight_loss_percent_max} % or more†:",
         "Weight down {weight_loss_percent_max} % or more:")
    assert any("precaution-weight-loss" in p and "must mark it with a dagger" in p for p in problems(rules_copy))


def test_a_rule_on_a_derived_parameter_must_be_marked_derived(rules_copy: Path) -> None:
    edit(rules_copy / "parameters.yaml", "    source: hypertensive disorders of pregnancy (ACOG 2020)\n    derived: false",
         "    source: hypertensive disorders of pregnancy (ACOG 2020)\n    derived: true")
    found = problems(rules_copy)
    assert any("precaution-pregnancy-blood-pressure" in p and "uses derived parameters ['pregnancy_bp_systolic']" in p
               for p in found)


def test_a_rule_without_a_boundary_pair_is_refused(rules_copy: Path) -> None:
    path = rules_copy / "order-no-baseline" / "scenarios.yaml"
    text = path.read_text()
    start = text.index("- name: activity data exists")
    path.write_text(text[:start])
    assert any("order-no-baseline" in p and "no scenario in which it does not fire" in p
               for p in problems(rules_copy))


def test_scenario_facts_are_checked_against_the_vocabulary(rules_copy: Path) -> None:
    edit(rules_copy / "order-no-baseline/scenarios.yaml", "has_activity_data: false}",
         "has_activity_data: \"no\"}")
    assert any("'no' is not a boolean" in p for p in problems(rules_copy))


def test_yaml_errors_name_the_file_and_line(rules_copy: Path) -> None:
    edit(rules_copy / "hold/rule.yaml", "title: Hold the dose this week", "title: [unclosed")
    assert any(p.startswith("hold/rule.yaml line") and "not valid YAML" in p for p in problems(rules_copy))


def test_duplicate_ids_and_unknown_codes_and_services(rules_copy: Path) -> None:
    edit(rules_copy / "order-no-baseline/rule.yaml", "- id: order-no-baseline", "- id: order-dose-jump")
    edit(rules_copy / "order-no-baseline/rule.yaml", "suppressed_by: [red-flag]", "suppressed_by: [red-flags]")
    edit(rules_copy / "order-no-baseline/rule.yaml", "services: [exercise-order-select, exercise-order-sign]",
         "services: [exercise-order-select, order-signing]")
    found = problems(rules_copy)
    assert any("id already used in order-dose-jump/rule.yaml" in p for p in found)
    assert any("suppressed_by 'red-flags', which no rule concludes" in p for p in found)
    assert any("service 'order-signing' is not one of" in p for p in found)


def test_unsupported_operators_and_untyped_patterns(rules_copy: Path) -> None:
    edit(rules_copy / "start/rule.yaml", "- $gte: {valid_days: {param: baseline_min_days}}",
         "- $mt: {valid_days: \"[0-9]+\"}")
    edit(rules_copy / "inactivity/rule.yaml", "        - {t: patient}\n        - {inactive: true}",
         "        - {inactive: true}")
    found = problems(rules_copy)
    assert any("start" in p and "operator $mt is not supported" in p for p in found)
    assert any("inactivity" in p and "pattern must require t: <fact type>" in p for p in found)


def test_card_placeholders_must_be_declared(rules_copy: Path) -> None:
    edit(rules_copy / "progress/rule.yaml", "summary: Progress {activity} to {dose} ({change})",
         'summary: "Progress {activity} to {dosage}"')
    assert any("progress" in p and "{dosage}" in p for p in problems(rules_copy))


def test_titles_read_as_clinical_sentences(rules_copy: Path) -> None:
    edit(rules_copy / "hold/rule.yaml", "title: Should the dose be held this week?", "title: hold rule")
    assert any("clinical sentence" in p for p in problems(rules_copy))


def test_a_rule_in_the_wrong_folder_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "hold/rule.yaml", "    code: hold\n", "    code: progress\n")
    assert any("hold/rule.yaml rule hold" in p and "one folder per recommendation" in p for p in problems(rules_copy))


def test_a_suggestion_text_may_use_only_what_its_kind_provides(rules_copy: Path) -> None:
    edit(rules_copy / "data-gap/rule.yaml", "label: Order an activity tolerance assessment",
         "label: Order an activity tolerance assessment for {dose}")
    assert any("data-gap" in p and "{dose}" in p and "order suggestion does not provide" in p
               for p in problems(rules_copy))


def test_a_prefetch_query_naming_an_unknown_code_list_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "services.yaml", "{loinc:body_weight}", "{loinc:body_mass}")
    assert any("prefetch.weight" in p and "loinc:body_mass is not a code list" in p for p in problems(rules_copy))


def test_a_scenario_fixture_must_exist(rules_copy: Path) -> None:
    edit(rules_copy / "hold/scenarios.yaml", "like: on-track", "like: on-trak")
    assert any("like 'on-trak' is not a fixture" in p for p in problems(rules_copy))


def test_a_forbidden_phrase_in_patient_words_is_refused_in_every_language(rules_copy: Path) -> None:
    edit(rules_copy / "patient-text/en.yaml", "Stop when the time is up, not when it hurts.",
         "Keep going whatever the pain.")
    edit(rules_copy / "patient-text/es.yaml", "Pare cuando se acabe el tiempo, no cuando le duela.",
         "Siga aunque le duela mucho.")
    found = problems(rules_copy)
    assert any(p.startswith("patient-text/en.yaml instructions.exercise-dose: matches the forbidden words")
               and "whatever" in p for p in found), "ruleset.yaml's phrases"
    assert any(p.startswith("patient-text/es.yaml instructions.exercise-dose: matches the forbidden words")
               and "duela" in p for p in found), "the language's own phrases"


def test_a_card_text_with_a_forbidden_phrase_is_refused(rules_copy: Path) -> None:
    edit(rules_copy / "progress/rule.yaml", "Plan done with stable pain:", "Plan done; push through the pain:")
    assert any("progress/rule.yaml rule progress" in p and "forbidden words" in p and "push" in p
               for p in problems(rules_copy))


def test_a_value_set_note_must_name_a_parameter(rules_copy: Path) -> None:
    edit(rules_copy / "value-sets/malignancy.yaml", "note_after: malignancy_window_days", "note_after: months")
    assert any("value-sets/malignancy.yaml" in p and "note_after 'months'" in p for p in problems(rules_copy))


@pytest.mark.parametrize(("file", "old", "new", "problem"), [
    ("value-sets/pregnancy.yaml", "note_not_with: [red-flag, precaution]", "note_not_with: [red-flag, precautions]",
     "note_not_with 'precautions' is not a recommendation code"),
    ("services.yaml", "CarePlan and Goal.", "CarePlan.", "usage does not name the resource types ['Goal']"),
    ("codes.yaml", "eligibility_value_set: chronic-pain", "eligibility_value_set: chronic-pains",
     "eligibility_value_set 'chronic-pains' is not a value set"),
    ("codes.yaml", "(?P<per_week>", "(?P<weekly>", "(?P<minutes>...) and (?P<per_week>...)"),
    ("ruleset.yaml", "needs_action: [red-flag,", "needs_action: [red-flags,",
     "needs_action 'red-flags' is not a recommendation code"),
], ids=["note-not-with", "usage", "eligibility", "dose-pattern", "needs-action"])
def test_a_name_that_points_nowhere_is_refused(rules_copy: Path, file: str, old: str, new: str,
                                               problem: str) -> None:
    edit(rules_copy / file, old, new)
    assert any(problem in p for p in problems(rules_copy))


def test_a_rule_set_read_again_unchanged_is_the_one_read_before_and_an_edit_is_read_afresh(rules_copy: Path) -> None:
    first = load_knowledge(rules_copy)
    assert load_knowledge(rules_copy) is first
    set_parameter(rules_copy, "adherence_min", 0.7)
    edited = load_knowledge(rules_copy)
    assert edited is not first and edited.values["adherence_min"] == 0.7 and first.values["adherence_min"] == 0.8
    assert edited.version != first.version
    set_parameter(rules_copy, "adherence_min", 0.8)
    assert load_knowledge(rules_copy).values["adherence_min"] == 0.8


def test_a_broken_rule_set_is_refused_every_time_it_is_read(rules_copy: Path) -> None:
    load_knowledge(rules_copy)
    edit(rules_copy / "progress" / "rule.yaml", "{param: adherence_min}", "{param: adherence_minimum}")
    for _ in range(2):
        with pytest.raises(RuleError, match="adherence_minimum"):
            load_knowledge(rules_copy)


def test_a_rule_text_names_parameters_and_reads_with_their_values(rules_copy: Path) -> None:
    """plain, title and evidence note name parameters ({name}, {name:.0%}); the loaded rule reads with the values of
    the rules folder it came from, and the rule as written keeps the names."""
    project = load_knowledge(rules_copy, SERVICE_IDS).values
    adherence, fever = round(project["adherence_min"] - 0.05, 2), project["fever_celsius"] + 0.2  # within range
    set_parameter(rules_copy, "adherence_min", adherence)
    set_parameter(rules_copy, "fever_celsius", fever)
    tuned = load_knowledge(rules_copy, SERVICE_IDS)
    progress = tuned.rule("progress")
    assert "{adherence_min:.0%}" in progress.as_written.plain.when
    assert f"at least {adherence:.0%} of the planned dose" in progress.rule.plain.when
    shown = tuned.rule("precaution-fever").rule
    assert f"{fever:.1f} Cel or more" in shown.plain.when
    assert shown.evidence.note == f"the {fever:.1f} Cel cut-off is our synthesis"


def test_the_project_rule_texts_read_with_the_project_values(knowledge: Knowledge) -> None:
    values = knowledge.values
    assert f"at least {values['adherence_min']:.0%} of the planned dose" in knowledge.rule("progress").rule.plain.when
    pregnancy = knowledge.rule("precaution-pregnancy-blood-pressure").rule
    assert f"{values['pregnancy_bp_systolic']:g}/{values['pregnancy_bp_diastolic']:g} or more" in pregnancy.title
    assert all("{" not in text for c in knowledge.rules
               for text in (c.rule.title, c.rule.plain.when, c.rule.plain.then, c.rule.evidence.note or ""))


@pytest.mark.parametrize(("field", "old", "new", "problem"), [
    ("plain.when", "by more than {order_jump_max:.0%}.", "by more than {order_jump:.0%}.",
     "names {order_jump}, which is not a parameter of parameters.yaml"),
    ("plain.then", "then: Offer to replace the draft with the paced dose.",
     "then: Offer to replace the draft with {dose}.", "names {dose}, which is not a parameter"),
    ("evidence.note", "note: the {order_jump_max:.0%} limit", "note: the {order_jump_max:.0q} limit",
     "cannot write a parameter with its format spec"),
    ("title", "title: Does the draft order raise the weekly dose too fast?",
     "title: Does the draft order raise the weekly dose {too fast?", "is not a valid text template"),
], ids=["unknown", "card-placeholder", "format-spec", "brace"])
def test_a_rule_text_naming_no_parameter_is_refused_with_its_file_and_rule(rules_copy: Path, field: str, old: str,
                                                                          new: str, problem: str) -> None:
    edit(rules_copy / "order-dose-jump/rule.yaml", old, new)
    found = [p for p in problems(rules_copy) if p.startswith(f"order-dose-jump/rule.yaml rule order-dose-jump {field}:")]
    assert found and problem in found[0], found
