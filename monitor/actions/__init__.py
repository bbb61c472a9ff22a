"""Actions on runs: stop, escalate to a reviewer, evidence bundles, audit log. No Textual here."""
