"""ChimeraX bundle for densrefine: refine the open model into the open map.

Commands (declared in ``bundle_info.xml`` and ``pyproject.toml`` ``[chimerax.command.*]``):
``densrefine fit``, ``densrefine score``, ``densrefine stop``, ``densrefine set``,
``densrefine live`` (`.live`); see `.cmd`. densrefine itself runs out of process (ChimeraX's Python has no torch).
"""
from chimerax.core.toolshed import BundleAPI

__version__ = "0.1.0"


class _DensrefineAPI(BundleAPI):
    api_version = 1

    @staticmethod
    def register_command(bi, ci, logger):
        """Called by ChimeraX the first time a declared command is used."""
        from . import cmd

        cmd.register_command(ci.name, logger)


bundle_api = _DensrefineAPI()
