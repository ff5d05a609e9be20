"""Plugin protocols and the in-memory implementations; real plugins are imported lazily."""
