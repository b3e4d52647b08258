"""The words every layer shares: a task's states and the spec fields it is made of (taskstate), and the
checks of a service spec's strings (validate: the API enforces them, the CLI may refuse earlier, the
worker checks again before a runtime sees them). Imports nothing of Warren."""
