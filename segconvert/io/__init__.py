"""Where bytes come from and go: the one safe-name rule for output files (``paths``), the
output store every writer writes through (``storage``), the thread that writes its files
behind the conversion when the file system is slow (``writeback``), reading sources by path
or URL.
"""
