"""The evaluation report for people: an HTML page with charts, beside report.json.

    report.py     write_report(): which charts apply to a run, and where they are written
    evaluated.py  the predictions beside their true targets (indexed by the predictions' row column)
    charts.py     each chart: numpy arrays in, PNG bytes out (matplotlib, headless)
    html.py       the self-contained page (inline CSS, charts as data URIs, user text escaped)
    npyrows.py    a few rows of a large .npy in S3 by ranged GETs (the misclassified images)

Importing this package does not import matplotlib; drawing a report does.
"""

from stepml.reporting.report import CHARTS, write_report

__all__ = ["CHARTS", "write_report"]
