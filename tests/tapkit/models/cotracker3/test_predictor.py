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


class FakeModel:
  """A scripted network: each call checks its inputs against `expected` and returns outputs."""

  def __init__(self, calls):
    # (queries [1,N,3], video [1,T,3,h,w] | None, frame means [1,T] | None, outputs)
    self.calls = list(calls)

  def __call__(self, video, queries):
    assert self.calls, 'unexpected extra network call'
    want_q, want_video, want_means, outputs = self.calls.pop(0)
    np.testing.assert_allclose(queries, want_q, atol=1e-5, rtol=0)
    assert video.dtype == np.float32 and video.ndim == 5
    assert video.shape[0] == 1 and video.shape[2] == 3
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


def test_grid_points(ct3_golden):
  g = ct3_golden('block_grid_points')
  cases = [(1, (384, 512)), (2, (64, 96)), (5, (384, 512)), (6, (64, 96)), (10, (50, 70))]
  for i, (size, extent) in enumerate(cases):
    np.testing.assert_array_equal(query_lib.grid_points(size, extent), g[f'grid_{i}'][0])


def test_resize_and_mask(ct3_golden):
  g = ct3_golden('block_resize')
  for i in range(3):
    for b in range(2):
      frames = g[f'video_{i}'][b].transpose(1, 2, 0)[None]  # One frame [1, H, W, 3].
      got = pred.model_video(frames, SMALL)[0, 0]
      np.testing.assert_allclose(got, g[f'resized_{i}'][b], atol=VIDEO_ATOL, rtol=0)
  np.testing.assert_array_equal(query_lib.resize_mask_nearest(g['mask'][0, 0], SMALL),
                                g['mask_nearest'][0, 0])


def test_dense_query_passes(ct3_golden):
  g = ct3_golden('block_dense_queries')
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


def test_offline_grid(ct3_golden):
  g = ct3_golden('predictor_offline_grid')
  visible = _offline(g, [_model_call(g, 'model_fwd')], interp_shape=SMALL)
  _check_visibility(visible, g['visibility'], g['model_fwd/vis'], 0.9)


def test_offline_queries_backward(ct3_golden):
  g = ct3_golden('predictor_offline_queries_backward')
  visible = _offline(g, [_model_call(g, 'model_fwd'), _model_call(g, 'model_bwd')],
                     queries=g['queries'], interp_shape=SMALL)
  num_frames, n = g['visibility'].shape[1:]
  before = np.arange(num_frames)[:, None] < g['queries'][0, :, 0][None]
  deciding = np.where(before, g['model_bwd/vis'][0, ::-1, :n], g['model_fwd/vis'][0, :, :n])
  _check_visibility(visible[0], g['visibility'][0], deciding, 0.9)
  # The caller's queries are not modified.
  assert g['queries'][0, 1, 1] == 69.0


def test_offline_segm(ct3_golden):
  g = ct3_golden('predictor_offline_segm')
  visible = _offline(g, [_model_call(g, 'model_fwd')], segm_mask=g['segm_mask'],
                     interp_shape=SMALL)
  assert visible.shape == (1, 6, 6)
  _check_visibility(visible, g['visibility'], g['model_fwd/vis'][..., :6], 0.9)


def test_offline_default_resolution(ct3_golden):
  g = ct3_golden('predictor_offline_default_res')
  video = g['video'][0].transpose(0, 2, 3, 1)  # Also the [T, H, W, 3] layout.
  model = FakeModel([_model_call(g, 'model_fwd')])
  tracks, visible = pred.predict_offline(model, video, grid_size=2)
  np.testing.assert_allclose(tracks, g['tracks'], atol=TRACK_ATOL, rtol=0)
  _check_visibility(visible, g['visibility'], g['model_fwd/vis'], 0.9)


# ---------------------------------------------------------------------------------------------
# Online predictor.


def test_online_grid(ct3_golden):
  g = ct3_golden('predictor_online_grid')
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


# ---------------------------------------------------------------------------------------------
# Options that do not change results, checked with a network whose output for a query depends
# on that query (and the video) alone.


class IndependentModel:
  """coords/vis of each query depend only on that query and the video; counts the calls."""

  def __init__(self):
    self.shapes = []

  def __call__(self, video, queries):
    self.shapes.append(queries.shape)
    q = queries[0]  # [N, 3]
    num_frames = video.shape[1]
    means = video[0].mean(axis=(1, 2, 3))  # [T]
    dt = np.arange(num_frames, dtype=np.float32)[:, None] - q[None, :, 0]  # [T, N]
    coords = q[None, :, 1:] + (dt * means[:, None] / 255)[..., None] * np.float32([1.0, -0.5])
    vis = 0.5 + 0.5 * np.sin(3 * q[None, :, 1] + q[None, :, 2] + means[:, None])
    return coords[None].astype(np.float32), vis[None].astype(np.float32), vis[None] * 0


