"""geovae.distributions: count likelihoods (NB, ZINB, Poisson, ZIP) and the fused softmax + NB kernel."""
