"""A fake Ollama server that speaks the wire format of shared/ollama-wire.md."""
