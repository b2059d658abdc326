"""Every knob of an emulated Fn node, with its unit and default, written once.

`fnlb fnsim` generates one flag per field (`cold_start_ms` -> `--cold-start-ms`, booleans
also as `--no-...`), and `start_nodes(options=...)` takes the same dataclass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fnlb.fnsim.model import PoolConfig


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class FnSimOptions:
    """How each emulated Fn node behaves. The defaults are those of an Fn server of 2018."""

    memory_mb: int = _knob(
        1024,
        "memory of the node for containers, MB; with fn_memory_mb it sets how many containers "
        "run at once (1024 / 128 = 8)",
    )
    fn_memory_mb: int = _knob(128, "memory each function's container holds while it lives, MB")
    cold_start_ms: float = _knob(
        300.0, "milliseconds to launch a container before its first call runs (docker start)"
    )
    idle_timeout_s: float = _knob(
        30.0, "seconds an idle (hot) container lives unused before it is destroyed"
    )
    max_wait_s: float = _knob(
        15.0,
        "seconds a call may wait for a container before the node answers 503 'server too busy'",
    )
    default_ms: float = _knob(20.0, "execution time of a call without ?ms=, milliseconds")
    jitter: float = _knob(
        0.0,
        "execution time is drawn uniformly from ms * (1 +/- jitter), 0..1; 0 is exact",
    )
    wait_header: bool = _knob(
        True,
        "send Xxx-Fxlb-Wait (Go duration the call waited), as Fn up to 0.3.579 did; "
        "off emulates newer servers",
    )
    version: str = _knob("0.3.579", "what GET /version answers")
    seed: int | None = _knob(
        None, "seed of the execution-time jitter (node i uses seed + i); unset: random"
    )
    shutdown_timeout_s: float = _knob(
        5.0, "on stop, seconds in-flight calls may still finish; new calls get 503 meanwhile"
    )

    def check(self) -> None:
        """Raise ValueError naming the knob when the options cannot work."""
        try:
            self.pool_config().check()
        except ValueError as e:
            raise ValueError(_as_knob_message(str(e))) from None
        if not 0 <= self.default_ms < float("inf"):
            raise ValueError("default_ms must be a finite number >= 0")
        if not 0 <= self.shutdown_timeout_s < float("inf"):
            raise ValueError("shutdown_timeout_s must be a finite number >= 0")
        if not self.version or any(c.isspace() for c in self.version):
            raise ValueError("version must be a non-empty word like 0.3.579")

    def pool_config(self) -> PoolConfig:
        """The model's view of these options (seconds instead of milliseconds)."""
        return PoolConfig(
            memory_mb=self.memory_mb,
            fn_memory_mb=self.fn_memory_mb,
            cold_start_s=self.cold_start_ms / 1000.0,
            idle_timeout_s=self.idle_timeout_s,
            max_wait_s=self.max_wait_s,
            jitter=self.jitter,
        )


def _as_knob_message(message: str) -> str:
    return message.replace("cold_start_s", "cold_start_ms")


def option_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The fields of FnSimOptions, in declaration order (for generated flags and docs)."""
    return dataclasses.fields(FnSimOptions)
