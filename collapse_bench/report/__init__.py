"""The HTML leaderboard: ``build_report(run_dir)`` turns ``run_dir/results/*.json`` into one offline page."""
from .build import build_report
from .load import load_results

__all__ = ["build_report", "load_results"]
