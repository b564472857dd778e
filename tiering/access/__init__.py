"""How people and programs reach data wherever it lives: the ``tiered://`` fsspec filesystem
(``tiered``) and verified reads of released files straight from their capacity tier (``released``).
"""
