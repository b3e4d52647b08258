"""The words of a service spec that every layer shares (the API that enforces them, the CLI that may
refuse earlier, the worker that checks again before a runtime sees them). Imports nothing of Warren."""