def _random_video(num_frames, height, width, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def test_query_chunk_equals_one_pass():
  video = _random_video(5, 20, 30)
  rng = np.random.default_rng(1)
  queries = np.stack([rng.integers(0, 5, 11), rng.uniform(0, 29, 11), rng.uniform(0, 19, 11)],
                     axis=1).astype(np.float32)
  one, chunked = IndependentModel(), IndependentModel()
  kw = dict(queries=queries, backward_tracking=True, interp_shape=(32, 48))
  t1, v1 = pred.predict_offline(one, video, **kw)
  t4, v4 = pred.predict_offline(chunked, video, query_chunk=4, **kw)
  np.testing.assert_array_equal(t1, t4)
  np.testing.assert_array_equal(v1, v4)
  # Forward + backward per chunk, each with the 36 support queries.
  assert one.shapes == [(1, 47, 3)] * 2
  assert chunked.shapes == [(1, 40, 3)] * 4 + [(1, 39, 3)] * 2
  assert 0 < v1.sum() < v1.size


def test_default_is_one_call_and_bounded_chunk():
  """query_chunk=None (the official predictor's one call) = 0; a positive chunk splits."""
  video = _random_video(5, 20, 30)
  rng = np.random.default_rng(2)
  queries = np.stack([rng.integers(0, 5, 11), rng.uniform(0, 29, 11), rng.uniform(0, 19, 11)],
                     axis=1).astype(np.float32)
  default, whole, bounded = IndependentModel(), IndependentModel(), IndependentModel()
  kw = dict(queries=queries, interp_shape=(32, 48))
  t_default, v_default = pred.predict_offline(default, video, **kw)
  t1, v1 = pred.predict_offline(whole, video, query_chunk=0, **kw)
  t5, v5 = pred.predict_offline(bounded, video, query_chunk=5, **kw)
  assert default.shapes == whole.shapes == [(1, 47, 3)]
  assert bounded.shapes == [(1, 41, 3)] * 2 + [(1, 37, 3)]
  for tracks, visible in ((t_default, v_default), (t5, v5)):
    np.testing.assert_array_equal(tracks, t1)
    np.testing.assert_array_equal(visible, v1)
  assert pred.BOUNDED_QUERY_CHUNK == 1024


def test_query_frame_overwrite_and_fractional_backward():
  """Frames before an unrounded query frame come from the backward pass, then the query frame
  itself (truncated) is the query position, visible."""
  num_frames = 6
  video = _random_video(num_frames, 32, 48)
  queries = np.float32([[2.5, 10.0, 7.0], [0.0, 3.0, 4.0]])
  calls = []

  def model(v, q):
    calls.append(q[0].copy())
    sign = 1.0 if len(calls) == 1 else -1.0  # Forward tracks move right, backward ones left.
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    coords = np.broadcast_to(q[0, None, :, 1:] + sign * t, (num_frames, len(q[0]), 2))
    vis = np.full((1, num_frames, len(q[0])), 0.95 if sign > 0 else 0.5, np.float32)
    return coords[None].astype(np.float32), vis, vis

  tracks, visible = pred.predict_offline(model, video, queries=queries, backward_tracking=True,
                                         add_support_grid=False, interp_shape=(32, 48))
  np.testing.assert_allclose(calls[1][:, 0], [num_frames - 3.5, num_frames - 1.0])
  x = tracks[0, :, 0, 0]
  # Backward pass: the track at frame t' came from reversed frame T − 1 − t'.
  np.testing.assert_allclose(x[:2], 10.0 - (num_frames - 1 - np.arange(2)), atol=1e-5)
  np.testing.assert_allclose(x[2], 10.0, atol=1e-5)  # Query frame int(2.5) = 2.
  np.testing.assert_allclose(x[3:], 10.0 + np.arange(3, num_frames), atol=1e-5)
  assert visible[0, :, 0].tolist() == [False, False, True, True, True, True]
  assert visible[0, :, 1].all()


def test_dense_tracking_passes():
  video = _random_video(3, 10, 170)
  model = IndependentModel()
  tracks, visible = pred.predict_offline(model, video, grid_query_frame=1, interp_shape=(32, 48))
  passes = query_lib.dense_query_passes(10, 170, 1)
  assert model.shapes == [(1, 425, 3)] * 4  # grid step 2: 4 passes of 85 × 5, no support grid.
  assert tracks.shape == (1, 3, 1700, 2) and visible.shape == (1, 3, 1700)
  # Same as tracking the concatenated passes in one call (the network is per-query here).
  t1, v1 = pred.predict_offline(IndependentModel(), video, queries=np.concatenate(passes),
                                add_support_grid=False, interp_shape=(32, 48))
  np.testing.assert_array_equal(tracks, t1)
  np.testing.assert_array_equal(visible, v1)
  # At the query frame each track is its query point (up to the two float32 rescalings).
  np.testing.assert_allclose(tracks[0, 1], np.concatenate(passes)[:, 1:], atol=1e-4)
  assert visible[0, 1].all()


def test_offline_input_errors():
  video = _random_video(4, 32, 48)
  model = IndependentModel()
  with pytest.raises(ValueError, match='query frames'):
    pred.predict_offline(model, video, queries=np.float32([[4, 1, 1]]), interp_shape=(32, 48))
  with pytest.raises(ValueError, match='queries'):
    pred.predict_offline(model, video, queries=np.zeros((2, 2), np.float32))
  with pytest.raises(ValueError, match='video'):
    pred.predict_offline(model, video[..., :2], grid_size=2)
  with pytest.raises(ValueError, match='segm_mask keeps none'):
    pred.predict_offline(model, video, grid_size=3, segm_mask=np.zeros((32, 48)),
                         interp_shape=(32, 48))
  with pytest.raises(ValueError, match='query_chunk'):
    pred.predict_offline(model, video, grid_size=2, query_chunk=-1, interp_shape=(32, 48))


def test_online_support_grid_and_errors():
  video = _random_video(12, 32, 48)
  seen = {}

  def session_factory(queries):
    seen['queries'] = queries
    def session(chunk, is_first_step):
      n, t = queries.shape[1], chunk.shape[1]
      coords = np.broadcast_to(queries[:, None, :, 1:], (1, t, n, 2)).astype(np.float32)
      vis = np.full((1, t, n), 0.8, np.float32)
      return {'coords': coords, 'vis': vis, 'conf': vis}
    return session

  queries = np.float32([[0, 47, 31], [3, 0, 0]])
  tracks, visible = pred.predict_online(session_factory, video, queries=queries,
                                        add_support_grid=True, interp_shape=(64, 96))
  assert seen['queries'].shape == (1, 38, 3)
  np.testing.assert_allclose(seen['queries'][0, :2, 1:], [[95, 63], [0, 0]])
  np.testing.assert_allclose(tracks[0, 5], queries[:, 1:], atol=1e-4)
  assert tracks.shape == (1, 12, 2, 2) and visible.all()  # 0.8 · 0.8 > 0.6.

  predictor = pred.OnlinePredictor(session_factory, interp_shape=(64, 96))
  with pytest.raises(ValueError, match='register'):
    predictor.step(video[:8])
  predictor.register(32, 48, grid_size=2)
  with pytest.raises(ValueError, match='chunk'):
    predictor.step(video[:0])
  with pytest.raises(ValueError, match='num_frames'):
    pred.predict_online(session_factory, iter(video), grid_size=2)
  with pytest.raises(ValueError, match='expected num_frames'):
    pred.predict_online(session_factory, iter(video), grid_size=2, num_frames=13)


# ---------------------------------------------------------------------------------------------
# With the real network (synthetic parameters of the reference set).


@pytest.fixture(scope='module')
def offline_model(ct3_params):
  return pred.make_model_fn(ct3_params('offline'), model_resolution=SMALL)


@pytest.mark.slow
def test_offline_with_network(ct3_golden, offline_model):
  """Explicit queries, support grid, backward tracking: the official predictor's outputs."""
  g = ct3_golden('predictor_offline_queries_backward')
  tracks, visible = pred.predict_offline(offline_model, g['video'], queries=g['queries'],
                                         backward_tracking=True)
  np.testing.assert_allclose(tracks, g['tracks'], atol=TRACK_ATOL, rtol=0)
  np.testing.assert_array_equal(visible, g['visibility'])
  # Query chunks: each chunk of 5 queries is tracked with its own support grid, so two copies of
  # the reference queries in chunks of 5 give twice what the predictor makes of the reference
  # network outputs (forward only here, to keep the test short).
  want_tracks, want_visible = pred.predict_offline(
      FakeModel([_model_call(g, 'model_fwd')]), g['video'], queries=g['queries'],
      interp_shape=SMALL)
  queries = np.concatenate([g['queries'], g['queries']], axis=1)
  tracks, visible = pred.predict_offline(offline_model, g['video'], queries=queries, query_chunk=5)
  np.testing.assert_allclose(tracks, np.tile(want_tracks, (1, 1, 2, 1)), atol=TRACK_ATOL, rtol=0)
  np.testing.assert_array_equal(visible, np.tile(want_visible, (1, 1, 2)))


@pytest.mark.slow
def test_online_with_network(ct3_golden, ct3_params):
  """The official online demo's driving of the streaming predictor, with the network."""
  g = ct3_golden('predictor_online_grid')
  factory = pred.make_session_factory(ct3_params('online'), model_resolution=SMALL)
  steps = []
  tracks, visible = pred.predict_online(factory, g['video'], grid_size=int(g['grid_size']),
                                        on_step=lambda t, v: steps.append((t, v)))
  assert len(steps) == 2
  for k, (t, v) in enumerate(steps):
    np.testing.assert_allclose(t, g[f'call{k}_tracks'], atol=TRACK_ATOL, rtol=0)
    deciding = g[f'call{k}_model/vis'] * g[f'call{k}_model/conf']
    _check_visibility(v, g[f'call{k}_visibility'], deciding, 0.6)
  np.testing.assert_array_equal(visible, steps[-1][1])
