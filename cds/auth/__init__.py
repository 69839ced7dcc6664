"""Who may call: CDS client JWTs from allow-listed issuers (`tokens`), each used once (`replay`)."""
