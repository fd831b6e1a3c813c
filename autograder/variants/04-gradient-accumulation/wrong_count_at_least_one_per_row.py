# %% answer id=count_targets
# counts each row's targets but at least one per row (a guard against dividing by zero, in the wrong place): right
# whenever every row has a target, wrong for a padding-only row or a row of a single position. Only those cases
# catch it: without them it gets full marks.
def count_targets(labels):
    return int((labels[:, 1:] != -100).sum(dim=1).clamp(min=1).sum())
