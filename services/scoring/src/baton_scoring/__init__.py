"""Baton scoring: fit grade, engagement score and the MQL decision."""
