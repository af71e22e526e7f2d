"""Built-in converters, installed as ``segconvert.converters`` (one module per format).

Copy any module here to add a format: it declares ``FORMAT = Format(...)`` and is
listed in ``segconvert.interfaces.registry.BUILTIN``.
"""

if __name__ == "converters":  # imported from the repo root as a bare top-level package
    raise ImportError("import this package as segconvert.converters, not converters")
