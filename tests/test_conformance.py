"""CDS Hooks 2.0 service requirements, checked against the spec's own examples (see docs/conformance.md)."""

from __future__ import annotations

import ast
import csv
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support import data

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
REQUIREMENTS = data.SPEC_EXAMPLES / "cds-hooks-2.0-service-requirements.csv"
CONFORMANCE_MAP = ROOT / "docs" / "conformance.md"

# Where each copy in tests/spec_examples/ comes from, and the SHA-256 of the original's bytes: a copy edited to
# suit the service no longer equals the specification, and this table says so.
CDS_HOOKS = "HL7/cds-hooks@9eb3da2ae1c0 input/pagecontent/index.md"
LIBRARY = "HL7/cds-hooks-library@5d04c4dee2e0 input/pagecontent"
ORIGINALS = {
    "discovery.json": (f"{CDS_HOOKS}, Discovery Example",
                       "6c1311a8373caa4c7c9a50a5d55ec6381ef4e6e4526bedb02e13a243c1a698ca"),
    "request-patient-view.json": (f"{CDS_HOOKS}, Calling a CDS Service, Example",
                                  "371db17c1b76c5149ae97d60e3870aa679fb7804c67b36fded18157dc47959ab"),
    "response-system-action.json": (f"{CDS_HOOKS}, System Action",
                                    "e45c6bb2109f206c7f76e3c7c57ff0c3ac8138f9011cac98277bb20fc951233e"),
    "response.json": (f"{CDS_HOOKS}, CDS Service Response, Example",
                      "5371ede1864b5f131580a67689993a66bc3ea6acbca96bf9810af16534e96cc7"),
    "feedback-accepted.json": (f"{CDS_HOOKS}, Example suggestion accepted",
                               "bec3377a74c92425fc880b2234c018302cf005b8180f1a1a57c3b28c1f05cd3a"),
    "feedback-overridden.json": (f"{CDS_HOOKS}, Example overridden guidance without overrideReason",
                                 "9648aa20c1beaf0fe3be4dc5fde31df8fd9511e82b810cf5530c2196d143d3e2"),
    "feedback-overridden-reason.json": (f"{CDS_HOOKS}, Example overridden guidance with overrideReason",
                                        "c5bdb361a177c1efffce72d2ee2712f29ef0b4689c06b7b023cbbaa3b8b2b20e"),
    "context-patient-view.json": (f"{LIBRARY}/patient-view.md, Examples",
                                  "505fc2eb0096b6f17abdb3c44293a803c139223df3772b803c15ed2263c7c122"),
    "context-order-select.json": (f"{LIBRARY}/order-select.md, Example (R4)",
                                  "e19c91b49076508a01f9ca79d71aaacaca80e4109b357ef17ef60c3c11c0ad53"),
    "context-order-sign.json": (f"{LIBRARY}/order-sign.md, Example (R4)",
                                "2dee37644d577237ed15f51c5665bb4c2e13c4e24175701d41a9a9860e917ee8"),
    "cds-hooks-2.0-service-requirements.csv": (
        "the numbered requirements of CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/), one row each",
        "a66db21c91fac66ef42e1767d102b2dd6fac9e17bbf3ea33e9dcc4517d740a9f"),
}
BINDING = {"SHALL", "SHALL NOT"}


def empties(value: Any, path: str = "$") -> list[str]:
    """Paths of every null, empty string, empty array or empty object (req 3)."""
    found = []
    if value is None or value == "" or value == [] or value == {}:
        found.append(path)
    if isinstance(value, dict):
        for key, item in value.items():
            found += empties(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += empties(item, f"{path}[{index}]")
    return found


def requirements() -> dict[int, dict[str, str]]:
    """The specification's numbered requirements, by ID."""
    with REQUIREMENTS.open(newline="", encoding="utf-8") as handle:
        return {int(row["ID"]): row for row in csv.DictReader(handle)}


def map_rows() -> list[list[str]]:
    """The table rows of the conformance map (both tables), as lists of cells; header and rule rows left out."""
    rows = []
    for line in CONFORMANCE_MAP.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] != "IDs" and not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows


