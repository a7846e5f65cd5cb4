"""The ``vlpet`` console script: every package's commands on one typer app.

Each package exposes ``register(app)``; only this module (in ``flows``, the top of the dependency order)
sees them all, so ``vlpet`` stays free of ``pipelines``/``features``/``flows`` imports.
"""

from __future__ import annotations

import typer

from vlpet.cli import register as register_model_commands

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="VL-PET: from raw vision-and-language media to an evaluated parameter-efficient model.")
register_model_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
