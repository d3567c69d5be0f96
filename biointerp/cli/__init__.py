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


#: Exit codes shared by every command (shown at the end of each ``--help``).
EXIT_CODES = ("Exit codes: 0 success; 1 error (one line starting `Error:`: a bad, missing or damaged input "
              "or artifact, or a failed step); 2 usage error (bad option or argument).")

#: biointerp exception types that describe bad input or a damaged artifact: the command line shows
#: them as one ``Error:`` line (exit 1) wherever they surface, never as a traceback.
USER_ERRORS = ("StoreError", "ProbeFileError", "GenomeError", "VariantInputError", "QueryError")


def _is_user_error(err: BaseException) -> bool:
    return any(c.__name__ in USER_ERRORS and c.__module__.startswith("biointerp.") for c in type(err).__mro__)


def _with_exit_codes(cmd: click.Command) -> click.Command:
    """Add :data:`EXIT_CODES` to the help of ``cmd`` and its sub-commands (once)."""
    if not (cmd.epilog or "").endswith(EXIT_CODES):
        cmd.epilog = f"{cmd.epilog}\n\n{EXIT_CODES}" if cmd.epilog else EXIT_CODES
    for sub in getattr(cmd, "commands", {}).values():
        _with_exit_codes(sub)
    return cmd


class LazyGroup(click.Group):
    """A click group that imports each sub-command only when it is needed."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as err:
            if _is_user_error(err):
                raise click.ClickException(str(err)) from err
            raise

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
        return _with_exit_codes(getattr(module, attr))


def _not_available(name: str) -> click.Command:
    @click.command(name=name, help=f"'{name}' is not yet available in this version.",
                   context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args):
        click.echo(f"biointerp {name}: not yet available in this version.")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="biointerp")
def main() -> None:
    """biointerp: score variants with DNA language models and read their internals.

    Typical flow: `variants check` -> `score` / `harvest` -> `probe train|apply`
    -> `db build` / `db query`.  `pipeline run` runs whole Snakemake workflows;
    `demo` runs them on the bundled synthetic genome and demo model.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
