"""Evaluation: scoring a model on a clip set, tagging and event metrics, cross-validation summaries."""
