"""Running items: the ordered, resumable pipeline and its journal (``pipeline``), the
process pool (``workers``), other executors.
"""
