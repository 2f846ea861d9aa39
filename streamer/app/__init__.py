"""The application: settings, wiring and the command line."""
