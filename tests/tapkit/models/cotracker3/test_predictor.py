"""CoTracker3 predictors against the official predictors' reference vectors, with a fake network.

The fake network checks that it receives exactly the (resized) video and queries the official
predictor sent to its network, and answers with the official network's outputs; the
predictor's tracks / visibility must then equal the official predictor's.
"""

import numpy as np
import pytest

from tapkit.models.cotracker3 import predictor as pred
from tapkit.models.cotracker3 import queries as query_lib

SMALL = (64, 96)
TRACK_ATOL = 2e-3
VIDEO_ATOL = 2e-3


def _load(golden, require_reference, name):
  path = require_reference(f'CoTracker3 reference {name}', golden / 'cotracker3' / f'{name}.npz')
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


class FakeModel:
  """A scripted network: each call checks its inputs against `expected` and returns outputs."""

  def __init__(self, calls):
    self.calls = list(calls)  # (queries [1,N,3], video [1,T,3,h,w] | None, means [1,T] | None, outputs)

  def __call__(self, video, queries):
    assert self.calls, 'unexpected extra network call'
    want_q, want_video, want_means, outputs = self.calls.pop(0)
    np.testing.assert_allclose(queries, want_q, atol=1e-5, rtol=0)
    assert video.dtype == np.float32 and video.ndim == 5 and video.shape[0] == 1 and video.shape[2] == 3
    if want_video is not None:
      np.testing.assert_allclose(video, want_video, atol=VIDEO_ATOL, rtol=0)
    if want_means is not None:
      np.testing.assert_allclose(video.mean(axis=(2, 3, 4)), want_means, atol=1e-3, rtol=0)
    return outputs


def _model_call(g, prefix):
  return (g[f'{prefix}/queries'], g.get(f'{prefix}/video'), g.get(f'{prefix}/video_frame_means'),
          (g[f'{prefix}/coords'], g[f'{prefix}/vis'], g[f'{prefix}/conf']))


def _check_visibility(got, want, deciding, threshold):
  """Booleans equal except where the deciding probability is within 1e-3 of the threshold."""
  near = np.abs(deciding - threshold) < 1e-3
  assert np.array_equal(got[~near], want[~near])


# ---------------------------------------------------------------------------------------------
# Building blocks.


def test_grid_points(golden, require_reference):
  g = _load(golden, require_reference, 'block_grid_points')
  cases = [(1, (384, 512)), (2, (64, 96)), (5, (384, 512)), (6, (64, 96)), (10, (50, 70))]
  for i, (size, extent) in enumerate(cases):
    np.testing.assert_array_equal(query_lib.grid_points(size, extent), g[f'grid_{i}'][0])


def test_resize_and_mask(golden, require_reference):
  g = _load(golden, require_reference, 'block_resize')
  for i in range(3):
    for b in range(2):
      frames = g[f'video_{i}'][b].transpose(1, 2, 0)[None]  # One frame [1, H, W, 3].
      got = pred.model_video(frames, SMALL)[0, 0]
      np.testing.assert_allclose(got, g[f'resized_{i}'][b], atol=VIDEO_ATOL, rtol=0)
  np.testing.assert_array_equal(query_lib.resize_mask_nearest(g['mask'][0, 0], SMALL),
                                g['mask_nearest'][0, 0])


def test_dense_query_passes(golden, require_reference):
  g = _load(golden, require_reference, 'block_dense_queries')
  for i, (h, w, frame) in enumerate([(20, 170, 0), (13, 240, 2)]):
    passes = query_lib.dense_query_passes(h, w, frame)
    np.testing.assert_array_equal(np.stack(passes)[:, None], g[f'queries_{i}'])
  with pytest.raises(ValueError, match='width'):
    query_lib.dense_query_passes(20, 60)


