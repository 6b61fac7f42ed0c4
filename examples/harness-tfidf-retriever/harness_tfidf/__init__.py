"""TF-IDF cosine retrieval as a harness plug-in (entry point ``tfidf`` in group ``harness.retrievers``)."""

__version__ = "0.1.0"
