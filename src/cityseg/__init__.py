"""cityseg: semantic segmentation of street scenes from Cityscapes image pairs.

The package is a pipeline of small modules, data flowing one way::

    files -> pairs -> labels -> datasets -> models -> training -> evaluation -> predict / export

Importing ``cityseg`` is cheap: torch and Lightning load only in the modules that need them.
"""

__version__ = "0.1.0"
