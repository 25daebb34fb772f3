"""TRAJAN / 3DSPA models: parameter layout, golden parity, semantics."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajan3d import checkpoint
from trajan3d import model as model_lib

# Acceptance threshold of the goldens' README: max|a - b| <= 1e-4 max|b|.
REL_TOL = 1e-4
# Latents come before quantisation: no rounding-flip amplification.
LATENT_REL_TOL = 5e-6


def _max_rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.fixture(scope='module')
def manifest(golden):
  return json.loads((golden / 'trajan' / 'manifest.json').read_text())


def _case(golden, manifest, name):
  case = next(c for c in manifest['cases'] if c['name'] == name)
  pconf = manifest['params'][case['params']]
  model = model_lib.build_model(pconf['model'], **pconf['config'])
  d = golden / 'trajan'
  params = checkpoint.load_params(d / pconf['file'])
  with np.load(d / f'{name}_inputs.npz', allow_pickle=False) as f:
    inputs = dict(f)
  with np.load(d / f'{name}_outputs.npz', allow_pickle=False) as f:
    outputs = dict(f)
  return model, params, inputs, outputs


def _example_inputs(kind, b=1, n=3, t=5, q=2, features=True):
  d = 2 if kind == 'trajan' else 3
  x = {
      'support_tracks': jnp.zeros((b, n, t, d)),
      'support_tracks_visible': jnp.ones((b, n, t, 1)),
      'query_points': jnp.zeros((b, q, 1 + d)),
      'boundary_frame': jnp.full((b,), t, jnp.int32),
  }
  if kind == '3dspa' and features:
    x['dino_features'] = jnp.zeros((b, n, t, 768))
    x['depth_features'] = jnp.zeros((b, n, t, 256))
  return x


# ------------------------------------------------------------ param layout


@pytest.mark.parametrize('kind', ['trajan', '3dspa', '3dspa_nofeat'])
@pytest.mark.parametrize('frames', [24, 150])
def test_param_tree_equals_official_layout(repo_golden, kind, frames):
  tree = json.loads(
      (repo_golden / 'param_trees' / f'{kind}.json').read_text())
  official = {name: tuple(shape) for name, shape, dtype in
              tree[f'params_T{frames}']}
  assert all(dtype == 'float32' for _, _, dtype in tree[f'params_T{frames}'])
  model = model_lib.build_model(kind, num_output_frames=frames)
  base = '3dspa' if kind.startswith('3dspa') else 'trajan'
  ours = checkpoint.expected_param_shapes(model, _example_inputs(base))
  assert set(ours) == set(official)
  assert ours == official
  assert sum(int(np.prod(s)) for s in ours.values()) == tree[
      f'num_params_T{frames}']


def test_3dspa_projections_are_created_only_with_features():
  m = model_lib.TrackAutoEncoder3D(num_output_frames=4)
  no_feat = checkpoint.expected_param_shapes(
      m, _example_inputs('3dspa', features=False))
  assert not any('projection' in n and 'token' not in n for n in no_feat)
  off = model_lib.TrackAutoEncoder3D(num_output_frames=4, use_dino=False)
  shapes = checkpoint.expected_param_shapes(off, _example_inputs('3dspa'))
  assert 'dino_projection/kernel' not in shapes
  assert shapes['depth_projection/kernel'] == (256, 384)


# ------------------------------------------------------------ golden parity


@pytest.mark.parametrize('name',
                         ['trajan_case0', '3dspa_case0', '3dspa_nofeat_case0'])
def test_golden_parity(golden, manifest, name):
  model, params, inputs, outputs = _case(golden, manifest, name)

  @jax.jit
  def run(p, x):
    res = model.apply({'params': p}, x)
    lat = model.apply({'params': p}, x, method=model.encode)
    return res, lat

  res, latents = run(params, inputs)
  got = {
      'tracks': res.tracks, 'visible_logits': res.visible_logits,
      'certain_logits': res.certain_logits,
      'visible_and_certain': res.visible_and_certain, 'latents': latents,
  }
  assert set(got) == set(outputs)
  for key, ref in outputs.items():
    assert got[key].shape == ref.shape, key
    assert got[key].dtype == np.float32, key
    tol = LATENT_REL_TOL if key == 'latents' else REL_TOL
    if np.abs(ref).max() == 0:  # 3DSPA certain logits / visible_and_certain
      np.testing.assert_array_equal(np.asarray(got[key]), ref, err_msg=key)
    else:
      rel = _max_rel(got[key], ref)
      assert rel <= tol, f'{name}/{key}: max rel diff {rel:.3g} > {tol}'
  if model.num_coords == 3:
    # 3DSPA has no certainty head: the TRAJAN rule marks everything occluded.
    np.testing.assert_array_equal(np.asarray(res.certain_logits), 0.0)


@pytest.mark.parametrize('name,chunk', [('trajan_case0', 5),
                                        ('3dspa_case0', 6)])
def test_golden_parity_chunked_when_queries_not_a_multiple(
    golden, manifest, name, chunk):
  model, params, inputs, outputs = _case(golden, manifest, name)
  assert inputs['query_points'].shape[1] % chunk != 0
  chunked = model.clone(decoder_scan_chunk_size=chunk)
  res = jax.jit(chunked.apply)({'params': params}, inputs)
  for key in ('tracks', 'visible_logits', 'certain_logits'):
    if np.abs(outputs[key]).max() == 0:
      np.testing.assert_array_equal(np.asarray(getattr(res, key)), 0.0)
    else:
      rel = _max_rel(getattr(res, key), outputs[key])
      assert rel <= REL_TOL, (key, rel)


# ------------------------------------------------------------ semantics on a
# small random model (fast)


SMALL = dict(num_output_frames=6, num_latent_tokens=8, latent_token_dim=4,
             num_frequencies=4, track_token_dim=16, encoder_latent_dim=16,
             decoder_num_channels=128 + 40, qkv_size=16, num_heads=2,
             input_track_layers=1, input_track_mlp=24,
             tracks_to_latents_layers=1, tracks_to_latents_mlp=24,
             decompress_layers=1, decompress_mlp=24, readout_layers=1,
             readout_mlp=24)


def _random_inputs(kind, seed, b=2, n=7, t=6, q=5):
  rng = np.random.default_rng(seed)
  d = 2 if kind == 'trajan' else 3
  vis = (rng.random((b, n, t, 1)) > 0.3).astype(np.float32)
  x = {
      'support_tracks': rng.random((b, n, t, d)).astype(np.float32),
      'support_tracks_visible': vis,
      'query_points': np.concatenate(
          [rng.integers(0, t, (b, q, 1)), rng.random((b, q, d))],
          -1).astype(np.float32),
      'boundary_frame': np.asarray([t, t - 2][:b], np.int32),
  }
  if kind == '3dspa':
    x['dino_features'] = rng.normal(size=(b, n, t, 768)).astype(np.float32)
    x['depth_features'] = rng.normal(size=(b, n, t, 256)).astype(np.float32)
  return x


def _random_params(model, inputs, seed):
  """Random parameters of the init tree's shapes, without compiling init."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), inputs)['params']
  flat = checkpoint.flatten_params(shapes)
  out = {}
  for name, s in flat.items():
    if name.endswith('kernel'):
      fan_in = s.shape[0] * (s.shape[1] if 'dense_out' in name else 1)
      v = rng.normal(size=s.shape) / np.sqrt(fan_in)
    elif name.endswith('bias'):
      v = 0.1 * rng.normal(size=s.shape)
    elif name.endswith('scale'):
      v = 1.0 + 0.1 * rng.normal(size=s.shape)
    else:  # state_init
      v = rng.normal(size=s.shape)
    out[name] = v.astype(np.float32)
  return checkpoint.unflatten_params(out)


