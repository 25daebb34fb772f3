"""The sharded training engine shared by every method; see README.md in this folder."""
