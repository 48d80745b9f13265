"""The solvability preflight of `pascal-forge build`: every planned environment is solved with
rattler's real solver against real channels on disk or served on 127.0.0.1, before anything
is built. Each test has a twin that passes where the first one fails."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.build import build_argv, fixture_recipes, offline_mirror, run_build, serving

from pascal_forge.build.environments import environments_of
from pascal_forge.build.reachability import failed_channel_note, is_channel_error
from pascal_forge.build.solvability import check_solvable
from pascal_forge.channel.solve import write_channel
from pascal_forge.recipes.plan import make_plan

SUBDIR = "linux-64"
VARIANTS = """\
cuda_compiler_version: ["12.6", "12.9"]
python: ["3.11.* *_cpython", "3.12.* *_cpython"]
cuda_arch_list: ["6.0;6.1"]
"""
# Shaped like recipes/vllm: a staging output does the C++ build once, the Python package
# inherits it, needs an exact xgrammar in host and run, and has a Python test.
RECIPE = """\
context:
  version: "1.0.0"
  pascal_string: cuda${{ cuda_compiler_version | version_to_buildstring }}_pascal
recipe:
  name: needs-xgrammar-split
  version: ${{ version }}
outputs:
  - staging:
      name: needs-xgrammar-stage
    requirements:
      host:
        - libstage-dev
    build:
      script:
        - echo stage
  - package:
      name: needs-xgrammar
    inherit: needs-xgrammar-stage
    build:
      string: ${{ pascal_string }}_py${{ python | version_to_buildstring }}_h${{ hash }}_0
      script:
        - echo ${{ cuda_compiler_version }}
    requirements:
      host:
        - python
        - xgrammar ==0.1.29
      run:
        - python
        - xgrammar ==0.1.29
    tests:
      - python:
          imports: [needs_xgrammar]