@pytest.fixture(scope='module')
def small_models():
  out = {}
  for kind, cls in (('trajan', model_lib.TrackAutoEncoder),
                    ('3dspa', model_lib.TrackAutoEncoder3D)):
    m = cls(**SMALL)
    out[kind] = (m, _random_params(m, _random_inputs(kind, 0), 7))
  return out


@pytest.mark.parametrize('kind,chunks', [('trajan', (1, 3)),
                                         ('3dspa', (4,))])
def test_chunked_equals_unchunked(small_models, kind, chunks):
  m, params = small_models[kind]
  x = _random_inputs(kind, 1, q=11)
  ref = jax.jit(m.apply)({'params': params}, x)
  for chunk in chunks:  # 11 queries: never a multiple except chunk 1
    res = jax.jit(m.clone(decoder_scan_chunk_size=chunk).apply)(
        {'params': params}, x)
    for key in ('tracks', 'visible_logits', 'certain_logits'):
      a, b = getattr(res, key), getattr(ref, key)
      assert a.shape == b.shape == (2, 11, 6) + b.shape[3:]
      # Chunking only re-associates float sums (<= 6e-7 relative measured on the official code).
      assert _max_rel(a, b) <= 2e-6, (chunk, key, _max_rel(a, b))


def test_chunked_decoding_keeps_param_tree(small_models):
  m, params = small_models['trajan']
  chunked = jax.eval_shape(m.clone(decoder_scan_chunk_size=2).init,
                           jax.random.PRNGKey(7),
                           _random_inputs('trajan', 0))['params']
  assert jax.tree.map(jnp.shape, chunked) == jax.tree.map(jnp.shape, params)


