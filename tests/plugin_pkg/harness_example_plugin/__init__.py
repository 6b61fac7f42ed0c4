"""A minimal third-party retriever package for the harness tests."""
