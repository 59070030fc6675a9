"""What a request did: the exchange record, usage, audit, trail, reports, metrics."""
