r"""Helpers every layer may use: argument checks, a module's evaluation mode for a block,
and the guarded import of zuko.

Nothing here imports another part of pyro_dgm."""
