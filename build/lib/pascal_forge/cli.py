"""The `pascal-forge` command: a thin layer over the library modules."""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from rich.console import Console

from . import __version__
from .build.engine import (
    DEFAULT_SOURCE_CHANNELS,
    BuildOptions,
    build_channel,
    prepare_channel,
    select_builds,
)
from .build.preflight import run_preflight
from .channel.condarc import channel_snippets, is_channel_name, resolve_channel
from .channel.doctor import diagnose, probe
from .channel.solve import (
    PRIORITIES,
    System,
    built_channel,
    installed_records,
    requested_specs,
    solve,
)
from .ci.rerender import rerender, stale_files, write
from .console import (
    closing_message,
    dry_run_table,
    expensive_builds_table,
    log_progress_to_stderr,
    path_label,
    plan_table,
    print_error,
    reporter_for,
    solution_table,
    stdout_console,
    summary_table,
)
from .defaults import CHANNEL_DIR, PLATFORM, RECIPES_DIR, SOURCE_CHANNEL, VARIANT_CONFIG
from .errors import PascalForgeError
from .recipes.patches import check_recipe_patches, patch_check_targets
from .recipes.plan import Plan, make_plan
from .recipes.planned import planned_channel
from .recipes.recipe import discover_recipes, shipped_names


def main(argv: list[str] | None = None) -> int:
    try:
        # Parsing builds the whole parser, long enough for a Ctrl-C to land in it.
        args = _parser().parse_args(argv)
        log_progress_to_stderr()
        return args.handler(args)
    except PascalForgeError as exc:
        print_error(str(exc))
        return 2
    except KeyboardInterrupt:
        print_error("interrupted (Ctrl-C); run the command again to finish")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pascal-forge",
        description="Build a conda channel of triton, pytorch and vLLM for Pascal GPUs (sm_60/sm_61).",
    )
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser("plan", help="render every recipe for every variant and print the build order")
    _add_plan_arguments(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=_run_plan)

    _add_check_patches_command(commands)
    _add_bump_command(commands)
    _add_compile_suite_command(commands)
    _add_rerender_command(commands)
    _add_solve_command(commands)
    _add_doctor_command(commands)
    _add_channel_config_command(commands)
    _add_bench_command(commands)
    _add_build_command(commands)
    _add_mirror_command(commands)
    _add_publish_command(commands)
    return parser


def version_line() -> str:
    """pascal-forge's version and the engines it drives, which decide what a build does."""
    engines = []
    for distribution in ("py-rattler-build", "py-rattler"):
        try:
            engines.append(f"{distribution} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            engines.append(f"{distribution} not installed")
    return f"pascal-forge {__version__} ({', '.join(engines)})"


def _add_rerender_command(commands: argparse._SubParsersAction) -> None:
    rerender_parser = commands.add_parser(
        "rerender",
        help="regenerate .ci_support/ and the CI workflow from conda_build_config.yaml and conda-forge.yml",
    )
    rerender_parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    rerender_parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 naming each generated file that is stale"
    )
    rerender_parser.set_defaults(handler=_run_rerender)


def _run_rerender(args: argparse.Namespace) -> int:
    rendered = rerender(args.root)
    for notice in rendered.notices:
        print(f"note: {notice}", file=sys.stderr)
    if args.check:
        problems = stale_files(args.root, rendered)
        for problem in problems:
            print(f"stale: {problem}")
        if problems:
            print("run `pascal-forge rerender` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(rendered.files)} generated files are up to date")
        return 0
    changed = write(args.root, rendered)
    for relative in changed:
        print(f"rerendered {relative}")
    if not changed:
        print(f"{len(rendered.files)} generated files were already up to date")
    return 0


def _add_check_patches_command(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "check-patches",
        help="apply each recipe's patch series, without fuzz, to the released upstream files",
    )
    check.add_argument("names", nargs="*", help="recipes to check (default: all)")
    _add_recipe_arguments(check)
    check.set_defaults(handler=_run_check_patches)


