"""Results: gathering runs, tables over seeds, reports against the papers, plots, reproducibility."""
