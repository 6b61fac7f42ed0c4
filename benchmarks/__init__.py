"""The ``harness bench`` targets, installed as ``harness.benchmarks`` (the folder ``benchmarks/``).

A module with ``add_arguments(parser)`` and ``run(args)`` is a target (``bm25``, ``generation``,
``qr``); the others (``_common``, ``qr_measure``, ``qr_isolation``, ``qr_report``) are helpers.
"""
