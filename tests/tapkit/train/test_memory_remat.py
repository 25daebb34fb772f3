"""Rematerialisation lowers the compiled step's temporaries on CPU and keeps gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tapkit.train import precision as precision_lib


class _Block(nn.Module):
  """A residual MLP block: x + W2 gelu(W1 x)."""

  width: int = 512

  @nn.compact
  def __call__(self, x, mask=None):
    h = nn.gelu(nn.Dense(self.width)(x))
    out = x + nn.Dense(x.shape[-1])(h)
    return out if mask is None else jnp.where(mask[..., None], out, x)


class _Stack(nn.Module):
  remat: str
  layers: int = 6

  @nn.compact
  def __call__(self, x, mask=None):
    block = precision_lib.remat_block(_Block, self.remat)
    for i in range(self.layers):
      x = block(name=f'block_{i}')(x, mask)
    return x


def _grad_fn(model):
  return jax.jit(jax.grad(lambda p, x, m: jnp.sum(jnp.sin(model.apply(p, x, m))), argnums=(0, 1)))


def test_block_remat_shrinks_temporaries_and_keeps_gradients():
  x = jax.ShapeDtypeStruct((2048, 64), jnp.float32)
  m = jax.ShapeDtypeStruct((2048,), jnp.bool_)
  temps = {}
  for remat in ('none', 'block'):
    model = _Stack(remat)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64)))
    compiled = _grad_fn(model).lower(params, x, m).compile()
    temps[remat] = compiled.memory_analysis().temp_size_in_bytes
  # Six blocks each keep a [2048, 512] hidden activation (4 MiB) without remat.
  assert temps['block'] < 0.6 * temps['none'], temps

  xv = jax.random.normal(jax.random.PRNGKey(1), (8, 64))
  mv = jnp.arange(8) % 3 != 0
  plain, rematted = _Stack('none'), _Stack('block')
  params = plain.init(jax.random.PRNGKey(0), xv, mv)
  assert (jax.tree.structure(rematted.init(jax.random.PRNGKey(0), xv, mv))
          == jax.tree.structure(params))
  g_plain = _grad_fn(plain)(params, xv, mv)
  g_remat = _grad_fn(rematted)(params, xv, mv)
  for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(plain.apply(params, xv, mv), rematted.apply(params, xv, mv))


def test_checkpointed_call_passes_none_and_integer_arguments():
  fn = lambda w, x, n, extra: (jnp.tanh(x @ w) * n.astype(x.dtype)).sum() + (0.0 if extra is None else 1.0)
  w = jnp.ones((3, 2)) * 0.1
  x = jnp.arange(6.0).reshape(2, 3)
  n = jnp.array([1, 2], jnp.int32)[:, None]
  want = jax.grad(fn, argnums=(0, 1))(w, x, n, None)
  got = jax.grad(lambda w, x: precision_lib.checkpointed_call(
      fn, jax.checkpoint_policies.nothing_saveable, w, x, n, None), argnums=(0, 1))(w, x)
  for a, b in zip(want, got):
    np.testing.assert_allclose(a, b, rtol=1e-6)
