"""The stack's settings: the typed, validated model (model.py) and its one reader of `pulumi.Config`
(reader.py). Dependencies run one way, each module importing only those before it: rules → service_rules →
value_types → sections → namespace_sections → fields → errors → stack_files → capacity, restore_source →
stack_rules → model → reader → docs, cli. tests/settings/test_settings_imports.py fails on an import that runs back.

The names components use most are here; everything else is imported from its module.
"""

from components.settings.errors import ConfigError
from components.settings.fields import PROJECT
from components.settings.model import Settings
from components.settings.reader import load_settings, parse_settings, secret_output

__all__ = ["PROJECT", "ConfigError", "Settings", "load_settings", "parse_settings", "secret_output"]
