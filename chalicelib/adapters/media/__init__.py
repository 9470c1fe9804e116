"""Media sources: how the worker fetches a provider's attachment bytes (one module per provider)."""
