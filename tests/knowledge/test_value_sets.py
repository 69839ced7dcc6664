"""Red-flag and plan-changing value sets in rules/value-sets/ are well-formed data."""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds.engine import Knowledge
from cds.knowledge.checks import snomed_check_digits, value_set_codes

VALUE_SETS = Path(__file__).resolve().parents[2] / "rules" / "value-sets"
EXPECTED_IDS = {
    "cauda-equina", "spinal-cord-compression", "malignancy", "metastasis", "spinal-infection",
    "vertebral-fracture", "cardiac-symptom", "incontinence", "me-cfs", "pregnancy",
    "weight-loss-explained", "chronic-pain", "myeloma", "keratinocyte-skin-cancer",
}
TOP_KEYS = {"id", "title", "purpose", "source", "snomed", "icd10cm"}
# card name; its data line, from what age, not on what cards, also when over; how the clinical status bears on it
OPTIONAL_KEYS = {"label", "note", "note_after", "note_not_with", "note_history", "clinical_status", "disjoint_from"}
SOURCE_KEYS = {"name", "reference", "version", "method"}
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ICD10CM_PREFIX = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")


@cache
def load(path: Path) -> dict[str, Any]:
    """One value set file as parsed YAML (read once: the cancer sets are large)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


def matches(prefixes: list[str], code: str) -> bool:
    """ICD-10-CM matching as the rules do it: by prefix."""
    return any(code.startswith(prefix) for prefix in prefixes)


def prefixes_of(value_set: dict[str, Any]) -> list[str]:
    """The ICD-10-CM prefixes of a value set."""
    return [entry["prefix"] for entry in value_set.get("icd10cm") or []]


FILES = sorted(VALUE_SETS.glob("*.yaml"))


def test_every_expected_value_set_is_present() -> None:
    assert {path.stem for path in FILES} >= EXPECTED_IDS


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_value_set_has_the_documented_shape(path: Path) -> None:
    value_set = load(path)
    assert TOP_KEYS <= set(value_set) <= TOP_KEYS | OPTIONAL_KEYS
    assert value_set["id"] == path.stem and KEBAB.match(value_set["id"])
    for key in ("title", "purpose"):
        assert isinstance(value_set[key], str) and value_set[key].strip()
    source = value_set["source"]
    assert isinstance(source, dict) and set(source) <= SOURCE_KEYS
    assert str(source.get("name", "")).strip() and str(source.get("method", "")).strip()
    snomed = value_set["snomed"] or []
    icd = value_set["icd10cm"] or []
    assert snomed or icd, "a value set with no code matches nothing"
    for entry in snomed:
        assert set(entry) == {"code", "display"} and str(entry["display"]).strip()
    for entry in icd:
        assert set(entry) == {"prefix", "display"} and str(entry["display"]).strip()


def test_snomed_codes_have_a_valid_check_digit_and_no_set_repeats_a_code(knowledge: Knowledge) -> None:
    """The checks of `pacing-cds rules check` (tests/knowledge/test_checks.py shows each failing)."""
    assert snomed_check_digits(knowledge) == []
    assert value_set_codes(knowledge) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_icd10cm_prefixes_are_well_formed(path: Path) -> None:
    bad = [prefix for prefix in prefixes_of(load(path))
           if not (isinstance(prefix, str) and ICD10CM_PREFIX.match(prefix))]
    assert not bad, f"{path.name}: malformed ICD-10-CM prefixes: {bad}"


def test_malignancy_is_read_apart_from_the_cancers_of_other_policies(knowledge: Knowledge) -> None:
    """Metastatic disease and myeloma count whatever their status, keratinocyte skin cancers never as a red flag:
    malignancy names them in disjoint_from, and the check (above) finds no code in both."""
    assert set(knowledge.value_sets["malignancy"].disjoint_from) == {"metastasis", "myeloma",
                                                                     "keratinocyte-skin-cancer"}


@pytest.mark.parametrize(("code", "value_set_id"), [
    ("C79.51", "metastasis"), ("C7B.03", "metastasis"), ("C50.911", "malignancy"),
    ("C90.00", "myeloma"), ("C7A.00", "malignancy"), ("C43.9", "malignancy"),
    ("C44.91", "keratinocyte-skin-cancer"), ("C44.320", "keratinocyte-skin-cancer"), ("G83.4", "cauda-equina"),
    ("G95.20", "spinal-cord-compression"), ("M46.26", "spinal-infection"), ("S32.010A", "vertebral-fracture"),
    ("I20.0", "cardiac-symptom"), ("G93.32", "me-cfs"), ("Z3A.20", "pregnancy"), ("M54.50", "chronic-pain"),
])
def test_a_specific_icd10cm_code_lands_in_its_set_and_secondary_cancer_only_in_metastasis(
        code: str, value_set_id: str) -> None:
    assert matches(prefixes_of(load(VALUE_SETS / f"{value_set_id}.yaml")), code)
    cancer_sets = {"malignancy", "metastasis", "myeloma", "keratinocyte-skin-cancer"}
    if value_set_id in cancer_sets:
        for other in cancer_sets - {value_set_id}:
            assert not matches(prefixes_of(load(VALUE_SETS / f"{other}.yaml")), code)
