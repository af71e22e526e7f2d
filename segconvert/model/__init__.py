"""The intermediate representation and its views: what every reader produces and every writer
consumes (``ir``), the panoptic/instance/semantic views (``modes``), packing into uint8
Nucleus-style masks (``pack``).
"""
