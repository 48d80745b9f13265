"""The first hour of an operator and of a Pascal owner (issue 18): each command a newcomer
types, with right and wrong arguments, answers with a line they can act on."""

from __future__ import annotations

import importlib
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rattler import Channel, ChannelConfig
from support.mirror import index_channel, synthesize_packages
from support.repo import RECIPES, REPO, VARIANT_CONFIG
from support.solve import UPSTREAM

from pascal_forge.channel.solve import SolveError, System, solve
from pascal_forge.ci.forge_config import ForgeConfigError, load_forge_config
from pascal_forge.cli import main
from pascal_forge.errors import VariantError
from pascal_forge.recipes.plan import make_plan
from pascal_forge.recipes.planned import planned_channel

NO_CHANNEL = Path("channel-not-built")


def _pythons(overrides: dict[str, list[str]]) -> set[str | None]:
    plan = make_plan(RECIPES, VARIANT_CONFIG, NO_CHANNEL, overrides=overrides)
    return {b.output.python for b in plan.builds}


# ----------------------------------------------------------------------------------- item 4: --variant


@pytest.mark.parametrize("pair", ["cuda_version=12.9", "foo=bar"])
def test_an_unknown_variant_key_is_refused_naming_the_matrix_keys(
    pair: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--variant", pair]) == 2
    err = capsys.readouterr().err
    key = pair.split("=")[0]
    assert f"no variant key '{key}'; the matrix has: " in err
    assert "cuda_compiler_version" in err and "python" in err


def test_a_repeated_variant_key_keeps_the_union_of_its_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert _pythons({"python": ["3.11", "3.12"]}) == {"3.11", "3.12", None}
    # Through the CLI too: the help says repeatable, so both values count.
    assert main(["plan", "--json", "--variant", "python=3.11", "--variant", "python=3.12"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["python"] for r in records} == {"3.11", "3.12", None}


def test_a_repeated_value_that_does_not_exist_is_named() -> None:
    with pytest.raises(VariantError, match=r"python has no value '3\.9'"):
        make_plan(RECIPES, VARIANT_CONFIG, NO_CHANNEL, overrides={"python": ["3.12", "3.9"]})


# ------------------------------------------------------------------------- item 5: publish --to


@pytest.mark.parametrize("target", ["ftp://host/chan", "s4://bucket/p", "gs://bucket", "quetz:/x"])
def test_publish_to_an_unknown_or_hostless_target_is_refused_without_a_traceback(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "--to", target, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {target}: ")
    assert "Traceback" not in err


def test_an_unknown_scheme_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--to", "gs://bucket/pascal", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "publish does not know the scheme gs://" in err
    for known in (
        "s3://",
        "https://prefix.dev/<channel>",
        "https://anaconda.org/<owner>[/<label>]",
        "quetz://",
    ):
        assert known in err


def test_an_anaconda_target_without_an_owner_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--to", "https://anaconda.org", "--dry-run"]) == 2
    assert "name the owner: an anaconda target is https://anaconda.org/<owner>[/<label>]" in (
        capsys.readouterr().err
    )


def test_a_path_that_looks_like_a_host_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--to", "example.org/mychan", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "looks like a server (example.org), not a directory" in err
    assert "./example.org/mychan for a local directory" in err
    assert not (tmp_path / "example.org").exists()


def test_a_relative_target_is_named_a_local_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    channel = tmp_path / "channel"
    synthesize_packages(channel, 1, 1024)
    index_channel(channel)
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--to", "copy", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"local directory {tmp_path / 'copy'}: would upload 1 package(s)" in out


# ---------------------------------------------------------------------- item 7: conda-forge.yml typos


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (("runs_on: ubuntu-24.04", "runs-on: ubuntu-24.04"), "pascal_forge.runs-on: not a setting"),
        (("upload_on_branch: main", "upload_on_branch: main\nbogus_key: 1"), "bogus_key: not a setting"),
        (("split_variants_by:", "split_variantz_by:"), "pascal_forge.split_variantz_by: not a setting"),
        (
            ("      sccache: true", "      sscache: true"),
            "pascal_forge.recipes.triton.sscache: not a setting",
        ),
    ],
)
def test_a_conda_forge_yml_typo_is_refused_with_the_key_named(
    edit: tuple[str, str], named: str, tmp_path: Path
) -> None:
    text = (REPO / "conda-forge.yml").read_text()
    assert edit[0] in text
    (tmp_path / "conda-forge.yml").write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ForgeConfigError, match=named):
        load_forge_config(tmp_path / "conda-forge.yml")


