"""The configuration file: loading, resolution, one-line errors, masking, and the CLI over it."""

from __future__ import annotations

import json

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tiering.config import describe, find_config, load_config, open_tier
from tiering.core.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-Value-that-must-never-print"
MiB = 1 << 20

BASE = """
[hot]
path = "hot"
[catalog]
path = "state/catalog.db"
"""
S3_TIER = """
[tiers.s3]
url = "s3://my-bucket/some/prefix"
endpoint = "http://127.0.0.1:8333"
access_key_id = "AKID"
secret_access_key = "${TEST_SECRET}"
"""
OSS_TIER = """
[tiers.oss]
url = "oss://my-bucket"
endpoint = "https://oss-cn-hangzhou.aliyuncs.com"
access_key_id = "${TEST_KEY_ID}"
access_key_secret = "${TEST_SECRET}"
security_token = "${TEST_SECRET}"
storage_class = "coldarchive"
restore_tier = "bulk"
restore_days = 7
connect_timeout = "500ms"
checkpoint_dir = "ckpt"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("TIERING_HOME", "TIERING_CONFIG", "NOT_SET_ANYWHERE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEST_SECRET", SECRET)
    monkeypatch.setenv("TEST_KEY_ID", "LTAI-id")


def write(tmp_path: Path, text: str, name: str = "tiering.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: "), message
    return message


# -- what loads ------------------------------------------------------------------


def test_local_config_loads_into_the_repo_var_folder():
    config = load_config(REPO / "configs/local.toml")
    assert config.hot_path == REPO / "var/demo/hot"
    assert config.catalog_path == REPO / "var/demo/state/catalog.db"
    assert list(config.tiers) == ["hdd"] and config.default_tier == "hdd"
    hdd = config.tier()
    assert (hdd.scheme, hdd.url) == ("file", str(REPO / "var/demo/capacity"))
    assert hdd.options["jobs"] == config.part_jobs and hdd.options["part_size"] == config.part_size


def test_example_config_loads_with_all_three_kinds(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_ID"):
        monkeypatch.setenv(name, "id")
    for name in ("AWS_SECRET_ACCESS_KEY", "OSS_ACCESS_KEY_SECRET"):
        monkeypatch.setenv(name, SECRET)
    config = load_config(REPO / "configs/example.toml")
    assert {t.scheme for t in config.tiers.values()} == {"file", "s3", "oss"}
    text = describe(config)
    assert SECRET not in text and SECRET not in repr(config)
    assert tomllib.loads(text)["tiers"]["s3"]["secret_access_key"] == "****"


def test_options_are_resolved_for_open_store(tmp_path):
    text = BASE + '[concurrency]\npart_size = "8MiB"\npart_jobs = 3\n' + S3_TIER + 'request_timeout = "2m"\n' + OSS_TIER
    config = load_config(write(tmp_path, text))
    s3 = config.tier("s3")
    assert s3.url == "s3://my-bucket/some/prefix" and s3.storage_class == ""
    assert s3.options == {
        "endpoint": "http://127.0.0.1:8333", "access_key_id": "AKID", "secret_access_key": SECRET,
        "allow_http": True, "request_timeout": 120.0, "part_size": 8 * MiB, "multipart_threshold": 64 * MiB,
        "jobs": 3,
    }
    oss = config.tier("oss")
    assert oss.storage_class == "ColdArchive" and oss.options["restore_tier"] == "Bulk"
    assert oss.options["restore_days"] == 7 and oss.options["connect_timeout"] == 0.5
    assert oss.options["checkpoint_dir"] == tmp_path / "ckpt"
    assert oss.options["security_token"] == SECRET and oss.options["access_key_id"] == "LTAI-id"


def test_defaults(tmp_path):
    config = load_config(write(tmp_path, BASE + '[tiers.a]\nurl = "a"\n[tiers.b]\nurl = "b"\n'))
    assert config.default_tier == "a"
    assert (config.jobs, config.part_size, config.multipart_threshold, config.part_jobs) == (16, 64 * MiB, 64 * MiB, 4)
    assert (config.retry.attempts, config.retry.cap, config.retry.deadline) == (6, 5.0, 30.0)


def test_retry_and_tier_overrides(tmp_path):
    text = BASE + '[retry]\nattempts = 2\nmax_backoff = "250ms"\ndeadline = "1m"\n'
    text += '[tiers.a]\nurl = "file://a"\nfsync = false\npart_size = 1024\npart_jobs = 1\n'
    config = load_config(write(tmp_path, text))
    assert (config.retry.attempts, config.retry.cap, config.retry.deadline) == (2, 0.25, 60.0)
    assert config.tier().options == {"fsync": False, "part_size": 1024, "multipart_threshold": 64 * MiB, "jobs": 1}
    assert config.tier().url == str(tmp_path / "a")


def test_relative_paths_follow_the_config_file_not_the_cwd(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path, BASE + '[tiers.hdd]\nurl = "../cap"\n', "etc/tiering.toml")
    config = load_config(Path(os.path.relpath(path)))
    assert config.hot_path == tmp_path / "etc/hot"
    assert config.catalog_path == tmp_path / "etc/state/catalog.db"
    assert config.tier().url == str(tmp_path / "cap")
    assert config.path == path


def test_variables_and_defaults(tmp_path, monkeypatch):
    text = '[hot]\npath = "${TIERING_HOME:-fallback}/hot"\n[catalog]\npath = "/abs/${TEST_KEY_ID}.db"\n'
    text += '[tiers.t]\nurl = "${TIERING_HOME:-fallback}/cap"\n'
    path = write(tmp_path, text)
    assert load_config(path).hot_path == tmp_path / "fallback/hot"
    monkeypatch.setenv("TIERING_HOME", str(tmp_path / "home"))
    config = load_config(path)
    assert config.hot_path == tmp_path / "home/hot" and config.catalog_path == Path("/abs/LTAI-id.db")
    assert config.tier().url == str(tmp_path / "home/cap")


def test_unknown_tier_names_the_known_ones(tmp_path):
    config = load_config(write(tmp_path, BASE + '[tiers.hdd]\nurl = "x"\n[tiers.nas]\nurl = "y"\n'))
    with pytest.raises(UserError, match="unknown tier 'tape'; known tiers: hdd, nas"):
        config.tier("tape")


def test_open_tier_gives_a_posix_store(tmp_path):
    (tmp_path / "cap").mkdir()
    config = load_config(write(tmp_path, BASE + '[tiers.hdd]\nurl = "cap"\n'))
    store = open_tier(config)
    try:
        assert list(store.list()) == []
    finally:
        store.close()


# -- one-line errors ------------------------------------------------------------------

A = BASE + "[tiers.a]\n"  # most cases are about one tier named 'a'
ERRORS = [
    # (config text, what the one line must say)
    (BASE + '[tiers.s3]\nurl = "s3://my-bucket"\nendpont = "http://h:1"\n',
     "[tiers.s3] unknown key 'endpont'; did you mean 'endpoint'?"),
    ('defualt_tier = "x"\n' + A + 'url = "a"\n', "unknown key 'defualt_tier'; did you mean 'default_tier'?"),
    (BASE + '[concurrency]\npart_szie = 1\n[tiers.a]\nurl = "a"\n', "[concurrency] unknown key 'part_szie'; did you"),
    (BASE + '[retry]\ncolour = 1\n[tiers.a]\nurl = "a"\n', "[retry] unknown key 'colour'; expected one of: attempts"),
    (A + 'url = "s3://my-bucket"\nfsync = true\n', "'fsync' applies to posix tiers, not to s3 tiers"),
    (A + 'url = "${NOT_SET_ANYWHERE}/x"\n', "[tiers.a] url: environment variable NOT_SET_ANYWHERE is not set"),
    (A + 'url = "ftp://host/x"\n', "[tiers.a] url: unknown scheme 'ftp://'; expected a path"),
    (A + 'url = "s3://Bad_Bucket/x"\n', "[tiers.a] url: 'Bad_Bucket' is not a valid s3 bucket name"),
    (A + 'url = "s3://ab"\n', "'ab' is not a valid s3 bucket name"),
    (A + 'url = "s3://192.168.1.10"\n', "is not a valid s3 bucket name"),
    (A + 'url = "oss://my.bucket"\nendpoint = "https://h"\n', "'my.bucket' is not a valid oss bucket"),
    (A + 'url = "s3://my-bucket/a/../b"\n', "[tiers.a] url: prefix 'a/../b' is not a clean relative path"),
    (A + 'url = "s3://b-1"\nendpoint = "ftp://h"\n', "[tiers.a] endpoint: 'ftp://h' is not an http(s) URL"),
    (A + 'url = "s3://b-1"\nendpoint = "http://h:9/path"\n', "endpoint: 'http://h:9/path' has a path"),
    (A + 'url = "oss://b-1"\n', "[tiers.a] endpoint: missing; expected an http(s)://host[:port] URL"),
    (A + 'url = "oss://b-1"\nendpoint = "https://h"\nstorage_class = "Glacier"\n',
     "[tiers.a] storage_class: 'Glacier' is not a valid storage_class; expected one of Standard, IA, Archive"),
    (A + 'url = "s3://b-1"\nstorage_class = "cold"\n', "expected one of STANDARD, STANDARD_IA"),
    (A + 'url = "oss://b-1"\nendpoint = "https://h"\nrestore_tier = "Fast"\n',
     "[tiers.a] restore_tier: 'Fast' is not a valid restore_tier; expected one of Expedited, Standard, Bulk"),
    (A + 'url = "oss://b-1"\nendpoint = "https://h"\nrestore_days = 0\n',
     "[tiers.a] restore_days: 0 is out of range; expected between 1 and 365"),
    (BASE + '[concurrency]\njobs = "8"\n[tiers.a]\nurl = "a"\n',
     "[concurrency] jobs: found a string ('8'); expected an integer"),
    (A + 'url = "a"\nfsync = "yes"\n', "[tiers.a] fsync: found a string ('yes'); expected true or false"),
    (BASE + '[concurrency]\npart_size = true\n[tiers.a]\nurl = "a"\n', "[concurrency] part_size: found a boolean"),
    (BASE + '[concurrency]\npart_size = "64XB"\n[tiers.a]\nurl = "a"\n', "part_size: unknown size unit 'xb' in '64XB'"),
    (BASE + '[retry]\ndeadline = "5 fortnights"\n[tiers.a]\nurl = "a"\n', "[retry] deadline: unknown duration unit"),
    (BASE + '[retry]\nmax_backoff = [1]\n[tiers.a]\nurl = "a"\n', "[retry] max_backoff: found an array; expected"),
    (A + 'url = 5\n', "[tiers.a] url: found an integer (5); expected a path"),
    (BASE + '[concurrency]\npart_size = "1MiB"\n[tiers.a]\nurl = "s3://b-1"\n',
     "[tiers.a] part_size: 1MiB (inherited from [concurrency]) is out of range for s3; expected between 5MiB and 5GiB"),
    ("[hot]\n[catalog]\npath = 'c'\n[tiers.a]\nurl = 'a'\n", "[hot] path: missing; expected a path"),
    (BASE, "tiers: no capacity tier is configured; expected at least one [tiers.NAME] table"),
    ('tiers = 3\n' + BASE, "tiers: found an integer; expected a table [tiers]"),
    ('default_tier = "tape"\n' + A + 'url = "a"\n', "default_tier: 'tape' is not a configured tier"),
    (A + 'url = "s3://b-1"\nendpoint = "http://h"\nallow_http = false\n',
     "[tiers.a] allow_http: false, but the endpoint is http://"),
    (A + 'url = "s3://b-1"\nsecret_access_key = "${TEST_SECRET}"\n',
     "[tiers.a] access_key_id: missing while secret_access_key is set"),
    (BASE + "[tiers.a]\nurl = 'a'\n[hot\n", "invalid TOML: "),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_each_mistake_is_one_line_naming_file_and_key(tmp_path, text, expected):
    assert expected in config_error(write(tmp_path, text))


def test_toml_syntax_error_has_line_and_column(tmp_path):
    message = config_error(write(tmp_path, BASE + "[tiers.a]\nurl = 'a'\njobs = = 3\n"))
    assert "line 8" in message and "column" in message


@pytest.mark.parametrize(
    ("key", "literal"),
    [("secret_access_key", "AbCdSecretLiteral"), ("session_token", "AbCdSecretLiteral"),
     ("secret_access_key", "${TEST_SECRET:-AbCdSecretLiteral}"), ("secret_access_key", "pre${TEST_SECRET}")],
)
def test_literal_secrets_are_refused_and_not_echoed(tmp_path, key, literal):
    text = BASE + f'[tiers.s3]\nurl = "s3://b-1"\naccess_key_id = "x"\n{key} = "{literal}"\n'
    message = config_error(write(tmp_path, text))
    assert f"[tiers.s3] {key}: secrets may not be written in the file" in message
    assert "AbCdSecretLiteral" not in message and "pre" not in message.split(key)[-1]


def test_unset_secret_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_SECRET")
    message = config_error(write(tmp_path, BASE + S3_TIER))
    assert message.endswith("[tiers.s3] secret_access_key: environment variable TEST_SECRET is not set; export it")


def test_oss_literal_secret_refused(tmp_path):
    text = BASE + '[tiers.o]\nurl = "oss://b-1"\nendpoint = "https://h"\naccess_key_id = "x"\n'
    message = config_error(write(tmp_path, text + 'access_key_secret = "AbCdSecretLiteral"\n'))
    assert "access_key_secret: secrets may not be written" in message and "AbCdSecretLiteral" not in message


def test_credentials_in_a_url_are_not_echoed(tmp_path):
    message = config_error(write(tmp_path, BASE + '[tiers.a]\nurl = "s3://me:AbCdSecretLiteral@b-1/x"\n'))
    assert "contains credentials" in message and "AbCdSecretLiteral" not in message


def test_missing_file_is_one_line(tmp_path):
    message = config_error(tmp_path / "nope.toml")
    assert "cannot read the file" in message


def test_describe_masks_every_secret(tmp_path):
    config = load_config(write(tmp_path, BASE + S3_TIER + 'session_token = "${TEST_SECRET}"\n' + OSS_TIER))
    text = describe(config)
    assert SECRET not in text and SECRET not in repr(config) and SECRET not in str(config.tiers)
    assert text.count('"****"') == 4
    parsed = tomllib.loads(text)
    assert parsed["tiers"]["oss"]["connect_timeout"] == "500ms"
    assert parsed["tiers"]["s3"]["part_size"] == "64MiB" and parsed["tiers"]["s3"]["part_jobs"] == 4


# -- which file --------------------------------------------------------------------


def test_find_config_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no configuration found: pass --config FILE, set \$TIERING_CONFIG"):
        find_config()
    write(tmp_path, "", "configs/local.toml")
    assert find_config() == Path("configs/local.toml")
    write(tmp_path, "", "tiering.toml")
    assert find_config() == Path("tiering.toml")
    monkeypatch.setenv("TIERING_CONFIG", "/etc/tiering/site.toml")
    assert find_config() == Path("/etc/tiering/site.toml")
    assert find_config("given.toml") == Path("given.toml")


# -- the CLI ---------------------------------------------------------------------


def tiering(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    full_env.update(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", "from tiering.cli import main; main()", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=120,
    )


def test_cli_config_check_local():
    result = tiering("config", "check", "configs/local.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "ok: 1 tier"
    assert "[tiers.hdd]" in result.stdout


def test_cli_config_check_defaults_to_configs_local():
    result = tiering("config", "check")
    assert result.returncode == 0, result.stderr
    assert f"# resolved from {REPO / 'configs/local.toml'}" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + '[tiers.a]\nurl = "s3://b-1"\nendpont = "http://h"\n', "did you mean 'endpoint'?"),
        (BASE + '[tiers.a]\nurl = "${NOT_SET_ANYWHERE}"\n', "NOT_SET_ANYWHERE is not set"),
        (BASE + '[tiers.a]\nurl = "s3://B/x"\n', "'B' is not a valid s3 bucket name"),
    ],
)
def test_cli_config_check_mistake_exits_2_with_one_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    result = tiering("config", "check", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"tiering: error: {path}: ")
    assert expected in result.stderr and result.stdout == ""


def test_cli_output_never_shows_secrets(tmp_path):
    path = write(tmp_path, BASE + S3_TIER + OSS_TIER)
    result = tiering("config", "check", str(path), env={"TEST_SECRET": SECRET, "TEST_KEY_ID": "id"})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ok: 2 tiers"


def test_cli_probe_lists_one_key(tmp_path):
    (tmp_path / "hot").mkdir()  # --probe checks the hot tier is there too
    (tmp_path / "cap/dir").mkdir(parents=True)
    (tmp_path / "cap/dir/file").write_bytes(b"x")
    result = tiering("config", "check", str(write(tmp_path, BASE + '[tiers.hdd]\nurl = "cap"\n')), "--probe")
    assert result.returncode == 0, result.stderr
    assert "probe hdd: reachable, first key 'dir/file'" in result.stdout


def test_cli_demo_runs_a_full_cycle_on_the_local_default(tmp_path):
    result = tiering("demo", "--config", "configs/local.toml", env={"TIERING_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "generated a demo workspace" in result.stdout
    assert "old-shards                   release          12" in result.stdout
    shard = tmp_path / "hot/datasets/old-corpus/shards/shard-00000.tar"
    assert shard.stat().st_size == 0  # released: a stub on the hot tier...
    assert (tmp_path / "capacity/datasets/old-corpus/shards/shard-00000.tar").stat().st_size == 2_000_000
    assert (tmp_path / "hot/runs/exp-1/checkpoints/step-5000.pt").stat().st_size == 4_000_000  # recent: kept
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["demo"] == "ok"
    again = tiering("demo", "--config", "configs/local.toml", env={"TIERING_HOME": str(tmp_path)})
    assert again.returncode == 0 and "(nothing to do)" in again.stdout


# -- migrate's --src-option / --dst-option: the same tables, the same one-line errors --------------


def test_migrate_options_are_checked_like_a_tier():
    from tiering.migrate.endpoints import resolve

    spec = resolve("s3://bucket/x", {"endpoint": "http://127.0.0.1:8333/", "access_key_id": "AK",
                                     "secret_access_key": "literal-on-the-command-line", "part_size": "5MiB",
                                     "multipart_threshold": "8MiB", "jobs": "3", "allow_http": "yes",
                                     "connect_timeout": "2s"})
    assert dict(spec.options) == {"endpoint": "http://127.0.0.1:8333", "access_key_id": "AK",
                                  "secret_access_key": "literal-on-the-command-line", "part_size": 5 * MiB,
                                  "multipart_threshold": 8 * MiB, "jobs": 3, "allow_http": True,
                                  "connect_timeout": 2.0}
    oss = resolve("oss://bucket", {"restore_days": "3", "storage_class": "archive"}, side="destination")
    assert dict(oss.options) == {"restore_days": 3, "storage_class": "Archive"}


@pytest.mark.parametrize("side, url, options, message", [
    ("source", "s3://bucket/x", {"endpont": "http://h:1"},
     "--src-option: unknown key 'endpont'; did you mean 'endpoint'?"),
    ("destination", "oss://bucket", {"sesion_token": "t"}, "--dst-option: unknown key 'sesion_token'; "),
    ("source", "s3://bucket/x", {"read_timeout": "2"}, "'read_timeout' applies to oss tiers, not to s3 tiers"),
    ("source", "s3://bucket/x", {"url": "s3://other"}, "the s3 location is the command's own argument"),
    ("source", "s3://bucket/x", {"part_size": "x"}, "--src-option: part_size: "),
    ("source", "s3://bucket/x", {"part_size": "1MiB"}, "--src-option: part_size: 1MiB is out of range for s3; "
                                                       "expected between 5MiB and 5GiB"),
    ("source", "s3://bucket/x", {"allow_http": "maybe"}, "--src-option: allow_http: 'maybe' is not a boolean"),
    ("source", "s3://bucket/x", {"jobs": "many"}, "--src-option: part_jobs: 'many' is not a whole number"),
    ("destination", "oss://bucket", {"restore_days": "0"}, "--dst-option: restore_days: 0 is out of range"),
    ("source", "s3://bucket/x", {"endpoint": "ftp://h"}, "--src-option: endpoint: 'ftp://h' is not an http(s) URL"),
    ("source", "s3://bucket/x", {"connect_timeout": "soon"}, "--src-option: connect_timeout: "),
])
def test_a_bad_migrate_option_is_one_config_error(side, url, options, message):
    from tiering.migrate.endpoints import resolve

    with pytest.raises(ConfigError) as caught:
        resolve(url, options, side=side)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_options_for_a_configured_tier_are_checked_by_its_kind(tmp_path):
    from tiering.migrate.endpoints import resolve

    cfg = load_config(write(tmp_path, BASE + '[tiers.hdd]\nurl = "cap"\n'))
    assert dict(resolve("hdd", {"fsync": "off"}, cfg).options)["fsync"] is False
    with pytest.raises(ConfigError, match="'endpoint' applies to s3 tiers, not to posix tiers"):
        resolve("hdd", {"endpoint": "http://h:1"}, cfg)


@pytest.mark.parametrize("option", ["--src-option=part_size=x", "--src-option=endpont=http://127.0.0.1:1"])
def test_migrate_cli_refuses_a_bad_option_with_exit_2(tmp_path, option):
    """Reproductions: `part_size=x` was a ValueError traceback (rc 1); `endpont=` was silently accepted."""
    result = subprocess.run([sys.executable, "-m", "tiering", "migrate", "s3://bucket/x", str(tmp_path / "dst"),
                             option], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**os.environ, "TIERING_CONFIG": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("tiering: error: --src-option: ")
    assert not (tmp_path / "dst").exists()


def test_cli_probe_of_a_missing_hot_tier_is_a_config_error(tmp_path):
    (tmp_path / "cap").mkdir()
    result = tiering("config", "check", str(write(tmp_path, BASE + '[tiers.hdd]\nurl = "cap"\n')), "--probe")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "[hot] path" in result.stderr and "Traceback" not in result.stderr
