"""Small numeric building blocks shared by the data pipelines, metrics and methods.

* `sampling`: bilinear sampling of images / feature maps at points, with the coordinate and
  border conventions of torch's `grid_sample` and `F.interpolate` as options; separable
  bilinear / bicubic resizing with torch's interpolation matrices.
* `numeric`: the numpy-or-jax dispatch (`array_module`) and `l2_normalize`.

Everything here is a pure function of arrays that accepts numpy or jax inputs.
"""
