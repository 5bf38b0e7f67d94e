"""The model layer: cells, the single-layer Model that train/compare/sweep build, the Network a
user's own PyTorch model loads into (embedding, stacked and bidirectional layers, a head), losses,
initialisers, and the PyTorch state-dict layout."""
