"""The operator console: its static files (`static/`) and how the hub serves them (`files.py`)."""
