"""CLI command modules. Each defines `register(group)` adding its commands to the `spot` group."""
