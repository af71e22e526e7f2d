"""The ``validate``, ``stats`` and ``preview`` commands (attached to ``segconvert.interfaces.cli.main``).

Kept out of ``cli.py`` so the conversion command and these looks at a dataset change
independently; the work itself lives in ``validate.py``, ``stats.py`` and
``preview.py``, imported when a command runs (start-up stays light).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from segconvert.errors import SegconvertError, SourceError
from segconvert.interfaces import registry
from segconvert.interfaces.format_args import FormatArgsCommand
from segconvert.io.sources import SOURCE, location
from segconvert.model.ir import MODES
from segconvert.model.modes import INDEX_POLICIES

EXIT_PROBLEMS = 1
EXIT_UNUSABLE = 2

_jobs_option = click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
                            help="Worker processes [default: number of cores].")
_mode_option = click.option("--mode", type=click.Choice(MODES), default=None,
                            help="panoptic | instance | semantic [default: the source format's natural mode].")
_index_option = click.option("--index", type=click.Choice(INDEX_POLICIES), default=None,
                             help="Semantic mask values, as in convert: stable (default), compact, category-id.")
_from_option = click.option("--from", "from_format", default="auto", show_default=True,
                            help="Source format (see `segconvert formats`).")
_reader_context = {"ignore_unknown_options": True, "allow_extra_args": True}
_reader_epilog = ("A format's own options (e.g. coco-panoptic's --masks-dir) are accepted too: "
                  "`segconvert formats NAME`.")


def _jobs(jobs: int | None) -> int:
    from segconvert.execution.pipeline import default_jobs

    return jobs if jobs is not None else default_jobs()


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_UNUSABLE)


def _open(ctx: click.Context, source: str, from_format: str, mode: str | None,
          index: str | None, images_dir: str | None = None) -> tuple[Any, Any, str]:
    """The reader (with its own options from the extra arguments), its ModePlan, the format name.

    ``images_dir`` (preview's ``--images``) also goes to a reader that has an ``--images``
    option of its own (the shape readers read image sizes there): one folder, one option.
    """
    from segconvert.interfaces.api import open_reader
    from segconvert.model.modes import ModePlan

    if from_format == "auto":
        from_format = registry.detect(location(source))
        click.echo(f"reading {source} as {from_format}", err=True)
    cls = registry.reader_for(from_format).reader
    assert cls is not None
    sub = click.Command(from_format, params=list(cls.options), add_help_option=False)
    try:
        sub_ctx = sub.make_context(ctx.command_path, list(ctx.args), parent=ctx)
    except click.UsageError as exc:
        names = ", ".join(o.opts[0] for o in cls.options) or "none"
        raise click.UsageError(f"{exc.format_message()} (options of {from_format}: {names})", ctx) from None
    params = dict(sub_ctx.params)
    if images_dir is not None and "images" in params and params["images"] is None:
        params["images"] = Path(images_dir)
    reader = open_reader(source, from_format, **params)
    mode = mode or reader.default_mode
    reader.use_mode(mode)  # as convert does (VOC semantic reads the class PNGs alone)
    if index is not None and mode != "semantic":
        raise SourceError(f"--index applies to --mode semantic only (this run is {mode})")
    plan = ModePlan(mode=mode, index=index or "stable", categories=reader.categories)
    return reader, plan, from_format


class _JsonUsageErrors(click.Command):
    """A command whose ``--json`` output stays one JSON document even when click refuses the
    command line (an unknown option, ``--jobs 0``): the error is written to stdout as
    ``{"problems": [], "error": ...}`` too, and click still prints it and exits 2."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        wants_json = "--json" in args  # before parsing, which consumes ``args``
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            if wants_json:
                sys.stdout.write(json.dumps({"problems": [], "error": exc.format_message()}) + "\n")
            raise


@click.command(cls=_JsonUsageErrors)
# SOURCE and --images are checked by segconvert.checks.validate (SourceError, exit 2), not by click, so
# that a missing path is reported inside the --json document like every other failure
@click.argument("source", type=click.Path())
@click.option("--images", "images_dir", type=click.Path(), default=None,
              help="Folder of the images: each mask's size must equal its image's (after EXIF orientation); "
              "the image is found by reference_id with any image extension.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every problem, then the summary.")
@_jobs_option
def validate(source: str, images_dir: str | None, as_json: bool, jobs: int | None) -> None:
    """Check a Nucleus set (a folder with annotations.jsonl, or the file) before uploading it.

    Exit status 1 when anything is wrong, 0 when nothing is (warnings alone), 2 when
    the set cannot be read at all.
    """
    from segconvert.checks.shared import Progress
    from segconvert.checks.validate import annotations_path, count_lines, format_report
    from segconvert.checks.validate import validate as run

    out = sys.stdout
    first = [True]

    def emit(problem: Any) -> None:  # streamed: memory stays flat however many problems there are
        out.write(("" if first[0] else ",\n") + json.dumps(problem.as_json()))
        first[0] = False

    opened = False
    try:
        total = count_lines(annotations_path(source)) if sys.stderr.isatty() else 0
        if as_json:
            out.write('{"problems": [\n')
            opened = True
        with Progress("validating", total) as bar:
            report = run(source, images_dir=images_dir, jobs=_jobs(jobs), on_problem=emit if as_json else None,
                         progress=bar.step)
    except (SegconvertError, OSError) as exc:
        if isinstance(exc, OSError):  # the set's own file failing mid-read (I/O error, permissions)
            exc = SourceError(f"cannot read the set: {exc.strerror or exc}", file=exc.filename or source)
        if as_json:  # still one JSON document, saying why it stopped
            out.write(f'\n],\n"error": {json.dumps(str(exc))}}}\n' if opened else
                      f'{{"error": {json.dumps(str(exc))}}}\n')
        _fail(exc)
    if as_json:
        out.write(f'\n],\n"summary": {json.dumps(report.summary_json(), indent=1)}}}\n')
    else:
        click.echo(format_report(report))
    sys.exit(0 if report.ok else EXIT_PROBLEMS)


@click.command(cls=FormatArgsCommand, context_settings=_reader_context, epilog=_reader_epilog)
@click.argument("source", type=SOURCE)
@_from_option
@_mode_option
@_index_option
@click.option("--json", "as_json", is_flag=True, help="The figures as one JSON document.")
@_jobs_option
@click.pass_context
def stats(ctx: click.Context, source: str, from_format: str, mode: str | None, index: str | None, as_json: bool,
          jobs: int | None) -> None:
    """Per class pixels, share, instances and images; segments per image; image sizes.

    Items that would fail to convert are reported and left out (exit status 1).
    """
    from segconvert.checks.shared import Progress
    from segconvert.checks.stats import dataset_stats, format_table

    try:
        reader, plan, _ = _open(ctx, source, from_format, mode, index)
        with Progress("counting", len(reader)) as bar:
            result = dataset_stats(reader, plan, jobs=_jobs(jobs), progress=bar.step)
    except SegconvertError as exc:
        _fail(exc)
    order = [c.name for c in reader.categories] if reader.categories else None
    if as_json:
        click.echo(json.dumps(result.as_json(order), indent=1))
    else:
        click.echo(format_table(result, order))
    sys.exit(0 if result.failed == 0 else EXIT_PROBLEMS)


@click.command(cls=FormatArgsCommand, context_settings=_reader_context, epilog=_reader_epilog)
@click.argument("source", type=SOURCE)
@click.argument("output", type=click.Path(file_okay=False))
@_from_option
@_mode_option
@_index_option
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of the images to draw the masks on (found by reference_id, any image extension).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Preview only the first N items.")
@_jobs_option
@click.pass_context
def preview(ctx: click.Context, source: str, output: str, from_format: str, mode: str | None, index: str | None,
            images_dir: str | None, limit: int | None, jobs: int | None) -> None:
    """Write a colourised preview PNG per image and OUTPUT/index.html, a contact sheet to open from disk."""
    from segconvert.checks.preview import INDEX_FILE
    from segconvert.checks.preview import preview as run
    from segconvert.checks.shared import Progress

    try:
        reader, plan, fmt = _open(ctx, source, from_format, mode, index, images_dir)
        total = min(len(reader), limit) if limit and len(reader) else len(reader)
        with Progress("previewing", total) as bar:
            results = run(reader, plan, output, images_dir=images_dir, limit=limit, jobs=_jobs(jobs),
                          progress=bar.step, title=f"{Path(source).name} ({fmt}, {plan.mode})")
    except SegconvertError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(SegconvertError(f"cannot write the previews into {output}: {exc.strerror or exc}"))
    failed = [r for r in results if r.error is not None]
    click.echo(f"previewed {len(results) - len(failed)} of {len(results)} item(s), {len(failed)} failed: "
               f"{Path(output) / INDEX_FILE}", err=True)
    for r in failed:
        click.echo(f"  {r.error}", err=True)
    sys.exit(0 if not failed else EXIT_PROBLEMS)


COMMANDS = (validate, stats, preview)
