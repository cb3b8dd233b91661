"""Pretraining data: sources, tokenizer training, token shards, mixtures, FIM, provenance."""