def test_torch_linspace_halves():
  got = query_lib.torch_linspace(0.1, 0.7, 7)
  assert got.dtype == np.float32 and got[0] == np.float32(0.1) and got[-1] == np.float32(0.7)
  np.testing.assert_allclose(got, np.linspace(0.1, 0.7, 7), atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Offline predictor.


def _offline(g, calls, **kw):
  model = FakeModel(calls)
  tracks, visible = pred.predict_offline(model, g['video'], grid_size=int(g['grid_size']),
                                         grid_query_frame=int(g['grid_query_frame']),
                                         backward_tracking=bool(g['backward_tracking']), **kw)
  assert not model.calls, 'network called fewer times than the official predictor'
  assert tracks.dtype == np.float32 and visible.dtype == bool
  np.testing.assert_allclose(tracks, g['tracks'], atol=TRACK_ATOL, rtol=0)
  return visible


def test_offline_grid(golden, require_reference):
  g = _load(golden, require_reference, 'predictor_offline_grid')
  visible = _offline(g, [_model_call(g, 'model_fwd')], interp_shape=SMALL)
  _check_visibility(visible, g['visibility'], g['model_fwd/vis'], 0.9)


def test_offline_queries_backward(golden, require_reference):
  g = _load(golden, require_reference, 'predictor_offline_queries_backward')
  visible = _offline(g, [_model_call(g, 'model_fwd'), _model_call(g, 'model_bwd')],
                     queries=g['queries'], interp_shape=SMALL)
  num_frames, n = g['visibility'].shape[1:]
  before = np.arange(num_frames)[:, None] < g['queries'][0, :, 0][None]
  deciding = np.where(before, g['model_bwd/vis'][0, ::-1, :n], g['model_fwd/vis'][0, :, :n])
  _check_visibility(visible[0], g['visibility'][0], deciding, 0.9)
  # The caller's queries are not modified.
  assert g['queries'][0, 1, 1] == 69.0


def test_offline_segm(golden, require_reference):
  g = _load(golden, require_reference, 'predictor_offline_segm')
  visible = _offline(g, [_model_call(g, 'model_fwd')], segm_mask=g['segm_mask'],
                     interp_shape=SMALL)
  assert visible.shape == (1, 6, 6)
  _check_visibility(visible, g['visibility'], g['model_fwd/vis'][..., :6], 0.9)


def test_offline_default_resolution(golden, require_reference):
  g = _load(golden, require_reference, 'predictor_offline_default_res')
  video = g['video'][0].transpose(0, 2, 3, 1)  # Also the [T, H, W, 3] layout.
  model = FakeModel([_model_call(g, 'model_fwd')])
  tracks, visible = pred.predict_offline(model, video, grid_size=2)
  np.testing.assert_allclose(tracks, g['tracks'], atol=TRACK_ATOL, rtol=0)
  _check_visibility(visible, g['visibility'], g['model_fwd/vis'], 0.9)


# ---------------------------------------------------------------------------------------------
# Online predictor.


def test_online_grid(golden, require_reference):
  g = _load(golden, require_reference, 'predictor_online_grid')
  video = g['video']
  num_frames = video.shape[1]
  processing = [tuple(c[1:]) for c in g['calls'] if not c[0]]
  assert pred.online_chunks(num_frames) == processing
  log = []

  def session_factory(queries):
    np.testing.assert_allclose(queries, g['registered_queries'], atol=1e-5, rtol=0)
    def session(chunk, is_first_step):
      k = len(log)
      log.append(is_first_step)
      assert chunk.shape[1] == processing[k][1] - processing[k][0]
      np.testing.assert_allclose(chunk.mean(axis=(2, 3, 4)), g[f'call{k}_model/video_frame_means'],
                                 atol=1e-3, rtol=0)
      return {name: g[f'call{k}_model/{name}'] for name in ('coords', 'vis', 'conf')}
    return session

  steps = []
  frames = (f.transpose(1, 2, 0) for f in video[0])  # A generator: bounded memory.
  tracks, visible = pred.predict_online(session_factory, frames, grid_size=int(g['grid_size']),
                                        interp_shape=SMALL, num_frames=num_frames,
                                        on_step=lambda t, v: steps.append((t, v)))
  assert log == [True, False]
  for k, (t, v) in enumerate(steps):
    np.testing.assert_allclose(t, g[f'call{k}_tracks'], atol=TRACK_ATOL, rtol=0)
    deciding = g[f'call{k}_model/vis'] * g[f'call{k}_model/conf']
    _check_visibility(v, g[f'call{k}_visibility'], deciding, 0.6)
  assert tracks.shape == (1, num_frames, 9, 2)
  np.testing.assert_array_equal(tracks, steps[-1][0])


@pytest.mark.parametrize('num_frames,want', [
    (5, [(0, 5)]), (8, [(0, 8)]), (9, [(0, 9)]), (16, [(0, 16)]), (17, [(0, 16), (8, 17)]),
    (24, [(0, 16), (8, 24)]), (25, [(0, 16), (8, 24), (16, 25)])])
def test_online_chunks(num_frames, want):
  assert pred.online_chunks(num_frames) == want
