"""Keeping the catalogue in step with the shop's product feed (Google Merchant Center format)."""
