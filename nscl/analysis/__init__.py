"""Measurements the chapters make on trained models: invariance, room in the null spaces, the two modalities."""
