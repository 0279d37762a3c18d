"""The rule engine: declarative rule sets (YAML) compiled to vectorised Polars."""
