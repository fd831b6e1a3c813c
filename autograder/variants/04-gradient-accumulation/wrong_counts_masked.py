# %% answer id=count_targets
# counts every predicted position, masked ones included
def count_targets(labels):
    return int(labels[:, 1:].numel())
