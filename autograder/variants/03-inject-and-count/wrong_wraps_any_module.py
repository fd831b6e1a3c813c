# %% answer id=inject
# wraps every module whose own name is a target without checking that it is an nn.Linear: right whenever the
# targets are projections, an error for the target "mlp" (a block has no in_features). Only the case with that
# target catches it: without it it gets full marks.
def inject(model, r, alpha, targets):
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        if name and name.rsplit(".", 1)[-1] in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(module, r=r, alpha=alpha))
            wrapped.append(name)
    return sorted(wrapped)
