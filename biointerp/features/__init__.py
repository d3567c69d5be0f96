"""Features: sparse autoencoders on model activations, labelled latents, per-variant
explanations and causal interventions.

Modules: ``sae`` (the autoencoder and its artifacts, the Evo 2 SAE loader),
``train`` (lightning training on streamed activations), ``label`` (annotation
readers, feature tables, per-latent AUROC labels), ``explain`` (per-variant
explanations), ``intervene`` (ablate / clamp / steer a latent in the forward
pass), ``dashboard`` (static HTML + PNG of top-activating contexts).
"""

from biointerp.features.sae import (SAEError, SparseAutoencoder, load_published_sae, load_sae, read_card,
                                    save_sae, strip_prefixes)

__all__ = ["SAEError", "SparseAutoencoder", "load_published_sae", "load_sae", "read_card", "save_sae",
           "strip_prefixes"]
