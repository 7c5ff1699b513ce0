"""Operator commands, each runnable with C{python -m spicesrv.scripts.NAME}."""
