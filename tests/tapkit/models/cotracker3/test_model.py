"""CoTracker3 offline model against the official model's goldens (golden/cotracker3/offline_*)."""

import jax
import numpy as np
import pytest

from tapkit.models.cotracker3 import model as model_lib

COORD_ATOL = 2e-3  # pixels
PROB_ATOL = 2e-4
FEATURE_ATOL = 2e-4  # CNN outputs, correlation volumes / embeddings, transformer inputs
DELTA_ATOL = 1e-5  # transformer outputs


@pytest.fixture(scope='module')
def params(ct3_params):
  return ct3_params('offline')


def _close(actual, expected, atol):
  actual = np.asarray(actual)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


def _check_outputs(out, g):
  _close(out['coords'], g['coords'], COORD_ATOL)
  _close(out['vis'], g['vis'], PROB_ATOL)
  _close(out['conf'], g['conf'], PROB_ATOL)
  _close(out['coords_iters'], g['coords_iters'], COORD_ATOL)
  _close(out['vis_iters'], g['vis_iters'], PROB_ATOL)
  _close(out['conf_iters'], g['conf_iters'], PROB_ATOL)


def _run(params, g, **kwargs):
  return model_lib.offline_forward(params, g['video'].astype(np.float32), g['queries'],
                                   iters=int(g['iters']), return_iters=True, **kwargs)


def test_offline_intermediates(ct3_golden, params):
  g = ct3_golden('offline_intermediates')
  out = _run(params, g, return_intermediates=True)
  _check_outputs(out, g)
  _close(np.transpose(out['fnet_out'], (0, 1, 4, 2, 3)), g['fnet_out'], FEATURE_ATOL)
  _close(out['corr_volume'][0], g['corr_volume_iter0'], FEATURE_ATOL)
  _close(out['corr_emb'][0], g['corr_emb_iter0'], FEATURE_ATOL)
  _close(out['updateformer_in'], g['updateformer_in'], FEATURE_ATOL)
  _close(out['updateformer_out'], g['updateformer_out'], DELTA_ATOL)


def test_offline_t8_border_queries(ct3_golden, params):
  g = ct3_golden('offline_t8_64x96')
  _check_outputs(_run(params, g), g)


def test_offline_batch_elements_are_independent(ct3_golden, params):
  g = ct3_golden('offline_b2_t12_96x128')
  _check_outputs(_run(params, g), g)


def test_offline_t60_uses_the_time_embedding_as_is(ct3_golden, params):
  g = ct3_golden('offline_t60_32x32')
  _check_outputs(_run(params, g), g)


def test_feature_cnn_in_chunks_is_the_same(ct3_golden, params):
  """Frames go through the CNN in chunks (the last one padded): same features."""
  video = ct3_golden('offline_intermediates')['video'].astype(np.float32)
  encode = jax.jit(model_lib.encode_frames, static_argnums=2)
  whole = encode(params, video, 8)
  chunked = encode(params, video, 3)
  for a, b in zip(whole, chunked):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_correlation_in_query_chunks_is_the_same(ct3_golden, params, monkeypatch):
  """8 queries correlated 3 at a time (the last chunk padded): the golden outputs, and the
  unchunked call's to float32 noise."""
  g = ct3_golden('offline_t8_64x96')
  whole = _run(params, g)
  monkeypatch.setattr(model_lib, 'CORR_QUERY_CHUNK', 3)
  jax.clear_caches()  # offline_forward reads the chunk size when it is traced.
  try:
    chunked = _run(params, g)
  finally:
    jax.clear_caches()
  _check_outputs(chunked, g)
  np.testing.assert_allclose(chunked['coords'], whole['coords'], atol=1e-4, rtol=0)
  np.testing.assert_allclose(chunked['vis'], whole['vis'], atol=1e-5, rtol=0)


def test_offline_rejects_bad_shapes(params):
  video = np.zeros((1, 2, 3, 30, 32), np.float32)
  with pytest.raises(ValueError, match='multiples of 4'):
    model_lib.offline_forward(params, video, np.zeros((1, 1, 3), np.float32))
  with pytest.raises(ValueError, match='queries'):
    model_lib.offline_forward(params, np.zeros((1, 2, 3, 32, 32), np.float32),
                              np.zeros((2, 1, 3), np.float32))
  with pytest.raises(ValueError, match='iters'):
    model_lib.offline_forward(params, np.zeros((1, 2, 3, 32, 32), np.float32),
                              np.zeros((1, 1, 3), np.float32), iters=0)
