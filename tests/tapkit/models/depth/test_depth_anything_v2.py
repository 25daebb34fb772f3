"""Depth Anything V2 (Flax) equals transformers' DepthAnythingForDepthEstimation."""

import numpy as np
import pytest

from tapkit.models.depth import depth_anything_v2 as dav2

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')


def _tiny_model(metric: bool = False):
  torch.manual_seed(0)
  backbone = transformers.Dinov2Config(
      hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128,
      image_size=518, patch_size=14, out_indices=[1, 2, 3, 4], apply_layernorm=True,
      reshape_hidden_states=False)
  config = transformers.DepthAnythingConfig(
      backbone_config=backbone, neck_hidden_sizes=[16, 32, 32, 64], fusion_hidden_size=32,
      head_hidden_size=32, reassemble_hidden_size=32,
      depth_estimation_type='metric' if metric else 'relative', max_depth=20)
  model = transformers.DepthAnythingForDepthEstimation(config).eval()
  with torch.no_grad():  # random, non-degenerate weights everywhere (biases and LayerScale too)
    for name, p in model.named_parameters():
      if name.endswith('position_embeddings') or name.endswith('cls_token'):
        p.normal_(0.0, 0.5)
      elif p.ndim == 1:
        p.normal_(1.0 if 'norm' in name or 'lambda' in name else 0.0, 0.1)
      else:
        p.normal_(0.0, 1.0 / np.sqrt(np.prod(p.shape[1:])))
  return model


@pytest.mark.parametrize('metric', [False, True])
def test_equals_transformers(metric):
  model = _tiny_model(metric)
  module, params = dav2.from_transformers(model)
  rng = np.random.default_rng(0)
  for h, w in ((70, 98), (56, 56), (42, 84), (518, 518)):
    x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    with torch.no_grad():
      want = model(pixel_values=torch.from_numpy(x)).predicted_depth.numpy()
    got = np.asarray(module.apply({'params': params}, x.transpose(0, 2, 3, 1)))
    assert got.shape == want.shape == (2, h, w)
    scale = float(np.abs(want).max())
    assert scale > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale)


def test_official_rule_differs_off_the_native_grid():
  model = _tiny_model()
  official, params = dav2.from_transformers(model, pos_embed_rule='official')
  hf, _ = dav2.from_transformers(model)
  assert official.config.backbone.interpolate_offset == 0.1
  x = np.random.default_rng(1).standard_normal((1, 70, 98, 3)).astype(np.float32)
  a = np.asarray(official.apply({'params': params}, x))
  b = np.asarray(hf.apply({'params': params}, x))
  assert np.abs(a - b).max() > 1e-3


def test_head_names_match_the_published_map(shared):
  import json  # pylint: disable=g-import-not-at-top
  tree = json.loads((shared / 'data' / 'param_trees' / 'vda_vits.json').read_text())
  published = tree['depth_anything_v2_hf_names']['map']
  ours = dav2.transformers_head_table()
  for vda_name, hf_names in published.items():
    if vda_name.startswith('head.') and 'refinenet4.resConfUnit1' not in vda_name:
      assert hf_names[0] in ours, (vda_name, hf_names)
