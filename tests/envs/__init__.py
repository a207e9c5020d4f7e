"""Python environments: specs and keys without building, then real builds with uv and runs inside them."""
