"""The CoTracker3 adapter's wiring, against stand-ins for the network and the predictors."""

import types

import jax.numpy as jnp
import numpy as np
import pytest

from tapkit import tracking
from tapkit.tracking import cotracker


@pytest.fixture
def fakes(monkeypatch):
  calls = {}

  def offline_forward(params, video, queries, *, iters, model_resolution):
    calls['forward'] = dict(params=params, iters=iters, model_resolution=model_resolution,
                            video=video.shape, queries=queries.shape)
    b, t = video.shape[:2]
    n = queries.shape[1]
    coords = jnp.broadcast_to(queries[:, None, :, 1:], (b, t, n, 2))
    return {'coords': coords, 'vis': jnp.ones((b, t, n)), 'conf': jnp.ones((b, t, n))}

  class Session:

    def __init__(self, params, queries, *, iters, model_resolution):
      calls['session'] = dict(params=params, queries=np.shape(queries), iters=iters,
                              model_resolution=model_resolution)

  def predict_offline(model_fn, frames, *, queries, grid_size, grid_query_frame,
                      backward_tracking, interp_shape, query_chunk):
    calls['offline'] = dict(queries=None if queries is None else queries.shape,
                            grid_size=grid_size, grid_query_frame=grid_query_frame,
                            backward=backward_tracking, interp_shape=interp_shape,
                            query_chunk=query_chunk)
    h, w = interp_shape
    q = queries if queries is not None else np.zeros((1, grid_size ** 2, 3), np.float32)
    coords, vis, _ = model_fn(np.zeros((1, len(frames), 3, h, w), np.float32), q)
    return np.asarray(coords), np.asarray(vis) > 0.9

  def predict_online(session_factory, frames, *, queries, grid_size, grid_query_frame,
                     interp_shape):
    session_factory(np.zeros((1, 4, 3), np.float32))
    calls['online'] = dict(grid_size=grid_size, interp_shape=interp_shape,
                           factory_resolution=session_factory.model_resolution)
    n = grid_size ** 2 if queries is None else queries.shape[1]
    return np.zeros((1, len(frames), n, 2), np.float32), np.ones((1, len(frames), n), bool)

  ct3 = types.SimpleNamespace(offline_forward=offline_forward, OnlineSession=Session,
                              load_checkpoint=lambda path: {'w': np.float32(len(path))})
  predictor = types.SimpleNamespace(predict_offline=predict_offline,
                                    predict_online=predict_online, BOUNDED_QUERY_CHUNK=1024)
  monkeypatch.setattr(cotracker, '_cotracker_modules', lambda: (ct3, predictor))
  return calls


def test_offline_queries(fakes, texture):
  tracker = tracking.make_tracker('cotracker3', 'w.pth', interp_shape=(32, 48), query_chunk=7)
  assert tracker.params == {'w': 5.0} and tracker.name == 'cotracker3'
  queries = np.array([[0, 5.0, 6.0], [3, 7.0, 8.0]], np.float32)
  result = tracker.track(texture, queries, backward=True)
  # Explicit queries: no grid (the predictor's own choices for queries apply).
  assert fakes['offline'] == dict(queries=(1, 2, 3), grid_size=0, grid_query_frame=0,
                                  backward=True, interp_shape=(32, 48), query_chunk=7)
  assert fakes['forward']['iters'] == cotracker.PREDICTOR_ITERS == 6
  assert fakes['forward']['model_resolution'] == (32, 48)
  assert fakes['forward']['video'] == (1, 10, 3, 32, 48)
  np.testing.assert_array_equal(result.queries, queries)
  np.testing.assert_array_equal(result.tracks[4], queries[:, 1:])
  assert result.visible.all()


def test_grid_queries_are_scaled_from_model_pixels(fakes, texture):
  tracker = tracking.make_tracker('cotracker3', 'w.pth', interp_shape=(32, 48))
  result = tracker.track(texture, grid_size=3, grid_query_frame=2)
  assert fakes['offline']['grid_size'] == 3 and fakes['offline']['queries'] is None
  # The tracker bounds memory by default (calls of at most 1024 queries).
  assert fakes['offline']['query_chunk'] == 1024
  expected = tracking.grid_queries(32, 48, 3, 2)
  expected[:, 1:] *= [(80 - 1) / (48 - 1), (64 - 1) / (32 - 1)]
  np.testing.assert_allclose(result.queries, expected, rtol=1e-6)
  assert result.tracks.shape == (10, 9, 2)


def test_online(fakes, texture):
  tracker = tracking.make_tracker('cotracker3_online', 'w.pth', interp_shape=(32, 48))
  assert tracker.name == 'cotracker3_online'
  result = tracker.track(texture, grid_size=2)
  assert fakes['online'] == dict(grid_size=2, interp_shape=(32, 48),
                                 factory_resolution=(32, 48))
  assert fakes['session']['iters'] == 6 and fakes['session']['queries'] == (1, 4, 3)
  assert result.tracks.shape == (10, 4, 2)
  with pytest.raises(ValueError, match='backwards'):
    tracker.track(texture, grid_size=2, backward=True)


def test_missing_checkpoint_or_package():
  with pytest.raises(ValueError, match='checkpoint'):
    tracking.make_tracker('cotracker3')
  # Without the model package: a clear error; with it: the missing file is named.
  with pytest.raises(ValueError, match='cotracker3|absent.pth'):
    tracking.make_tracker('cotracker3', 'absent.pth')
