"""Everything that is not drawing: model, config, targets, parsers, sources, store, GPU, hub and actions.

Never imports textual or rich (tests/test_layering.py checks this in a subprocess).
"""
