"""Probe3D evaluation protocols for 3DPoV (SPair, NAVI, depth and normal probes).

Backbone-agnostic: protocols take a `features_fn(images [B, H, W, 3]) ->
[B, h, w, D]` so any backbone plugs in.
"""
