"""The admin API: its application, authentication, input checks and OpenAPI."""
