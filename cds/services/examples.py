"""The end-to-end examples answered by the one call path: each request of fhir_examples/ through `answer()` in this
process, as of its expected.json's `now`, and its cards held to that intent (the card codes in order, the dose
proposed, the words the cards say and never say). `pacing-cds rules test` and the golden tests run them alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cds.engine import RuleEngine
from cds.errors import CdsError
from cds.fhir.client import FhirClient
from cds.hooks.models import Card
from cds.knowledge.examples import Example
from cds.services import services_of
from cds.services.pipeline import Outcome, answer
from cds.services.proposed import first_proposed

BASE_URL = "http://127.0.0.1:8080"  # where the examples' recorded answers say the service is (`make run`'s default)


def answer_example(example: Example, engine: RuleEngine, fhir: FhirClient | None = None, base_url: str = BASE_URL,
                   change: Callable[[dict[str, Any]], Any] | None = None) -> Outcome:
    """The example's request answered as of its `now` by its service; `change` may edit the request first. Raises
    CdsError as the service would answer it, KeyError for a service the rules do not have."""
    body = example.request
    if change is not None:
        change(body)
    intent = example.intent
    service = services_of(engine.knowledge)[intent.service]
    client = fhir or FhirClient(3.0, 10)
    try:
        return answer(service, body, engine, client, intent.now, base_url=base_url).outcome
    finally:
        if fhir is None:
            client.close()


def differences(example: Example, cards: Sequence[Card]) -> list[str]:
    """How the cards differ from the example's intent, in words; none when they give what it expects."""
    intent = example.intent
    found: list[str] = []
    codes = [card.source.topic.code if card.source.topic else None for card in cards]
    if codes != intent.codes:
        found.append(f"cards {_codes(codes)}, expected {_codes(intent.codes)}")
    dose = first_proposed(cards)
    if dose != intent.dose:
        found.append(f"dose {dose or '(none)'}, expected {intent.dose or '(none)'}")
    details = "\n".join(card.detail or "" for card in cards)
    found += [f"no card says {words!r}" for words in intent.says if words not in details]
    found += [f"a card says {words!r}" for words in intent.never_says if words in details]
    return found


def _codes(codes: Sequence[str | None]) -> str:
    return "[" + ", ".join(str(code) for code in codes) + "]" if codes else "no card"


@dataclass(frozen=True)
class ExampleResult:
    example: Example
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def run_examples(examples: Sequence[Example], engine: RuleEngine, base_url: str = BASE_URL) -> list[ExampleResult]:
    """Each example answered and compared with its intent; an example that cannot be answered fails, saying why."""
    fhir = FhirClient(3.0, 10)
    try:
        return [ExampleResult(example, tuple(_problems(example, engine, fhir, base_url))) for example in examples]
    finally:
        fhir.close()


def _problems(example: Example, engine: RuleEngine, fhir: FhirClient, base_url: str) -> list[str]:
    try:
        outcome = answer_example(example, engine, fhir, base_url)
    except CdsError as exc:
        return [f"answered {exc.status}: {exc.message}"]
    except (OSError, ValueError, KeyError) as exc:  # a file that cannot be read, a service the rules do not have
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"cannot be answered ({said})"]
    return differences(example, outcome.response.cards)
