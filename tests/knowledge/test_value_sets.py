"""Red-flag and plan-changing value sets in rules/value-sets/ are well-formed data."""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

VALUE_SETS = Path(__file__).resolve().parents[2] / "rules" / "value-sets"
EXPECTED_IDS = {
    "cauda-equina", "spinal-cord-compression", "malignancy", "metastasis", "spinal-infection",
    "vertebral-fracture", "cardiac-symptom", "incontinence", "me-cfs", "pregnancy",
    "weight-loss-explained", "chronic-pain", "myeloma", "keratinocyte-skin-cancer",
}
BUILT_HERE = "built for Pacing CDS"
TOP_KEYS = {"id", "title", "purpose", "source", "snomed", "icd10cm"}
# card name; its data line, from what age, not on what cards, also when over; how the clinical status bears on it
OPTIONAL_KEYS = {"label", "note", "note_after", "note_not_with", "note_history", "clinical_status"}
SOURCE_KEYS = {"name", "reference", "version", "method"}
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SNOMED_ID = re.compile(r"^[0-9]{6,18}$")
ICD10CM_PREFIX = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")

# Verhoeff dihedral-group multiplication and position permutation tables.
_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit is the Verhoeff check digit of the others."""
    check = 0
    for position, digit in enumerate(reversed(digits)):
        check = _D[check][_P[position % 8][int(digit)]]
    return check == 0


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


def test_verhoeff_accepts_known_identifiers_and_rejects_every_single_digit_typo() -> None:
    for known in ("22298006", "192970008", "52702003", "1121000119107"):
        assert verhoeff_valid(known)
        for position, digit in enumerate(known):
            for other in "0123456789".replace(digit, ""):
                typo = known[:position] + other + known[position + 1:]
                assert not verhoeff_valid(typo), typo


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
    if source["name"] != BUILT_HERE:
        assert str(source.get("reference", "")).strip(), "a published source names its OID or URL"
    snomed = value_set["snomed"] or []
    icd = value_set["icd10cm"] or []
    assert snomed or icd, "a value set with no code matches nothing"
    for entry in snomed:
        assert set(entry) == {"code", "display"} and str(entry["display"]).strip()
    for entry in icd:
        assert set(entry) == {"prefix", "display"} and str(entry["display"]).strip()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_snomed_codes_are_identifiers_with_a_valid_check_digit(path: Path) -> None:
    bad = [entry["code"] for entry in load(path)["snomed"] or []
           if not (isinstance(entry["code"], str) and SNOMED_ID.match(entry["code"])
                   and verhoeff_valid(entry["code"]))]
    assert not bad, f"{path.name}: not SNOMED CT identifiers: {bad}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_icd10cm_prefixes_are_well_formed(path: Path) -> None:
    bad = [prefix for prefix in prefixes_of(load(path))
           if not (isinstance(prefix, str) and ICD10CM_PREFIX.match(prefix))]
    assert not bad, f"{path.name}: malformed ICD-10-CM prefixes: {bad}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_no_code_appears_twice_in_a_set(path: Path) -> None:
    value_set = load(path)
    codes = [entry["code"] for entry in value_set["snomed"] or []]
    assert len(codes) == len(set(codes)), f"{path.name}: repeated SNOMED CT codes"
    prefixes = prefixes_of(value_set)
    # A prefix inside another one is the same code listed twice: "G93.3" already matches "G93.32".
    nested = [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]
    assert len(prefixes) == len(set(prefixes)) and not nested, f"{path.name}: {nested}"


@pytest.mark.parametrize("other", ["metastasis", "myeloma", "keratinocyte-skin-cancer"])
def test_malignancy_shares_no_code_with_the_cancers_read_apart(other: str) -> None:
    """Metastatic disease and myeloma count whatever their status, keratinocyte skin cancers never as a red flag:
    a code in malignancy too would be read both ways."""
    malignancy = load(VALUE_SETS / "malignancy.yaml")
    apart = load(VALUE_SETS / f"{other}.yaml")
    overlap = [(a, b) for a in prefixes_of(malignancy) for b in prefixes_of(apart)
               if a.startswith(b) or b.startswith(a)]
    assert not overlap
    shared = ({e["code"] for e in malignancy["snomed"]} & {e["code"] for e in apart["snomed"]})
    assert not shared


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
