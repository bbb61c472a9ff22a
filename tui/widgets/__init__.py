"""The app's widgets; each renders data it is handed and never reads sources itself."""
