"""The command-line interface (``authproxy ...``).

May import: everything.
"""