def _run_check_patches(args: argparse.Namespace) -> int:
    recipes = [r for r in discover_recipes(args.recipes) if not args.names or r.name in args.names]
    unknown = set(args.names) - {r.name for r in recipes}
    if unknown:
        raise PascalForgeError(f"no recipe named {', '.join(sorted(unknown))} in {args.recipes}")
    for recipe in recipes:
        for version, applied in check_recipe_patches(recipe, args.variant_config).items():
            print(f"{recipe.name} {version}: {applied} patch(es) apply without fuzz")
    return 0


def _add_bump_command(commands: argparse._SubParsersAction) -> None:
    bump = commands.add_parser(
        "bump",
        help="check (or add) a new upstream version: apply the newest patch series to it and report",
    )
    bump.add_argument("recipe", help="the recipe to bump, e.g. vllm")
    bump.add_argument("version", nargs="?", help="the new version (default: the newest release upstream)")
    bump.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 0 if the series applies whole, 1 if a patch needs work, "
        "3 if the new release has no file to check the series against",
    )
    bump.add_argument("--report", type=Path, metavar="FILE", help="write the report as Markdown here")
    bump.add_argument(
        "--recipes", type=Path, default=Path(RECIPES_DIR), help="recipe folder (default: recipes/)"
    )
    bump.set_defaults(handler=_run_bump)


def _run_bump(args: argparse.Namespace) -> int:
    from .bump.check import UNCHECKABLE_EXIT, NothingToBump, UncheckableRelease, check_bump
    from .bump.report import terminal_view, to_markdown, uncheckable_markdown
    from .bump.write import write_bump

    try:
        report = check_bump(args.recipes, args.recipe, args.version)
    except NothingToBump as exc:
        print(exc)
        return 0
    except UncheckableRelease as exc:
        print(exc)
        if args.report:
            args.report.write_text(uncheckable_markdown(exc), encoding="utf-8")
        return UNCHECKABLE_EXIT
    written = None if args.check else write_bump(args.recipes, report)
    stdout_console().print(terminal_view(report))
    for item in written or []:
        print(item)
    if args.report:
        args.report.write_text(to_markdown(report, written=written), encoding="utf-8")
    return 1 if report.needs_work else 0


def _add_compile_suite_command(commands: argparse._SubParsersAction) -> None:
    suite = commands.add_parser(
        "compile-suite",
        help="compile the Pascal kernel suite for sm_60/sm_61 with the stock and the patched triton wheel",
    )
    _add_recipe_arguments(suite)
    suite.add_argument(
        "--capability",
        type=int,
        action="append",
        help="compute capability (default: those of the variant config's cuda_arch_list)",
    )
    suite.add_argument("--match", default="", help="only kernels whose name contains this text")
    suite.add_argument(
        "--triton-version",
        action="append",
        metavar="VERSION",
        help="triton release to compile with (repeatable; default: every version of the recipe)",
    )
    suite.add_argument("--ptx-dir", type=Path, help="write the patched tree's PTX here")
    suite.add_argument(
        "--ptxas",
        type=Path,
        help="CUDA 12 ptxas to compile with, e.g. cuda-nvcc-tools' (default: the one in the wheel)",
    )
    suite.set_defaults(handler=_run_compile_suite)


def _run_compile_suite(args: argparse.Namespace) -> int:
    from .checks.triton.suite import run_stock_and_patched
    from .checks.triton.table import format_table
    from .pascal import capabilities as pascal_capabilities
    from .recipes.variants import arch_list
    from .upstream.artifacts import default_cache_dir

    recipe = next((r for r in discover_recipes(args.recipes) if r.name == "triton"), None)
    if recipe is None:
        raise PascalForgeError(f"no triton recipe in {args.recipes}")
    capabilities = args.capability or list(pascal_capabilities(arch_list(args.variant_config)))
    versions = args.triton_version or list(patch_check_targets(recipe))
    all_expected = True
    for version in versions:
        runs = run_stock_and_patched(
            recipe,
            args.variant_config,
            default_cache_dir().parent / "pascal-kernels",
            version,
            capabilities,
            args.match,
            args.ptx_dir,
            args.ptxas,
        )
        print(f"triton {version}")
        print(format_table(runs, capabilities))
        all_expected &= all(result.as_expected for result in runs[1].results)
    return 0 if all_expected else 1


