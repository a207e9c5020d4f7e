"""Framework adapters. Each module imports its framework lazily, inside the adapter."""
