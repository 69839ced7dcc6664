"""The patient's language (Patient.communication): the take-home plan, the draft order's patient instruction and the
step Goal's text are written in it where rules/patient-text/ has it, in English saying so where it does not; the
clinician's card stays in English."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from cds.engine import Knowledge
from cds.fhir.readers.patient import NOT_A_LANGUAGE, language
from cds.knowledge.patient_text import language_name
from tests.support.examples import example

BCP47 = "urn:ietf:bcp:47"


def speaking(name: str, *languages: tuple[str, bool | None]) -> tuple[dict[str, Any], str]:
    """An example's request with Patient.communication naming these languages (code, preferred), and its service."""
    body, expected = example(name)
    body = copy.deepcopy(body)
    body["hookInstance"] = str(uuid.uuid4())
    body["prefetch"]["patient"]["communication"] = [
        {"language": {"coding": [{"system": BCP47, "code": code}]}, **({} if preferred is None else
                                                                         {"preferred": preferred})}
        for code, preferred in languages]
    return body, expected["service"]


def answer(client: FlaskClient, name: str, *languages: tuple[str, bool | None]) -> dict[str, Any]:
    body, service = speaking(name, *languages)
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.text
    return response.get_json()


def created(card: dict[str, Any]) -> dict[str, Any]:
    [resource] = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    return resource


def plan_of(client: FlaskClient, card: dict[str, Any]) -> str:
    [url] = [link["url"] for link in card["links"] if link["url"].endswith("/plan")]
    page = client.get("/charts/" + url.split("/charts/", 1)[1])
    assert page.status_code == 200
    return page.get_data(as_text=True)


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_a_spanish_speaker_reads_spanish_and_the_clinician_english(client: FlaskClient, knowledge: Knowledge
                                                                   ) -> None:
    english, spanish = knowledge.patient.languages["en"], knowledge.patient.languages["es"]
    [card] = answer(client, "progress-walking", ("es-MX", True))["cards"]
    [as_in_english] = answer(client, "progress-walking")["cards"]
    assert card["summary"] == as_in_english["summary"] and card["detail"] == as_in_english["detail"]
    order = created(card)
    minutes, per_week = order["occurrenceTiming"]["repeat"]["duration"], order["occurrenceTiming"]["repeat"]["frequency"]
    assert order["patientInstruction"] == spanish.instruction("exercise-dose").format(minutes=minutes,
                                                                                      per_week=per_week)
    assert created(as_in_english)["patientInstruction"] == english.instruction("exercise-dose").format(
        minutes=minutes, per_week=per_week)
    for safety in spanish.safety.values():
        assert safety in order["patientInstruction"] or "crisis" in safety
    page = plan_of(client, card)
    assert '<html lang="es">' in page
    words = text_of(page)
    assert spanish.plan.title in words and spanish.plan.this_week_heading in words
    [warnings] = [s for s in spanish.plan.sections if s.heading == "Llame a su equipo de salud de inmediato si"]
    assert all(sentence in words for sentence in warnings.sentences), "every warning sign, in Spanish"
    assert "20 de noviembre de 2026" in words, "the day, as Spanish writes dates"
    assert english.plan.title not in words and "We do not have" not in words


def test_a_steps_goal_is_written_in_spanish_with_spanish_numbers(client: FlaskClient, knowledge: Knowledge) -> None:
    spanish = knowledge.patient.languages["es"]
    [card, *_] = answer(client, "progress-steps", ("es", None))["cards"]
    goal = created(card)
    assert goal["resourceType"] == "Goal"
    quota = goal["target"][0]["detailQuantity"]["value"]
    assert goal["description"]["text"] == spanish.goal("steps-dose").format(dose_quota=spanish.number(quota))
    assert quota < 1000 or "." in spanish.number(quota), "Spanish groups thousands with a point"


def test_the_preferred_language_wins_over_the_first(client: FlaskClient) -> None:
    [card] = answer(client, "progress-walking", ("en-US", False), ("es", True))["cards"]
    assert '<html lang="es">' in plan_of(client, card)
    [card] = answer(client, "progress-walking", ("en-US", None), ("es", None))["cards"]
    assert '<html lang="en">' in plan_of(client, card)


def test_a_language_we_lack_falls_back_to_english_and_says_so(client: FlaskClient, knowledge: Knowledge) -> None:
    english = knowledge.patient.languages["en"]
    [card] = answer(client, "progress-walking", ("fr-CA", True))["cards"]
    assert created(card)["patientInstruction"].startswith("Exercise for ")
    assert "Patient's language French (français): not available, so the plan and the patient instruction are in " \
           "English" in card["detail"], "the clinician knows the patient may need help to read it"
    page = plan_of(client, card)
    assert '<html lang="en">' in page
    words = text_of(page)
    assert english.plan.title in words
    assert "We do not have this plan in French (français) yet, so it is in English." in words


@pytest.mark.parametrize("tag, name", [("fr", "French (français)"), ("de-AT", "German (Deutsch)"),
                                       ("en", "English"), ("qaa", "qaa")])
def test_a_language_is_named_in_english_and_in_itself_where_known(tag: str, name: str) -> None:
    assert language_name(tag, "en") == name


