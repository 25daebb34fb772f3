"""3DSPA's initialisation: one jitted init shared by training and the untrained baseline."""

import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models import jitted
from tapkit.train import config as config_lib
from trajan3d import evaluate_tapvid3d, evaluators
from trajan3d import model as model_lib
from trajan3d import task


def _config(tmp_path, kind):
  config = config_lib.load_config('configs/spa3d.py:smoke')
  config.model.kind = kind
  config.data.synthetic.update({'num_train': 1, 'num_eval': 0, 'num_tracks': 16,
                                'height': 16, 'width': 16, 'dir': str(tmp_path / 'clips')})
  config.evals = {}
  return config


def test_training_init_equals_init_on_the_batch_and_keeps_feature_widths(tmp_path):
  config = _config(tmp_path, '3dspa')  # reads DINO and depth features when given
  method = task.build_method(config, str(tmp_path))
  assert method.init_outside_jit
  t, s, q = int(config.model.num_output_frames), 6, 3
  rng = np.random.default_rng(0)
  batch = {
      'support_tracks': rng.normal(size=(2, s, t, 3)).astype(np.float32),
      'support_tracks_visible': np.ones((2, s, t, 1), np.float32),
      'query_points': rng.normal(size=(2, q, 4)).astype(np.float32),
      'boundary_frame': np.full((2,), t, np.int32),
      'dino_features': rng.normal(size=(2, s, t, 384)).astype(np.float32),  # not 768
      'depth_features': rng.normal(size=(2, s, t, 32)).astype(np.float32),  # not 256
      'target_points': np.zeros((2, q, t, 3), np.float32),
  }
  key = jax.random.PRNGKey(3)
  params = method.init_fn(key, batch)
  model = model_lib.build_model_from_config(config)
  inputs = {k: jnp.asarray(v[:1]) for k, v in batch.items() if k != 'target_points'}
  expected = jax.jit(model.init)(key, inputs)['params']  # the init on the batch itself
  assert params['dino_projection']['kernel'].shape[0] == 384
  assert params['depth_projection']['kernel'].shape[0] == 32
  assert jax.tree.structure(params) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_untrained_baseline_reuses_the_training_init_and_apply(tmp_path):
  config = _config(tmp_path, '3dspa_nofeat')
  method = task.build_method(config, str(tmp_path))
  model = model_lib.build_model_from_config(config)
  init = jitted.jitted_init(model)
  assert jitted.jitted_init(model_lib.build_model_from_config(config)) is init
  batch = model_lib.example_inputs(model, batch_size=2, num_tracks=5, num_frames=6)
  params = method.init_fn(jax.random.PRNGKey(0), batch)
  programs = init._cache_size()
  recon = evaluate_tapvid3d.random_reconstructor(config, seed=0)
  assert init._cache_size() == programs  # nothing compiled for the baseline's init
  for a, b in zip(jax.tree.leaves(recon.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Reconstructors of equal models share one jitted apply.
  other = evaluators.Reconstructor(model_lib.build_model_from_config(config), params, 'xyz')
  assert other._apply is recon._apply  # pylint: disable=protected-access
