"""FHIR R4 resources -> clinical records, with the data hygiene of docs/clinical.md: every value that is set aside
(status, unknown unit, out of range, no date, dated after `now`) is reported in `PatientRecord.set_aside` with its
reason, never guessed.

One module per resource family, over the small readers they share (`common`):

- `observations`: pain scores and the PEG, steps, sessions and activity panels, the Exercise Vital Sign and vital
  signs; the checks that decide what a reading means, and the two readers that take them (the general reader over
  dicts, and the one-pass reader of the usual Observation, over dicts or the typed records of cds/fhir/typed.py);
- `conditions`, `orders` (ServiceRequests, CarePlan activities, doses), `goals`, `patient`;
- `builder`: `RecordBuilder`, which sends each resource to its family's reader, and `build_record`.
"""

from cds.fhir.readers.builder import NeedsGeneralReader, RecordBuilder, build_record
from cds.fhir.readers.common import SNOMED, codes_of, instruction_patterns, parse_time
from cds.fhir.readers.orders import DoseLimits, for_pain, order_dose, read_dose

__all__ = ["SNOMED", "DoseLimits", "NeedsGeneralReader", "RecordBuilder", "build_record", "codes_of", "for_pain",
           "instruction_patterns", "order_dose", "parse_time", "read_dose"]
