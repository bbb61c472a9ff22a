"""Pure streaming detectors and the judge: no I/O, no clock reads, no Textual."""
