"""The prefetch templates every pacing service asks for: what CLINICAL.md section 2 reads, newest first."""

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

PAIN_CODES = ("72514-3", "91147-9", "91148-7")
ACTIVITY_CODES = ("41950-7", "55423-8", "55411-3", "82290-8", "89555-7", "68516-4", "82291-6")
VITAL_CODES = ("85354-9", "8480-6", "8462-4", "8310-5")
WEIGHT_CODES = ("29463-7",)
EXERCISE_ORDER_CODES = ("229065009", "91251008", "229095001", "229138000", "390893007")


def _codes(system: str, codes: tuple[str, ...]) -> str:
    return ",".join(f"{system}|{code}" for code in codes)


def _observations(codes: tuple[str, ...], count: int) -> str:
    return f"Observation?patient={{{{context.patientId}}}}&code={_codes(LOINC, codes)}&_sort=-date&_count={count}"


PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active,recurrence,relapse",
    "pain": _observations(PAIN_CODES, 100),
    "activity": _observations(ACTIVITY_CODES, 200),
    "vitals": _observations(VITAL_CODES, 50),
    "weight": _observations(WEIGHT_CODES, 50),
    # Completed and revoked orders too: a step-back returns to the last well-tolerated dose.
    "step-goals": "Goal?patient={{context.patientId}}&lifecycle-status=active",
    "exercise-orders": (
        "ServiceRequest?patient={{context.patientId}}&status=active,on-hold,completed,revoked"
        f"&code={_codes(SNOMED, EXERCISE_ORDER_CODES)}&_sort=-authored&_count=20"
    ),
}

USAGE = (
    "Reads the patient's pain scores (NRS or PEG), daily steps or exercise sessions, vital signs, weight, "
    "conditions and exercise orders. Works from prefetch; for keys not prefetched it needs fhirServer and an "
    "access token with read access to Patient, Condition, Observation and ServiceRequest."
)

# Keys the service can do without: when their data cannot be had, the evaluation goes on without it (and the
# audit says so) instead of failing with 412. Only steps-only patients have a step Goal.
OPTIONAL_KEYS = frozenset({"step-goals"})
