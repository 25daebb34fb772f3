"""Device mesh, sharding rules and global batch assembly.

The engine uses one 2D mesh with axes ('data', 'fsdp'):
  * batches are split over both axes on their leading (batch) axis, so every
    device sees `global_batch / num_devices` examples;
  * parameters and optimiser state are sharded FSDP-style: a tensor with at
    least `min_size` elements is split over 'fsdp' along its largest axis that
    is divisible by the 'fsdp' size; everything else is replicated.
The rule only looks at shapes, so it applies equally to params, Adam moments
and EMA params, which keeps a parameter and its moments co-located.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ('data', 'fsdp')
BATCH_AXES = ('data', 'fsdp')


def mesh_shape(
    sizes: Mapping[str, int], num_devices: int
) -> tuple[int, ...]:
  """Resolves axis sizes (at most one -1 = "the rest") for `num_devices`.

  Args:
    sizes: {'data': int, 'fsdp': int}; one of them may be -1.
    num_devices: total number of devices (all processes).

  Returns:
    (data, fsdp) sizes whose product is `num_devices`.
  """
  shape = [int(sizes.get(a, 1)) for a in MESH_AXES]
  if shape.count(-1) > 1:
    raise ValueError(f'At most one mesh axis may be -1, got {dict(sizes)}.')
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f'Mesh axis sizes must be positive or -1, got {dict(sizes)}.')
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if num_devices % known:
      raise ValueError(
          f'Mesh {dict(sizes)}: {num_devices} devices are not divisible by {known}.')
    shape[shape.index(-1)] = num_devices // known
  if int(np.prod(shape)) != num_devices:
    raise ValueError(
        f'Mesh {dict(zip(MESH_AXES, shape))} needs {int(np.prod(shape))} devices, '
        f'but {num_devices} are available.')
  return tuple(shape)


def make_mesh(
    config: ml_collections.ConfigDict | Mapping[str, int],
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
  """Builds the ('data', 'fsdp') mesh from `config` (keys 'data', 'fsdp')."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(dict(config), len(devices))
  try:
    # Topology-aware placement on accelerators; falls back on CPU and when
    # the device count does not fit a physical topology.
    device_array = mesh_utils.create_device_mesh(
        shape, devices=devices, allow_split_physical_axes=True)
  except Exception:  # pylint: disable=broad-except
    device_array = np.asarray(devices).reshape(shape)
  return Mesh(device_array, MESH_AXES)


def fsdp_spec(shape: Sequence[int], fsdp_size: int, min_size: int) -> P:
  """PartitionSpec for one tensor under the FSDP rule (see module doc)."""
  if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  # Largest axis first; ties broken by the later axis (usually the output dim).
  order = sorted(range(len(shape)), key=lambda i: (shape[i], i), reverse=True)
  for axis in order:
    if shape[axis] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[axis] = 'fsdp'
      return P(*spec)
  return P()


def tree_shardings(tree: Any, mesh: Mesh, min_size: int) -> Any:
  """NamedShardings for every array leaf of `tree` (arrays or ShapeDtypeStructs)."""
  fsdp_size = mesh.shape['fsdp']
  return jax.tree.map(
      lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), fsdp_size, min_size)),
      tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over ('data', 'fsdp'); other axes replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def micro_batch_sharding(mesh: Mesh) -> NamedSharding:
  """Split batches [k, B/k, ...]: micro-batch axis replicated, examples as `batch_sharding`."""
  return NamedSharding(mesh, P(None, BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Examples this process feeds per step; checks divisibility clearly."""
  num_devices = mesh.devices.size
  if global_batch_size % num_devices:
    raise ValueError(
        f'batch_size={global_batch_size} must be divisible by the number of '
        f'devices ({num_devices}) so that every device gets the same share.')
  if global_batch_size % jax.process_count():
    raise ValueError(
        f'batch_size={global_batch_size} must be divisible by the number of '
        f'processes ({jax.process_count()}).')
  return global_batch_size // jax.process_count()


def check_accumulation(global_batch_size: int, accumulate_steps: int, mesh: Mesh) -> None:
  """Every micro-batch (batch_size / accumulate_steps) must split evenly over the devices."""
  k, num_devices = int(accumulate_steps), mesh.devices.size
  if k < 1:
    raise ValueError(f'accumulate_steps must be >= 1, got {k}.')
  if global_batch_size % (k * num_devices):
    raise ValueError(
        f'batch_size={global_batch_size} must be divisible by accumulate_steps * devices '
        f'({k} * {num_devices}) so that every micro-batch splits evenly over the devices.')


def make_global_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Assembles per-process numpy batches [B_local, ...] into global jax.Arrays [B, ...]."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)
