"""The measurement layer: grading after the search, and the numbers a run is judged by.

    results.py  the results record (typed, versioned) and its file: whole lines, resumable, locked
    meter.py    accuracy of the returned answer, oracle pass@k (labelled), tokens per solved problem,
                replays of smaller forests and sample counts, Pareto fronts
    stats.py    Wilson and paired (Newcombe) intervals
    usage.py    token usage, one shape
"""
