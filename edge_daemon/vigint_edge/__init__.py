"""Vigint edge daemon: watches cameras, detects people and vehicles, delivers events to the Vigint cloud."""

__version__ = "0.1.0"
