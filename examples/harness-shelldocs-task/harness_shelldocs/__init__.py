"""harness-shelldocs-task: a small hand-written collection as a task of the retrieval harness.

The task class is :class:`harness_shelldocs.task.ShelldocsTask`, registered under the
``harness.tasks`` entry-point group as ``shelldocs``; the file readers are in
:mod:`harness_shelldocs.readers` and the data in ``harness_shelldocs/data/``.
"""

__version__ = "0.1.0"
