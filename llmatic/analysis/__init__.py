"""What a run's files say: comparisons of runs, plots of the archives, prompt statistics.

- :mod:`llmatic.analysis.comparison`: many runs -> mean ± std tables at matched budgets;
- :mod:`llmatic.analysis.plotting`: heatmaps of both archives and the search's progress;
- :mod:`llmatic.analysis.prompt_stats`: which prompts and temperatures paid off.
"""
