"""geovae.data."""
