"""Shared plumbing: configs, errors, safe IO, seeding, progress, run folders."""
