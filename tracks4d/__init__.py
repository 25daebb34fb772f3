"""TracksTo4D (Kasten et al., NeurIPS 2024) in JAX/Flax.

Modules: `model` (network), `checkpoint` (official .pt / .npz -> Flax), `losses`,
`data` (window/point sampling, normalisation), `finetune` (test-time Adam),
`evaluation` (per-video metrics). Metrics live in `tapkit.metrics.{pose,depth}`.
"""
