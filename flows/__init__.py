"""Orchestration: Prefect flows, deployments, caching, lineage, and the composed ``vlpet`` CLI.

The only package that imports Prefect (lazily, inside the flow modules), so importing ``flows.cli``
for a quick command stays cheap.
"""

from flows.forksafe import install as _install_forksafe

_install_forksafe()  # forked workers must not run Prefect's at-exit hooks (see flows.forksafe)
