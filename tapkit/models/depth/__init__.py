"""Depth networks: Video Depth Anything (video, temporally consistent) and Depth Anything V2."""
