"""Rules compiled once from the config: patterns, templates, tasks, Dramatiq messages (pure)."""