def test_a_typo_gets_the_key_it_most_likely_means(tmp_path: Path) -> None:
    text = (REPO / "conda-forge.yml").read_text().replace("runs_on: ubuntu-24.04", "runs-on: ubuntu-24.04")
    (tmp_path / "conda-forge.yml").write_text(text)
    with pytest.raises(ForgeConfigError, match=r"did you mean pascal_forge\.runs_on\?"):
        load_forge_config(tmp_path / "conda-forge.yml")


def test_the_committed_conda_forge_yml_has_no_unknown_key() -> None:
    load_forge_config(REPO / "conda-forge.yml")


# ------------------------------------------------------------------------- item 8: solve's blame


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(planned_channel(RECIPES, VARIANT_CONFIG, tmp_path_factory.mktemp("ours")))


def test_solve_blames_python_not_the_driver_for_a_python_the_channel_lacks(ours: str) -> None:
    with pytest.raises(SolveError) as caught:
        solve(["vllm-pascal"], [ours, str(UPSTREAM)], System(cuda=None, cuda_arch="6.1"), python="3.9")
    assert "no NVIDIA driver was seen" not in str(caught.value)
    assert "nothing installable for Python 3.9: drop --python or pick a Python the channel has" in str(
        caught.value
    )


def test_solve_still_blames_a_missing_driver_when_it_is_the_reason() -> None:
    # conda-forge's CUDA builds of pytorch depend on __cuda: without a driver nothing fits.
    with pytest.raises(SolveError, match="no NVIDIA driver was seen"):
        solve(["pytorch * cuda*"], [str(UPSTREAM)], System(cuda=None), python="3.12")


def test_solve_refuses_an_empty_channel_without_blaming_the_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for subdir in ("linux-64", "noarch"):
        (tmp_path / subdir).mkdir()
        (tmp_path / subdir / "repodata.json").write_text(json.dumps({"info": {"subdir": subdir}}))
    assert main(["solve", "vllm-pascal", "--ours", str(tmp_path), "--channel", str(UPSTREAM)]) == 2
    err = capsys.readouterr().err
    assert "is an empty channel (its index lists no package)" in err
    assert "driver" not in err


# ------------------------------------------------------------------ item 11: misleading errors


def test_target_platform_is_refused_as_a_platform_not_as_unlisted_patches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "--variant", "target_platform=linux-aarch64"]) == 2
    err = capsys.readouterr().err
    assert "the recipes build for linux-64 only" in err
    assert "patch" not in err


@pytest.mark.parametrize("command", [["plan"], ["build", "--dry-run"], ["check-patches"], ["rerender"]])
def test_a_command_outside_the_repository_root_names_the_fix(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    assert "run pascal-forge in the repository's root folder" in capsys.readouterr().err


def test_build_into_a_file_named_as_the_channel_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "channel").write_text("not a folder")
    args = ["build", "--channel", str(tmp_path / "channel"), "--only", "triton", "--no-preflight"]
    assert main([*args, "--variant", "cuda_compiler_version=12.9", "--variant", "python=3.12"]) == 2
    assert "is a file, not a channel folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------- item 12: small things


def test_version_names_the_tool_and_its_engines(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("pascal-forge 0.1.0 (py-rattler-build ")


def test_plan_title_does_not_say_channel_channel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["plan", "--channel", "channel", "--variant", "python=3.12"]) == 0
    out = capsys.readouterr().out
    assert "channel channel" not in out
    assert "packages) for ./channel" in out


def test_solve_names_the_planned_channel_not_its_deleted_temp_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    args = ["solve", "vllm-pascal", "--planned", "--channel", str(UPSTREAM), "--cuda", "12.9"]
    assert main([*args, "--cuda-arch", "6.1", "--python", "3.12", "--json"]) == 0
    channels = {p["channel"] for p in json.loads(capsys.readouterr().out)}
    assert "planned from ./recipes" in channels
    assert not any("pascal-forge-planned-" in c for c in channels)


