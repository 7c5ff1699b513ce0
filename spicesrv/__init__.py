"""
spicesrv: a SPICE remote-display server framework on Twisted.
"""

__version__ = "0.1.0"
