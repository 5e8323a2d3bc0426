"""geovae.geometry: the Lorentz model of hyperbolic space and spatial reconstruction from latent distances."""
