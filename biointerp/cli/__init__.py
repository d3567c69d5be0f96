"""The ``biointerp`` command line.

Each sub-command lives in its own module under ``biointerp.cli`` and is loaded
lazily, so ``biointerp --help`` stays fast and one broken optional dependency
does not take the whole command line down.
"""

from __future__ import annotations

import importlib

import click

from biointerp import __version__

#: command name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "variants": "biointerp.cli.variants:variants",
    "models": "biointerp.cli.models:models",
    "synth": "biointerp.cli.synth:synth",
    "train-lm": "biointerp.cli.train_lm:train_lm",
    "score": "biointerp.cli.score:score",
    "harvest": "biointerp.cli.harvest:harvest",
    "store": "biointerp.cli.store:store",
    "probe": "biointerp.cli.probe:probe",
    "tables": "biointerp.cli.tables:tables",
    "db": "biointerp.cli.db:db",
    "pipeline": "biointerp.cli.pipeline:pipeline",
    "cohort": "biointerp.cli.cohort:cohort",
    "features": "biointerp.cli.features:features",
    "explain": "biointerp.cli.features:explain",
    "demo": "biointerp.cli.pipeline:demo",
}


class LazyGroup(click.Group):
    """A click group that imports each sub-command only when it is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str):
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            return _not_available(cmd_name)
        return getattr(module, attr)


def _not_available(name: str) -> click.Command:
    @click.command(name=name, help=f"'{name}' is not yet available in this version.",
                   context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args):
        click.echo(f"biointerp {name}: not yet available in this version.")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="biointerp")
def main() -> None:
    """biointerp: score variants with DNA language models and read their internals.

    Typical flow: `variants check` -> `score` / `harvest` -> `probe train|apply`
    -> `db build` / `db query`.  `pipeline run` runs whole Snakemake workflows;
    `demo` runs them on the bundled synthetic genome and demo model.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