def cited_ids(cell: str, known: set[int]) -> set[int]:
    """IDs of one map cell: "7-12, 29" means 7 to 12 (those the specification numbers) and 29."""
    ids: set[int] = set()
    for part in (p.strip() for p in cell.split(",")):
        low, _, high = part.partition("-")
        ids |= {i for i in range(int(low), int(high) + 1) if i in known} if high else {int(low)}
    return ids


def test_every_example_copy_is_listed_with_its_origin() -> None:
    present = {p.name for p in data.SPEC_EXAMPLES.iterdir() if p.suffix in {".json", ".csv"}}
    assert present == set(ORIGINALS)


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_example_copies_equal_the_specification(name: str) -> None:
    origin, digest = ORIGINALS[name]
    copy = (data.SPEC_EXAMPLES / name).read_bytes()
    assert hashlib.sha256(copy).hexdigest() == digest, f"{name} no longer equals {origin}"


def test_the_conformance_map_cites_only_service_requirements() -> None:
    spec = requirements()
    for cells in map_rows():
        for number in cited_ids(cells[0], set(spec)):
            assert number in spec, f"docs/conformance.md cites requirement {number}, which the spec does not number"
            assert "Service" in spec[number]["Actors"], f"requirement {number} is not a service's"


def test_every_binding_service_requirement_is_mapped_or_explained() -> None:
    """Each SHALL or SHALL NOT of a service has a row: the tests that check it, or why it is not checked."""
    spec = requirements()
    mapped = set().union(*(cited_ids(cells[0], set(spec)) for cells in map_rows()))
    binding = {n for n, row in spec.items() if row["Conformance"] in BINDING and "Service" in row["Actors"]}
    assert sorted(binding - mapped) == [], "SHALL requirements missing from docs/conformance.md"


def test_the_conformance_map_names_tests_that_exist() -> None:
    for cells in map_rows():
        if len(cells) < 3:
            continue  # the "not covered" table names no tests
        current: Path | None = None
        for token in re.findall(r"`([^`]+)`", cells[2]):
            match = re.fullmatch(r"((?:\w+/)*test_\w+\.py)?(?:::(\w+))?", token)
            if match is None or not any(match.groups()):
                continue
            if match[1]:
                current = TESTS / match[1]
                assert current.is_file(), f"docs/conformance.md names {token}, which is not a file under tests/"
            if match[2]:
                assert current is not None, f"{token} follows no file name"
                tree = ast.parse(current.read_text())
                names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
                assert match[2] in names, f"docs/conformance.md names {token}; {current.name} has no such test"


def test_discovery_has_the_spec_shape_and_no_empty_values(client: FlaskClient) -> None:
    """Reqs 3-12, 36: GET {base}/cds-services lists services with hook, title, description, id, prefetch."""
    body = client.get("/cds-services").get_json()
    example = data.spec_example("discovery.json")
    assert set(body) == set(example) == {"services"}
    for service in body["services"]:
        assert isinstance(service["hook"], str) and isinstance(service["description"], str)
        assert isinstance(service["id"], str) and isinstance(service["title"], str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in service["prefetch"].items())
    assert empties(body) == []


def test_every_discovered_service_answers_at_its_endpoint(client: FlaskClient) -> None:
    """Req 16, 74, 77: POST {base}/cds-services/{id} answers 200 with a cards array."""
    for service in client.get("/cds-services").get_json()["services"]:
        hook = service["hook"]
        body = data.patient_view("c1", data.full_prefetch("c1")) if hook == "patient-view" \
            else data.order_request(hook, "c1")
        response = client.post(f"/cds-services/{service['id']}", json=body)
        assert response.status_code == 200
        answer = response.get_json()
        assert set(answer) == {"cards"}
        assert empties(answer) == ([] if answer["cards"] else ["$.cards"])  # the one empty the spec allows


def test_spec_request_with_the_library_contexts(client: FlaskClient) -> None:
    """The hook library's own contexts are accepted by the matching service (prefetch supplied)."""
    for hook, name, path in (("order-select", "context-order-select.json", "exercise-order-select"),
                             ("order-sign", "context-order-sign.json", "exercise-order-sign"),
                             ("patient-view", "context-patient-view.json", "pacing-review")):
        body = {"hook": hook, "hookInstance": f"spec-{hook}", "context": data.spec_example(name)["context"],
                "prefetch": data.full_prefetch("1288992")}
        response = client.post(f"/cds-services/{path}", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
