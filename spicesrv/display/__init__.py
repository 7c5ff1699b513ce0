"""
Framebuffers, damage and image encoding for the display and cursor channels.
"""
