"""Looking at data before trusting it: ``validate`` (a Nucleus set before upload), ``stats``,
``preview``, and what they share (``shared``: ordered parallel map, image lookup).
"""
