"""A declarative Poe bot engine: YAML bots served over the real Poe protocol."""

__version__ = "0.1.0"
