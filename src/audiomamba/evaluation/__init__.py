"""Evaluation: scoring a model on a clip set (``predict``), tagging and event metrics (``metrics``),
cross-validation summaries (``summary``), a model scored on a dataset with other classes (``label_match``)."""

from audiomamba.evaluation.label_match import LabelMatch, LabelMatchError, match_labels, subset_metrics
from audiomamba.evaluation.metrics import event_metrics, per_class_table, tagging_metrics
from audiomamba.evaluation.predict import evaluate_scores, predict
from audiomamba.evaluation.summary import cv_summary, mean_std

__all__ = ["predict", "evaluate_scores", "tagging_metrics", "per_class_table", "event_metrics", "cv_summary",
           "mean_std", "match_labels", "subset_metrics", "LabelMatch", "LabelMatchError"]
