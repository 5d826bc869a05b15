"""triage: a radiology worklist triage daemon for intracranial hemorrhage on head CT."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