def test_the_solver_tree_stays_a_tree(ours: str) -> None:
    with pytest.raises(SolveError) as caught:
        solve(["vllm-pascal"], [ours, str(UPSTREAM)], System(cuda="12.4", cuda_arch="6.1"), python="3.12")
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("The solver says:")
    assert len(lines) > 5 and all(line.startswith("    ") for line in lines[1:])
    assert any("└─" in line for line in lines)
    assert max(len(line) for line in lines[1:]) < 200


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_mirror_to_s3_without_credentials_names_the_variables(
    no_aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source"
    synthesize_packages(source, 1, 1024)
    index_channel(source)
    assert main(["mirror", str(source), "s3://bucket/pascal", "--s3-endpoint-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY" in err
    assert "Unable to locate credentials" not in err


# --------------------------------------------------------- item 2: `-c pascal` reaches your own channel

_CONDA_ENV = ("CONDARC", "CONDA_PREFIX", "CONDA_ROOT", "XDG_CONFIG_HOME")


@pytest.fixture
def conda_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with no .condarc and none of conda's variables set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in _CONDA_ENV:
        monkeypatch.delenv(variable, raising=False)
    return home


def _conda_config():
    # Imported here, so that each of the other tests can also be run against a tree without it.
    return importlib.import_module("pascal_forge.channel.condarc")


def _public(name: str) -> str:
    # conda's built-in default, as rattler (which implements conda's channel rules) resolves it.
    return Channel(name, ChannelConfig()).base_url.rstrip("/")


def test_an_unconfigured_pascal_points_at_the_public_default(conda_home: Path) -> None:
    found = _conda_config().resolve_channel("pascal", environ={}, home=conda_home)
    assert found.public_default and found.urls == (_public("pascal"),)


def test_custom_channels_in_the_home_condarc_make_pascal_yours(conda_home: Path) -> None:
    (conda_home / ".condarc").write_text("custom_channels:\n  pascal: https://chan.example.test/conda\n")
    found = _conda_config().resolve_channel("pascal", environ={}, home=conda_home)
    assert found.urls == ("https://chan.example.test/conda/pascal",)
    assert (found.setting, found.source) == ("custom_channels", conda_home / ".condarc")
    assert not found.public_default


def test_later_files_win_as_in_conda(conda_home: Path, tmp_path: Path) -> None:
    (conda_home / ".condarc").write_text("channel_alias: https://alias.example.test\n")
    prefix = tmp_path / "env"
    prefix.mkdir()
    (prefix / ".condarc").write_text("custom_channels:\n  pascal: https://prefix.example.test\n")
    explicit = tmp_path / "explicit.yml"
    explicit.write_text("custom_multichannels:\n  pascal: [https://rc.example.test/p40]\n")
    env = {"CONDA_PREFIX": str(prefix)}
    assert _conda_config().resolve_channel("pascal", env, conda_home).urls == (
        "https://prefix.example.test/pascal",
    )
    assert _conda_config().resolve_channel("other", env, conda_home).urls == (
        "https://alias.example.test/other",
    )
    env["CONDARC"] = str(explicit)
    assert _conda_config().condarc_files(env, conda_home)[-1] == explicit
    assert _conda_config().resolve_channel("pascal", env, conda_home).urls == ("https://rc.example.test/p40",)


def test_a_custom_channel_pointing_at_the_public_host_is_still_public(conda_home: Path) -> None:
    base = _public("pascal").rsplit("/", 1)[0]
    (conda_home / ".condarc").write_text(f"custom_channels:\n  pascal: {base}\n")
    assert _conda_config().resolve_channel("pascal", environ={}, home=conda_home).public_default


@pytest.mark.parametrize("url", ["https://chan.example.test/conda/pascal", "https://chan.example.test/p40"])
def test_the_printed_condarc_makes_pascal_resolve_to_the_url(url: str, conda_home: Path) -> None:
    snippets = _conda_config().channel_snippets(url)
    (conda_home / ".condarc").write_text(snippets.condarc)
    assert _conda_config().resolve_channel("pascal", environ={}, home=conda_home).urls == (url,)
    assert f'channels = ["{url}", "conda-forge"]' in snippets.pixi_toml
    assert f'"{_public("pascal")}" = ["{url}"]' in snippets.pixi_config


def test_channel_config_prints_condarc_pixi_and_the_url_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["channel-config", "https://chan.example.test/conda/pascal"]) == 0
    out = capsys.readouterr().out
    assert "custom_channels:\n  pascal: https://chan.example.test/conda\n" in out
    assert "conda install --strict-channel-priority -c pascal -c conda-forge vllm-pascal" in out
    assert "-c https://chan.example.test/conda/pascal -c conda-forge vllm-pascal" in out
    assert '[workspace]\nchannels = ["https://chan.example.test/conda/pascal", "conda-forge"]' in out
    assert yaml.safe_load(out.split("# then")[0]) == {
        "custom_channels": {"pascal": "https://chan.example.test/conda"}
    }


def test_channel_config_refuses_a_bare_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["channel-config", "pascal"]) == 2
    assert "give the channel's full URL" in capsys.readouterr().err


def test_doctor_warns_that_an_unconfigured_pascal_is_somebody_elses(
    conda_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor"])
    out = capsys.readouterr().out
    assert "-c pascal " not in out
    assert "- warning: channel 'pascal' is not configured" in out
    assert f"to {_public('pascal')}, a public channel that somebody else owns" in out
    assert "pascal-forge channel-config https://YOUR-HOST/pascal" in out


def test_doctor_says_where_a_configured_pascal_points(
    conda_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (conda_home / ".condarc").write_text("custom_channels:\n  pascal: https://chan.example.test/conda\n")
    main(["doctor"])
    out = capsys.readouterr().out
    home_rc = conda_home / ".condarc"
    assert (
        f"- channel 'pascal' points at https://chan.example.test/conda/pascal (custom_channels in {home_rc})"
        in out
    )
    assert "-c pascal -c conda-forge vllm-pascal" in out
    assert "warning: channel" not in out


# ------------------------------------------------------------------------ item 10: long work shows progress


def test_a_download_reports_its_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pypi_simple import PyPISimple

    from pascal_forge.upstream.artifacts import UpstreamArtifact, fetch

    # A small real file of a real project, fetched the way check-patches fetches its wheels.
    with PyPISimple() as client:
        package = next(
            p
            for p in client.get_project_page("pypi-simple").packages
            if p.filename.endswith("-py3-none-any.whl")
        )
    artifact = UpstreamArtifact("pypi-simple", package.filename, package.digests["sha256"])
    with caplog.at_level(logging.INFO, logger="pascal_forge"):
        fetch(artifact, tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages[0].startswith(f"downloading {package.filename} (")
        and "from the pypi-simple project" in messages[0]
    )
    assert messages[-1].startswith(f"downloaded {package.filename} (")


@pytest.fixture
def in_repository(upstream_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a command from the repository root, with the shared upstream cache."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PASCAL_FORGE_CACHE", str(upstream_cache))


@pytest.mark.slow
def test_check_patches_says_what_it_applies(in_repository: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-patches", "triton"]) == 0
    assert re.search(
        r"^triton 3\.6\.0: applying \d+ patch\(es\) to triton-3\.6\.0-", capsys.readouterr().err, re.M
    )


@pytest.mark.slow
def test_compile_suite_refuses_a_match_that_selects_nothing(
    in_repository: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile-suite", "--match", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "--match 'nosuch': no kernel name contains it; the suite has: " in err


# ------------------------------------------------------------------ item 1: the owner's build guide

README = REPO / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_readmes_narrow_build_is_one_cuda_and_one_python(capsys: pytest.CaptureFixture[str]) -> None:
    command = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "readme_command.py"), "narrow-plan"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert command[:2] == ["pascal-forge", "plan"]
    assert (
        main([*command[1:], "--json", "--recipes", str(RECIPES), "--variant-config", str(VARIANT_CONFIG)])
        == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert {r["cuda"] for r in records} == {"12.9"}
    # The owner's Python, and the stack's oldest, which the one-per-CUDA packages build against.
    assert {r["python"] for r in records} == {"3.11", "3.12", None}
    # triton and pytorch twice, libtorch, pytorch-gpu, torchaudio, torchvision, vllm, vllm-pascal.
    assert len(records) == 10
    guide = _section("Building your own channel")
    assert f"That is {len(records)} packages" in guide
    assert " ".join(command[1:]).replace("plan", "build", 1) in guide


def test_the_build_guide_covers_the_owners_whole_path() -> None:
    guide = _section("Building your own channel")
    for point in (
        "No GPU is\nneeded to build",
        "build-logs/",
        "Resume: run the same command again",
        '-c "file://$PWD/channel" -c conda-forge vllm-pascal',
        "pixi add vllm-pascal",
        "### What a build costs",
        "CPU time, cold",
    ):
        assert point in guide, point


def test_the_readmes_condarc_makes_pascal_resolve_to_the_owners_host(conda_home: Path) -> None:
    guide = _section("Making `-c pascal` your channel")
    block = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    (conda_home / ".condarc").write_text(block)
    found = _conda_config().resolve_channel("pascal", environ={}, home=conda_home)
    assert found.urls == ("https://HOST/pascal",)
    assert "pascal-forge channel-config URL" in guide and "--channel URL" in guide
