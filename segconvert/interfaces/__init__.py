"""How people and programs reach segconvert: the command (``cli``), the Python API
(``api``, ``library``), the converter contract (``format``) and registry (``registry``).
"""
