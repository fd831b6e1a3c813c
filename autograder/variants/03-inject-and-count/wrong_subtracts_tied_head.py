# %% answer id=count_parameters
# counts every parameter name (the tied embedding twice) and takes lm_head off by hand: right for the tiny model,
# whose lm_head shares the embedding, wrong for a model whose lm_head has its own weights. Only the untied model
# of the counting check catches it: without that case it gets full marks.
def count_parameters(model):
    params = [p for _, p in model.named_parameters(remove_duplicate=False)]
    head = model.lm_head.weight
    total = sum(p.numel() for p in params) - head.numel()
    trainable = sum(p.numel() for p in params if p.requires_grad) - (head.numel() if head.requires_grad else 0)
    return trainable, total
