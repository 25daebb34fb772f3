"""Shape bucketing of the offline CoTracker3 network: padded inputs with their true sizes give
the unpadded estimates, and videos of one bucket share a compilation.

A random-weight network (Flax initialisers) with its flow and visibility heads scaled down so
tracks move a few pixels per update, as trained models do; the undamped random network's
tracks run far outside the video and amplify float32 rounding differences a thousandfold.
"""

import jax
import numpy as np
import pytest

from tapkit.models.cotracker3 import blocks
from tapkit.models.cotracker3 import model as model_lib
from tapkit.models.cotracker3 import predictor as pred

SIZE = (32, 48)
ITERS = 3
COORD_ATOL = 1e-5  # pixels
PROB_ATOL = 1e-6


@pytest.fixture(scope='module')
def params():
  p = model_lib.init_params(jax.random.PRNGKey(0))
  former = dict(p['updateformer'])
  for head in ('flow_head', 'vis_conf_head'):
    former[head] = jax.tree_util.tree_map(lambda w: w * 0.05, former[head])
  return {**p, 'updateformer': former}


def _inputs(num_frames, num_queries, seed):
  rng = np.random.default_rng(seed)
  h, w = SIZE
  video = rng.uniform(0, 255, (1, num_frames, 3, h, w)).astype(np.float32)
  queries = np.stack([rng.integers(0, num_frames, num_queries), rng.uniform(0, w - 1, num_queries),
                      rng.uniform(0, h - 1, num_queries)], axis=1)[None].astype(np.float32)
  queries[0, 0, 0] = num_frames + 2  # A query frame past the end samples the last real frame.
  return video, queries


def test_traced_time_embedding_equals_the_static_one():
  for window_len in (60, 16):
    table = blocks.time_embedding_table(window_len)
    lengths = np.arange(1, 257, dtype=np.int32)
    interp = jax.jit(jax.vmap(lambda n: blocks.interpolate_time_embedding_traced(table, n, 256)))
    got = np.asarray(interp(lengths))
    for t in lengths:
      np.testing.assert_array_equal(got[t - 1, :t], blocks.interpolate_time_embedding(table, t))
  with pytest.raises(ValueError, match='out_len'):
    blocks.interpolate_time_embedding_traced(table, 3, 4096)


# Frames and queries both padded (one case: every padding takes the same masked path; the
# bucketed predictor test below pads 13 -> 16 frames and 45 -> 48 queries).
@pytest.mark.parametrize('num_frames,padded_frames,num_queries,padded_queries',
                         [(8, 16, 9, 16)])
def test_padded_offline_forward_equals_unpadded(params, num_frames, padded_frames, num_queries,
                                                padded_queries):
  video, queries = _inputs(num_frames, num_queries, seed=num_frames)
  kw = dict(iters=ITERS, model_resolution=SIZE)
  want = model_lib.offline_forward(params, video, queries, **kw)
  video_p = np.concatenate(
      [video, np.repeat(video[:, -1:], padded_frames - num_frames, axis=1)], axis=1)
  queries_p = np.concatenate(
      [queries, np.zeros((1, padded_queries - num_queries, 3), np.float32)], axis=1)
  got = model_lib.offline_forward(params, video_p, queries_p, num_frames=num_frames,
                                  num_queries=num_queries, **kw)
  crop = lambda x: np.asarray(x)[:, :num_frames, :num_queries]
  assert got['coords'].shape == (1, padded_frames, padded_queries, 2)
  np.testing.assert_allclose(crop(got['coords']), want['coords'], atol=COORD_ATOL, rtol=0)
  np.testing.assert_allclose(crop(got['vis']), want['vis'], atol=PROB_ATOL, rtol=0)
  np.testing.assert_allclose(crop(got['conf']), want['conf'], atol=PROB_ATOL, rtol=0)
  # Tracks do move, and padding without the true sizes changes them: the masks matter.
  assert np.abs(np.asarray(want['coords']) - queries[:, None, :, 1:]).max() > 0.5
  unmasked = model_lib.offline_forward(params, video_p, queries_p, **kw)
  assert np.abs(crop(unmasked['coords']) - want['coords']).max() > 1e-3


def test_bucketed_predictor_equals_unbucketed_and_shares_compilations(params):
  model_fn = pred.make_model_fn(params, iters=ITERS, model_resolution=SIZE)
  rng = np.random.default_rng(3)
  video = rng.integers(0, 256, (13, 40, 60, 3), dtype=np.uint8)
  # A 3×3 grid with the 36 support points: 45 queries, padded to 48; 13 frames to 16.
  kw = dict(grid_size=3, add_support_grid=True, backward_tracking=True)
  want_tracks, want_visible = pred.predict_offline(model_fn, video, **kw)
  tracks, visible = pred.predict_offline(model_fn, video, bucket=True, **kw)
  assert tracks.shape == (1, 13, 9, 2)
  # Input pixels here are 1.26 model pixels, tracks reach 64 px (float32 spacing 7.6e-6).
  np.testing.assert_allclose(tracks, want_tracks, atol=2 * COORD_ATOL, rtol=0)
  np.testing.assert_array_equal(visible, want_visible)

  # Videos of 11 and 13 frames fall into the 16-frame bucket: one compilation for both.
  before = model_lib.offline_forward._cache_size()  # pylint: disable=protected-access
  pred.predict_offline(model_fn, video[:11], **kw, bucket=True)
  pred.predict_offline(model_fn, video, **kw, bucket=True)
  assert model_lib.offline_forward._cache_size() == before  # pylint: disable=protected-access


def test_bucket_size():
  sizes = [pred.bucket_size(n) for n in (1, 8, 9, 16, 17, 24, 25, 32, 33, 48, 49, 64, 65, 97, 129)]
  assert sizes == [8, 8, 16, 16, 24, 24, 32, 32, 48, 48, 64, 64, 96, 128, 192]
  with pytest.raises(ValueError, match='positive'):
    pred.bucket_size(0)
