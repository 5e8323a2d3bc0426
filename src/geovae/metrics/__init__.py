"""geovae.metrics."""
