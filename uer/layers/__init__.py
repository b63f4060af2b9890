"""Building blocks shared by embeddings, encoders, decoders and targets."""
