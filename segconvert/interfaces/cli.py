"""The ``segconvert`` command.

Format options (``--masks-dir``, ``--mask-url-prefix``, ...) belong to the converters,
not to this module: ``convert`` accepts any extra options and parses them with the
reader's and writer's own ``click.Option`` declarations once ``--from``/``--to`` are
known, so a plugin's options work on the command line without touching the core.
"""

from __future__ import annotations

import os
import signal
import sys
import time

# Before anything imports numpy: segconvert never calls BLAS, and OpenBLAS' thread pool
# (one thread per core) spins for ~0.1 s of CPU after start-up in every process that
# imports numpy -- measured 0.13 s of CPU per run, 4% of the wall time of a 300-image
# run with --jobs 2 on 2 cores, where that spin competes with the workers. Only the
# command does this; code that imports segconvert keeps its own numpy settings.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from typing import Any  # noqa: E402

import click  # noqa: E402

from segconvert.errors import SegconvertError, set_option_style  # noqa: E402
from segconvert.interfaces import registry  # noqa: E402
from segconvert.interfaces.format_args import FormatArgsCommand  # noqa: E402
from segconvert.io.sources import SOURCE, location  # noqa: E402
from segconvert.model.ir import MODES  # noqa: E402
from segconvert.model.modes import INDEX_POLICIES  # noqa: E402

EXIT_FAILED_ITEMS = 1
EXIT_UNUSABLE = 2


class _Commands(click.Group):
    """The command group, with ``validate``, ``stats`` and ``preview`` imported when asked for:
    a conversion does not pay for their module (~4 ms of a start-up that a 300-image run of
    small masks feels)."""

    LAZY = ("validate", "stats", "preview")  # segconvert.interfaces.inspect_cli.COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            from segconvert.interfaces.inspect_cli import COMMANDS

            for command in COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segconvert")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Convert image segmentation annotations between formats (COCO, RGB masks, polygons -> Nucleus)."""
    set_option_style("cli")  # messages name --flags here, keyword arguments in the library
    ctx.call_on_close(lambda: set_option_style("python"))  # main() called from Python (tests, scripts)


def _format_options(from_format: str, to_format: str) -> list[click.Option]:
    reader = registry.reader_for(from_format).reader
    writer = registry.writer_for(to_format).writer
    assert reader is not None and writer is not None
    shared = {o.name for o in reader.options}  # declared by both (--background-label): parsed once, given to both
    return list(reader.options) + [o for o in writer.options if o.name not in shared]


@main.command(
    cls=FormatArgsCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="Each format has options of its own (e.g. coco-panoptic's --masks-dir, nucleus' "
    "--mask-url-prefix): `segconvert formats NAME` lists them.",
)
@click.argument("source", type=SOURCE)
@click.argument("output", type=click.Path())
@click.option("--from", "from_format", default="auto", show_default=True,
              help="Source format (see `segconvert formats`); auto recognises COCO JSONs, CVAT XML and "
              "folders of LabelMe, Cityscapes or colour masks with a colormap.")
@click.option("--to", "to_format", default="nucleus", show_default=True,
              help="Output format: nucleus, coco-panoptic, coco-instances, index, rgb (see `segconvert formats`).")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="panoptic | instance | semantic [default: the source format's natural mode].")
@click.option("--index", type=click.Choice(INDEX_POLICIES), default=None,
              help="Semantic mask values: one per class for the whole dataset (stable, the default), "
              "per image (compact), or the category id itself (category-id).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: number of cores].")
@click.option("--overwrite", is_flag=True, help="Redo items an earlier run into OUTPUT already finished.")
@click.option("--executor", default="local", show_default=True,
              help="local (worker processes here), dask (a local Dask cluster of --jobs workers) or a Dask "
              "scheduler address, tcp://HOST:8786; the workers must reach SOURCE and OUTPUT.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Largest image (width x height) to convert; a larger declared size fails that item "
              "before anything is allocated (decompression bombs) [default: 200000000].")
@click.option("--allow-outside-paths", is_flag=True,
              help="Let file names inside annotation files (COCO file_name, LabelMe imagePath, CVAT name) "
              "be absolute or lead out of their base folder with '..'.")
@click.option("--report", "report", type=click.Path(dir_okay=False), default=None,
              help="Also write every failure and warning as JSON lines (item, file, reason, kind) to FILE.")
@click.option("--only-failed", "only_failed", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Convert only the items a report (--report FILE, or OUTPUT/.segconvert/report.jsonl) "
              "lists as failed; the other finished items stay as they are.")
@click.pass_context
def convert(ctx: click.Context, source: str, output: str, from_format: str, to_format: str,
            mode: str | None, index: str | None, jobs: int | None, overwrite: bool, max_pixels: int | None,
            allow_outside_paths: bool, report: str | None, only_failed: str | None,
            executor: str) -> None:
    """Convert SOURCE into OUTPUT; re-running into the same OUTPUT resumes."""
    from segconvert.interfaces.api import convert as run_convert

    try:
        if from_format == "auto":
            from_format = registry.detect(location(source))
            click.echo(f"reading {source} as {from_format}", err=True)
        extra = _parse_format_options(ctx, from_format, to_format)
        with _Bar() as bar:
            summary = run_convert(
                source, output, from_format=from_format, to_format=to_format, mode=mode, index=index,
                jobs=jobs, overwrite=overwrite, progress=bar, max_pixels=max_pixels,
                allow_outside_paths=allow_outside_paths, report=report, only_failed=only_failed,
                executor=executor, **extra,
            )
    except SegconvertError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNUSABLE)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        why = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        click.echo(f"\n{why}: the finished items are kept; run the same command again to resume", err=True)
        sys.exit(128 + signum)
    _print_summary(summary)
    sys.exit(0 if summary.ok else EXIT_FAILED_ITEMS)


