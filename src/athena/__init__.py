"""Athena: a conversation gateway that gives every Home Assistant voice device a session."""

__version__ = "0.1.0"