def _add_build_command(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser(
        "build", help="build every recipe in dependency order into the channel (skips what it holds)"
    )
    _add_plan_arguments(build)
    build.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="build only this package or recipe (repeatable)",
    )
    build.add_argument(
        "--up-to",
        action="append",
        default=[],
        metavar="NAME",
        help="build this package or recipe and what it needs (repeatable)",
    )
    build.add_argument("--force", action="store_true", help="rebuild packages the channel already has")
    build.add_argument(
        "--dry-run",
        action="store_true",
        help="print the ordered plan, what would be built and the preflight's findings; build nothing",
    )
    build.add_argument(
        "--source-channel",
        action="append",
        default=[],
        metavar="URL",
        help="channel or mirror for dependencies, after the target one (repeatable; default: conda-forge)",
    )
    build.add_argument(
        "--log-dir", type=Path, help="one log file per build (default: build-logs/ next to the channel)"
    )
    build.add_argument(
        "--work-dir", type=Path, help="rattler-build's work folder (default: build-work/ next to the channel)"
    )
    build.add_argument(
        "--test",
        choices=("native", "skip"),
        default="native",
        help="run each recipe's tests after its build (default: native)",
    )
    build.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the checks before building: can every environment be solved, are the source "
        "channels and sources reachable, is there disk space, no CUDA 13",
    )
    build.set_defaults(handler=_run_build)


def _run_build(args: argparse.Namespace) -> int:
    console = stdout_console()
    options = BuildOptions.for_channel(
        args.channel,
        work_dir=args.work_dir,
        log_dir=args.log_dir,
        source_channels=tuple(args.source_channel) or DEFAULT_SOURCE_CHANNELS,
        force=args.force,
        test_strategy=args.test,
    )
    plan = _plan_from(args)
    selected = select_builds(plan, args.only, args.up_to)
    if args.dry_run:
        console.print(dry_run_table(plan, selected, force=args.force))
        if args.no_preflight or _preflight_passes(console, plan, selected, options):
            return 0
        console.print(
            "preflight found problems (listed above): the build would stop before building anything"
        )
        return 1
    prepare_channel(args.channel)
    if not args.no_preflight and not _preflight_passes(console, plan, selected, options):
        raise PascalForgeError("preflight found problems (listed above); nothing was built")
    with reporter_for(console) as reporter:
        report = build_channel(plan, selected, options, reporter)
    console.print(summary_table(report))
    console.print(closing_message(report), highlight=False, soft_wrap=True)
    return 0 if report.ok else 1


def _preflight_passes(console: Console, plan: Plan, selected: list, options: BuildOptions) -> bool:
    """Run every pre-build check and print what it found; False when an error would stop the build."""
    findings, summary = run_preflight(plan, selected, options)
    for finding in findings:
        console.print(
            f"preflight {finding.severity}: {finding.message}", markup=False, highlight=False, soft_wrap=True
        )
    console.print(summary, markup=False, highlight=False)
    return not any(f.severity == "error" for f in findings)


def _add_publish_command(commands: argparse._SubParsersAction) -> None:
    publish = commands.add_parser(
        "publish",
        help="upload the channel's packages (prefix.dev, anaconda.org, quetz, artifactory, S3, a directory)",
    )
    publish.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="a directory, s3://bucket/prefix, https://prefix.dev/CHANNEL, "
        "https://anaconda.org/OWNER[/LABEL], quetz://HOST/CHANNEL or artifactory://HOST/CHANNEL",
    )
    publish.add_argument(
        "--channel",
        type=Path,
        default=Path(CHANNEL_DIR),
        help=f"local channel to publish (default: ./{CHANNEL_DIR})",
    )
    publish.add_argument("--read-url", help="the target channel's download URL, to compare with its files")
    publish.add_argument("--s3-endpoint-url", help="S3 endpoint (default: $AWS_ENDPOINT_URL or AWS)")
    publish.add_argument("--dry-run", action="store_true", help="compare and report, upload nothing")
    publish.set_defaults(handler=_run_publish)


