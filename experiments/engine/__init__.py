"""The one bridge to search_engine: rows -> engine objects (build), engine results -> row fields
(records), files in storage (storage), the downloadable model package (packaging) and the
tabular estimator's benchmark tables (tables).

Nothing in search_engine/ knows about Django; nothing else in experiments/ builds engine objects.
Nothing is imported here on purpose, so that importing one part does not pull in the others.
"""
