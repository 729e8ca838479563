"""Imitation methods: DITTO, D-BC and D-GAIL in a world model, pixel BC, and the
goal-conditioned LUMOS and its D-BC (lumos, lumos-dbc).

Importing the package registers the built-in methods (ditto.agents.registry), in the order
the report lists them; a method from elsewhere registers itself the same way.
"""

from importlib import import_module

BUILTIN_METHODS = ("ditto", "dbc", "dgail", "bc", "lumos")  # each registers its method(s)

for _module in BUILTIN_METHODS:
    import_module(f"{__name__}.{_module}")
