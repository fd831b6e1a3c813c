# %% answer id=count_parameters
# counts tensors instead of their elements
def count_parameters(model):
    params = list(model.parameters())
    return sum(1 for p in params if p.requires_grad), len(params)
