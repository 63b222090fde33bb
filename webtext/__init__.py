"""webtext: build a WebText-style corpus from Reddit-linked pages and train GPT-2 on it.

The code lives in three subpackages, installed under this namespace so that a user's own
``pipeline/``, ``stages/`` or ``model/`` folder can never shadow them:

- ``webtext.pipeline``: the CLI, configuration, executors, state, reports, releases;
- ``webtext.stages``: harvest, fetch, extract, dedup, decontaminate, shard;
- ``webtext.model``: the GPT-2 model, trainer, data loader and evaluation.

In a source checkout they are the top-level folders ``pipeline/``, ``stages/`` and ``model/``;
``pyproject.toml`` maps them here with setuptools' ``package-dir``.
"""

__version__ = "0.1.0"
