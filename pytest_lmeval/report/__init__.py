"""Aggregation and reports: terminal table, results.json, samples."""
