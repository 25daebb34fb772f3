"""Benchmark: tapkit.models.vit forward vs transformers' DINOv2, same weights and input.

DINOv2 ViT-S/14 and ViT-B/14 (12 blocks; hidden 384 / 768, 6 / 12 heads) with random
weights, converted to ours with `tapkit.models.vit.from_transformers`; input [B, 224, 224, 3]
float32 (torch gets the same array as NCHW). `vitb14_reg` (the default) is
`Dinov2WithRegistersModel` as released: 4 registers, 518-px native size, so both sides resize the
37×37 position embedding to the 16×16 patch grid (bicubic, antialiased) in every call. Ours is
`jax.jit(module.apply)` (compiled once per shape, before timing); transformers runs under
`torch.no_grad()` (its default attention, `sdpa`) with the intra-op thread count (1 or all
cores) that was fastest in its warm-up.

The two sides run INTERLEAVED (ours, transformers, ours, ...) so that both see the same load.
The table gives the median and best of the repeats of each side, their ratios (transformers
time / ours), the ratio of the best process-CPU times (least disturbed by other jobs), the
largest relative difference of the final tokens, and the 1-minute load average before /
after each row.

    python -m benchmarks.vit_forward [--models vitb14_reg vitb14 vits14] [--batch 1 4 8]
        [--repeats 5]
"""

import argparse
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from tapkit.models import vit as bb

# (hidden size, heads, registers, native image size) of the DINOv2 ViT sizes; all have 12 blocks,
# MLP ratio 4, patch 14.
MODELS = {'vitb14_reg': (768, 12, 4, 518), 'vitb14': (768, 12, 0, 224), 'vits14': (384, 6, 0, 224)}


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _wall_and_cpu(fn) -> tuple[float, float]:
  """(wall, process CPU) seconds of one call of fn."""
  cpu = _cpu_seconds()
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start, _cpu_seconds() - cpu


def _pick_torch_threads(torch, fn) -> int:
  """Fastest torch intra-op thread count of 1 and all cores for `fn` (after a warm-up)."""
  best = None
  for threads in sorted({1, os.cpu_count() or 1}):
    torch.set_num_threads(threads)
    fn()
    took = _wall_and_cpu(fn)[0]
    if best is None or took < best[1]:
      best = (threads, took)
  torch.set_num_threads(best[0])
  return best[0]


def _random_dinov2(torch, transformers, hidden: int, heads: int, registers: int, image_size: int):
  """Dinov2Model / Dinov2WithRegistersModel with random, non-trivial weights (seeded)."""
  torch.manual_seed(0)
  kwargs = dict(hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads,
                image_size=image_size, patch_size=14)
  if registers:
    model = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
        num_register_tokens=registers, **kwargs))
  else:
    model = transformers.Dinov2Model(transformers.Dinov2Config(**kwargs))
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith(('weight', 'lambda1')) else 0.0))
      else:
        p.copy_(torch.randn_like(p) * p.shape[-1] ** -0.5)
  return model.eval()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', nargs='+', default=['vitb14_reg'], choices=list(MODELS))
  parser.add_argument('--batch', type=int, nargs='+', default=[1, 4, 8])
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()

  import torch  # benchmark-only dependencies
  import transformers

  print(f'cpu cores: {os.cpu_count()}, jax {jax.__version__} {jax.devices()}, torch '
        f'{torch.__version__}, transformers {transformers.__version__}; 224 px float32, '
        f'{args.repeats} interleaved repeats per side')
  print(f'{"model":>10} {"B":>2} {"thr":>3} {"ours ms":>8} {"hf ms":>8} {"ratio med":>9} '
        f'{"ours best":>9} {"hf best":>8} {"ratio best":>10} {"cpu ratio":>9} '
        f'{"max rel":>8} {"load":>9}')
  for name in args.models:
    hf = _random_dinov2(torch, transformers, *MODELS[name])
    module, params = bb.from_transformers(hf)
    print(f'{name}: {type(hf).__name__}, transformers attention '
          f'{hf.config._attn_implementation!r}', flush=True)
    apply = jax.jit(module.apply)
    for batch in args.batch:
      load_before = os.getloadavg()[0]
      x = np.random.default_rng(batch).standard_normal((batch, 224, 224, 3)).astype(np.float32)
      xj, xt = jnp.asarray(x), torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

      def run_ours():
        return jax.block_until_ready(apply({'params': params}, xj))

      def run_hf():
        with torch.no_grad():
          return hf(xt).last_hidden_state

      ours_out = np.asarray(run_ours())  # compiles
      threads = _pick_torch_threads(torch, run_hf)
      ref = run_hf().numpy()
      times = {'ours': [], 'hf': []}
      cpus = {'ours': [], 'hf': []}
      for _ in range(args.repeats):
        for side, fn in (('ours', run_ours), ('hf', run_hf)):
          wall, cpu = _wall_and_cpu(fn)
          times[side].append(1e3 * wall)
          cpus[side].append(cpu)
      o_med, h_med = np.median(times['ours']), np.median(times['hf'])
      o_best, h_best = min(times['ours']), min(times['hf'])
      rel = np.abs(ours_out - ref).max() / np.abs(ref).max()
      print(f'{name:>10} {batch:>2} {threads:>3} {o_med:>8.1f} {h_med:>8.1f} '
            f'{h_med / o_med:>8.2f}x {o_best:>9.1f} {h_best:>8.1f} {h_best / o_best:>9.2f}x '
            f'{min(cpus["hf"]) / min(cpus["ours"]):>8.2f}x {rel:>8.1e} '
            f'{load_before:>4.1f}/{os.getloadavg()[0]:<4.1f}', flush=True)


if __name__ == '__main__':
  main()
