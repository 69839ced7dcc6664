"""The pacing chart and the patient's take-home plan behind a card's links: series, pages, plan texts."""
