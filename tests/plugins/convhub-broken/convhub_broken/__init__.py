"""A plugin that fails at import, as a plugin with a missing dependency would."""

raise ImportError("convhub_broken needs the module 'not_installed_anywhere'")
