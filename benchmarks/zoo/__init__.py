"""A zoo of public model architectures with random but *live* weights, for convhub's compatibility matrix.

See `benchmarks/zoo/models.py` (`MODELS`, `ZooModel`, `live_weights`); run it to build and check them:

    uv run python benchmarks/zoo/models.py [NAMES...]
"""
