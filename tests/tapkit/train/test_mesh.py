"""Mesh resolution and the FSDP sharding rule."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tapkit.train import mesh as mesh_lib


def test_mesh_shape_resolves_minus_one():
  assert mesh_lib.mesh_shape({'data': -1, 'fsdp': 4}, 8) == (2, 4)
  assert mesh_lib.mesh_shape({'data': 2, 'fsdp': -1}, 8) == (2, 4)
  assert mesh_lib.mesh_shape({'data': -1, 'fsdp': 1}, 1) == (1, 1)


@pytest.mark.parametrize('sizes', [{'data': 3, 'fsdp': -1}, {'data': 2, 'fsdp': 2},
                                   {'data': -1, 'fsdp': -1}])
def test_mesh_shape_errors(sizes):
  with pytest.raises(ValueError):
    mesh_lib.mesh_shape(sizes, 8)


def test_fsdp_rule():
  # Largest divisible axis; ties -> later axis; small or indivisible -> replicated.
  assert mesh_lib.fsdp_spec((16, 64), 4, 256) == P(None, 'fsdp')
  assert mesh_lib.fsdp_spec((64, 64), 4, 256) == P(None, 'fsdp')
  assert mesh_lib.fsdp_spec((64, 6), 4, 256) == P('fsdp', None)
  assert mesh_lib.fsdp_spec((66, 6), 4, 256) == P()
  assert mesh_lib.fsdp_spec((8, 8), 4, 256) == P()
  assert mesh_lib.fsdp_spec((3, 5, 128), 4, 256) == P(None, None, 'fsdp')
  assert mesh_lib.fsdp_spec((1024,), 1, 0) == P()


def test_single_device_mesh_and_batch():
  mesh = mesh_lib.make_mesh({'data': -1, 'fsdp': 1}, jax.devices()[:1])
  assert dict(mesh.shape) == {'data': 1, 'fsdp': 1}
  assert mesh_lib.local_batch_size(6, mesh) == 6
  batch = mesh_lib.make_global_batch({'x': np.ones((6, 2), np.float32)}, mesh)
  assert batch['x'].shape == (6, 2)
