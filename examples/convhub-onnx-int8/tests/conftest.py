pytest_plugins = ["convhub.testing"]
