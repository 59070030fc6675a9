"""The key store: records, the file, key life-cycle, JWT signing keys, hot reload."""
