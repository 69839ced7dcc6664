"""FHIR access and reading: prefetch templates and their resolution, the fallback client and its allow-list,
and resources read into clinical records."""