@pytest.mark.parametrize(("code", "written_in"), [("eng", "en"), ("spa", "es"), ("es-419", "es"), ("en-GB", "en"),
                                                  ("SPA", "es")])
def test_three_letter_codes_and_regions_find_the_language_we_have(knowledge: Knowledge, code: str,
                                                                  written_in: str) -> None:
    """Records send ISO 639's three-letter codes too: a patient coded eng is not told the plan is not in English."""
    choice = knowledge.patient.choose(code)
    assert choice.catalogue.language == written_in and choice.fallback is None


@pytest.mark.parametrize("code", ["und", "mul", "zxx", "mis"])
def test_a_code_that_names_no_language_is_read_as_none_and_the_next_one_counts(code: str) -> None:
    def entry(tag: str, preferred: bool) -> dict[str, Any]:
        return {"language": {"coding": [{"system": BCP47, "code": tag}]}, "preferred": preferred}

    assert language([entry(code, True)]) is None
    assert language([entry(code, True), entry("es", False)]) == "es"


def as_text(client: FlaskClient, name: str, text: str) -> dict[str, Any]:
    """An example's answer when Patient.communication gives the language only as text, with no code."""
    body, service = speaking(name)
    body["prefetch"]["patient"]["communication"] = [{"language": {"text": text}, "preferred": True}]
    response = client.post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.text
    return response.get_json()


@pytest.mark.parametrize("text", ["Spanish", "spanish ", "Latin American Spanish"])
def test_a_language_given_as_its_english_name_is_read(client: FlaskClient, text: str) -> None:
    [card] = as_text(client, "progress-walking", text)["cards"]
    assert created(card)["patientInstruction"].startswith("Haga ejercicio"), created(card)["patientInstruction"]
    assert '<html lang="es' in plan_of(client, card)
    assert "given only as text" not in card["detail"]


@pytest.mark.parametrize(("text", "said"), [("Español", "Español"), ("needs an interpreter", "needs an interpreter"),
                                            ("[see](javascript:x) **now**", "see (javascript x) now")])
def test_a_language_given_as_other_text_is_not_read_and_the_card_says_so(client: FlaskClient, text: str,
                                                                         said: str) -> None:
    """Not guessed at: English, and the clinician is told, in the words given without their markup, so that help to
    read the plan can be arranged."""
    [card] = as_text(client, "progress-walking", text)["cards"]
    assert created(card)["patientInstruction"].startswith("Exercise for ")
    assert f'Patient\'s language given only as text ("{said}"), not as a code: not read, so the plan and the ' \
           "patient instruction are in English" in card["detail"]
    assert "javascript:" not in card["detail"] and "](" not in card["detail"]


def test_the_plan_without_a_language_is_english_without_a_fallback_line(client: FlaskClient) -> None:
    body, service = speaking("progress-walking")
    del body["prefetch"]["patient"]["communication"]
    [card] = client.post(f"/cds-services/{service}", json=body).get_json()["cards"]
    page = plan_of(client, card)
    assert '<html lang="en">' in page and "We do not have" not in page


# Patient.communication as a record may hold it, well or badly formed.
coding = st.fixed_dictionaries({"code": st.one_of(st.text(max_size=12), st.sampled_from(["es", "es-MX", "en-US", "fr",
                                                                                         "zh-Hant-TW", "eng", "spa",
                                                                                         "deu", "es-419", "und", "mul",
                                                                                         "abcdefgh-" * 4 + "x"]),
                                                  st.integers(), st.none())},
                               optional={"system": st.just(BCP47)})
item = st.fixed_dictionaries({}, optional={
    "language": st.one_of(st.fixed_dictionaries({"coding": st.lists(coding, max_size=3)},
                                                optional={"text": st.text(max_size=10)}),
                          st.text(max_size=5), st.none()),
    "preferred": st.one_of(st.booleans(), st.none(), st.just("true"))})


@given(st.one_of(st.lists(st.one_of(item, st.integers(), st.none()), max_size=4), st.dictionaries(st.text(), st.text()),
                 st.none()))
def test_any_communication_reads_as_a_tag_or_none_and_any_tag_gets_words(knowledge: Knowledge,
                                                                          communication: Any) -> None:
    tag = language(communication)
    assert tag is None or (re.fullmatch(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}", tag) and len(tag) <= 35)
    assert tag is None or tag.split("-")[0].lower() not in NOT_A_LANGUAGE, "und and its kind name no language"
    texts = knowledge.patient
    choice = texts.choose(tag)
    if tag is None or tag.lower().split("-")[0] in texts.languages:
        assert choice.fallback is None
    if choice.fallback is not None:
        assert choice.catalogue.language == "en" and "English" in choice.fallback
        ours = [language_name(have, "en").split(" (")[0] for have in texts.languages]
        assert not any(str(choice.wanted_name).startswith(name) for name in ours), \
            f"{tag!r} is told we lack {choice.wanted_name}, which we have"
    if isinstance(communication, list):
        preferred = [c for c in communication if isinstance(c, dict) and c.get("preferred") is True
                     and language([{**c, "preferred": None}]) is not None]
        if preferred:
            assert tag == language([{**preferred[0], "preferred": None}]), "the preferred language comes first"
