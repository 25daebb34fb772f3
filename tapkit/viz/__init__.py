"""Visualisation shared by the methods, CLIs, notebooks and reports.

Modules (import them directly; nothing heavy is imported here):
  tracks2d         paint 2D tracks with trails on frames, write MP4 (ffmpeg) or GIF
  tracks3d         static 3D view of tracks and cameras, self-contained HTML 3D viewer
  plots            per-frame score curves and panels, training curves (dicts,
                   TensorBoard, JSONL), bar charts, tables as figures
  tables           table cells, Markdown tables and CSV files
  features         joint-PCA RGB maps of backbone feature maps
  correspondences  matched keypoints between two images
  html             `Report`: self-contained report.html plus report.md
  markdown         the report's Markdown subset (inline code, bold, italics, links, lists)
                   rendered to escaped HTML
  browser          headless Chromium: screenshots and the rendered DOM / text of a page

Everything renders with matplotlib's Agg canvas or PIL; no display is needed.
"""
