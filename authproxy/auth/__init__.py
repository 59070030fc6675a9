"""Authentication: credentials, principals, verification, JWTs, brute-force limits."""