def _run_publish(args: argparse.Namespace) -> int:
    from .channel.mirror import S3Settings
    from .channel.publish import parse_target, publish_channel

    target = parse_target(args.to)
    report = publish_channel(
        args.channel,
        args.to,
        read_url=args.read_url,
        s3=S3Settings(endpoint_url=args.s3_endpoint_url),
        dry_run=args.dry_run,
    )
    verb = "would upload" if args.dry_run else "uploaded"
    for label in report.uploaded:
        print(f"{verb} {label}")
    skipped = len(report.skipped)
    print(
        f"{target.description}: {verb} {len(report.uploaded)} package(s); {skipped} already there, identical"
    )
    return 0


def _add_mirror_command(commands: argparse._SubParsersAction) -> None:
    mirror = commands.add_parser(
        "mirror",
        help="copy a channel (http(s)://, file://, s3://) to a directory or S3, checking every file",
    )
    mirror.add_argument(
        "source", help="channel URL: http(s)://..., file:///..., s3://bucket/prefix or a path"
    )
    mirror.add_argument("destination", help="directory, file:///... or s3://bucket/prefix")
    mirror.add_argument("--subdir", action="append", default=[], help="mirror only this subdir (repeatable)")
    mirror.add_argument(
        "--closure",
        action="append",
        default=[],
        metavar="SPEC",
        help="mirror only what installing SPEC needs, e.g. vllm-pascal (repeatable)",
    )
    mirror.add_argument(
        "--with",
        dest="with_channels",
        action="append",
        default=[],
        metavar="URL",
        help="with --closure: also solve against this channel (e.g. a conda-forge mirror) and copy "
        "what the solution takes from it (repeatable, lower priority than SOURCE)",
    )
    mirror.add_argument("--cuda", help="with --closure: the machine's CUDA driver version, e.g. 12.8")
    mirror.add_argument("--python", help="with --closure: the Python version to install, e.g. 3.12")
    mirror.add_argument("--platform", default=PLATFORM, help="with --closure: target platform")
    mirror.add_argument("--jobs", "-j", type=int, default=4, help="parallel downloads (default: 4)")
    mirror.add_argument(
        "--verify-existing", action="store_true", help="hash files already in the destination too"
    )
    mirror.add_argument("--s3-endpoint-url", help="S3 endpoint (default: $AWS_ENDPOINT_URL or AWS)")
    mirror.add_argument(
        "--staging", type=Path, help="local folder for partial downloads to an S3 destination"
    )
    mirror.set_defaults(handler=_run_mirror)


def _run_mirror(args: argparse.Namespace) -> int:
    from .channel.mirror import ClosureRequest, MirrorInterrupted, RichProgress, S3Settings, mirror_channel

    if (args.cuda or args.python) and not args.closure:
        raise PascalForgeError("--cuda and --python choose what --closure SPEC installs; add --closure")
    if args.destination.startswith("s3://"):
        from .channel.publish import find_credential, parse_target

        # Named before anything is read, the way publish names it: boto3 alone says only
        # "Unable to locate credentials", and only after the source has been read.
        find_credential(parse_target(args.destination))
    closure = (
        ClosureRequest(args.closure, platform=args.platform, cuda=args.cuda, python=args.python)
        if args.closure
        else None
    )
    try:
        with RichProgress() as progress:
            report = mirror_channel(
                args.source,
                args.destination,
                subdirs=args.subdir,
                closure=closure,
                with_channels=args.with_channels,
                jobs=args.jobs,
                progress=progress,
                s3=S3Settings(endpoint_url=args.s3_endpoint_url),
                staging=args.staging,
                verify_existing=args.verify_existing,
            )
    except KeyboardInterrupt:
        raise MirrorInterrupted("interrupted", ["stopped before any download began"]) from None
    megabytes = report.fetched_bytes / 1e6
    print(
        f"{args.destination}: fetched {len(report.fetched)} file(s), {megabytes:.1f} MB in "
        f"{report.seconds:.1f} s ({report.bytes_per_second / 1e6:.1f} MB/s); "
        f"{report.kept} unchanged; subdirs {', '.join(report.subdirs)}"
    )
    return 0


