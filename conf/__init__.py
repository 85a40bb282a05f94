"""Hydra configs of sparsetrain, shipped as the package ``sparsetrain.conf``."""
