"""
The channel protocols, one module per SPICE channel type.
"""
