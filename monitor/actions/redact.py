"""The redactor, where actions have always found it (it lives in `monitor.redact`, free of the actions package)."""

from monitor.redact import MASK, Redactor, is_secret_key, redact_text

__all__ = ["MASK", "Redactor", "is_secret_key", "redact_text"]
