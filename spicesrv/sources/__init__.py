"""
Built-in display sources.
"""
