"""Data sources: each yields batches of rows (or raw bytes for a parser) for one or more runs."""
