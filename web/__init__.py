"""The shop's website: an HTTP API (JSON, versioned under /api/v1) and a search-by-photo page,
served by `lookalike serve` over the same engine, database and media as the bot."""
