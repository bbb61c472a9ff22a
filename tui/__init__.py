"""The Textual app, its widgets and screens, and the command-line entry point."""
