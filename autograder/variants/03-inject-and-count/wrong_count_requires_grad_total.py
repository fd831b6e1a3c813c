# %% answer id=count_parameters
# "total" counts only what trains
def count_parameters(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, trainable
