"""GPT-2 model, Arrow token-shard loader and trainer for webtext corpora."""
