"""tiering: a policy-driven data mover between a hot tier and capacity tiers."""

__version__ = "0.1.0"
