"""Each store's options are declared once (``tiering.stores.options``) and nothing drifts from it.

For every store: the options it reads when opened are the ones it declares as used;
the config loader accepts exactly the declared keys (and hands every one of them to
the store); the README's table has one row per declared option, as declared.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tiering.config import load_config
from tiering.config.tiers import SCHEME_KEYS
from tiering.core.errors import ConfigError
from tiering.stores import SCHEMES
from tiering.stores.options import OPTIONS, StoreOption

README = Path(__file__).resolve().parents[1] / "README.md"
SECRET = "s3cr3t"

#: A valid config value of each kind (for sizes, one inside every store's part limits).
SAMPLE = {"string": '"x"', "label": '"hdd"', "secret": '"${TEST_SECRET}"', "endpoint": '"http://127.0.0.1:9"',
          "boolean": "true", "size": '"64MiB"', "duration": '"2m"', "path": '"ckpt"'}
URL = {"file": "capacity", "s3": "s3://my-bucket/p", "oss": "oss://my-bucket/p"}


class Recording(dict):
    """An options mapping that notes every key a store asks for, present or not."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.asked.add(key)
        return super().__contains__(key)


def sample(option: StoreOption) -> str:
    if option.choices:
        return f'"{option.choices[-1]}"'
    if option.kind == "integer":
        return str(int(option.minimum or 1))
    return SAMPLE[option.kind]


def every_option_config(tmp_path: Path, scheme: str) -> Path:
    """A config whose one tier sets every option its store declares."""
    (tmp_path / "hot").mkdir()
    (tmp_path / "capacity").mkdir()
    lines = [f'url = "{URL[scheme]}"'] + [f"{o.config_key} = {sample(o)}" for o in OPTIONS[scheme]]
    path = tmp_path / "tiering.toml"
    path.write_text('default_tier = "t"\n[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n[tiers.t]\n'
                    + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("scheme", list(OPTIONS))
def test_the_store_reads_what_the_loader_accepts(scheme, tmp_path):
    """Loaded with every declared key set, a tier hands the store every option, and the store reads
    exactly the ones it declares as used (an option it reads that the loader rejects, like OSS's
    ``read_timeout`` once was, shows up here, and so does a declared one it ignores)."""
    tier = load_config(every_option_config(tmp_path, scheme), env={"TEST_SECRET": SECRET}).tiers["t"]
    declared = OPTIONS[scheme]
    assert set(tier.options) == {o.name for o in declared}
    assert set(SCHEME_KEYS[scheme]) == {o.config_key for o in declared}
    module, cls, _ = SCHEMES[scheme]
    store_class = getattr(importlib.import_module(module), cls)
    assert store_class.OPTIONS is declared
    options = Recording(tier.options)
    store = store_class(tier.url, options)
    try:
        assert options.asked == {o.name for o in declared if o.used}
    finally:
        store.close()


@pytest.mark.parametrize("scheme", list(OPTIONS))
def test_the_loader_refuses_what_no_store_declares(scheme, tmp_path):
    path = every_option_config(tmp_path, scheme)
    path.write_text(path.read_text() + "read_timeout_ms = 5\n")
    with pytest.raises(ConfigError, match="unknown key 'read_timeout_ms'"):
        load_config(path, env={"TEST_SECRET": SECRET})


def test_oss_read_timeout_is_a_tier_key(tmp_path):
    """The drift the house issue names: oss.py reads ``read_timeout``, the loader used to refuse it."""
    (tmp_path / "hot").mkdir()
    path = tmp_path / "tiering.toml"
    path.write_text('default_tier = "o"\n[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n[tiers.o]\n'
                    'url = "oss://my-bucket"\nendpoint = "https://oss-cn-hangzhou.aliyuncs.com"\nread_timeout = "2m"\n')
    assert load_config(path).tiers["o"].options["read_timeout"] == 120


def readme_rows() -> list[str]:
    text = README.read_text()
    start = text.index("<!-- store options: generated from tiering/stores/options.py -->")
    end = text.index("<!-- end of store options -->")
    return [line for line in text[start:end].splitlines()[1:] if line.startswith("|")]


def row(store: str, option: StoreOption) -> str:
    value = ", ".join(option.choices) if option.choices else option.kind
    default = "required" if option.required else (option.shown_default or "none")
    return f"| {store} | `{option.config_key}` | {value} | {default} | {option.doc} |"


def test_the_readme_table_is_the_declaration():
    expected = ["| store | key | value | default | what it sets |", "|---|---|---|---|---|"]
    expected += [row(options.store, o) for options in OPTIONS.values() for o in options]
    assert readme_rows() == expected