def _add_solve_command(commands: argparse._SubParsersAction) -> None:
    solve_parser = commands.add_parser(
        "solve",
        help="dry-run an install with rattler's solver: what would be installed, ours marked",
    )
    solve_parser.add_argument("specs", nargs="+", metavar="SPEC", help="what to install, e.g. vllm-pascal")
    solve_parser.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="URL",
        help="a channel after ours, by name, URL or path (repeatable; default: conda-forge)",
    )
    solve_parser.add_argument(
        "--ours", type=Path, default=Path(CHANNEL_DIR), help="our channel directory (default: ./channel)"
    )
    solve_parser.add_argument(
        "--planned", action="store_true", help="take our records from the build plan, not from --ours"
    )
    solve_parser.add_argument(
        "--recipes",
        type=Path,
        default=Path(RECIPES_DIR),
        help="recipe folder: the packages that must all be ours, and with --planned their records",
    )
    solve_parser.add_argument("--variant-config", "-m", type=Path, default=Path(VARIANT_CONFIG))
    solve_parser.add_argument(
        "--cuda", help="the driver's CUDA version (__cuda), e.g. 12.8; default: detected"
    )
    solve_parser.add_argument("--cuda-arch", help="the GPUs' compute capability (__cuda_arch), e.g. 6.1")
    solve_parser.add_argument("--python", help="Python version for the environment, e.g. 3.12")
    solve_parser.add_argument(
        "--priority", choices=sorted(PRIORITIES), default="strict", help="channel priority (default: strict)"
    )
    solve_parser.add_argument(
        "--prefix", type=Path, help="an existing environment to change: print the one transaction"
    )
    solve_parser.add_argument("--json", action="store_true", help="print [{name, version, build, channel}]")
    solve_parser.set_defaults(handler=_run_solve)


def _run_solve(args: argparse.Namespace) -> int:
    system = System.detect(cuda=args.cuda, cuda_arch=args.cuda_arch)
    family = shipped_names(args.recipes)
    with tempfile.TemporaryDirectory(prefix="pascal-forge-planned-") as scratch:
        if args.planned:
            ours = planned_channel(args.recipes, args.variant_config, Path(scratch))
            # The scratch folder is gone once the table prints: name where the records came from.
            ours_label = f"planned from {path_label(args.recipes)}"
        else:
            ours = built_channel(args.ours)
            ours_label = path_label(args.ours)
        others = args.channel or [SOURCE_CHANNEL]
        channels = [str(ours), *others]
        installed = installed_records(args.prefix) if args.prefix else []
        specs = [*args.specs, *requested_specs(installed)]
        solution = solve(
            specs,
            channels,
            system,
            priority=args.priority,
            python=args.python,
            installed=installed,
            labels=[ours_label, *others],
        )
    if args.json:
        print(solution.to_json())
    else:
        stdout_console().print(solution_table(solution, system))
        for change in solution.changes(installed) if args.prefix else []:
            print(change)
    solution.check_consistent(family)
    return 0


