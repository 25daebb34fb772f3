"""Fixtures shared by the TracksTo4D tests: golden folder, official parameters, helpers."""

import pathlib

import numpy as np
import pytest


@pytest.fixture(scope='session')
def t4d_golden(golden, require_reference) -> pathlib.Path:
  path = golden / 'tracks4d'
  require_reference('TracksTo4D goldens', path / 'params.npz')
  return path


@pytest.fixture(scope='session')
def golden_state_dict(t4d_golden):
  from tracks4d import checkpoint
  return checkpoint.load_npz_state_dict(t4d_golden / 'params.npz',
                                        t4d_golden / 'param_keys.npy')


@pytest.fixture(scope='session')
def golden_params(golden_state_dict):
  from tracks4d import checkpoint
  return checkpoint.torch_state_dict_to_flax(golden_state_dict, source='params.npz')


def _normwise_rel(ours, ref) -> float:
  """max|ours - ref| / max|ref| (the goldens' tolerance measure)."""
  ours = np.asarray(ours, np.float64)
  ref = np.asarray(ref, np.float64)
  assert ours.shape == ref.shape, (ours.shape, ref.shape)
  scale = np.abs(ref).max()
  diff = np.abs(ours - ref).max()
  return float(diff / scale) if scale > 0 else float(diff)


@pytest.fixture(scope='session')
def normwise_rel():
  return _normwise_rel


_GRAD_FNS = {}
_CASE_CACHE = {}


def _weighted_grad_fn(predict_focal_length: bool):
  """jit(params, tracks, vis, weights[6]) -> ((w . losses, (losses, outputs)), grads).

  losses = the five official loss terms then the camera-initialisation loss; one backward
  pass per call, one compile per input shape and flag.
  """
  if predict_focal_length not in _GRAD_FNS:
    import jax
    import jax.numpy as jnp
    from tracks4d import losses, model
    net = model.TracksTo4D(predict_focal_length=predict_focal_length)

    def weighted(params, tracks, vis, weights):
      out = net.apply({'params': params}, tracks)
      terms = losses.loss_terms(out, tracks, vis)
      pre = losses.camera_init_loss(out.translations, out.rotations)
      values = jnp.stack([terms[k] for k in losses.LOSS_NAMES] + [pre])
      return jnp.sum(values * weights), (values, out)

    _GRAD_FNS[predict_focal_length] = jax.jit(jax.value_and_grad(weighted, has_aux=True))
  return _GRAD_FNS[predict_focal_length]


@pytest.fixture(scope='session')
def golden_case_grad(t4d_golden, golden_state_dict):
  """(case, term index) -> (loss values [6], official-named outputs, torch-named grads).

  Term indices: 0..4 = tracks4d.losses.LOSS_NAMES, 5 = camera-initialisation loss.
  Results are cached so the forward-parity and gradient tests share one run.
  """
  from tracks4d import checkpoint

  def run(case: str, term: int):
    key = (case, term)
    if key not in _CASE_CACHE:
      data = np.load(t4d_golden / f'{case}.npz')
      sd = dict(golden_state_dict)
      if 'param_override/conv_final.bias' in data.files:
        sd['conv_final.bias'] = data['param_override/conv_final.bias']
      params = checkpoint.torch_state_dict_to_flax(sd)
      pfl = bool(data['predict_focal_length']) if 'predict_focal_length' in data.files else False
      tracks = data['tracks']
      vis = (data['tracks_vis'] if 'tracks_vis' in data.files
             else tracks[:, :, 2, :].transpose(0, 2, 1) > 0.5)
      weights = np.zeros(6, np.float32)
      weights[term] = 1.0
      (_, (values, out)), grads = _weighted_grad_fn(pfl)(params, tracks, vis, weights)
      outputs = {k: np.asarray(v) for k, v in out.to_official().items()}
      _CASE_CACHE[key] = (np.asarray(values), outputs,
                          checkpoint.flax_params_to_torch_state_dict(grads))
    return _CASE_CACHE[key]

  return run
