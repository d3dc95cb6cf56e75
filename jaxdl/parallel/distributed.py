"""Starting a multi-host (multi-process) run on JAX's own distributed runtime.

Every process calls `initialize(...)` once, before anything touches a device; afterwards
`jax.devices()` lists the devices of all processes, a mesh over them spans every host, and a
jitted step is one program run by all processes together (each feeding its own rows of the batch,
see `jaxdl.parallel.mesh.local_rows`).

Where the three numbers come from, first found wins:

1. arguments (the CLI's `--coordinator HOST:PORT --num-processes N --process-id I`);
2. environment: `JAXDL_COORDINATOR`, `JAXDL_NUM_PROCESSES`, `JAXDL_PROCESS_ID`, or JAX's own
   `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`;
3. the cluster, as JAX detects it (Slurm under `srun`, Cloud TPU pods, Open MPI, Kubernetes).

With none of them a run is single-process and nothing is initialised. Two failures that JAX
reports by aborting the process (or not at all) are checked first, with a clear error: a process
id out of range, and a coordinator that does not answer within `timeout` seconds.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import jax

from jaxdl.errors import JaxdlError

ENV = {
    "coordinator": ("JAXDL_COORDINATOR", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("JAXDL_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("JAXDL_PROCESS_ID", "JAX_PROCESS_ID"),
}


@dataclass(frozen=True)
class DistributedSpec:
    """What `initialize` was asked for; None where the cluster is to say."""

    coordinator: str | None
    num_processes: int | None
    process_id: int | None

    @property
    def complete(self) -> bool:
        return None not in (self.coordinator, self.num_processes, self.process_id)

    @property
    def empty(self) -> bool:
        return (self.coordinator, self.num_processes, self.process_id) == (None, None, None)


def resolve(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    environ=None,
) -> DistributedSpec:
    """Fill what the arguments leave unset from the environment and check what is set."""
    environ = os.environ if environ is None else environ
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    where = {k: "argument" for k, v in given.items() if v is not None}
    for key, names in ENV.items():
        if given[key] is None:
            name = next((n for n in names if environ.get(n, "").strip()), None)
            if name is not None:
                given[key], where[key] = environ[name].strip(), name
    for key in ("num_processes", "process_id"):
        if given[key] is not None:
            try:
                given[key] = int(given[key])
            except ValueError:
                raise JaxdlError(
                    f"{key} from {where[key]} must be an integer, got {given[key]!r}"
                ) from None
    spec = DistributedSpec(**given)
    if spec.coordinator is not None:
        _split_address(spec.coordinator)
    if spec.num_processes is not None and spec.num_processes < 1:
        raise JaxdlError(
            f"num_processes must be >= 1, got {spec.num_processes} (from {where['num_processes']})"
        )
    if spec.process_id is not None:
        n = spec.num_processes
        if spec.process_id < 0 or (n is not None and spec.process_id >= n):
            limit = f"0..{n - 1} for num_processes={n}" if n is not None else ">= 0"
            raise JaxdlError(
                f"process_id {spec.process_id} (from {where['process_id']}) is out "
                f"of range: expected {limit}"
            )
    return spec


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise JaxdlError(
            f"coordinator address must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}"
        )
    return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Return once a TCP connection to `address` succeeds; a clear error after `timeout` s."""
    host, port = _split_address(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(1.0, timeout)):
                return
        except OSError as e:
            last = e
        if time.monotonic() >= deadline:
            raise JaxdlError(
                f"coordinator {address} could not be reached within {timeout:g} s ({last}); start "
                f"process 0 first (it serves the coordinator) and check the address and port"
            )
        time.sleep(0.2)


def cluster_detected() -> str | None:
    """The name of the cluster environment JAX would configure itself from, or None."""
    from jax._src import clusters  # JAX's detectors: one source of truth for what it supports

    for env in clusters.ClusterEnv._cluster_types:
        if not env.opt_in_only_method and env.is_env_present():
            return env.__name__
    return None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = 300,
    environ=None,
) -> bool:
    """Join (or, as process 0, host) a multi-process run; see the module docstring for where
    the settings come from. Returns True if the runtime was initialised, False for a
    single-process run (nothing configured, no cluster detected)."""
    spec = resolve(coordinator, num_processes, process_id, environ=environ)
    if spec.empty:
        if cluster_detected() is None:
            return False
        jax.distributed.initialize(initialization_timeout=int(timeout))  # JAX reads the cluster
        return True
    if not spec.complete and cluster_detected() is None:
        missing = [
            k for k in ("coordinator", "num_processes", "process_id") if getattr(spec, k) is None
        ]
        raise JaxdlError(
            f"multi-process run: {', '.join(missing)} not set and no cluster detected; give "
            f"--coordinator HOST:PORT --num-processes N --process-id I (or the JAXDL_* "
            f"environment variables)"
        )
    if spec.coordinator is not None and spec.process_id not in (0, None):
        # JAX aborts the whole process when it cannot register; fail with a message instead
        wait_for_coordinator(spec.coordinator, timeout)
    jax.distributed.initialize(
        spec.coordinator, spec.num_processes, spec.process_id, initialization_timeout=int(timeout)
    )
    return True
