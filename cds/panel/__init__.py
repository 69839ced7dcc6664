"""The panel worklist: a whole Bulk Data export through the pacing-review core, on Dask."""
