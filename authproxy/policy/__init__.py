"""Access policy: route classes, scopes, model names and allow-lists."""
