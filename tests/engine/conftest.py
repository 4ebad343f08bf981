"""Engine tests need no database, Redis or Django settings: nothing under tests/engine/ imports
django, and the web fixtures live in tests/web/conftest.py, so they never apply here.
`pytest tests/engine -p no:django` runs them without Django installed."""
