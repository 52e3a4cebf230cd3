"""Baton metrics: running KPI totals shared by marketing and sales."""
