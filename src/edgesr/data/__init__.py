"""Data: MATLAB-bicubic LR/HR pairs (BasicSR conventions), image I/O, sources, and the prepared dataset.

Import the modules themselves (``edgesr.data.prepare``...): this package re-exports nothing, so
importing one module does not import the others, and each DVC stage depends on what it uses.
"""