@pytest.mark.parametrize('kind', ['trajan', '3dspa'])
def test_default_queries_are_the_32x32_grid_at_frame_0(small_models, kind):
  m, params = small_models[kind]
  grid = np.asarray(m.default_query_points(2))
  assert grid.shape == (2, 1024, 1 + m.num_coords)
  centres = np.arange(32) / 32 + 1 / 64
  i, j = 5, 17
  expect = [0.0, centres[j], centres[i]] + [0.0] * (m.num_coords - 2)
  np.testing.assert_array_equal(grid[1, i * 32 + j], expect)
  if kind == '3dspa':
    return  # Same decoding path as TRAJAN; the grid (z = 0) is checked above.
  x = _random_inputs(kind, 2)
  implicit = {k: v for k, v in x.items() if k != 'query_points'}
  explicit = dict(x, query_points=grid)
  a = jax.jit(m.clone(decoder_scan_chunk_size=300).apply)(
      {'params': params}, implicit)
  b = jax.jit(m.apply)({'params': params}, explicit)
  assert a.tracks.shape == (2, 1024, 6, m.num_coords)
  assert _max_rel(a.tracks, b.tracks) <= 2e-6


def test_noise_depends_on_batch_position(small_models):
  assert jax.config.jax_threefry_partitionable
  m, params = small_models['trajan']
  x = _random_inputs('trajan', 3)
  apply = jax.jit(m.apply)
  both = apply({'params': params}, x)
  first = apply({'params': params}, {k: v[:1] for k, v in x.items()})
  second = apply({'params': params}, {k: v[1:] for k, v in x.items()})
  np.testing.assert_allclose(first.tracks[0], both.tracks[0], rtol=1e-5,
                             atol=1e-6)
  # Clip 1 alone (as element 0) gets other noise, hence other outputs.
  assert np.abs(np.asarray(second.tracks[0] - both.tracks[1])).max() > 1e-6


def test_trajan_boundary_masks_keys_but_pooling_ignores_it(small_models):
  m, params = small_models['trajan']
  x = _random_inputs('trajan', 4)
  apply = jax.jit(m.apply)
  b1 = int(x['boundary_frame'][1])
  # Invisible frames at/after the boundary: neither keys nor pooled.
  y = {k: np.array(v) for k, v in x.items()}
  y['support_tracks_visible'][1, :, b1:] = 0
  y2 = {k: np.array(v) for k, v in y.items()}
  y2['support_tracks'][1, :, b1:] += 0.3
  r1, r2 = apply({'params': params}, y), apply({'params': params}, y2)
  np.testing.assert_allclose(r1.tracks, r2.tracks, rtol=1e-6, atol=1e-6)
  # Visible frames after the boundary are still averaged in (release quirk).
  y3 = {k: np.array(v) for k, v in x.items()}
  y3['support_tracks_visible'][1, :, b1:] = 1
  y4 = {k: np.array(v) for k, v in y3.items()}
  y4['support_tracks'][1, :, b1:] += 0.3
  r3, r4 = apply({'params': params}, y3), apply({'params': params}, y4)
  assert np.abs(np.asarray(r3.tracks[1] - r4.tracks[1])).max() > 1e-6


def test_3dspa_frames_after_boundary_never_matter(small_models):
  m, params = small_models['3dspa']
  x = _random_inputs('3dspa', 5)
  b1 = int(x['boundary_frame'][1])
  x['support_tracks_visible'][1, :, b1:] = 1  # visible but past the boundary
  y = {k: np.array(v) for k, v in x.items()}
  y['support_tracks'][1, :, b1:] += 0.5
  y['dino_features'][1, :, b1:] += 1.0
  apply = jax.jit(m.apply)
  r1, r2 = apply({'params': params}, x), apply({'params': params}, y)
  np.testing.assert_allclose(r1.tracks, r2.tracks, rtol=1e-6, atol=1e-6)
  # Before the boundary, features do matter.
  y['dino_features'][1, :, 0] += 1.0
  r3 = apply({'params': params}, y)
  assert np.abs(np.asarray(r3.tracks[1] - r1.tracks[1])).max() > 1e-6


