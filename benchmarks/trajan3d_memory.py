"""Peak decoder memory of TRAJAN / 3DSPA vs number of queries, with and
without chunked decoding (`decoder_scan_chunk_size`).

Claim measured: with chunking, XLA's temporary buffer size of the jitted
forward pass stays flat as the number of queries Q grows (only the outputs
grow, by 4 * T_out floats per query); without it, it grows linearly in Q
(each query carries 129 readout tokens of width 1024 / 1280 through the
readout transformer).

Nothing is executed: every configuration is lowered from abstract shapes and
compiled, and `compiled.memory_analysis()` reports the buffer sizes XLA
plans (temporaries, arguments = parameters + inputs, outputs).

  python benchmarks/trajan3d_memory.py                  # TRAJAN, T = 150
  python benchmarks/trajan3d_memory.py --model 3dspa --queries 64,256,1024
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from trajan3d import model as model_lib  # pylint: disable=g-import-not-at-top

MB = 1024.0 ** 2


def abstract_inputs(kind: str, num_support: int, num_frames: int,
                    num_queries: int) -> dict[str, jax.ShapeDtypeStruct]:
  d = 2 if kind == 'trajan' else 3
  f32 = jnp.float32
  x = {
      'support_tracks': jax.ShapeDtypeStruct((1, num_support, num_frames, d),
                                             f32),
      'support_tracks_visible': jax.ShapeDtypeStruct(
          (1, num_support, num_frames, 1), f32),
      'query_points': jax.ShapeDtypeStruct((1, num_queries, 1 + d), f32),
      'boundary_frame': jax.ShapeDtypeStruct((1,), jnp.int32),
  }
  if kind == '3dspa':
    x['dino_features'] = jax.ShapeDtypeStruct(
        (1, num_support, num_frames, 768), f32)
    x['depth_features'] = jax.ShapeDtypeStruct(
        (1, num_support, num_frames, 256), f32)
  return x


def planned_memory(kind: str, chunk: int | None, num_support: int,
                   num_frames: int, num_queries: int) -> dict[str, float]:
  """XLA's planned buffer sizes (MiB) of the jitted forward pass."""
  model = model_lib.build_model(kind, num_output_frames=num_frames,
                                decoder_scan_chunk_size=chunk)
  inputs = abstract_inputs(kind, num_support, num_frames, num_queries)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), inputs)

  def forward(p, x):
    res = model.apply(p, x)
    return res.tracks, res.visible_logits, res.certain_logits

  start = time.perf_counter()
  compiled = jax.jit(forward).lower(params, inputs).compile()
  mem = compiled.memory_analysis()
  return {
      'temp': mem.temp_size_in_bytes / MB,
      'args': mem.argument_size_in_bytes / MB,
      'out': mem.output_size_in_bytes / MB,
      'compile_s': time.perf_counter() - start,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='trajan',
                      choices=['trajan', '3dspa', '3dspa_nofeat'])
  parser.add_argument('--queries', default='32,128,512,2048',
                      help='comma-separated numbers of query points')
  parser.add_argument('--chunk', type=int, default=32,
                      help='decoder_scan_chunk_size of the chunked runs')
  parser.add_argument('--support', type=int, default=256)
  parser.add_argument('--frames', type=int, default=150)
  args = parser.parse_args()
  queries = [int(q) for q in args.queries.split(',')]

  print(f'{args.model}: batch 1, {args.support} support tracks, '
        f'{args.frames} frames, float32, {jax.devices()[0].platform}; '
        f'chunk = {args.chunk}. XLA planned temporaries in MiB '
        '(parameters and inputs are arguments, listed once).')
  header = (f'{"queries":>8} | {"unchunked temp":>14} | '
            f'{"chunked temp":>12} | {"ratio":>7} | {"outputs":>8} | '
            f'{"args":>8}')
  print(header)
  print('-' * len(header))
  for q in queries:
    full = planned_memory(args.model, None, args.support, args.frames, q)
    chunked = planned_memory(args.model, args.chunk, args.support,
                             args.frames, q)
    ratio = full['temp'] / max(chunked['temp'], 1e-9)
    print(f'{q:>8} | {full["temp"]:>14.1f} | {chunked["temp"]:>12.1f} | '
          f'{ratio:>6.2f}x | {chunked["out"]:>8.2f} | {chunked["args"]:>8.1f}',
          flush=True)


if __name__ == '__main__':
  main()
