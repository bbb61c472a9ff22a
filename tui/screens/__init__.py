"""The app's screens: the run table, a run's detail, the compare view and the help."""
