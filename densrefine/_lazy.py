"""Lazy package attributes (PEP 562): a name is imported from its module on first use.

Packages whose public names pull in torch or numpy (`densrefine.refine`, `densrefine.simulate`,
`densrefine.restraints`, the root) stay cheap to import, so the CLI can refuse bad input
before paying for torch.
"""
from __future__ import annotations

import sys
from importlib import import_module


def lazy_attributes(package: str, table: dict[str, str]):
    """``(__getattr__, __dir__)`` for the package named ``package``.

    ``table`` maps each lazy name to the module that defines it (relative to ``package``,
    e.g. ".config"). The first look-up imports that module and stores the value in the
    package's namespace, so later look-ups (and monkeypatch) see a plain attribute.
    """

    def __getattr__(name):
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(where, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
