"""How hard the patient's words are to read: every text of rules/patient-text/, per language, by the measure and the
bound its file names (`reading`): the Flesch-Kincaid grade for English, Fernández Huerta's reading ease for
Spanish, computed by textstat. A text is measured as it is read (an instruction with its safety sentences, a plan
section with its heading, a recommendation's sentences for one kind of plan), its placeholders filled with
ordinary values, and so is each of its sentences long enough for the formula to mean something (`sentence_words`);
a text over the bound is named with its hardest sentence, which is where to start rewording, and a sentence over it
is named itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from cds.knowledge.patient_text import Catalogue, PatientTexts, language_name

SENTENCE_END = re.compile(r"(?<=[.!?:])\s+")
# Ordinary values for the placeholders while measuring: a dose, a day, a language we do not have.
SAMPLE_MINUTES, SAMPLE_PER_WEEK, SAMPLE_STEPS, SAMPLE_DAY, SAMPLE_LANGUAGE = 20, 3, 6600, date(2026, 11, 20), "fr"


@dataclass(frozen=True)
class Level:
    """The reading level of one text."""

    language: str
    where: str
    score: float
    passes: bool  # the text and every sentence measured alone are within the bound
    hardest: str  # the sentence that reads hardest
    hardest_score: float
    over: tuple[tuple[float, str], ...] = ()  # the sentences measured alone that are over the bound


def reading_levels(texts: PatientTexts) -> list[Level]:
    """The level of every patient text of every language."""
    import textstat  # only rules check measures: serving never loads it

    levels = []
    for language, words in sorted(texts.languages.items()):
        textstat.set_lang(language.split("-", 1)[0])
        measure = getattr(textstat, words.reading.measure)
        values = _sample(words)
        for where, text in words.texts():
            filled = text.format(**values)
            score = float(measure(filled))
            sentences = [s for s in SENTENCE_END.split(filled) if s.strip()]
            scored = [(float(measure(s)), s) for s in sentences] or [(score, filled)]
            worst = max(scored) if words.reading.max is not None else min(scored)
            over = tuple((value, sentence) for value, sentence in scored
                         if len(sentence.split()) >= words.reading.sentence_words
                         and not words.reading.passes(value))
            levels.append(Level(language, where, score, words.reading.passes(score) and not over, worst[1],
                                worst[0], over))
    return levels


def reading_problems(texts: PatientTexts, levels: list[Level]) -> list[str]:
    """A problem for each text over its language's bound, naming its hardest sentence, and for each sentence over
    it alone."""
    problems = []
    for level in levels:
        reading = texts.languages[level.language].reading
        if not reading.passes(level.score):
            problems.append(f"patient-text/{level.language}.yaml {level.where}: reads at {reading.measure} "
                            f"{level.score:.1f}, where {reading.bound()} is the bound; its hardest sentence "
                            f"({level.hardest_score:.1f}): {level.hardest!r}. Use shorter sentences and shorter words")
        problems += [f"patient-text/{level.language}.yaml {level.where}: the sentence {sentence!r} reads at "
                     f"{reading.measure} {value:.1f} alone, where {reading.bound()} is the bound. Split it, or use "
                     f"shorter words" for value, sentence in level.over]
    return problems


def _sample(words: Catalogue) -> dict[str, str]:
    return {"minutes": words.number(SAMPLE_MINUTES), "per_week": words.number(SAMPLE_PER_WEEK),
            "steps": words.number(SAMPLE_STEPS), "dose_quota": words.number(SAMPLE_STEPS),
            "date": words.day(SAMPLE_DAY), "language": language_name(SAMPLE_LANGUAGE, words.language)}


def table(levels: list[Level]) -> str:
    """The levels as a Markdown table: language, text, score, its hardest sentence's score, whether it passes."""
    rows = ["| language | text | score | hardest sentence | within the bound |", "|---|---|---|---|---|"]
    rows += [f"| {lv.language} | {lv.where} | {lv.score:.1f} | {lv.hardest_score:.1f} | "
             f"{'yes' if lv.passes else 'NO'} |" for lv in levels]
    return "\n".join(rows)