def _parse_format_options(ctx: click.Context, from_format: str, to_format: str) -> dict[str, Any]:
    params = _format_options(from_format, to_format)
    sub = click.Command(f"{from_format} -> {to_format}", params=params, add_help_option=False)
    try:
        sub_ctx = sub.make_context(ctx.command_path, list(ctx.args), parent=ctx)
    except click.UsageError as exc:
        names = ", ".join(o.opts[0] for o in params) or "none"
        raise click.UsageError(f"{exc.format_message()} (options of {sub.name}: {names})", ctx) from None
    return {k: v for k, v in sub_ctx.params.items()}


class _Bar:
    """click's progress bar on a terminal, silence elsewhere (logs of unattended runs).

    Redrawn at most ``HZ`` times a second: once per item was 143 KB of terminal output
    for 2,000 images, and the drawing cost the main process time the workers wait on.
    """

    HZ = 10

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._bar: Any = None
        self._pending = 0
        self._next = 0.0
        self._clock = clock

    def __enter__(self) -> _Bar:
        return self

    @property
    def wants_total(self) -> bool:
        """Whether :meth:`start` needs the item count: only a bar on a terminal shows it, and
        counting can cost a pass over the source (a remote CVAT XML: a second download)."""
        return sys.stderr.isatty()

    def start(self, total: int) -> None:
        """Called by the pipeline once the reader knows how many items there are."""
        if sys.stderr.isatty():
            self._bar = click.progressbar(length=total or None, label="converting", file=sys.stderr,
                                          show_pos=True, show_eta=bool(total))
            self._bar.__enter__()

    def __call__(self, n: int) -> None:
        if self._bar is None:
            return
        self._pending += n
        now = self._clock()
        if now >= self._next:
            self._next = now + 1 / self.HZ
            self._bar.update(self._pending)
            self._pending = 0

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            if self._pending:
                self._bar.update(self._pending)
                self._pending = 0
            self._bar.__exit__(*exc)


def _print_summary(summary: Any) -> None:
    """Warnings, then failures, then the counts: the last lines of a long log say how it went."""
    echo = click.echo
    for title, shown, count in (
        ("warnings", summary.warnings, None),
        ("failed", summary.failures, summary.failed),
    ):
        if not shown:
            continue
        echo(f"{title}:", err=True)
        for message in shown:
            echo(f"  {message}", err=True)
        if count is not None and count > len(shown):
            echo(f"  ... and {count - len(shown)} more failures not shown: all of them in {summary.report}",
                 err=True)
        elif count is None and len(shown) >= 50:
            echo(f"  ... the first {len(shown)} warnings shown: all of them in {summary.report}", err=True)
    if summary.dataset_files_kept:
        echo("no item was converted: the dataset-wide files (e.g. annotations.jsonl) were not written, and "
             "those of an earlier run are kept as they were", err=True)
    rate = summary.converted / summary.seconds if summary.seconds else 0.0
    echo(
        f"converted {summary.converted}, skipped {summary.skipped} (done before), failed {summary.failed} "
        f"of {summary.total} items in {summary.seconds:.1f} s ({rate:.0f} images/s)",
        err=True,
    )


@main.command()
@click.argument("name", required=False)
def formats(name: str | None) -> None:
    """List the converters (or show one converter's options)."""
    if name is not None:
        try:
            fmt = registry.get(name)
        except SegconvertError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_UNUSABLE)
        formatter = click.HelpFormatter()
        formatter.write_text(f"{fmt.name} ({fmt.abilities}): {fmt.description}")
        for role, cls in (("reader", fmt.reader), ("writer", fmt.writer)):
            if cls is None:
                continue
            ctx = click.Context(click.Command(name))
            records = [r for r in (opt.get_help_record(ctx) for opt in cls.options) if r]
            title = f"{role} options" + (f" (default mode: {cls.default_mode})" if role == "reader" else "")
            with formatter.section(title):
                if records:
                    formatter.write_dl(records)
                else:
                    formatter.write_text("none")
        click.echo(formatter.getvalue(), nl=False)
        return
    rows = []
    for n in registry.names():
        try:
            fmt = registry.get(n)
            rows.append((n, fmt.abilities, fmt.description))
        except SegconvertError as exc:
            rows.append((n, "-", f"unavailable: {exc}"))
    width = max(len(r[0]) for r in rows)
    for n, abilities, description in rows:
        click.echo(f"{n:{width}}  {abilities:10}  {description}")
    for refused in registry.refused_plugins():
        click.echo(f"(plugin {refused} refused: a built-in has that name)")


# validate / stats / preview live in their own module (segconvert/interfaces/inspect_cli.py)


if __name__ == "__main__":  # pragma: no cover
    main()
