"""geovae.plotting."""