def test_time_window_equals_shifted_identity():
  rng = np.random.default_rng(0)
  lat = rng.normal(size=(2, 3, 200)).astype(np.float32)
  frames = np.asarray([[0, 7, 14, 30], [-2, 40, 60, 1]], np.int32)
  got = np.asarray(model_lib._time_window(jnp.asarray(lat), frames))
  assert got.shape == (2, 4, 3, 128)
  for b in range(2):
    for q in range(4):
      eye = np.eye(128, 200, 5 * frames[b, q])
      np.testing.assert_array_equal(got[b, q], lat[b] @ eye.T)
  # Frame 14 -> channels 70..197; frame 40 -> 200.. out of range -> zeros.
  np.testing.assert_array_equal(got[0, 2, :, :], lat[0, :, 70:198])
  np.testing.assert_array_equal(got[1, 1], 0.0)


def test_query_time_is_rounded_half_to_even(small_models):
  m, params = small_models['trajan']
  x = _random_inputs('trajan', 6, q=2)
  x['query_points'][:, 0, 0] = 2.5  # -> frame 2
  x['query_points'][:, 1, 0] = 2.0
  x['query_points'][:, 1, 1:] = x['query_points'][:, 0, 1:]
  res = jax.jit(m.apply)({'params': params}, x)
  np.testing.assert_array_equal(res.tracks[:, 0], res.tracks[:, 1])


def test_results_visibility_rules():
  v = np.asarray([2.0, 0.4055, -1.0, 0.0], np.float32)[:, None]
  c = np.asarray([2.0, 0.4055, 3.0, 0.0], np.float32)[:, None]
  r = model_lib.TrackAutoEncoderResults(tracks=None, visible_logits=v,
                                        certain_logits=c)
  np.testing.assert_array_equal(r.visible[:, 0], [1, 1, 0, 0])
  np.testing.assert_array_equal(r.certain[:, 0], [1, 1, 1, 0])
  # sigmoid(0.4055) = 0.6: 0.36 is not visible, and (0.4)^2 = 0.16 is not
  # occluded either (the two rules are not complements).
  np.testing.assert_array_equal(r.visible_and_certain[:, 0], [1, 0, 0, 0])
  np.testing.assert_array_equal(r.occluded_tapir[:, 0], [0, 0, 0, 0])
  np.testing.assert_allclose(r.visible_and_certain_prob[1, 0], 0.36,
                             atol=1e-4)


@pytest.mark.parametrize('key,shape,match', [
    ('support_tracks', (1, 3, 5, 3), 'support_tracks must be'),
    ('support_tracks_visible', (1, 3, 4, 1), 'support_tracks_visible'),
    ('query_points', (1, 2, 4), 'query_points must be'),
    ('boundary_frame', (2,), 'boundary_frame'),
])
def test_bad_inputs_raise_naming_the_key(key, shape, match):
  m = model_lib.TrackAutoEncoder(**SMALL)
  x = _example_inputs('trajan')
  x[key] = jnp.zeros(shape)
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(m.init, jax.random.PRNGKey(0), x)


def test_bad_feature_shape_raises():
  m = model_lib.TrackAutoEncoder3D(**SMALL)
  x = _example_inputs('3dspa')
  x['dino_features'] = jnp.zeros((1, 3, 4, 768))  # 4 frames, tracks have 5
  with pytest.raises(ValueError, match=r'dino_features must be \[1, 3, 5, '):
    jax.eval_shape(m.init, jax.random.PRNGKey(0), x)
  # The projection's input width follows the data, as in the release.
  x['dino_features'] = jnp.zeros((1, 3, 5, 384))
  shapes = checkpoint.expected_param_shapes(m, x)
  assert shapes['dino_projection/kernel'] == (384, SMALL['track_token_dim'])


def test_chunked_decoding_bounds_planned_memory(small_models):
  """XLA's planned temporaries stay flat in Q with chunking (not without)."""
  m, params = small_models['trajan']

  def temp_bytes(module, num_queries):
    x = _random_inputs('trajan', 0, b=1, q=num_queries)
    fwd = lambda p, v: module.apply({'params': p}, v).tracks
    return jax.jit(fwd).lower(params, x).compile().memory_analysis(
    ).temp_size_in_bytes

  chunked = m.clone(decoder_scan_chunk_size=16)
  small_q, large_q = temp_bytes(chunked, 64), temp_bytes(chunked, 1024)
  unchunked = temp_bytes(m, 1024)
  assert large_q <= 1.25 * small_q, (small_q, large_q)
  assert unchunked >= 4 * large_q, (unchunked, large_q)
