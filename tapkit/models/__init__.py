"""Networks shared by several methods (or used by users directly).

  vit/   DINO, DINOv2 (with registers) and DINOv3 vision transformers, presets and
         checkpoint converters (transformers / torch hub / safetensors / npz).
  cotracker3/  CoTracker3 point tracker (offline, online windows, streaming) and the
         official-checkpoint converter.
"""
