"""Presentation: text tables, plotly figures, JSON and the one HTML report. No measurement happens here."""
