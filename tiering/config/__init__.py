"""Configuration: the TOML file a person writes, loaded into typed settings (``load``), with the
capacity tiers (``tiers``), the daemon's settings (``daemon``), typed values (``values``) and
where tiering's own files may live (``locations``).

Everything above the stores reads configuration through this package; the
names below are the ones other layers use.
"""

from tiering.config.load import (
    CONFIG_ENV,
    Config,
    TierConfig,
    check_hot_tier,
    check_locations,
    describe,
    find_config,
    load_config,
    open_tier,
)

__all__ = ["CONFIG_ENV", "Config", "TierConfig", "check_hot_tier", "check_locations", "describe", "find_config",
           "load_config", "open_tier"]
