"""Worker processes started by the supervisor; each runs with `python -m workers.<name>`."""
