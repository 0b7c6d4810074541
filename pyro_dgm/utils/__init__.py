r"""Helpers every layer may use: argument checks and the guarded import of zuko.

Nothing here imports another part of pyro_dgm."""
