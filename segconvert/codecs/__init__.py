"""Turning bytes into label maps and back, fast: PNG (``png``), raw ids -> indices (``lut`` +
the C kernels), polygons and RLE (``raster``), the shape readers' shared label tables
(``shapes``), other tools' label files (``label_files``), streamed COCO JSON (``cocojson``),
size limits before allocation.
"""
