"""Probe3D evaluation protocols for 3DPoV (spec dpov.md section d).

Backbone-agnostic: protocols take a `features_fn(images [B, H, W, 3]) ->
[B, h, w, D]` so any backbone plugs in.
"""
