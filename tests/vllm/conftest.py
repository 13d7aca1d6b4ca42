from engine_support import tiny_model  # noqa: F401  the shared model fixture
