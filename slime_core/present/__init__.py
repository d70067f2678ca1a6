"""Presentation: text tables, plotly figures, the matplotlib overview, JSON and the one HTML report.
No measurement happens here; modules here may import stages and experiments, never the other way round.

tables         plain-text tables of `slime eval` and `slime defend`
figures        plotly figures (defence curves, the audit's charts, the app's charts)
overview_png   the small-multiples PNG of every defence curve (matplotlib, no browser)
html_report    the one HTML report (templates/report.html.j2): the audit plus JSON, and an evaluation's tables
defence_panel  the Defences page's words, metric cards and leakage table for one measured strength
app_figures    the app's data frames and charts
serialise      results to standard JSON; output paths checked writable before slow work
"""
