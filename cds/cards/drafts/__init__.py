"""The FHIR resources a card suggests, and the suggestions that carry them: `resources` drafts the
ServiceRequests and Goals the Physical Activity IG profiles describe, `layout` lays a draft ServiceRequest out as
fhir.resources emits it, and `suggestions` holds one builder per kind of suggestion (`SUGGESTIONS`)."""
