"""CoTracker3 online model (whole-video windows and streaming) against the official goldens."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tapkit.models.cotracker3 import convert
from tapkit.models.cotracker3 import online

COORD_ATOL = 2e-3  # pixels
PROB_ATOL = 2e-4


def _load(golden, require_reference, name):
  path = require_reference(f'CoTracker3 reference {name}', golden / 'cotracker3' / f'{name}.npz')
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


@pytest.fixture(scope='module')
def params(shared, require_reference):
  folder = require_reference('CoTracker3 goldens', shared / 'golden' / 'cotracker3')
  spec = importlib.util.spec_from_file_location('ct3_make_params', folder / 'make_params.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  state = module.make_params(shared / 'data' / 'param_trees' / 'cotracker3_online.json', 0,
                             folder / 'param_overrides.json')
  return jax.tree_util.tree_map(jnp.asarray, convert.params_from_state_dict(state))


def _close(actual, expected, atol):
  actual = np.asarray(actual)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


def test_online_full_video_two_windows(golden, require_reference, params):
  g = _load(golden, require_reference, 'online_full_t20')
  t = g['video'].shape[1]
  out = online.online_forward(params, g['video'].astype(np.float32), g['queries'],
                              iters=int(g['iters']), return_windows=True)
  _close(out['coords'], g['coords'], COORD_ATOL)
  _close(out['vis'], g['vis'], PROB_ATOL)
  _close(out['conf'], g['conf'], PROB_ATOL)
  assert out['windows_coords_iters'].shape[0] == 2
  for w in range(2):
    frames = min(t - 8 * w, 16)
    _close(out['windows_coords_iters'][w][:, :, :frames], g[f'window{w}_coords_iters'],
           COORD_ATOL)
    _close(out['windows_vis_iters'][w][:, :, :frames], g[f'window{w}_vis_iters'], PROB_ATOL)
    _close(out['windows_conf_iters'][w][:, :, :frames], g[f'window{w}_conf_iters'], PROB_ATOL)


def test_online_full_video_too_short_for_a_window(golden, require_reference, params):
  g = _load(golden, require_reference, 'online_full_t8_nowindow')
  out = online.online_forward(params, g['video'].astype(np.float32), g['queries'],
                              iters=int(g['iters']))
  np.testing.assert_array_equal(out['coords'], g['coords'])
  np.testing.assert_array_equal(out['vis'], g['vis'])
  np.testing.assert_array_equal(out['conf'], g['conf'])
  assert np.all(g['vis'] == 0.5) and np.all(g['coords'] == 0)


def test_online_streaming_chunks(golden, require_reference, params):
  g = _load(golden, require_reference, 'online_chunks_l21')
  video = g['video'].astype(np.float32)
  session = online.OnlineSession(params, g['queries'], iters=int(g['iters']))
  for k, (start, end) in enumerate(g['chunks']):
    out = session(video[:, start:end], is_first_step=(k == 0))
    _close(out['coords'], g[f'call{k}_coords'], COORD_ATOL)
    _close(out['vis'], g[f'call{k}_vis'], PROB_ATOL)
    _close(out['conf'], g[f'call{k}_conf'], PROB_ATOL)
  # A new first step forgets the previous video.
  again = session(video[:, 0:16], is_first_step=True)
  _close(again['coords'], g['call0_coords'], COORD_ATOL)


def test_online_session_rejects_long_chunks(params):
  session = online.OnlineSession(params, np.zeros((1, 2, 3), np.float32), window_len=16)
  with pytest.raises(ValueError, match='video_chunk'):
    session(np.zeros((1, 17, 3, 32, 32), np.float32), is_first_step=True)
