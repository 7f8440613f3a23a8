"""triage: keeps Amazon marketplace sellers from missing the emails that decide their business."""

__version__ = "0.1.0"
