"""Background work of an experiment: Dramatiq actors (actors.py) and the work they call.

Nothing is imported here on purpose: models import `jobs.enqueue`, which must stay free of the
modules that import models.
"""
