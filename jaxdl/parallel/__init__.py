from jaxdl.parallel.mesh import (
    DATA, check_batch_size, data_axis_size, data_sharding, make_mesh, replicate, replicated, shard_batch,
)

__all__ = ["DATA", "check_batch_size", "data_axis_size", "data_sharding", "make_mesh", "replicate",
           "replicated", "shard_batch"]
