"""The HTML report of a labelling run (``xmodal report``): see ``build``."""

from xmodal.engine.report.build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
