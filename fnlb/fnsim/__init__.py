"""fnsim: an emulated Fn server (hot/cold containers, memory slots, 503 busy) for tests,
demos and benchmarks of fnlb.

- `fnlb.fnsim.model`: the container pool of one node as a sans-I/O state machine;
  `fnlb.fnsim.fleet`: many of them on one virtual clock, for routing simulations.
- `fnlb.fnsim.server`: one aiohttp Fn server around a model; `fnlb.fnsim.cluster`:
  `start_nodes()` for several in one process; `fnlb.cli.fnsim`: `fnlb fnsim`.

`start_nodes`, `FnSimCluster`, `FnSimNode` and `FnSimOptions` are importable from here; the
server side is imported only when first used, so simulations that need only the model do
not load aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fnlb.fnsim.cluster import FnSimCluster, start_nodes
    from fnlb.fnsim.options import FnSimOptions
    from fnlb.fnsim.server import FnSimNode

__all__ = ["FnSimCluster", "FnSimNode", "FnSimOptions", "start_nodes"]

_HOMES = {
    "FnSimCluster": "fnlb.fnsim.cluster",
    "start_nodes": "fnlb.fnsim.cluster",
    "FnSimOptions": "fnlb.fnsim.options",
    "FnSimNode": "fnlb.fnsim.server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fnlb.fnsim' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
