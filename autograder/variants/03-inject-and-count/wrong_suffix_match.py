# %% answer id=inject
# matches targets by the end of the dotted name instead of the whole own name: the same layers for every real
# projection name, but the target "proj" wraps all of them. Only the case with that target catches it: without
# it it gets full marks.
def inject(model, r, alpha, targets):
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.endswith(tuple(targets)):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(module, r=r, alpha=alpha))
            wrapped.append(name)
    return sorted(wrapped)