"""
PYTHONS = {"3.11": "3.11.14", "3.12": "3.12.12"}


def _record(name: str, version: str, build: str, depends: list[str], subdir: str = SUBDIR) -> dict[str, Any]:
    record = {"name": name, "version": version, "build": build, "build_number": 0, "depends": depends}
    record.update({"subdir": subdir, "timestamp": 1_765_000_000_000, "license": "MIT"})
    if subdir == "noarch":
        record["noarch"] = "python"
    return record


def upstream(directory: Path, *, xgrammar: tuple[str, ...], libstage: bool = True) -> Path:
    """A conda-forge-shaped channel: python with its python_abi, pip, xgrammar versions."""
    records = []
    for short, full in PYTHONS.items():
        nodot = short.replace(".", "")
        records.append(_record("python", full, "h0123456_0_cpython", ["__glibc >=2.17,<3.0.a0"]))
        records.append(_record("python_abi", short, f"8_cp{nodot}", []))
    records.append(_record("pip", "25.3", "pyh8b19718_0", ["python >=3.10"], subdir="noarch"))
    records += [_record("xgrammar", v, "pyhd8ed1ab_0", ["python >=3.10"], subdir="noarch") for v in xgrammar]
    if libstage:
        records.append(_record("libstage-dev", "1.0", "h0000000_0", []))
    repodata: dict[str, dict[str, Any]] = {
        s: {"info": {"subdir": s}, "packages": {}, "packages.conda": {}} for s in (SUBDIR, "noarch")
    }
    for r in records:
        repodata[r["subdir"]]["packages.conda"][f"{r['name']}-{r['version']}-{r['build']}.conda"] = r
    return write_channel(repodata, directory)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    recipes = tmp_path / "recipes"
    (recipes / "needs-xgrammar").mkdir(parents=True)
    (recipes / "needs-xgrammar" / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    variants = tmp_path / "conda_build_config.yaml"
    variants.write_text(VARIANTS, encoding="utf-8")
    return recipes, variants


def _check(project: tuple[Path, Path], channel: Path, sources: list[str], **kwargs: Any):
    plan = make_plan(*project, channel)
    assert len(plan.builds) == 4
    return check_solvable(plan, plan.builds, channel, sources, **kwargs)


def test_every_environment_is_solved_including_the_staging_outputs(project, tmp_path):
    plan = make_plan(*project, tmp_path / "channel")
    labels = [env.label for env in environments_of(plan.builds[0])]
    assert labels == ["staging needs-xgrammar-stage host", "host", "run", "test"]
    host = next(e for e in environments_of(plan.builds[0]) if e.label == "host")
    # The variant applies to a bare `python`, as rattler-build applies it.
    assert "python 3.11.* *_cpython" in host.specs
    assert host.cuda is None  # a build machine needs no GPU
    test = next(e for e in environments_of(plan.builds[0]) if e.label == "test")
    assert test.cuda == "12.6"
    assert test.specs[0] == f"needs-xgrammar ==1.0.0 {plan.builds[0].output.build_string}"


def test_a_spec_no_channel_has_is_named_with_the_versions_the_channels_have(project, tmp_path):
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.23", "0.1.32"), libstage=False)
    report = _check(project, tmp_path / "channel", [str(channel)])
    findings = report.findings()
    print("\n".join(f"{f.severity}: {f.message}" for f in findings), "\n" + report.summary)
    assert [f.severity for f in findings] == ["error", "error"]
    staging, xgrammar = (f.message for f in findings)
    # Four variants, one line each problem; the output is named with its build string.
    assert staging.startswith("needs-xgrammar 1.0.0 cuda126_pascal_py311_h")
    assert "(cuda 12.6, python 3.11) and 3 more (needs-xgrammar x3)" in staging
    assert staging.endswith(
        "staging needs-xgrammar-stage host: libstage-dev: no channel has a package named libstage-dev"
    )
    first, *tree = xgrammar.splitlines()
    assert first.endswith(
        f"host, run, test: xgrammar ==0.1.29: no channel has it; {channel} has 0.1.23, 0.1.32"
    )
    # The test environment needs it through the package: the solver's tree, indented.
    assert tree[0] == "  the solver says:"
    assert all(line.startswith("    ") for line in tree[1:]) and len(tree) >= 3
    assert "xgrammar ==0.1.29, for which no candidates were found" in xgrammar
    assert report.environments == 16 and report.distinct == 11  # one staging, 2 host, 4 run, 4 test


def test_twin_the_same_plan_against_a_channel_that_has_it_passes(project, tmp_path):
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.23", "0.1.29", "0.1.32"))
    report = _check(project, tmp_path / "channel", [str(channel)])
    assert report.findings() == []
    assert report.summary.endswith("all solvable")


def test_strict_priority_hiding_a_match_is_said(project, tmp_path):
    """Our channel has an xgrammar, so strict priority never looks at conda-forge's for what
    the package needs (rattler's solver still takes it where host or run asks for it directly)."""
    ours = tmp_path / "channel"
    upstream(ours, xgrammar=("0.1.0",))
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.29",))
    messages = [f.message for f in _check(project, ours, [str(channel)]).findings()]
    assert len(messages) == 1
    assert " test: xgrammar ==0.1.29: " in messages[0]
    assert f"{channel} has a match, but strict channel priority takes xgrammar only from" in messages[0]


@contextmanager
def status_server(code: int) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that answers every request with `code`."""
    script = (
        "import sys\n"
        "from http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        f"    def do_GET(self):\n        self.send_response({code}); self.end_headers()\n"
        "    do_HEAD = do_GET\n"
        "    def log_message(self, *args): pass\n"
        "s = HTTPServer(('127.0.0.1', 0), H)\n"
        "print(s.server_address[1], flush=True)\n"
        "s.serve_forever()\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{int(server.stdout.readline())}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What each kind of unreachable channel is reported with.
UNREACHABLE = {
    "closed port": "Connection refused",
    "404": "404 Not Found",
    "500": "500 Internal Server Error",
    "silent": "no answer within 2 s",
    # .invalid never resolves (RFC 6761).
    "dns": "DNS lookup failed",
}


@contextmanager
def _unreachable_url(kind: str) -> Iterator[str]:
    if kind == "closed port":
        yield f"http://127.0.0.1:{_closed_port()}"
    elif kind == "dns":
        yield "http://pascal-forge-test.invalid"
    elif kind == "silent":
        # Accepts connections (the kernel completes them) and never answers.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    else:
        with status_server(int(kind)) as url:
            yield url


@pytest.mark.parametrize("kind", list(UNREACHABLE))
def test_an_unreachable_source_channel_is_one_line_naming_the_url(project, tmp_path, kind):
    with _unreachable_url(kind) as base:
        url = base.replace("http://", "http://mirror-user:s3cret@") + "/conda-forge"
        report = _check(project, tmp_path / "channel", [url], timeout=2)
    findings = report.findings()
    assert len(findings) == 1 and findings[0].severity == "error"
    line = findings[0].message
    print(line)
    assert "\n" not in line
    shown = base.replace("http://", "http://***@")
    assert line.startswith(f"source channel {shown}/conda-forge is unreachable: "), line
    assert UNREACHABLE[kind] in line
    assert "s3cret" not in line and "mirror-user" not in line
    assert "Failed to resolve dependencies" not in line
    assert report.distinct and not report.failures and report.solved == 0  # nothing was solved


def test_twin_a_served_channel_is_reachable_and_solved(project, tmp_path):
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.29",))
    with serving(channel) as url:
        report = _check(project, tmp_path / "channel", [url], timeout=10)
    assert report.unreachable == () and report.findings() == []


def _argv(project: tuple[Path, Path], tmp_path: Path, source: str, *extra: str) -> list[str]:
    recipes, variants = project
    return [
        "build",
        "--recipes",
        str(recipes),
        "--variant-config",
        str(variants),
        "--channel",
        str(tmp_path / "channel"),
        "--source-channel",
        source,
        "--variant",
        "cuda_compiler_version=12.9",
        *extra,
    ]


def test_dry_run_runs_the_preflight_and_shows_its_result(project, tmp_path, capsys):
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.23", "0.1.32"))
    code, out = run_build(capsys, *_argv(project, tmp_path, str(channel), "--dry-run"))
    assert code == 1, out
    assert "dry run: 2 of 2 packages selected" in out
    assert "preflight error: needs-xgrammar 1.0.0 cuda129_pascal_py311_h" in out
    assert "xgrammar ==0.1.29: no channel has it" in out
    assert "solvability: 8 environments of 2 package(s)" in out
    assert "the build would stop before building anything" in out
    assert not (tmp_path / "channel").exists()  # a dry run still writes nothing

    # Twin: the channel that has it.
    good = upstream(tmp_path / "good", xgrammar=("0.1.29",))
    code, out = run_build(capsys, *_argv(project, tmp_path, str(good), "--dry-run"))
    assert code == 0, out
    assert "preflight" not in out and "all solvable" in out


def test_no_preflight_skips_it(project, tmp_path, capsys):
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.23", "0.1.32"))
    code, out = run_build(capsys, *_argv(project, tmp_path, str(channel), "--dry-run", "--no-preflight"))
    assert code == 0, out
    assert "solvability:" not in out and "preflight error" not in out


def test_build_stops_before_building_and_twin_no_preflight_reaches_rattler_build(project, tmp_path, capsys):
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.23", "0.1.32"))
    code, out = run_build(capsys, *_argv(project, tmp_path, str(channel)))
    assert code == 2, out
    assert "nothing was built" in out
    assert not (tmp_path / "build-logs").exists()

    code, out = run_build(capsys, *_argv(project, tmp_path, str(channel), "--no-preflight"))
    assert code == 1, out
    assert "FAILED needs-xgrammar" in out
    assert (tmp_path / "build-logs").is_dir()


def test_the_unreachable_channel_is_named_before_anything_starts(tmp_path, capsys):
    recipes = fixture_recipes(tmp_path)
    url = f"http://user:secret@127.0.0.1:{_closed_port()}/chan"
    code, out = run_build(capsys, *build_argv(recipes, tmp_path / "channel", offline_mirror(tmp_path)))
    assert code == 0, out  # twin: the same chain with a reachable mirror builds
    argv = build_argv(recipes, tmp_path / "other", offline_mirror(tmp_path))
    argv[argv.index("--source-channel") + 1] = url
    code, out = run_build(
        capsys, *argv, "--work-dir", str(tmp_path / "w2"), "--log-dir", str(tmp_path / "l2")
    )
    assert code == 2, out
    lines = [line for line in out.splitlines() if "unreachable" in line]
    assert len(lines) == 2, out  # the finding and the summary that nothing was solved
    assert lines[0].startswith("preflight error: source channel http://***@127.0.0.1:")
    assert "Connection refused" in lines[0] and "secret" not in out
    assert "Failed to resolve dependencies" not in out
    assert not (tmp_path / "l2").exists()


def test_a_failed_build_names_the_channel_that_could_not_be_read(tmp_path, capsys):
    recipes = fixture_recipes(tmp_path)
    url = f"http://user:secret@127.0.0.1:{_closed_port()}/chan"
    argv = build_argv(recipes, tmp_path / "channel", offline_mirror(tmp_path), "--no-preflight")
    argv[argv.index("--source-channel") + 1] = url
    code, out = run_build(capsys, *argv, "--variant", "cuda_compiler_version=12.9")
    assert code == 1, out
    # rattler-build's own words (which depend on the engine path the output takes) ...
    assert "FAILED libchain" in out
    closing = out.rstrip().splitlines()[-1]
    # ... and the summary's last line names the URL.
    assert closing.startswith("fetching or solving failed: channel http://***@127.0.0.1:")
    assert closing.endswith("/chan is unreachable: Connection refused (os error 111)")
    assert "secret" not in out
    # Twin: a failure of the build script itself is no channel's fault.
    assert not is_channel_error("Script failed with status 3")
    assert failed_channel_note("Script failed with status 3", [url]) == ""


def test_a_version_there_with_other_builds_says_the_build_string_is_the_problem(tmp_path):
    """`--only vllm` without our pytorch: conda-forge has pytorch 2.9.1, but not a _pascal_ build."""
    from support.solve import UPSTREAM

    recipes = tmp_path / "recipes" / "needs-torch"
    recipes.mkdir(parents=True)
    (recipes / "recipe.yaml").write_text(
        'package: {name: needs-torch, version: "1.0"}\n'
        "build: {string: cuda129_pascal_0, script: [echo]}\n"
        'requirements: {host: ["pytorch ==2.9.1 cuda129_pascal_*"]}\n',
        encoding="utf-8",
    )
    variants = tmp_path / "cbc.yaml"
    variants.write_text('cuda_compiler_version: ["12.9"]\ncuda_arch_list: ["6.0;6.1"]\n', encoding="utf-8")
    plan = make_plan(recipes.parent, variants, tmp_path / "channel")
    [finding] = check_solvable(plan, plan.builds, tmp_path / "channel", [str(UPSTREAM)]).findings()
    print(finding.message)
    assert (
        f"host: pytorch ==2.9.1 cuda129_pascal_*: no channel has it; {UPSTREAM} has 2.9.1, 2.10.0, 2.13.0 ("
        in finding.message
    )
    assert "(==2.9.1 is there, but as builds cuda129_generic_" in finding.message
    assert finding.message.endswith("none matching cuda129_pascal_*)")

    # Twin: with our pytorch in the target channel the same plan solves.
    ours = tmp_path / "ours"
    record = _record("pytorch", "2.9.1", "cuda129_pascal_py312_h0000000_200", [])
    write_channel(
        {
            SUBDIR: {
                "info": {"subdir": SUBDIR},
                "packages": {},
                "packages.conda": {"pytorch-2.9.1-x.conda": record},
            },
            "noarch": {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}},
        },
        ours,
    )
    plan = make_plan(recipes.parent, variants, ours)
    assert check_solvable(plan, plan.builds, ours, [str(UPSTREAM)]).findings() == []


def test_a_target_channel_whose_index_is_broken_is_named_as_the_target(project, tmp_path):
    ours = tmp_path / "channel"
    (ours / "noarch").mkdir(parents=True)
    (ours / "noarch" / "repodata.json").write_text('{"packages": {"bad.conda": {}}}', encoding="utf-8")
    channel = upstream(tmp_path / "upstream", xgrammar=("0.1.29",))
    [finding] = _check(project, ours, [str(channel)]).findings()
    print(finding.message)
    assert finding.message.startswith(f"the target channel {ours} is unreachable: "), finding.message


def _build_section(readme: str) -> str:
    return readme.split("### Building the channel", 1)[1].split("\n### ", 1)[0]


def test_the_readme_documents_no_preflight_which_the_error_suggests():
    from support.repo import REPO

    assert "--no-preflight" in _build_section((REPO / "README.md").read_text(encoding="utf-8"))
    # Twin: the README before the preflight was documented (bdb6cd8) lacked it.
    before = subprocess.run(
        ["git", "-C", str(REPO), "show", "bdb6cd8:README.md"], capture_output=True, text=True, check=False
    )
    if before.returncode != 0:
        pytest.skip("this checkout lacks the history of README.md")
    assert "--no-preflight" not in _build_section(before.stdout)
