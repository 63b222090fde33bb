"""webtext stages: harvest, fetch, extract, dedup, decontaminate, shard.

Each module exposes ``run(ctx) -> dict`` (the stage's stats) and the per-shard task
functions it maps over its inputs. Shared helpers: ``urls`` (normalization), ``ngrams``.
"""

STAGES = ["harvest", "fetch", "extract", "dedup", "decontaminate", "shard"]
