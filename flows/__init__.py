"""Orchestration: Prefect flows, deployments, caching, lineage, and the composed ``vlpet`` CLI.

The only package that imports Prefect (lazily, inside the flow modules), so importing ``flows.cli``
for a quick command stays cheap.
"""
