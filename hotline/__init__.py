"""Composition root: the `hotline` command and the wiring that starts the services."""
