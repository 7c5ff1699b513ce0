"""
Pure codecs for the SPICE wire format: no I/O happens here.
"""
