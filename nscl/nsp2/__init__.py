"""NSP² (Lu et al., NeurIPS 2024): the consistency conditions, their projectors, the method and its recipes."""
