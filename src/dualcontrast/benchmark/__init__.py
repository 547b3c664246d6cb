"""Benchmark suites: every method on every data set with the same budget, through the library's
:func:`~dualcontrast.workflow.train_run` (suites, runner, report)."""
