"""Baton handoff: reps, routing, assignments, SLA clocks and the sales API."""
