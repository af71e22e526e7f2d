"""Where bytes come from and go: the one safe-name rule for output files (``paths``), the
output store every writer writes through (``storage``), reading sources by path or URL.
"""
