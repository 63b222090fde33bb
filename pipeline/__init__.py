"""webtext pipeline framework: records and schemas, shard I/O, executors, config, state, CLI.

Stages (in ``stages/``) are plain functions over shards; this package runs them with
atomic writes, completion records, drop-reason stats and a SQLite state database.
"""

__version__ = "0.1.0"
