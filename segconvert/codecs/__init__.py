"""Turning bytes into label maps and back, fast: PNG (``png``), raw ids -> indices (``lut`` +
the C kernels), polygons and RLE (``raster``), the shape readers' shared label tables
(``shapes``), streamed COCO JSON (``cocojson``), size limits before allocation.
"""
