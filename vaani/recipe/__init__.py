"""The bundled model's recipe: the Hindi alphabet, the synthetic corpus, training, the tiny model."""
