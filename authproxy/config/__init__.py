"""Configuration: the schema helpers, the frozen settings and how they are loaded."""
