"""The Poe wire format: request models, event values, SSE and JSON encoders, settings."""
