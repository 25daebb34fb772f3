"""The CoTracker3 tracker with its queries split over 8 (simulated CPU) devices."""

import os
import subprocess
import sys
import textwrap

import numpy as np

from tapkit.tracking import cotracker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

# Random weights at a 32 x 32 model resolution, one refinement iteration: refinement with
# random weights amplifies the float rounding that a different partitioning of the same
# computation brings (about 3e-5 px after 1 iteration, 5e-3 px after 3 were measured).
SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from tapkit.models.cotracker3 import model as model_lib
    from tapkit.tracking import cotracker
    assert len(jax.local_devices()) == 8
    params = model_lib.init_params(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    base = (rng.random((48, 56, 3)) * 255).astype(np.uint8)
    frames = np.stack([np.roll(base, (t, 2 * t), (0, 1))[:32, :32] for t in range(4)])
    out = {}
    for shard in (False, True):
      tracker = cotracker.CoTrackerTracker(params=params, interp_shape=(32, 32), iters=1,
                                           shard_queries=shard)
      result = tracker.track(frames, grid_size=4)
      out[shard] = result
    np.savez(OUT, tracks=np.stack([out[False].tracks, out[True].tracks]),
             visible=np.stack([out[False].visible, out[True].visible]),
             queries=out[True].queries)
''')


def test_query_shard_count():
  assert cotracker.query_shard_count(16, 8) == 8
  assert cotracker.query_shard_count(40, 8) == 8
  assert cotracker.query_shard_count(36, 8) == 6
  assert cotracker.query_shard_count(13, 8) == 1
  assert cotracker.query_shard_count(5, 1) == 1


def test_queries_split_over_8_devices_equal_one_device(tmp_path):
  out = tmp_path / 'out.npz'
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  proc = subprocess.run([sys.executable, '-c', f'OUT = {os.fspath(out)!r}\n' + SCRIPT],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(out) as z:
    tracks, visible, queries = z['tracks'], z['visible'], z['queries']
  assert tracks.shape == (2, 4, 16, 2)
  np.testing.assert_allclose(tracks[1], tracks[0], atol=1e-4, rtol=0)
  np.testing.assert_array_equal(visible[1], visible[0])
  # Not a trivial output: the tracks start at the grid queries and then move.
  np.testing.assert_allclose(tracks[1, 0], queries[:, 1:], atol=1e-4)
  assert np.abs(tracks[1, -1] - tracks[1, 0]).max() > 1e-2
