"""Supervisor, message registry and bus of the desktop companion back end."""
