"""CoTracker3 (Karaev et al. 2024) in JAX/Flax, numerically matching the official PyTorch code.

  from tapkit.models import cotracker3 as ct3
  params = ct3.load_checkpoint('scaled_offline.pth')       # official checkpoint -> Flax tree
  out = ct3.offline_forward(params, video, queries, iters=6)
  # video [B, T, 3, H, W] float32 0..255, queries [B, N, 3] (t, x, y) pixels
  # -> coords [B, T, N, 2] pixels, vis / conf [B, T, N] probabilities

Streaming: `OnlineSession(params, queries)(chunk, is_first_step)`; whole-video sliding
windows: `online_forward`. See README.md in this folder.
"""

from tapkit.models.cotracker3.convert import load_checkpoint, params_from_state_dict
from tapkit.models.cotracker3.model import CoTrackerThree, init_params, offline_forward, param_shapes
from tapkit.models.cotracker3.online import OnlineSession, online_forward

__all__ = ['CoTrackerThree', 'OnlineSession', 'init_params', 'load_checkpoint', 'offline_forward',
           'online_forward', 'param_shapes', 'params_from_state_dict']
