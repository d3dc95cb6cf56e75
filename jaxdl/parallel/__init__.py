from jaxdl.parallel.distributed import initialize as initialize_distributed
from jaxdl.parallel.mesh import (
    DATA,
    MODEL,
    check_batch_size,
    data_axis_size,
    data_sharding,
    local_rows,
    make_mesh,
    parse_mesh_spec,
    replicate,
    replicated,
    shard_batch,
)
from jaxdl.parallel.sharding import (
    abstract_state,
    array_spec,
    bytes_per_device,
    place_state,
    state_shardings,
)

__all__ = [
    "DATA",
    "MODEL",
    "abstract_state",
    "array_spec",
    "bytes_per_device",
    "check_batch_size",
    "data_axis_size",
    "data_sharding",
    "initialize_distributed",
    "local_rows",
    "make_mesh",
    "parse_mesh_spec",
    "place_state",
    "replicate",
    "replicated",
    "shard_batch",
    "state_shardings",
]
