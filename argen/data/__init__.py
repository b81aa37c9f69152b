"""argen's data layer: webdataset shards in the img2dataset layout, built-in datasets, CLI.

``python -m argen.data --help`` for the command line; :class:`ShardDataModule` for training.
"""

_LAZY = {
    "ShardDataModule": "argen.data.module",
    "expand_shards": "argen.data.shards",
    "make_loader": "argen.data.shards",
    "shard_stats": "argen.data.shards",
    "prepare_recipe": "argen.data.recipes",
    "BadDataError": "argen.data.shards",
}


def __getattr__(name):  # PEP 562: `import argen.data.shapes` should not import Lightning.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'argen.data' has no attribute {name!r}")


__all__ = list(_LAZY)
