"""Textual themes and the verdict colour variables; colours live here and nowhere else."""
