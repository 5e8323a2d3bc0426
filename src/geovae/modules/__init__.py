"""geovae.modules: the torch modules behind the models (:mod:`geovae.models` holds the user classes).

:class:`~geovae.modules.vae.VAEModule` is the neutral VAE for counts; LiVAE, the beta-VAE family and
dp-VAE extend it; siVAE has its own cell- and feature-wise networks.
"""