def _add_doctor_command(commands: argparse._SubParsersAction) -> None:
    doctor_parser = commands.add_parser(
        "doctor", help="does this channel serve this machine's GPUs and driver? prints the install command"
    )
    doctor_parser.add_argument(
        "--channel",
        default="pascal",
        help="our channel's name or URL in the printed command (default: pascal)",
    )
    doctor_parser.set_defaults(handler=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    hardware = probe()
    notes: list[str] = []
    channel = args.channel
    if is_channel_name(channel):
        resolution = resolve_channel(channel)
        if resolution.public_default:
            notes.append(
                f"warning: {resolution.describe()}. Make the name yours: "
                f"`pascal-forge channel-config https://YOUR-HOST/{channel}` prints the .condarc and pixi "
                "settings; or install with -c and the channel's URL"
            )
            channel = "<URL of your channel>"
        else:
            notes.append(resolution.describe())
    verdict = diagnose(hardware, channel)
    print(f"read with: {hardware.source}")
    for line in (*verdict.findings, *(f"warning: {w}" for w in verdict.warnings), *notes):
        print(f"- {line}")
    if verdict.command:
        print(f"\ninstall with:\n  {verdict.command}")
        return 0
    return 1


def _add_channel_config_command(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser(
        "channel-config",
        help="print the .condarc and pixi settings that make `-c pascal` mean your channel's URL",
    )
    config.add_argument("url", help="where your channel is served, e.g. https://host/pascal or /srv/pascal")
    config.add_argument("--name", default="pascal", help="the channel name users type (default: pascal)")
    config.set_defaults(handler=_run_channel_config)


def _run_channel_config(args: argparse.Namespace) -> int:
    print(channel_snippets(args.url, args.name).text())
    return 0


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="run vLLM's start-up and serving benchmarks on this GPU and print a report to paste",
    )
    bench.add_argument("model", type=Path, help="a local model folder (with its config.json)")
    bench.add_argument("--tp", type=int, default=1, help="tensor-parallel size (default: 1)")
    bench.add_argument("--work-dir", type=Path, default=Path("bench-results"), help="logs and JSON results")
    bench.add_argument("--port", type=int, default=8765, help="port of the local vllm serve (default: 8765)")
    bench.add_argument("--vllm", default="vllm", help="the vllm command (default: vllm on PATH)")
    bench.add_argument(
        "--report-from",
        type=Path,
        help="print the report from a finished run's work dir (bench-result.json) without running",
    )
    bench.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from .checks.bench import bench_report, load_result, run_bench, save_result

    if args.report_from:
        result = load_result(args.report_from / "bench-result.json")
    else:
        result = run_bench(args.model, args.tp, args.work_dir, vllm=args.vllm, port=args.port)
        save_result(result, args.work_dir / "bench-result.json")
    print(bench_report(result, args.model))
    return 0


def _add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipes", type=Path, default=Path(RECIPES_DIR), help="recipe folder (default: recipes/)"
    )
    parser.add_argument(
        "--variant-config",
        "-m",
        type=Path,
        default=Path(VARIANT_CONFIG),
        help="variant matrix (default: conda_build_config.yaml)",
    )


def _add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    _add_recipe_arguments(parser)
    parser.add_argument(
        "--channel",
        type=Path,
        default=Path(CHANNEL_DIR),
        help=f"target channel directory (default: ./{CHANNEL_DIR})",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep only variants where KEY has VALUE, e.g. cuda_compiler_version=12.9 (repeatable: "
        "one key given twice keeps both values)",
    )


def _overrides(pairs: list[str]) -> dict[str, list[str]]:
    """--variant KEY=VALUE options; a key given twice keeps the variants of both values."""
    overrides: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise PascalForgeError(f"--variant {pair!r}: expected KEY=VALUE, e.g. python=3.12")
        overrides.setdefault(key, [])
        if value not in overrides[key]:
            overrides[key].append(value)
    return overrides


def _plan_from(args: argparse.Namespace) -> Plan:
    return make_plan(args.recipes, args.variant_config, args.channel, overrides=_overrides(args.variant))


def _run_plan(args: argparse.Namespace) -> int:
    plan = _plan_from(args)
    if args.json:
        print(plan.to_json())
        return 0
    stdout_console().print(plan_table(plan))
    stdout_console().print(expensive_builds_table(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
