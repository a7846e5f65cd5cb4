"""Datasets: sources, verified downloads, unified annotation tables, synthetic data, task tables, loader."""
